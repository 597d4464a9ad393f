"""Carrying a pack's directions into a target space and calibrating their scale.

Calibration (the definition the README states): a transported unit direction u_t (standardised
target space) is scaled by

    kappa = gap_source / spread_source * spread_target

where gap_source = mean projection of safe minus unsafe training prompts on the source direction,
spread_source = std of the source's benign-anchor projections on it, and spread_target = std of the
target's benign-anchor projections on u_t. Strength 1 then moves a prompt along u_t by the typical
safe-unsafe gap, measured in units of how much ordinary benign prompts vary along that direction:
the same meaning on every target, obtained from anchor statistics alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..pack import DirectionPack
from .alignment import FittedMap


@dataclass
class AlignedDirections:
    """A pack's directions in one target space (standardised coordinates of that target)."""

    names: list[str]
    unit: torch.Tensor  # [K, dt] unit rows in z_t
    calibrated: torch.Tensor  # [K, dt] unit * kappa: strength 1 = the calibrated step, in z_t
    anchor_projection: torch.Tensor  # [K, 2] mean and std of target anchor projections on each unit row
    target_mean: torch.Tensor  # [dt] raw-space anchor mean of the target
    target_std: torch.Tensor  # [dt]
    anchor_covariance: torch.Tensor  # [K, K] covariance of target anchor projections across rows
    # (exact statistics for any mix of rows: steering.transfer.mixing)

    def raw_steering_vectors(self) -> torch.Tensor:
        """Calibrated vectors in the target's raw feature space (what gets added to hidden states)."""
        return self.calibrated * self.target_std

    def direction(self, name: str = "global") -> torch.Tensor:
        return self.unit[self.names.index(name)]


def transport_pack(
    pack: DirectionPack,
    fitted: FittedMap,
    target_anchor_z: torch.Tensor,
    target_mean: torch.Tensor,
    target_std: torch.Tensor,
) -> AlignedDirections:
    moved = fitted.transport(pack.directions.to(torch.float32))
    unit = moved / moved.norm(dim=1, keepdim=True).clamp_min(1e-12)
    projections = target_anchor_z.to(torch.float32) @ unit.T
    spread_target = projections.std(0)
    stats = pack.projection_stats
    gap_source = stats[:, 2] - stats[:, 3]
    kappa = gap_source / stats[:, 1].clamp_min(1e-6) * spread_target
    return AlignedDirections(
        names=pack.names,
        unit=unit,
        calibrated=unit * kappa[:, None],
        anchor_projection=torch.stack([projections.mean(0), spread_target], 1),
        target_mean=target_mean,
        target_std=target_std,
        anchor_covariance=torch.cov(projections.T).reshape(len(pack.names), len(pack.names)),
    )
