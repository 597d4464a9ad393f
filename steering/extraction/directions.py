"""Estimating a safety direction from paired features (standardised space).

Every method returns a unit vector pointing from unsafe to safe and the magnitude of the
underlying estimate (the mean paired difference projected on it, in standard-deviation units),
which calibration uses later.
"""

from __future__ import annotations

import torch

from ..autograd import trains
from ..errors import PromptDataError

METHODS = ("mean_diff", "pca", "logistic")


def anchor_statistics(anchor_features: torch.Tensor, min_std: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std of benign anchors. Standardising by them tames the few huge
    outlier dimensions of decoder LLMs, which would otherwise dominate every dot product."""
    if anchor_features.shape[0] < 2:
        raise PromptDataError("At least two benign anchor prompts are needed for standardisation statistics.")
    mean = anchor_features.mean(0)
    std = anchor_features.std(0).clamp_min(min_std)
    return mean, std


def fit_direction(
    safe: torch.Tensor, unsafe: torch.Tensor, method: str = "mean_diff", l2: float = 1e-2
) -> tuple[torch.Tensor, float]:
    """Fit on paired rows (``safe[i]`` and ``unsafe[i]`` differ only in the harmful element)."""
    if safe.shape != unsafe.shape:
        raise PromptDataError(
            f"Paired features must have equal shapes, got {list(safe.shape)} and {list(unsafe.shape)}."
        )
    if safe.shape[0] == 0:
        raise PromptDataError("No pairs to fit a direction on.")
    diffs = (safe - unsafe).to(torch.float64)
    if method == "mean_diff":
        raw = diffs.mean(0)
    elif method == "pca":
        # First principal axis of the (uncentred) differences: the axis they share, sign fixed so
        # that the pairs project positively (safe above unsafe).
        _, _, vh = torch.linalg.svd(diffs, full_matrices=False)
        raw = vh[0] * torch.sign(diffs.mean(0) @ vh[0])
    elif method == "logistic":
        raw = _logistic_weights(safe.to(torch.float64), unsafe.to(torch.float64), l2)
    else:
        raise ValueError(f"Unknown method {method!r}; use one of {METHODS}.")
    norm = raw.norm()
    if not torch.isfinite(norm) or norm == 0:
        raise PromptDataError("The safe and unsafe features do not differ: no direction can be estimated.")
    unit = raw / norm
    magnitude = float(diffs.mean(0) @ unit)
    return unit.to(torch.float32), magnitude


@trains
def _logistic_weights(safe: torch.Tensor, unsafe: torch.Tensor, l2: float) -> torch.Tensor:
    """L2-regularised logistic probe, safe = 1, unsafe = 0; deterministic full-batch L-BFGS."""
    x = torch.cat([safe, unsafe])
    y = torch.cat([torch.ones(len(safe)), torch.zeros(len(unsafe))]).to(x.dtype)
    w = torch.zeros(x.shape[1], dtype=x.dtype, requires_grad=True)
    b = torch.zeros((), dtype=x.dtype, requires_grad=True)
    optimiser = torch.optim.LBFGS([w, b], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y) + l2 * (w @ w)
        loss.backward()
        return loss

    optimiser.step(closure)
    return w.detach()
