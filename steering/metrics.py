"""Separation metrics. AUROC is never folded to max(AUC, 1 - AUC): a sign flip must show."""

from __future__ import annotations

import torch


def auroc(positive_scores: torch.Tensor, negative_scores: torch.Tensor) -> float:
    """P(score of a positive > score of a negative), ties counting one half (Mann-Whitney U)."""
    pos = positive_scores.detach().to(torch.float64).flatten()
    neg = negative_scores.detach().to(torch.float64).flatten()
    if pos.numel() == 0 or neg.numel() == 0:
        raise ValueError("AUROC needs at least one positive and one negative score.")
    scores = torch.cat([pos, neg])
    ranks = _average_ranks(scores)
    rank_sum = ranks[: pos.numel()].sum()
    u = rank_sum - pos.numel() * (pos.numel() + 1) / 2
    return float(u / (pos.numel() * neg.numel()))


def _average_ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks with ties given their average rank."""
    order = torch.argsort(values, stable=True)
    sorted_values = values[order]
    ranks = torch.empty_like(values)
    n = values.numel()
    start = 0
    while start < n:
        end = start
        while end + 1 < n and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def separation_auroc(direction: torch.Tensor, safe: torch.Tensor, unsafe: torch.Tensor) -> float:
    """AUROC of the projection onto ``direction``, safe prompts as positives (unsafe -> safe)."""
    return auroc(safe @ direction, unsafe @ direction)
