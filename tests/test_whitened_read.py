"""The transport benchmark's whitened-read diagnostic (bench/transport_report.py) on synthetic data
where the answer is known: the contrast hides in axes along which benign prompts barely vary."""

from __future__ import annotations

import torch

from safety_steer.bench.transport_report import WHITENING, choose_whitening, whitened


def _benign(n: int, scales: torch.Tensor, seed: int) -> torch.Tensor:
    return torch.randn(n, len(scales), generator=torch.Generator().manual_seed(seed)) * scales


def test_whitened_read_discounts_benign_variation_and_tends_to_the_direction_when_shrunk_hard():
    scales = torch.tensor([5.0, 5.0, 0.2, 1.0])
    anchors = _benign(4000, scales, 0)
    unit = torch.nn.functional.normalize(torch.tensor([1.0, 0.0, 1.0, 0.0]), dim=0)
    read = whitened(unit, anchors, 0.01)
    assert read[2].abs() > 0.99  # the low-variance axis carries the read
    assert abs(float(read.norm()) - 1) < 1e-5
    assert float(whitened(unit, anchors, 1e6) @ unit) > 0.9999  # heavy shrinkage: the direction itself


def test_choose_whitening_prefers_strong_whitening_when_benign_noise_swamps_the_contrast():
    torch.manual_seed(0)
    source = _benign(2000, torch.ones(6), 1)
    noise = _benign(2000, torch.tensor([8.0, 8.0, 8.0, 0.3, 0.3, 0.3]), 2)
    mixing = torch.eye(6)
    target = source @ mixing * torch.tensor([1.0, 1.0, 1.0, 0.3, 0.3, 0.3]) + noise
    # the source contrast lives on axes 0 and 3; in the target axis 0 is drowned in benign variation
    direction = torch.nn.functional.normalize(torch.tensor([1.0, 0, 0, 1.0, 0, 0]), dim=0)
    shrinkage, scores = choose_whitening(source, target, direction, method="ridge")
    assert shrinkage == min(WHITENING)
    assert scores[f"{min(WHITENING):g}"] > scores[f"{max(WHITENING):g}"]
