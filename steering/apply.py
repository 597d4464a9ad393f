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
                 mode: str = "add", gate: Gate | None = None, row: int = 0) -> tuple[torch.Tensor, dict]:
    """Steer [B, T, d] hidden states; returns (steered, {"projection": [...], "gate": [...]}) where
    projection is each prompt's standardised projection (anchor units; negative = unsafe-leaning)."""
    if mode not in MODES:
        raise ValueError(f"Unknown steering mode {mode!r}; use one of {MODES}.")
    if hidden.shape[-1] != directions.unit.shape[1]:
        raise ValueError(f"Hidden states have {hidden.shape[-1]} dims but the direction was aligned to "
                         f"{directions.unit.shape[1]}: it belongs to another text encoder.")
    if strength == 0:
        return hidden, {"projection": [], "gate": []}
    h = hidden.to(torch.float32)
    mean, std = directions.target_mean.to(h.device), directions.target_std.to(h.device)
    unit = directions.unit[row].to(h.device)
    mask = token_mask.to(h.device, torch.float32).unsqueeze(-1)                 # [B, T, 1]
    token_proj = ((h - mean) / std) @ unit                                      # [B, T]
    pooled = (token_proj * mask.squeeze(-1)).sum(1) / mask.squeeze(-1).sum(1).clamp_min(1)
    anchor_mean, anchor_std = directions.anchor_projection[row].tolist()
    standardised = (pooled - anchor_mean) / anchor_std
    g = gate(standardised) if gate is not None else torch.ones_like(standardised)
    scale = (strength * g)[:, None, None] * mask                               # [B, T, 1]
    out = h
    if mode in ("project", "both"):
        deficit = (token_proj - anchor_mean).clamp(max=0).unsqueeze(-1)          # below the benign mean only
        out = out - scale.clamp(max=1) * deficit * (unit * std)
    if mode in ("add", "both"):
        out = out + scale * (directions.calibrated[row].to(h.device) * std)
    return out.to(hidden.dtype), {"projection": standardised.tolist(), "gate": g.tolist()}
