"""Choosing the map and its regularisation for one target layer by cross-validation on benign data.

No target-side unsafe prompt may be used, so the held-out AUROC cannot be the objective. What can be
estimated from benign anchors plus what the source knows (its safety direction) is how far the
transported direction separates, in the target, what the source direction separates: its *target
d-prime*,

    score(u_t) = (d_s W' u_t) / std(z_t u_t over anchors),

the source safe-minus-unsafe direction d_s carried by a map W' and read along the candidate direction
u_t, in units of how much real benign target features vary along u_t. Cross-fitted: u_t comes from a
candidate fitted on one half of the anchors, W' (ridge, leave-one-out) and the spread from the other
half, so that noise in a candidate's map cannot inflate its own score; the two halves swap and the
scores are averaged. The candidate with the best score is refitted on every anchor.
"""

from __future__ import annotations

import torch

from .alignment import FittedMap, _spectral, fit_cca, fit_procrustes, fit_ridge

#: (method, option, value) candidates: ridge's penalty, Procrustes' subspace size, CCA's penalty.
CANDIDATES: tuple[tuple[str, str, float], ...] = (
    ("ridge", "ridge_lambda", 10.0),
    ("ridge", "ridge_lambda", 100.0),
    ("ridge", "ridge_lambda", 300.0),
    ("ridge", "ridge_lambda", 1000.0),
    ("procrustes", "components", 256),
    ("procrustes", "components", 512),
    ("cca", "reg", 0.1),
)
_FITTERS = {"ridge": fit_ridge, "procrustes": fit_procrustes, "cca": fit_cca}


def _candidate_directions(candidates, x: torch.Tensor, y: torch.Tensor, direction: torch.Tensor) -> list[torch.Tensor]:
    """Each candidate's carried unit direction; every ridge penalty from one spectral decomposition."""
    u, s, v = _spectral(x)
    carried_ridge = (direction @ v) * s  # d_s V S, shrunk per penalty below, then times U^T y
    uty = u.T @ y
    moved = []
    for method, option, value in candidates:
        if method == "ridge":
            row = (carried_ridge / (s**2 + value)) @ uty
        else:
            fitted = _FITTERS[method](x, y, **{option: int(value) if option == "components" else value})
            row = direction.to(fitted.weight.dtype) @ fitted.weight
        moved.append(row / row.norm().clamp_min(1e-12))
    return moved


def candidate_label(candidate) -> str:
    method, option, value = candidate
    return f"{method} {option}={value:g}"


def score_candidates(
    x: torch.Tensor, y: torch.Tensor, direction: torch.Tensor, candidates=CANDIDATES
) -> dict[str, float]:
    """Cross-fitted target d-prime of each candidate's transported direction (module docstring)."""
    halves = torch.arange(x.shape[0]) % 2 == 0
    direction = direction.to(x.dtype)
    scores = {candidate_label(c): 0.0 for c in candidates}
    for fit_half, judge_half in ((halves, ~halves), (~halves, halves)):
        reference = fit_ridge(x[judge_half], y[judge_half]).weight
        carried = direction @ reference
        units = _candidate_directions(candidates, x[fit_half], y[fit_half], direction)
        for candidate, unit in zip(candidates, units):
            spread = (y[judge_half] @ unit).std().clamp_min(1e-12)
            scores[candidate_label(candidate)] += float(carried @ unit / spread) / 2
    return {k: round(v, 4) for k, v in scores.items()}


def fit_selected(x: torch.Tensor, y: torch.Tensor, direction: torch.Tensor | None, candidates=CANDIDATES) -> FittedMap:
    """The candidate with the best cross-fitted score, refitted on every anchor (``method`` "auto")."""
    if direction is None:
        raise ValueError(
            "The 'auto' map chooses by the transported direction's cross-validated separation, so it needs the "
            "pack's global direction (direction=...)."
        )
    scores = score_candidates(x, y, direction, candidates)
    best = max(candidates, key=lambda c: scores[candidate_label(c)])
    method, option, value = best
    fitted = _FITTERS[method](x, y, **{option: int(value) if option == "components" else value})
    fitted.info = {
        **fitted.info,
        "selected": candidate_label(best),
        "selected_method": method,
        "selection": "cross-fitted target d-prime of the transported direction on benign anchor halves",
        "selection_scores": scores,
    }
    fitted.method = "auto"
    return fitted
