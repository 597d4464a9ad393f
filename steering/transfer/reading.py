"""The read rows of transported directions: where the product *measures* a prompt in the target
(the target-projection gate, the safety meter), apart from where it pushes (the unit rows).

A carried direction u pushes well but reads poorly: benign prompts vary a lot along parts of it, so
a prompt's projection on u mixes its safety with ordinary variation. The read row

    r = (C + s * mean eigenvalue(C) * I)^-1 u,      C = covariance of the target's benign anchors,

discounts that variation (benign data only). Real-weight measurements (README, "Measured where the
product acts"): held-out AUROC at the consumed layer +0.02 to +0.09, and the target-projection gate's
attack success at benign preservation 0.99 roughly halved; as the push itself it was no better, so the
push stays u. Which map carries u for reading (auto: any of its candidates) and the shrinkage s
are chosen by the cross-fitted benign d-prime of ``steering.transfer.selection`` (the map fitted on
one half of the anchors, the spread and the carrying map judged on the other).

Rows are kept unnormalised (one linear map of the unit rows), so a mix of unit rows has the same mix
of read rows as its read row (``steering.transfer.mixing``); a projection standardised by the anchors'
own mean and spread on r does not depend on r's scale.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from .alignment import MIN_ANCHORS, FittedMap, fit_ridge

#: Shrinkages tried (fractions of the covariance's mean eigenvalue added to its diagonal).
SHRINKAGES: tuple[float, ...] = (10.0, 3.0, 1.0, 0.3)


def whiten(rows: torch.Tensor, anchors_z: torch.Tensor, shrinkage: float) -> torch.Tensor:
    """(C + a I)^-1 applied to each row of ``rows`` [K, d] (or one [d] vector), C the covariance of
    ``anchors_z`` [n, d]. Through the n x n Gram matrix when d > n (Woodbury), so a 15,360-wide
    conditioning costs no d x d matrix."""
    single = rows.ndim == 1
    rows = rows[None] if single else rows
    dtype = torch.float64 if anchors_z.shape[1] <= 1024 else torch.float32
    z = anchors_z.to(dtype)
    z = z - z.mean(0)
    n, d = z.shape
    a = shrinkage * float(z.square().sum()) / (n - 1) / d
    v = rows.to(dtype).T  # [d, K]
    if d <= n:
        read = torch.linalg.solve(z.T @ z / (n - 1) + a * torch.eye(d, dtype=dtype), v)
    else:
        gram = z @ z.T + (n - 1) * a * torch.eye(n, dtype=dtype)
        read = (v - z.T @ torch.linalg.solve(gram, z @ v)) / a
    read = read.T.to(torch.float32)
    return read[0] if single else read


def choose_shrinkage(
    source_z: torch.Tensor,
    target_z: torch.Tensor,
    direction: torch.Tensor,
    refit: Callable[[torch.Tensor, torch.Tensor], FittedMap],
) -> tuple[float, dict[str, float]]:
    """(best shrinkage, every shrinkage's score): the cross-fitted target d-prime of the read row,
    ``refit(source, target)`` being the chosen map's fit on half of the anchors."""
    halves = torch.arange(source_z.shape[0]) % 2 == 0
    scores = dict.fromkeys(SHRINKAGES, 0.0)
    for fit_half, judge_half in ((halves, ~halves), (~halves, halves)):
        unit = refit(source_z[fit_half], target_z[fit_half]).transport(direction).to(torch.float32)
        carried = direction.to(torch.float64) @ fit_ridge(source_z[judge_half], target_z[judge_half]).weight.double()
        judge = target_z[judge_half].double()
        for shrinkage in SHRINKAGES:
            read = whiten(unit, target_z[fit_half], shrinkage).double()
            scores[shrinkage] += float(carried @ read / (judge @ read).std().clamp_min(1e-12)) / 2
    best = max(SHRINKAGES, key=scores.get)
    return best, {f"{k:g}": round(v, 4) for k, v in scores.items()}


def attach_read(
    fitted: FittedMap, source_z: torch.Tensor, target_z: torch.Tensor, direction: torch.Tensor, **options
) -> dict:
    """Choose where ``fitted``'s directions are read (sets ``read_shrinkage``) and return what was
    chosen, for the fit's info. ``auto`` chose its read map and shrinkage while choosing its map; ridge /
    Procrustes / CCA are refitted with the same ``options`` on the halves; the MLP (whose refit would
    double a long, iterative fit) and fits on too few anchors to halve read along their pushed rows."""
    from .alignment import fit_map

    if fitted.method == "auto":
        return {"read": "benign covariance discounted (steering.transfer.reading)"}
    if fitted.method == "mlp":
        return {"read": "the pushed rows (an MLP map is not refitted to choose a read)"}
    if source_z.shape[0] < 2 * MIN_ANCHORS:
        return {"read": f"the pushed rows (fewer than {2 * MIN_ANCHORS} anchors: no halves to choose by)"}

    def refit(x, y):
        with warnings.catch_warnings():  # a half of the anchors: the full fit has already warned if need be
            warnings.simplefilter("ignore", UserWarning)
            return fit_map(x, y, fitted.method, **options)

    fitted.read_shrinkage, scores = choose_shrinkage(source_z, target_z, direction, refit)
    return {
        "read": "benign covariance discounted (steering.transfer.reading)",
        "read_selected": f"shrinkage {fitted.read_shrinkage:g}",
        "read_scores": scores,
    }


def read_rows(
    fitted: FittedMap, directions: torch.Tensor, norms: torch.Tensor, anchors_z: torch.Tensor
) -> torch.Tensor:
    """[K, dt] read rows of source ``directions`` [K, ds] whose pushed rows were divided by ``norms``
    [K, 1]: the read map's image divided by the same norms (so that read rows stay one linear map of
    the unit rows, for mixes), whitened with the chosen shrinkage."""
    carried = (fitted.read_map or fitted).transport(directions).to(torch.float32) / norms
    return carried if fitted.read_shrinkage is None else whiten(carried, anchors_z, fitted.read_shrinkage)
