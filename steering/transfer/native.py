"""The native baseline: directions estimated in the target encoder itself, from the pack's
training pairs. Unlike the transported direction it shows the target unsafe prompts; it exists
to compare against (labelled native* wherever it appears), not to ship."""

from __future__ import annotations

import torch

from ..application.source_gate import SourceGate
from ..extraction.directions import anchor_statistics, fit_direction
from ..pack import DirectionPack
from ..prompts import PromptPair
from .aligned import AlignedSafetyDirection
from .transport import AlignedDirections, with_read_rows


def native_directions(
    names: list[str],
    pairs: list[PromptPair],
    safe: torch.Tensor,
    unsafe: torch.Tensor,
    anchors: torch.Tensor,
    method: str = "mean_diff",
) -> AlignedDirections:
    """One encoder's native directions: ``safe[i]``/``unsafe[i]`` are the features of ``pairs[i]``,
    ``anchors`` benign features for standardisation. Calibration: strength 1 = the training gap."""
    mean, std = anchor_statistics(anchors)
    z_safe, z_unsafe, z_anchor = (safe - mean) / std, (unsafe - mean) / std, (anchors - mean) / std
    units, gaps = [], []
    for name in names:
        pick = torch.tensor([name == "global" or p.category == name for p in pairs])
        unit, _ = fit_direction(z_safe[pick], z_unsafe[pick], method)
        units.append(unit)
        gaps.append(float((z_safe[pick] @ unit).mean() - (z_unsafe[pick] @ unit).mean()))
    unit = torch.stack(units)
    # read along the unit rows: the baseline is measured as fitted, with no benign-covariance step
    return with_read_rows(
        names,
        unit,
        unit.clone(),
        z_anchor,
        calibrated=unit * torch.tensor(gaps)[:, None],
        target_mean=mean,
        target_std=std,
    )


def native_pack(
    pack: DirectionPack,
    pairs: list[PromptPair],
    safe: dict[str, torch.Tensor],
    unsafe: dict[str, torch.Tensor],
    anchors: dict[str, torch.Tensor],
    method: str,
    metadata: dict | None = None,
) -> AlignedSafetyDirection:
    encoders = {key: native_directions(pack.names, pairs, safe[key], unsafe[key], anchors[key], method) for key in safe}
    meta = {
        "native": True,
        "method": f"native {method}",
        "n_train_pairs": len(pairs),
        "n_anchors": len(next(iter(anchors.values()))),
        "source_model": pack.metadata["source_model"],
        "layer": pack.metadata["layer"],
        "pack_version": pack.metadata["pack_version"],
        **(metadata or {}),
    }
    gate = SourceGate.from_pack(pack) if pack.metadata.get("source_ref") else None
    return AlignedSafetyDirection(encoders=encoders, metadata=meta, source_gate=gate)
