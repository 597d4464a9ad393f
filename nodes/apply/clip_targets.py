"""ComfyUI text encoders as alignment targets: one feature space per sub-encoder.

Features are taken exactly where each sub-encoder's conditioning leaves it on the way to the
diffusion model (its `encode_token_weights` output, at the layer CLIPTextEncode uses), pooled
over the prompt's real tokens (word id > 0: no start/end/padding/template tokens; for the chat
encoders, the user's text inside the template). The pooled vector output (CLIP-L / CLIP-G) is a
space of its own, named "<key>.pooled".
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

import torch

from ...steering.application.layout import CLIP_KEYS, LONG_KEYS
from ...steering.errors import SafetySteerError

#: Sub-encoder keys (as `clip.tokenize` names them) whose conditioning layout Safety Steer knows.
SUPPORTED_ENCODERS = (*CLIP_KEYS, *LONG_KEYS)
#: How errors name them.
ENCODER_NAMES = {
    "l": "CLIP-L",
    "g": "CLIP-G",
    "t5xxl": "T5-XXL",
    "umt5xxl": "umT5-XXL",
    "llama": "Llama",
    "qwen25_7b": "Qwen2.5-VL 7B",
    "qwen3_4b": "Qwen3-4B",
    "gemma2_2b": "Gemma 2 2B",
    "pile_t5xl": "Pile-T5-XL",
    "qwen25_3b": "Qwen2.5-VL 3B",
    "mistral3_24b": "Mistral 3 Small 24B",
}
#: Pooled vectors the family's diffusion model never reads: SD1.5's UNet takes no pooled vector and
#: SDXL's takes CLIP-G's. ComfyUI does not even load CLIP-L's text_projection from such checkpoints
#: (it stays uninitialised memory), so aligning to it would fit on garbage.
UNUSED_POOLED = {"SD1ClipModel": {"l"}, "SDXLClipModel": {"l"}}
#: Llama-3 chat tokens around the user's text in HunyuanVideo's prompt template.
_LLAMA_USER_HEADER = (128006, 882, 128007)  # <|start_header_id|> user <|end_header_id|>
_LLAMA_EOT = 128009  # <|eot_id|>
#: Qwen chat tokens around the user's text (ChatML). The whole template is encoded (it steers the
#: encoder); Qwen-Image's stack then crops the system turn away (qwen_image.QwenImageTEModel), so its
#: diffusion model reads the user's tokens plus the closing "<|im_end|>\n<|im_start|>assistant\n";
#: Z-Image's reads every token (z_image: no system turn, hidden layer -2), OmniGen 2's every token too
#: (omnigen2: its own system turn, last layer, nothing cropped). Word ids cannot tell
#: the prompt from the template: both are tokenized as one piece.
_CHATML_USER_HEADER = (151644, 872, 198)  # <|im_start|> user \n
_CHATML_END = 151645  # <|im_end|>
#: Mistral (tekken) tokens around the user's text in Flux.2's template ("[SYSTEM_PROMPT]...
#: [/SYSTEM_PROMPT][INST]{prompt}[/INST]"); Flux.2's diffusion model reads every token of it.
_MISTRAL_INST, _MISTRAL_END_INST = (3,), 4  # [INST], [/INST]
#: Sub-encoders whose tokens are a chat template around the prompt: (user header, end of turn).
_TEMPLATES = {
    "llama": (_LLAMA_USER_HEADER, _LLAMA_EOT),
    "qwen25_7b": (_CHATML_USER_HEADER, _CHATML_END),
    "qwen3_4b": (_CHATML_USER_HEADER, _CHATML_END),
    "qwen25_3b": (_CHATML_USER_HEADER, _CHATML_END),
    "mistral3_24b": (_MISTRAL_INST, _MISTRAL_END_INST),
}


class UnsupportedEncoderError(SafetySteerError):
    pass


def token_features(cond: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """([B, T, D] per-token features of a sub-encoder's output, the function that puts such features
    back into the output's own layout).

    A sub-encoder that returns several hidden states ([B, L, T, H]: Flux.2's Mistral 3 Small returns
    hidden states 10, 20 and 30) is seen the way its diffusion model reads it: the L states side by
    side per token, [B, T, L*H], exactly as comfy.text_encoders.flux.Flux2TEModel concatenates them.
    Alignment, gating and steering all work in that concatenated space (15360 wide for Flux.2), so a
    direction steers each token's three states at once, in the space Flux.2's txt_in reads."""
    if cond.ndim != 4:
        return cond, lambda features: features
    batch, layers, tokens, hidden = cond.shape
    flat = cond.movedim(1, 2).reshape(batch, tokens, layers * hidden)
    return flat, lambda features: features.reshape(batch, tokens, layers, hidden).movedim(2, 1)


def sub_encoders(clip) -> dict[str, torch.nn.Module]:
    """{tokenizer key: sub-encoder module} for a comfy.sd.CLIP; unknown keys are an error."""
    keys = list(clip.tokenize("a").keys())
    model = clip.cond_stage_model
    found = {}
    for key in keys:
        if key not in SUPPORTED_ENCODERS:
            raise UnsupportedEncoderError(
                f"This CLIP has a text encoder {key!r} that Safety Steer does not support yet. Supported "
                f"encoders: {', '.join(SUPPORTED_ENCODERS)} "
                f"({', '.join(ENCODER_NAMES[k] for k in SUPPORTED_ENCODERS)})."
            )
        names = [n for n in (f"clip_{key}", key) if hasattr(model, n)]
        module = next((getattr(model, n) for n in names if getattr(model, n) is not None), None)
        if names and module is None:
            continue  # a slot the model has but left empty (e.g. SD3 loaded without T5): no tokens reach it
        if module is None or not hasattr(module, "encode_token_weights"):
            raise UnsupportedEncoderError(f"Could not find the {key!r} sub-encoder inside {type(model).__name__}.")
        found[key] = module
    return found


def encoder_fingerprint(
    module: torch.nn.Module, samples: int = 4096, originals: dict[str, torch.Tensor] | None = None
) -> str:
    """A cheap identity for encoder weights: names, shapes and a strided sample of every tensor
    (hashing all of a 10 GB T5-XXL on each run would cost more than the fit it keys).
    ``originals`` replaces weights that a patch (a LoRA) currently overwrites in place, so the
    identity is the base encoder's whichever clone was loaded last."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = (originals or {}).get(name, tensor)
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // samples)
        digest.update(f"{name}:{list(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(flat[::step][:samples].to(torch.float32).cpu().numpy().tobytes())
    return digest.hexdigest()


def base_encoder_fingerprints(clip) -> dict[str, str]:
    """{encoder key: fingerprint of its BASE weights}: loads this CLIP as encoding would, then reads
    the weights its own patches replaced from the patcher's backup."""
    clip.load_model()
    backup = getattr(clip.patcher, "backup", {}) or {}
    names = {id(m): name for name, m in clip.cond_stage_model.named_modules()}
    fingerprints = {}
    for key, module in sub_encoders(clip).items():
        prefix = names.get(id(module), "") + "."
        originals = {k[len(prefix) :]: v.weight for k, v in backup.items() if k.startswith(prefix)}
        fingerprints[key] = encoder_fingerprint(module, originals=originals)
    return fingerprints


def patch_fingerprint(clip) -> str:
    """Identity of the weight patches (LoRAs) on this CLIP: keys, strengths and tensor samples.
    A fit keys on it (a LoRA'd encoder gets its own fit); applying does not require it to match."""
    digest = hashlib.sha256()
    for key, entries in sorted(getattr(clip.patcher, "patches", {}).items()):
        digest.update(key.encode())
        for entry in entries:
            digest.update(repr(entry[0]).encode() + repr(entry[2]).encode() if len(entry) > 2 else repr(entry).encode())
            tensors = [t for t in (entry[1] if isinstance(entry[1], tuple) else (entry[1],)) if torch.is_tensor(t)]
            for tensor in tensors:
                flat = tensor.detach().reshape(-1)
                digest.update(flat[:: max(1, flat.numel() // 256)][:256].to(torch.float32).cpu().numpy().tobytes())
    return digest.hexdigest()


def prompt_token_mask(key: str, module, sections) -> torch.Tensor:
    """Which token positions hold the user's prompt (flattened over sections).

    Llama (HunyuanVideo), Qwen2.5-VL (Qwen-Image), Qwen3 (Z-Image) and Mistral 3 Small (Flux.2:
    [INST] ... [/INST]) wrap the prompt in a fixed chat template: only the tokens between the user
    header and the next end-of-turn count (HunyuanVideo's model crops the rest away; Qwen-Image's
    keeps the closing tokens, Z-Image's and Flux.2's all of them, which are template all the same).
    A Qwen prompt with an empty user turn has no prompt tokens at all. Elsewhere a token counts
    when its word id is > 0 (tokenized with word ids), or else when it is not one of the encoder's
    start/end/padding tokens.
    """
    tokens = [t for section in sections for t in section]
    ids = [t[0] if isinstance(t[0], int) else None for t in tokens]
    if key in _TEMPLATES:
        header, end_of_turn = _TEMPLATES[key]
        for i in range(len(ids) - len(header) + 1):
            if tuple(ids[i : i + len(header)]) == header:
                start = i + len(header)
                end = next((j for j in range(start, len(ids)) if ids[j] == end_of_turn), len(ids))
                mask = torch.zeros(len(ids), dtype=torch.bool)
                mask[start:end] = True
                if mask.any() or key != "llama":
                    return mask
    if tokens and len(tokens[0]) > 2:
        return torch.tensor([t[2] > 0 for t in tokens])
    special = {v for v in getattr(module, "special_tokens", {}).values() if isinstance(v, int)}
    return torch.tensor([i is None or i not in special for i in ids])


@torch.no_grad()
def encode_per_encoder(
    clip, prompts: list[str], progress: Callable[[int, int], None] | None = None, include_pooled: bool = True
) -> dict[str, torch.Tensor]:
    """{space name: [len(prompts), dim]} mean-pooled real-token features for every sub-encoder."""
    encoders = sub_encoders(clip)
    model = clip.cond_stage_model
    model.reset_clip_options()
    if clip.layer_idx is not None:
        model.set_clip_options({"layer": clip.layer_idx})
    clip.load_model()
    rows: dict[str, list[torch.Tensor]] = {}
    unused_pooled = UNUSED_POOLED.get(type(model).__name__, set())
    for number, prompt in enumerate(prompts, start=1):
        tokens = clip.tokenize(prompt, return_word_ids=True)
        for key, module in encoders.items():
            sections = tokens[key]
            out = module.encode_token_weights(sections)
            cond, pooled = token_features(out[0])[0], out[1]
            cond = cond[0].to(torch.float32).cpu()
            mask = prompt_token_mask(key, module, sections)
            if len(mask) != cond.shape[0] or not mask.any():
                mask = torch.ones(cond.shape[0], dtype=torch.bool)  # an unexpected layout: use all tokens
            rows.setdefault(key, []).append(cond[mask].mean(0))
            if include_pooled and pooled is not None and key not in unused_pooled:
                rows.setdefault(f"{key}.pooled", []).append(pooled.reshape(-1).to(torch.float32).cpu())
        if progress is not None:
            progress(number, len(prompts))
    model.reset_clip_options()
    features = {key: torch.stack(values) for key, values in rows.items()}
    for key in [k for k, v in features.items() if k.endswith(".pooled") and not torch.isfinite(v).all()]:
        logging.warning(
            f"Safety Steer: the {key} vector of this CLIP holds NaN/Inf (its projection weights were "
            "probably never loaded); that pooled space is left out of the alignment."
        )
        del features[key]
    return features
