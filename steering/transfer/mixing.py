"""Mixing per-category directions into one (SafetySteerCategoryVectorMixer).

A mix is a weighted sum of the categories' unit rows in a target's standardised space,
optionally after symmetric (Loewdin) orthogonalisation, which removes the overlap between
categories without favouring any order. Every mix is a linear combination b^T U of the rows, so
its anchor statistics follow exactly from the per-row anchor means and the anchor covariance
(no re-encoding): mean = c . mu, var = c^T C c with c = b / ||b^T U||. The read rows
(steering.transfer.reading) are one linear map of the unit rows, so they mix alike, with their own
statistics. Its calibrated step keeps the transport calibration's meaning: the weighted mean of the
rows' gap-to-spread ratios, times the mix's own anchor spread.
"""

from __future__ import annotations

import torch

from ..errors import SafetySteerError
from ..prompts import I2P_CATEGORIES
from .transport import AlignedDirections

MIXED = "mixed"
PRESETS: dict[str, dict[str, float]] = {
    "all categories": {c: 1.0 for c in I2P_CATEGORIES},
    "sexual only": {"sexual": 1.0},
    "violence and gore": {"violence": 1.0, "shocking": 1.0},
    "hate and harassment": {"hate": 1.0, "harassment": 1.0},
    "self-harm": {"self-harm": 1.0},
    "illegal activity": {"illegal activity": 1.0},
}


class MixError(SafetySteerError):
    pass


def mix_coefficients(
    unit: torch.Tensor, names: list[str], weights: dict[str, float], orthogonalise: bool
) -> tuple[list[int], torch.Tensor]:
    """(rows used, coefficients c) such that the mixed unit vector is c @ unit[rows]."""
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise MixError(f"Unknown categories {unknown}; this direction has {', '.join(names)}.")
    if any(w < 0 or w != w for w in weights.values()):
        raise MixError("Category weights must be 0 or more (a negative weight would steer towards that harm).")
    rows = [names.index(c) for c, w in weights.items() if w > 0]
    if not rows:
        raise MixError("Every category weight is 0: give at least one category a weight above 0.")
    a = torch.tensor([weights[names[r]] for r in rows], dtype=torch.float64)
    u = unit[rows].to(torch.float64)
    if orthogonalise and len(rows) > 1:
        values, vectors = torch.linalg.eigh(u @ u.T)
        if values.min() < 1e-6:
            raise MixError(
                "The selected category directions are (nearly) parallel in this encoder, so they "
                "cannot be orthogonalised; turn orthogonalise off or select fewer categories."
            )
        a = vectors @ torch.diag(values.rsqrt()) @ vectors.T @ a
    norm = (a @ u).norm()
    if norm < 1e-9:
        raise MixError("The weighted category directions cancel out; change the weights.")
    return rows, (a / norm).to(torch.float32)


def add_mixed_row(directions: AlignedDirections, weights: dict[str, float], orthogonalise: bool) -> AlignedDirections:
    """The same directions with one more row, ``mixed`` (replacing an earlier mix)."""
    base = [i for i, n in enumerate(directions.names) if n != MIXED]
    names = [directions.names[i] for i in base]
    unit, calibrated = directions.unit[base], directions.calibrated[base]
    stats, cov = directions.anchor_projection[base], directions.anchor_covariance[base][:, base]
    rows, c = mix_coefficients(unit, names, weights, orthogonalise)
    mixed_unit = c @ unit[rows]
    mean = c @ stats[rows, 0]
    spread = (c @ cov[rows][:, rows] @ c).clamp_min(1e-12).sqrt()
    kappa = (calibrated[rows] * unit[rows]).sum(1)
    ratio = kappa / stats[rows, 1].clamp_min(1e-6)
    w = torch.tensor([weights[names[r]] for r in rows])
    mixed_kappa = (w * ratio).sum() / w.sum() * spread
    read, read_stats, read_cov = (
        directions.read[base],
        directions.read_projection[base],
        directions.read_covariance[base][:, base],
    )
    read_mean, read_spread = c @ read_stats[rows, 0], (c @ read_cov[rows][:, rows] @ c).clamp_min(1e-12).sqrt()
    return AlignedDirections(
        names=[*names, MIXED],
        unit=torch.cat([unit, mixed_unit[None]]),
        calibrated=torch.cat([calibrated, (mixed_unit * mixed_kappa)[None]]),
        anchor_projection=torch.cat([stats, torch.stack([mean, spread])[None]]),
        target_mean=directions.target_mean,
        target_std=directions.target_std,
        anchor_covariance=_extended(cov, c @ cov[rows], spread),
        # the read rows are one linear map of the unit rows, so the mix's read row is the same mix
        read=torch.cat([read, (c @ read[rows])[None]]),
        read_projection=torch.cat([read_stats, torch.stack([read_mean, read_spread])[None]]),
        read_covariance=_extended(read_cov, c @ read_cov[rows], read_spread),
    )


def _extended(cov: torch.Tensor, cross: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
    """A covariance with one more row: ``cross`` (the new row's covariance with every row), ``spread``^2."""
    return torch.cat([torch.cat([cov, cross[:, None]], 1), torch.cat([cross, (spread**2).reshape(1)])[None]], 0)
