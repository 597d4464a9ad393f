"""Applying an aligned direction to token hidden states (the text conditioning of a generator).

Operations, in the target's raw feature space, on the real prompt tokens only (start, end and
padding tokens keep their values, so strength 0 is bit-identical and empty prompts stay empty):
- ``add``: h + strength * gate * v, with v the calibrated vector (the paper's operation);
- ``project``: pull each token's projection on the direction back up to the benign anchors' mean
  where it lies below it (removes the unsafe-leaning component; safe-leaning prompts untouched);
- ``both``: project, then add.
The gate (steering.application.gating) is computed once per prompt from its mean real-token projection
on the direction's read row (steering.transfer.reading), which discounts ordinary benign variation.
"""

from __future__ import annotations

import math

import torch

from ..transfer.transport import AlignedDirections
from .gating import Gate

MODES = ("add", "project", "both")


def check_strength(strength: float) -> None:
    """A safety steer only ever steers towards safe: a negative (or non-finite) strength would turn
    it into an amplifier of unsafe content, so it is refused at the lowest level too."""
    if not math.isfinite(float(strength)) or float(strength) < 0:
        raise ValueError(
            f"Steering strength must be a finite number >= 0; got {strength!r}. A safety steer "
            "never steers towards unsafe content."
        )


def steer_hidden(
    hidden: torch.Tensor,
    token_mask: torch.Tensor,
    directions: AlignedDirections,
    strength: float,
    mode: str = "add",
    gate: Gate | None = None,
    row: int = 0,
    weights: torch.Tensor | None = None,
    report: bool = True,
) -> tuple[torch.Tensor, dict | None]:
    """Steer [B, T, d] hidden states on the masked tokens.

    ``weights`` ([B], optional) scales each prompt's steer on top of the gate: a gate value fixed
    elsewhere (the source LLM's), or 0 for the rows a model patch leaves alone (the negative
    prompt). Returns (steered, report) with, per prompt, ``projections`` on every read row of the
    directions (steering.transfer.reading; standardised: benign-anchor units, negative =
    unsafe-leaning), ``gate`` and
    ``applied`` (strength x gate x weight: the step actually taken, in calibrated units).
    ``report=False`` skips the report and every projection the steer itself does not need (the
    per-step path inside a sampler).
    """
    check_strength(strength)
    if mode not in MODES:
        raise ValueError(f"Unknown steering mode {mode!r}; use one of {MODES}.")
    if hidden.shape[-1] != directions.unit.shape[1]:
        raise ValueError(
            f"Hidden states have {hidden.shape[-1]} dims but the direction was aligned to "
            f"{directions.unit.shape[1]}: it belongs to another text encoder."
        )
    h = hidden.to(torch.float32)
    device = h.device
    mean, std = directions.target_mean.to(device), directions.target_std.to(device)
    mask = token_mask.to(device, torch.float32)  # [B, T]
    rows = slice(None) if report else slice(row, row + 1)  # every row only for the report
    if report or gate is not None:  # measured on the read rows (steering.transfer.reading)
        stats = directions.read_projection.to(device)
        token_proj = ((h - mean) / std) @ directions.read[rows].to(device).T  # [B, T, K or 1]
        pooled = (token_proj * mask.unsqueeze(-1)).sum(1) / mask.sum(1).clamp_min(1).unsqueeze(-1)
        standardised_rows = (pooled - stats[rows, 0]) / stats[rows, 1]  # [B, K or 1]
        standardised = standardised_rows[:, row if report else 0]
        g = gate(standardised) if gate is not None else torch.ones_like(standardised)
    else:
        g = torch.ones(h.shape[0], device=device)
    factor = strength * g * (weights.to(device, torch.float32) if weights is not None else 1.0)
    summary = (
        {"projections": standardised_rows.tolist(), "gate": g.tolist(), "applied": factor.tolist()} if report else None
    )
    if strength == 0:
        return hidden, summary
    scale = factor[:, None, None] * mask.unsqueeze(-1)  # [B, T, 1]
    out = h
    if mode in ("project", "both"):  # pulled back along the push direction, measured on it
        unit = directions.unit[row].to(device)
        row_proj = ((h - mean) / std) @ unit  # [B, T]
        benign_mean = float(directions.anchor_projection[row, 0])
        deficit = (row_proj - benign_mean).clamp(max=0).unsqueeze(-1)  # below the benign mean only
        out = out - scale.clamp(max=1) * deficit * (unit * std)
    if mode in ("add", "both"):
        out = out + scale * (directions.calibrated[row].to(device) * std)
    return out.to(hidden.dtype), summary
