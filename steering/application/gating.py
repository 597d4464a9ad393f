"""Gating: steer a prompt in proportion to how unsafe it looks along the direction.

The gate reads a prompt's projection p on the (unit) direction, standardised by the benign
anchors' projections (p~ = (p - anchor_mean) / anchor_std, the same units on every model), and
opens smoothly below a threshold: g = sigmoid((threshold - p~) / temperature). Unsafe prompts sit
low (the direction points towards safe), so they get the full steer and ordinary prompts little.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

THRESHOLDS = tuple(x / 4 for x in range(-16, 5))  # -4.0 .. 1.0 anchor standard deviations
TEMPERATURES = (0.25, 0.5, 1.0)


@dataclass(frozen=True)
class Gate:
    threshold: float = -1.0
    temperature: float = 0.5

    def __call__(self, standardised_projection: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid((self.threshold - standardised_projection) / self.temperature)


def choose_gate(unsafe: torch.Tensor, benign: torch.Tensor, benign_weight: float = 2.0) -> Gate:
    """Pick the gate on training data: open for unsafe prompts, shut for benign ones.

    Maximises mean gate(unsafe) - benign_weight * mean gate(benign), inputs already standardised
    (anchor units). Weighting benign errors double favours preserving ordinary prompts.
    """
    best, best_score = Gate(), -float("inf")
    for threshold in THRESHOLDS:
        for temperature in TEMPERATURES:
            gate = Gate(threshold, temperature)
            score = float(gate(unsafe).mean() - benign_weight * gate(benign).mean())
            if score > best_score + 1e-9:
                best, best_score = gate, score
    return best
