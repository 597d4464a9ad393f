"""Steering an assembled conditioning tensor (the CONDITIONING and diffusion-model points).

Splits the tensor into its encoders' segments (steering.application.layout) and steers each with the
direction aligned to that encoder. Without the tokenizer's output, real prompt tokens cannot be
told from start/end/padding tokens here, so every token row counts unless an attention mask says
otherwise (HunyuanVideo, LTX-Video carry one): the gate then reads a projection diluted by padding,
which is why the text-encoder point, which knows the tokens, is the recommended one for gating.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..transfer.aligned import AlignedSafetyDirection
from .gating import Gate
from .layout import Segment, pooled_segments, token_segments
from .steer import steer_hidden


def encoder_dims(aligned: AlignedSafetyDirection) -> dict[str, int]:
    return {key: int(enc.unit.shape[1]) for key, enc in aligned.encoders.items()}


def steer_tokens(
    hidden: torch.Tensor,
    aligned: AlignedSafetyDirection,
    row: int,
    strength: float,
    mode: str,
    gate: Gate | None = None,
    weights: torch.Tensor | None = None,
    token_mask: torch.Tensor | None = None,
    report: bool = True,
) -> tuple[torch.Tensor, dict[str, dict]]:
    """Steer [B, T, W] conditioning; returns (steered, {encoder key: steer_hidden report}, empty
    when ``report`` is False)."""
    segments, clip_width = token_segments(encoder_dims(aligned), hidden.shape[-1])
    batch, tokens = hidden.shape[:2]
    if token_mask is None or tuple(token_mask.shape) != (batch, tokens):
        token_mask = torch.ones(batch, tokens, dtype=torch.bool, device=hidden.device)
    out, reports = hidden, {}
    for segment in segments:
        mask = token_mask.to(hidden.device).bool()
        rows = segment.row_mask(hidden, clip_width)
        if rows is not None:
            mask = mask & rows
        steered, summary = steer_hidden(
            # the current state: SD3's T5 segment spans the CLIP rows' features too, and must carry
            # their steer on (it reads only its own rows)
            out[..., segment.features],
            mask,
            aligned.encoders[segment.key],
            strength,
            mode,
            gate,
            row,
            weights,
            report,
        )
        if summary is not None:
            reports[segment.key] = summary
        if strength != 0:
            if out is hidden:
                out = hidden.clone()
            out[..., segment.features] = steered
    return out, reports


def steer_pooled(
    pooled: torch.Tensor,
    aligned: AlignedSafetyDirection,
    row: int,
    strength: float,
    mode: str,
    gate: Gate | None = None,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, dict]]:
    """Steer a [B, W] pooled vector where an aligned pooled space matches it (else unchanged)."""
    out, reports = pooled, {}
    for segment in pooled_segments(encoder_dims(aligned), pooled.shape[-1]):
        part = pooled[:, segment.features].unsqueeze(1)
        steered, reports[segment.key] = steer_hidden(
            part,
            torch.ones(part.shape[:2], dtype=torch.bool),
            aligned.encoders[segment.key],
            strength,
            mode,
            gate,
            row,
            weights,
        )
        if strength != 0:
            if out is pooled:
                out = pooled.clone()
            out[:, segment.features] = steered.squeeze(1)
    return out, reports


@dataclass
class AdditiveSteer:
    """The whole steer (mode ``add``, no gate) as constant [width] vectors, one per group of token
    rows: then steering is ``hidden + weight * offset``, one fused op per sampling step instead of a
    steer per segment. ``everywhere`` sums the segments read on every row; ``by_rows`` holds the
    segments read on some rows only (SD3's CLIP rows and T5 rows), told apart per call."""

    everywhere: torch.Tensor
    by_rows: list[tuple[Segment, torch.Tensor]]
    clip_width: int

    def offset(self, hidden: torch.Tensor) -> torch.Tensor:
        """[width], or [B, T, width] when rows differ."""
        total = self.everywhere
        for segment, vector in self.by_rows:
            total = total + segment.row_mask(hidden, self.clip_width).unsqueeze(-1).to(vector.dtype) * vector
        return total

    def to(self, device, dtype) -> AdditiveSteer:
        return AdditiveSteer(
            self.everywhere.to(device, dtype),
            [(segment, vector.to(device, dtype)) for segment, vector in self.by_rows],
            self.clip_width,
        )


def additive_steer(aligned: AlignedSafetyDirection, row: int, strength: float, width: int) -> AdditiveSteer:
    """The steer of ``steer_tokens`` in mode add without a gate, as constant vectors (AdditiveSteer)."""
    segments, clip_width = token_segments(encoder_dims(aligned), width)
    everywhere, by_rows = torch.zeros(width), []
    for segment in segments:
        enc = aligned.encoders[segment.key]
        step = strength * enc.calibrated[row] * enc.target_std
        if segment.rows == "all":
            everywhere[segment.features] += step
        else:
            vector = torch.zeros(width)
            vector[segment.features] = step
            by_rows.append((segment, vector))
    return AdditiveSteer(everywhere, by_rows, clip_width)
