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

The read rows (steering.transfer.reading: where the gate and the meter measure) are chosen by the
same score over every (candidate, shrinkage) pair, from the same halves and fits: the best map to
read with need not be the best one to push along.
"""

from __future__ import annotations

import torch

from .alignment import FittedMap, _spectral, fit_cca, fit_procrustes, fit_ridge
from .reading import SHRINKAGES, whiten

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
    return cross_fitted_scores(x, y, direction, candidates)[0]


def cross_fitted_scores(
    x: torch.Tensor, y: torch.Tensor, direction: torch.Tensor, candidates=CANDIDATES, shrinkages=()
) -> tuple[dict[str, float], dict[tuple, float]]:
    """(push scores by candidate label, read scores by (candidate, shrinkage)): the same d-prime for
    each candidate's direction and for its read rows (steering.transfer.reading), on the same halves
    and fits, so choosing the read costs no map fit."""
    halves = torch.arange(x.shape[0]) % 2 == 0
    direction = direction.to(x.dtype)
    push = {candidate_label(c): 0.0 for c in candidates}
    read = {(c, s): 0.0 for c in candidates for s in shrinkages}
    for fit_half, judge_half in ((halves, ~halves), (~halves, halves)):
        reference = fit_ridge(x[judge_half], y[judge_half]).weight
        carried = direction @ reference
        units = _candidate_directions(candidates, x[fit_half], y[fit_half], direction)
        for candidate, unit in zip(candidates, units):
            spread = (y[judge_half] @ unit).std().clamp_min(1e-12)
            push[candidate_label(candidate)] += float(carried @ unit / spread) / 2
        for shrinkage in shrinkages:
            rows = whiten(torch.stack(units), y[fit_half], shrinkage).to(y.dtype)  # one solve for all
            spreads = (y[judge_half] @ rows.T).std(0).clamp_min(1e-12)
            for candidate, value in zip(candidates, (rows @ carried / spreads).tolist()):
                read[(candidate, shrinkage)] += value / 2
    return {k: round(v, 4) for k, v in push.items()}, read


def candidate_fitter(candidate):
    """fit(x, y) -> FittedMap for one (method, option, value) candidate."""
    method, option, value = candidate
    return lambda x, y: _FITTERS[method](x, y, **{option: int(value) if option == "components" else value})


def fit_selected(x: torch.Tensor, y: torch.Tensor, direction: torch.Tensor | None, candidates=CANDIDATES) -> FittedMap:
    """The candidate with the best cross-fitted score, refitted on every anchor (``method`` "auto")."""
    if direction is None:
        raise ValueError(
            "The 'auto' map chooses by the transported direction's cross-validated separation, so it needs the "
            "pack's global direction (direction=...)."
        )
    scores, read_scores = cross_fitted_scores(x, y, direction, candidates, SHRINKAGES)
    best = max(candidates, key=lambda c: scores[candidate_label(c)])
    fitted = candidate_fitter(best)(x, y)
    read_candidate, shrinkage = max(read_scores, key=read_scores.get)
    fitted.read_map = None if read_candidate == best else candidate_fitter(read_candidate)(x, y)
    fitted.read_shrinkage = shrinkage
    fitted.info = {
        **fitted.info,
        "selected": candidate_label(best),
        "selected_method": best[0],
        "selection": "cross-fitted target d-prime of the transported direction on benign anchor halves",
        "selection_scores": scores,
        "read_selected": f"{candidate_label(read_candidate)}, shrinkage {shrinkage:g}",
        "read_scores": {f"{candidate_label(c)}, shrinkage {s:g}": round(v, 4) for (c, s), v in read_scores.items()},
    }
    fitted.method = "auto"
    return fitted
