"""SafetySteerLoadDirection and SafetySteerDirectionInfo: bring a direction pack into a graph and show it."""

from __future__ import annotations

import os

from comfy_api.latest import io, ui

from ...steering import DirectionPack, load_pack
from ...steering.transfer.aligned import AlignedSafetyDirection
from ..model_folders import direction_pack_path, list_direction_packs
from ..search_aliases import search_aliases
from ..types import AlignedDirectionType, DirectionPackType

_cache: dict[tuple[str, float], DirectionPack] = {}


def _load_cached(path: str) -> DirectionPack:
    """Packs are small but validated on load; keep one copy per file version."""
    key = (path, os.path.getmtime(path))
    if key not in _cache:
        _cache.clear()
        _cache[key] = load_pack(path)
    return _cache[key]


class SafetySteerLoadDirection(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SafetySteerLoadDirection",
            display_name="Load Safety Direction",
            category="safety_steer",
            **search_aliases("SafetySteerLoadDirection"),
            description=(
                "Loads a safety direction pack: a global direction and one per harm category, "
                "learned once in a source LLM (pointing from unsafe to safe), with the anchor "
                "features needed to carry it into any text encoder. Lists packs in "
                "models/safety_directions/ and the ones shipped with Safety Steer."
            ),
            inputs=[
                io.Combo.Input(
                    "pack",
                    options=list_direction_packs(),
                    tooltip="A .safetensors direction pack from models/safety_directions/ or the "
                    "shipped vectors/ folder. Build your own with `safety-steer build-pack`.",
                )
            ],
            outputs=[
                DirectionPackType.Output(
                    display_name="direction", tooltip="The loaded pack, in the source model's space."
                )
            ],
        )

    @classmethod
    def validate_inputs(cls, pack):
        # Checked here rather than left to ComfyUI: some versions skip option checks on V3 combos.
        if pack not in list_direction_packs():
            return (
                f"Direction pack {pack!r} is not in models/safety_directions/ nor in the shipped vectors/. "
                f"Available: {', '.join(list_direction_packs()) or 'none'}."
            )
        return True

    @classmethod
    def fingerprint_inputs(cls, pack):
        path = direction_pack_path(pack)
        return (path, os.path.getmtime(path))

    @classmethod
    def execute(cls, pack) -> io.NodeOutput:
        return io.NodeOutput(_load_cached(direction_pack_path(pack)))


class SafetySteerDirectionInfo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SafetySteerDirectionInfo",
            display_name="Safety Direction Info",
            category="safety_steer",
            **search_aliases("SafetySteerDirectionInfo"),
            description="Shows what a safety direction pack holds: source model, layer, method, categories "
            "and each direction's held-out separation.",
            inputs=[
                io.MultiType.Input(
                    "direction",
                    types=[DirectionPackType, AlignedDirectionType],
                    tooltip="A pack from Load Safety Direction, or a direction aligned by Fit Cross-Model Alignment.",
                )
            ],
            outputs=[io.String.Output(display_name="summary", tooltip="The same summary as text.")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, direction: DirectionPack) -> io.NodeOutput:
        text = describe(direction)
        return io.NodeOutput(text, ui=ui.PreviewText(text))


def describe(pack) -> str:
    if isinstance(pack, AlignedSafetyDirection):
        return describe_aligned(pack)
    meta = pack.metadata
    auroc = meta.get("heldout_auroc", {})
    lines = [
        f"source: {meta['source_model']}",
        f"layer {meta['layer']} of {meta['source_num_layers']}, pooling {meta['pooling']}, method {meta['method']}",
        f"{meta['n_train_pairs']} training pairs, {meta['n_anchors']} benign anchors, hidden size {pack.hidden_size}",
        "held-out AUROC per direction (unsafe vs safe, 0.5 = chance):",
    ]
    lines += [f"  {name}: {auroc[name]:.3f}" for name in pack.names if name in auroc]
    return "\n".join(lines)


def describe_aligned(aligned: AlignedSafetyDirection) -> str:
    meta = aligned.metadata
    if meta.get("native"):
        lines = [
            f"native* baseline: {meta['method']} fitted IN the target on {meta['n_train_pairs']} training pairs "
            f"(the target saw unsafe prompts; for comparison only), {meta['n_anchors']} benign anchors"
        ]
    else:
        lines = [
            f"aligned from {meta['source_model']} (layer {meta['layer']}) with {meta['method']} on "
            f"{meta['n_anchors']} benign anchors"
        ]
    if "mix" in meta:
        weights = ", ".join(f"{c} {w:g}" for c, w in meta["mix"]["weights"].items())
        lines.append(f"mixed: {weights}" + (" (orthogonalised)" if meta["mix"]["orthogonalise"] else ""))
    for key, enc in aligned.encoders.items():
        fit = meta.get("fit", {}).get(key, {})
        lines.append(
            f"  {key}: {enc.unit.shape[1]} dims, anchor fit R2 {fit.get('train_r2', float('nan')):.3f}, "
            f"calibrated step {enc.calibrated[0].norm():.3f} (standardised units)"
            if fit
            else f"  {key}: {enc.unit.shape[1]} dims, calibrated step {enc.calibrated[0].norm():.3f}"
        )
    lines.append("directions: " + ", ".join(aligned.names))
    return "\n".join(lines)
