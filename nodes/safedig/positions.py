"""Intervention positions inside DiTs, reached through ComfyUI's `dit` block-replace patches.

Position names (the same on every DiT that has them):
- ``text_in``: the text stream as it enters the blocks, after the model's own text projection
  (Flux, Chroma, Flux.2, SD3, Qwen-Image: the input ``txt`` of block 0, which then flows through the joint blocks;
  Wan: the projected context every block cross-attends to);
- ``double.<i>.txt`` / ``double.<i>.img``: the text / image stream leaving joint block i (cross-modal
  binding; Flux, Chroma and Flux.2 double blocks, SD3 and Qwen-Image joint blocks; Wan blocks have an image stream
  only; the text leaving the last joint block of SD3 and Qwen-Image is never read, so it is no
  position);
- ``single.<j>``: the joint sequence leaving Flux (Chroma, Flux.2) single block j (rendering).
A hook is ``fn(tensor, transformer_options) -> tensor``; all hooks a node puts on one block go into
one replace patch, which calls the block's previous patch (another pack's, or an earlier Safety
Steer node's) instead of overwriting it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import torch

from ..apply.model_targets import UnsupportedModelError, model_kind

Hook = Callable[[torch.Tensor, dict], torch.Tensor]
SUPPORTED_DIT = ("SD3 / SD3.5", "Flux", "Chroma", "Flux.2", "Wan 2.x", "Qwen-Image")
#: Joint-attention DiTs whose text stream leaves the last block unread (no double.<last>.txt).
_LAST_TXT_UNREAD = ("SD3 / SD3.5", "Qwen-Image")
#: Why a DiT that the model point supports has no SafeDIG positions.
_WHY_NOT = {
    "Z-Image": " (ComfyUI's Z-Image model, Lumina 2's NextDiT, runs its blocks without the block-replace "
    "patches SafeDIG hooks into)",
    "Lumina 2": " (ComfyUI's Lumina 2 model, NextDiT, runs its blocks without the block-replace patches "
    "SafeDIG hooks into)",
    "PixArt": " (ComfyUI's PixArt model runs its blocks without the block-replace patches SafeDIG hooks into)",
    "AuraFlow": " (its joint and single blocks are not mapped to SafeDIG positions yet)",
    # HunyuanVideo (and so its 1.5 and HunyuanImage 2.1) is not mapped at all yet
    "HunyuanVideo 1.5": " (its double blocks are not mapped to SafeDIG positions yet; their text stream "
    "also carries the byT5 glyph and vision tokens)",
    "HunyuanImage 2.1": " (its double and single blocks are not mapped to SafeDIG positions yet; their text "
    "stream also carries the byT5 glyph tokens)",
    "Cosmos Predict2": " (ComfyUI's Cosmos Predict2 model runs its blocks without the block-replace patches "
    "SafeDIG hooks into)",
    "OmniGen 2": " (ComfyUI's OmniGen 2 model runs its refiner and main blocks without the block-replace "
    "patches SafeDIG hooks into)",
}


def block_counts(model) -> tuple[str, int, int]:
    """(family label, number of joint/double blocks, number of single blocks)."""
    kind, label = model_kind(model)
    if kind != "dit" or label not in SUPPORTED_DIT:
        raise UnsupportedModelError(
            f"SafeDIG intervenes inside DiT blocks; it supports {', '.join(SUPPORTED_DIT)}, "
            f"not {label}{_WHY_NOT.get(label, '')}. Use Apply Safety Steer (Model) for that model instead."
        )
    net = model.model.diffusion_model
    # Chroma, Flux.2: Flux's double and single blocks (comfy.ldm.flux.model.Flux), the same replace patches
    if label in ("Flux", "Chroma", "Flux.2"):
        return label, len(net.double_blocks), len(net.single_blocks)
    if label == "SD3 / SD3.5":
        return label, len(net.joint_blocks), 0
    if label == "Qwen-Image":
        return label, len(net.transformer_blocks), 0
    return label, len(net.blocks), 0


def hidden_width(model) -> int:
    """The width of the DiT's token streams (what an SAE at any of its positions reads)."""
    label, _, _ = block_counts(model)
    net = model.model.diffusion_model
    if label == "Qwen-Image":
        return int(net.inner_dim)
    return int(net.dim if label == "Wan 2.x" else net.hidden_size)


def available_positions(model) -> list[str]:
    """Every position this model offers, in depth order."""
    label, doubles, singles = block_counts(model)
    positions = ["text_in"]
    for i in range(doubles):
        if label != "Wan 2.x" and not (label in _LAST_TXT_UNREAD and i == doubles - 1):
            positions.append(f"double.{i}.txt")
        positions.append(f"double.{i}.img")
    positions += [f"single.{j}" for j in range(singles)]
    return positions


def spread_positions(model, count: int) -> list[str]:
    """``count`` candidate positions spread over depth, text stream first (routing candidates)."""
    every = available_positions(model)
    if count >= len(every):
        return every
    picks = torch.linspace(0, len(every) - 1, count).round().long().unique().tolist()
    return [every[i] for i in picks]


def _sites(model, position: str) -> list[tuple[str, int, str]]:
    """[(block type, index, where)] for a position: where is txt_in, txt_out or img_out."""
    label, doubles, _ = block_counts(model)
    if position not in available_positions(model):
        raise ValueError(f"{label} has no position {position!r}; it has {', '.join(available_positions(model))}.")
    if position == "text_in":
        blocks = range(doubles) if label == "Wan 2.x" else [0]
        return [("double_block", i, "txt_in") for i in blocks]
    parts = position.split(".")
    if parts[0] == "single":
        return [("single_block", int(parts[1]), "img_out")]
    return [("double_block", int(parts[1]), f"{parts[2]}_out")]


def patch_positions(model, hooks: dict[str, Hook]):
    """A clone of ``model`` with each position's hook installed; earlier patches on the same blocks
    keep running (chained), and the original model is untouched."""
    by_block: dict[tuple[str, int], list[tuple[str, Hook]]] = defaultdict(list)
    for position, hook in hooks.items():
        for block_type, index, where in _sites(model, position):
            by_block[(block_type, index)].append((where, hook))
    patched = model.clone()
    existing = patched.model_options.get("transformer_options", {}).get("patches_replace", {}).get("dit", {})
    for (block_type, index), block_hooks in by_block.items():
        patched.set_model_patch_replace(
            _chained(existing.get((block_type, index)), block_hooks), "dit", block_type, index
        )
    return patched


def _chained(previous, hooks: list[tuple[str, Hook]]):
    def patch(args, extra):
        options = args.get("transformer_options", {})
        args = dict(args)
        for where, hook in hooks:
            if where == "txt_in" and args.get("txt") is not None:
                args["txt"] = hook(args["txt"], options)
        out = previous(args, extra) if previous is not None else extra["original_block"](args)
        out = dict(out)
        for where, hook in hooks:
            key = "txt" if where == "txt_out" else "img" if where == "img_out" else None
            if key is not None and out.get(key) is not None:
                out[key] = hook(out[key], options)
        return out

    return patch
