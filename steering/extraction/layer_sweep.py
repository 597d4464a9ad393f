"""Choosing the source layer: cross-validated separation on the training pairs only.

The held-out pairs are scored too, for the report, but never used to choose: a layer picked on
the held-out split would make the held-out figure optimistic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..metrics import separation_auroc
from .directions import anchor_statistics, fit_direction


@dataclass
class LayerScore:
    layer: int
    cv_auroc: float  # mean over folds of the training pairs
    heldout_auroc: float  # fit on all training pairs, scored on the held-out pairs


def cross_validated_auroc(safe: torch.Tensor, unsafe: torch.Tensor, method: str, folds: int = 5) -> float:
    """Mean held-out-fold AUROC; folds split by pair so both halves of a pair stay together."""
    n = safe.shape[0]
    folds = max(2, min(folds, n))
    fold_of = torch.arange(n) % folds
    scores = []
    for fold in range(folds):
        test = fold_of == fold
        direction, _ = fit_direction(safe[~test], unsafe[~test], method)
        scores.append(separation_auroc(direction, safe[test], unsafe[test]))
    return sum(scores) / len(scores)


def sweep_layers(
    features: dict[int, torch.Tensor],
    anchors: slice,
    train_safe: slice,
    train_unsafe: slice,
    heldout_safe: slice,
    heldout_unsafe: slice,
    method: str = "mean_diff",
    folds: int = 5,
) -> list[LayerScore]:
    """Score every layer of ``features`` ({layer: rows for all prompts, addressed by the slices})."""
    results = []
    for layer in sorted(features):
        rows = features[layer]
        mean, std = anchor_statistics(rows[anchors])
        z = (rows - mean) / std
        cv = cross_validated_auroc(z[train_safe], z[train_unsafe], method, folds)
        direction, _ = fit_direction(z[train_safe], z[train_unsafe], method)
        held = separation_auroc(direction, z[heldout_safe], z[heldout_unsafe])
        results.append(LayerScore(layer, cv, held))
    return results


def best_layer(scores: list[LayerScore]) -> int:
    """Highest cross-validated AUROC; ties go to the shallower layer (cheaper to run)."""
    return max(scores, key=lambda s: (round(s.cv_auroc, 4), -s.layer)).layer
