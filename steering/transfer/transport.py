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
from .reading import read_rows


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
    read: torch.Tensor  # [K, dt] where a prompt is measured (gate, meter): steering.transfer.reading
    read_projection: torch.Tensor  # [K, 2] mean and std of target anchor projections on each read row
    read_covariance: torch.Tensor  # [K, K] their covariance across rows (for mixes, as above)

    def raw_steering_vectors(self) -> torch.Tensor:
        """Calibrated vectors in the target's raw feature space (what gets added to hidden states)."""
        return self.calibrated * self.target_std

    def direction(self, name: str = "global") -> torch.Tensor:
        return self.unit[self.names.index(name)]


def with_read_rows(
    names: list[str], unit: torch.Tensor, read: torch.Tensor, anchor_z: torch.Tensor, **fields
) -> AlignedDirections:
    """AlignedDirections with every row's anchor statistics (unit and read rows) from ``anchor_z``."""
    anchor_z = anchor_z.to(torch.float32)
    k = len(names)
    projections, read_projections = anchor_z @ unit.T, anchor_z @ read.T
    return AlignedDirections(
        names=list(names),
        unit=unit,
        anchor_projection=torch.stack([projections.mean(0), projections.std(0)], 1),
        anchor_covariance=torch.cov(projections.T).reshape(k, k),
        read=read,
        read_projection=torch.stack([read_projections.mean(0), read_projections.std(0)], 1),
        read_covariance=torch.cov(read_projections.T).reshape(k, k),
        **fields,
    )


def transport_pack(
    pack: DirectionPack,
    fitted: FittedMap,
    target_anchor_z: torch.Tensor,
    target_mean: torch.Tensor,
    target_std: torch.Tensor,
) -> AlignedDirections:
    """Unit rows along the map, calibrated; read rows as the fit chose them (steering.transfer.reading)."""
    directions = pack.directions.to(torch.float32)
    moved = fitted.transport(directions).to(torch.float32)
    norms = moved.norm(dim=1, keepdim=True).clamp_min(1e-12)
    unit = moved / norms
    spread_target = (target_anchor_z.to(torch.float32) @ unit.T).std(0)
    stats = pack.projection_stats
    gap_source = stats[:, 2] - stats[:, 3]
    kappa = gap_source / stats[:, 1].clamp_min(1e-6) * spread_target
    return with_read_rows(
        pack.names,
        unit,
        read_rows(fitted, directions, norms, target_anchor_z),
        target_anchor_z,
        calibrated=unit * kappa[:, None],
        target_mean=target_mean,
        target_std=target_std,
    )
