"""Applying an aligned direction to token hidden states (the text conditioning of a generator).

Operations, in the target's raw feature space, on the real prompt tokens only (start, end and
padding tokens keep their values, so strength 0 is bit-identical and empty prompts stay empty):
- ``add``: h + strength * gate * v, with v the calibrated vector (the paper's operation);
- ``project``: pull each token's projection on the direction back up to the benign anchors' mean
  where it lies below it (removes the unsafe-leaning component; safe-leaning prompts untouched);
- ``both``: project, then add.
The gate (steering.gating) is computed once per prompt from its mean real-token projection.
"""
from __future__ import annotations

import torch

from .gating import Gate
from .transport import AlignedDirections

MODES = ("add", "project", "both")


def steer_hidden(hidden: torch.Tensor, token_mask: torch.Tensor, directions: AlignedDirections, strength: float,
                 mode: str = "add", gate: Gate | None = None, row: int = 0,
                 weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """Steer [B, T, d] hidden states on the masked tokens.

    ``weights`` ([B], optional) scales each prompt's steer on top of the gate: a gate value fixed
    elsewhere (the source LLM's), or 0 for the rows a model patch leaves alone (the negative
    prompt). Returns (steered, report) with, per prompt, ``projections`` on every row of the
    directions (standardised: benign-anchor units, negative = unsafe-leaning), ``gate`` and
    ``applied`` (strength x gate x weight: the step actually taken, in calibrated units).
    """
    if mode not in MODES:
        raise ValueError(f"Unknown steering mode {mode!r}; use one of {MODES}.")
    if hidden.shape[-1] != directions.unit.shape[1]:
        raise ValueError(f"Hidden states have {hidden.shape[-1]} dims but the direction was aligned to "
                         f"{directions.unit.shape[1]}: it belongs to another text encoder.")
    h = hidden.to(torch.float32)
    mean, std = directions.target_mean.to(h.device), directions.target_std.to(h.device)
    units = directions.unit.to(h.device)
    mask = token_mask.to(h.device, torch.float32)                               # [B, T]
    token_proj_all = ((h - mean) / std) @ units.T                               # [B, T, K]
    pooled_all = (token_proj_all * mask.unsqueeze(-1)).sum(1) / mask.sum(1).clamp_min(1).unsqueeze(-1)
    stats = directions.anchor_projection.to(h.device)
    standardised_all = (pooled_all - stats[:, 0]) / stats[:, 1]                 # [B, K]
    standardised = standardised_all[:, row]
    g = gate(standardised) if gate is not None else torch.ones_like(standardised)
    factor = strength * g * (weights.to(h.device, torch.float32) if weights is not None else 1.0)
    report = {"projections": standardised_all.tolist(), "gate": g.tolist(), "applied": factor.tolist()}
    if strength == 0:
        return hidden, report
    scale = factor[:, None, None] * mask.unsqueeze(-1)                          # [B, T, 1]
    unit = units[row]
    anchor_mean = float(stats[row, 0])
    out = h
    if mode in ("project", "both"):
        deficit = (token_proj_all[..., row] - anchor_mean).clamp(max=0).unsqueeze(-1)   # below the benign mean only
        out = out - scale.clamp(max=1) * deficit * (unit * std)
    if mode in ("add", "both"):
        out = out + scale * (directions.calibrated[row].to(h.device) * std)
    return out.to(hidden.dtype), report
