"""Read rows (steering.transfer.reading) on synthetic data where the answer is known: the contrast
hides in axes along which benign prompts barely vary. The real-weight figures are in the README."""

from __future__ import annotations

import torch

from safety_steer.steering.transfer.alignment import fit_ridge
from safety_steer.steering.transfer.mixing import add_mixed_row
from safety_steer.steering.transfer.reading import SHRINKAGES, choose_shrinkage, whiten
from safety_steer.steering.transfer.transport import with_read_rows


def _benign(n: int, scales: torch.Tensor, seed: int) -> torch.Tensor:
    return torch.randn(n, len(scales), generator=torch.Generator().manual_seed(seed)) * scales


def test_read_row_discounts_benign_variation_and_tends_to_the_direction_when_shrunk_hard():
    anchors = _benign(4000, torch.tensor([5.0, 5.0, 0.2, 1.0]), 0)
    unit = torch.nn.functional.normalize(torch.tensor([1.0, 0.0, 1.0, 0.0]), dim=0)
    read = torch.nn.functional.normalize(whiten(unit, anchors, 0.01), dim=0)
    assert read[2].abs() > 0.99  # the low-variance axis carries the read
    assert float(torch.nn.functional.normalize(whiten(unit, anchors, 1e6), dim=0) @ unit) > 0.9999


def test_wide_targets_take_the_gram_route_with_the_same_answer():
    """More dimensions than anchors (a 15,360-wide Flux.2 conditioning): Woodbury equals the direct solve."""
    anchors = _benign(60, torch.linspace(0.5, 3.0, 90), 1)
    rows = torch.randn(3, 90, generator=torch.Generator().manual_seed(2))
    z = (anchors - anchors.mean(0)).double()
    cov = z.T @ z / 59
    direct = torch.linalg.solve(cov + 3.0 * cov.trace() / 90 * torch.eye(90, dtype=torch.float64), rows.double().T).T
    assert torch.allclose(whiten(rows, anchors, 3.0).double(), direct, rtol=1e-4, atol=1e-6)


def test_choose_shrinkage_prefers_strong_whitening_when_benign_noise_swamps_the_contrast():
    source = _benign(2000, torch.ones(6), 1)
    target = source * torch.tensor([1.0, 1.0, 1.0, 0.3, 0.3, 0.3]) + _benign(
        2000, torch.tensor([8.0, 8.0, 8.0, 0.3, 0.3, 0.3]), 2
    )
    # the source contrast lives on axes 0 and 3; in the target axis 0 is drowned in benign variation
    direction = torch.nn.functional.normalize(torch.tensor([1.0, 0, 0, 1.0, 0, 0]), dim=0)
    shrinkage, scores = choose_shrinkage(source, target, direction, lambda x, y: fit_ridge(x, y))
    assert shrinkage == min(SHRINKAGES)
    assert scores[f"{min(SHRINKAGES):g}"] > scores[f"{max(SHRINKAGES):g}"]


def test_a_mix_reads_like_the_read_row_of_the_mixed_direction():
    """The mixer composes read rows and their statistics without re-encoding: they must equal what
    whitening the mixed unit row and projecting the anchors on it gives."""
    anchors = _benign(500, torch.linspace(0.3, 4.0, 12), 3)
    anchors_z = (anchors - anchors.mean(0)) / anchors.std(0)
    unit = torch.nn.functional.normalize(torch.randn(3, 12, generator=torch.Generator().manual_seed(4)), dim=1)
    names = ["global", "sexual", "violence"]
    directions = with_read_rows(
        names,
        unit,
        whiten(unit, anchors_z, 3.0),
        anchors_z,
        calibrated=unit,
        target_mean=torch.zeros(12),
        target_std=torch.ones(12),
    )
    mixed = add_mixed_row(directions, {"sexual": 1.0, "violence": 2.0}, orthogonalise=False)
    expected = whiten(mixed.unit[-1], anchors_z, 3.0)
    assert torch.allclose(
        torch.nn.functional.normalize(mixed.read[-1], dim=0), torch.nn.functional.normalize(expected, dim=0), atol=1e-5
    )
    projections = anchors_z @ mixed.read[-1]
    assert torch.allclose(mixed.read_projection[-1], torch.stack([projections.mean(), projections.std()]), atol=1e-4)
