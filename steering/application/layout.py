"""Where each text encoder's features sit inside an assembled conditioning tensor.

The text-encoder application point sees each sub-encoder's output on its own. A CONDITIONING, or
the context a diffusion model receives, is already assembled by ComfyUI:
- SD1.5: CLIP-L tokens. SDXL: CLIP-L and CLIP-G features side by side per token (L first).
- SD3: CLIP-L|G side by side, zero-padded to the T5 width, then the T5 tokens appended.
- Flux, Chroma, PixArt, Cosmos Predict2, LTX-Video: T5 tokens only. Wan: umT5 tokens.
  HunyuanVideo: Llama tokens (CLIP-L, where present, only feeds the pooled vector). Qwen-Image,
  HunyuanVideo 1.5, HunyuanImage 2.1: Qwen2.5-VL 7B tokens (the Hunyuan ones' byT5 glyph tokens of
  quoted text are a separate conditioning key, conditioning_byt5small, never steered).
  Flux.2: Mistral 3 Small's hidden states 10, 20 and 30 side by side per token (its aligned
  space is that concatenation: 3 x 5120 wide), left-padded with zero rows to 512 tokens by the model.
  Z-Image: Qwen3-4B tokens. Lumina 2: Gemma 2 2B tokens. AuraFlow: Pile-T5-XL
  tokens. OmniGen 2: Qwen2.5-VL 3B tokens (the whole chat template).
- Pooled vector: SD1.5 CLIP-L, SDXL CLIP-G, SD3 CLIP-L|G, Flux and HunyuanVideo CLIP-L.
The layout follows from which encoders a direction was aligned to and their widths, and is
checked against the tensor: a direction aligned to other encoders is an error, not a silent miss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import SafetySteerError

CLIP_KEYS = ("l", "g")
LONG_KEYS = (
    "t5xxl",
    "umt5xxl",
    "llama",
    "qwen25_7b",
    "qwen3_4b",
    "gemma2_2b",
    "pile_t5xl",
    "qwen25_3b",
    "mistral3_24b",
)


class LayoutError(SafetySteerError):
    pass


@dataclass(frozen=True)
class Segment:
    """One encoder's features: feature columns ``features``; token rows ``rows``: "all", or for
    SD3 "clip" (rows whose padding columns are zero) and "t5" (the others)."""

    key: str
    features: slice
    rows: str = "all"

    def row_mask(self, hidden: torch.Tensor, clip_width: int) -> torch.Tensor | None:
        """[B, T] bool, or None for every row."""
        if self.rows == "all":
            return None
        is_clip = hidden[..., clip_width:].abs().amax(-1) == 0
        return is_clip if self.rows == "clip" else ~is_clip


def _describe(dims: dict[str, int]) -> str:
    return " + ".join(f"{k} ({d})" for k, d in dims.items())


def token_segments(dims: dict[str, int], width: int) -> tuple[list[Segment], int]:
    """(segments, clip_width) of a [.., T, width] conditioning for a direction aligned to encoders
    with these feature widths (``dims``: encoder key -> width, pooled spaces ignored)."""
    dims = {k: d for k, d in dims.items() if not k.endswith(".pooled")}
    long_keys = [k for k in LONG_KEYS if k in dims]
    clip_keys = [k for k in CLIP_KEYS if k in dims]
    mismatch = LayoutError(
        f"This conditioning has {width} features per token, but the direction was aligned to "
        f"the text encoders {_describe(dims)}: it comes from another text encoder. Fit Cross-Model "
        "Alignment with the CLIP that made this conditioning."
    )
    if len(long_keys) > 1 or not dims:
        raise LayoutError(f"Unknown conditioning layout for the encoders {_describe(dims)}.")
    segments, offset = [], 0
    if long_keys and clip_keys != ["l", "g"]:  # Flux, Chroma, LTXV, Wan, HunyuanVideo, Qwen-Image, Z-Image, Lumina 2
        key = long_keys[0]
        if dims[key] != width:
            raise mismatch
        return [Segment(key, slice(0, width))], 0
    sd3_rows = "clip" if long_keys else "all"
    for key in clip_keys:  # SD1.5, SDXL, SD3 (CLIP part)
        segments.append(Segment(key, slice(offset, offset + dims[key]), sd3_rows))
        offset += dims[key]
    if long_keys:  # SD3 with T5: T5 tokens after the CLIP ones
        key = long_keys[0]
        if dims[key] != width or offset > width:
            raise mismatch
        segments.append(Segment(key, slice(0, width), "t5"))
    elif width != offset and not (len(clip_keys) == 2 and width > offset):  # SD3 without T5: zero padding
        raise mismatch
    return segments, offset


def pooled_segments(dims: dict[str, int], width: int) -> list[Segment]:
    """Segments of the pooled vector (empty when no aligned pooled space fits it)."""
    pooled = {k[: -len(".pooled")]: d for k, d in dims.items() if k.endswith(".pooled")}
    if "l" in pooled and "g" in pooled and width == pooled["l"] + pooled["g"]:  # SD3
        return [Segment("l.pooled", slice(0, pooled["l"])), Segment("g.pooled", slice(pooled["l"], width))]
    for key in ("g", "l"):  # SDXL pools CLIP-G; SD1.5, Flux, Hunyuan CLIP-L
        if key in pooled and pooled[key] == width:
            return [Segment(f"{key}.pooled", slice(0, width))]
    return []
