"""A pack's directions aligned to every sub-encoder of one target (what steering nodes consume).

Saved as safetensors so that a fit is computed once per (pack, encoder weights, settings) and
reloaded at once afterwards.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .alignment import MAP_METHODS, AlignmentError, fit_map
from .directions import anchor_statistics
from .mixing import MIXED, add_mixed_row
from .pack import DirectionPack
from .source_gate import SourceGate
from .transport import AlignedDirections, transport_pack

ALIGNED_FORMAT = "safety-steer-aligned-directions"
ALIGNED_SCHEMA_VERSION = 2
ALIGNED_TENSORS = ("unit", "calibrated", "anchor_projection", "target_mean", "target_std", "anchor_covariance")


@dataclass
class AlignedSafetyDirection:
    """Directions of one pack, one AlignedDirections per target encoder key (``l``, ``t5xxl``...)."""

    encoders: dict[str, AlignedDirections]
    metadata: dict = field(default_factory=dict)   # pack identity, method, anchors, fingerprints, fit info
    source_gate: SourceGate | None = None          # the pack's source LLM as a per-prompt detector

    @property
    def names(self) -> list[str]:
        return next(iter(self.encoders.values())).names

    def resolve(self, choice: str) -> tuple[int, list[int]]:
        """(row to steer with, the pack rows its source-LLM gate reads) for a node's direction
        choice; ``auto`` is the Category Vector Mixer's mix when there is one, else ``global``."""
        name = (MIXED if MIXED in self.names else "global") if choice == "auto" else choice
        if name not in self.names:
            hint = " Connect a Category Vector Mixer first." if name == MIXED else ""
            raise ValueError(f"This direction has no {name!r} row; it has {', '.join(self.names)}.{hint}")
        if name == MIXED:
            return self.names.index(MIXED), list(self.metadata["mix"]["rows"])
        row = self.names.index(name)
        return row, [row]

    def with_mix(self, weights: dict[str, float], orthogonalise: bool) -> "AlignedSafetyDirection":
        """A copy with a ``mixed`` row in every encoder's space (steering.mixing)."""
        names = [n for n in self.names if n != MIXED]
        encoders = {key: add_mixed_row(enc, weights, orthogonalise) for key, enc in self.encoders.items()}
        rows = [names.index(c) for c, w in weights.items() if w > 0]
        mix = {"weights": {c: w for c, w in weights.items() if w > 0}, "orthogonalise": orthogonalise, "rows": rows}
        return AlignedSafetyDirection(encoders=encoders, metadata={**self.metadata, "mix": mix},
                                      source_gate=self.source_gate)


def anchor_subset(n_total: int, n_wanted: int) -> torch.Tensor:
    """Evenly spaced anchor indices: a subset keeps the mix of caption / art / video / text prompts."""
    if n_wanted >= n_total:
        return torch.arange(n_total)
    return torch.linspace(0, n_total - 1, n_wanted).round().long().unique()


def align_pack(pack: DirectionPack, target_features: dict[str, torch.Tensor], method: str = "ridge",
               anchor_index: torch.Tensor | None = None, seed: int = 0, metadata: dict | None = None) -> AlignedSafetyDirection:
    """Fit one map per target encoder from the pack's source anchor features (benign only)."""
    if method not in MAP_METHODS:
        raise ValueError(f"Unknown alignment method {method!r}; use one of {MAP_METHODS}.")
    index = torch.arange(pack.anchor_features.shape[0]) if anchor_index is None else anchor_index
    source_z = pack.standardise(pack.anchor_features[index])
    encoders, fit_info = {}, {}
    for key, features in target_features.items():
        if features.shape[0] != len(index):
            raise AlignmentError(f"Encoder {key!r} gave {features.shape[0]} anchor features for {len(index)} anchors.")
        mean, std = anchor_statistics(features)
        z_target = (features - mean) / std
        started = time.perf_counter()
        fitted = fit_map(source_z, z_target, method, seed=seed)
        fit_info[key] = {**fitted.info, "seconds": round(time.perf_counter() - started, 3), "dim": int(features.shape[1])}
        encoders[key] = transport_pack(pack, fitted, z_target, mean, std)
    meta = {"format": ALIGNED_FORMAT, "schema_version": ALIGNED_SCHEMA_VERSION, "method": method,
            "n_anchors": len(index), "source_model": pack.metadata["source_model"], "layer": pack.metadata["layer"],
            "pack_version": pack.metadata["pack_version"], "fit": fit_info, **(metadata or {})}
    gate = SourceGate.from_pack(pack) if pack.metadata.get("source_ref") else None
    return AlignedSafetyDirection(encoders=encoders, metadata=meta, source_gate=gate)


def save_aligned(aligned: AlignedSafetyDirection, path: str | Path) -> None:
    tensors = {}
    for key, enc in aligned.encoders.items():
        for name in ALIGNED_TENSORS:
            tensors[f"{key}/{name}"] = getattr(enc, name).to(torch.float32).contiguous()
    gate = aligned.source_gate
    if gate is not None:
        tensors.update({k: v.to(torch.float32).contiguous() for k, v in gate.tensors().items()})
    meta = {"aligned": json.dumps({**aligned.metadata, "names": aligned.names, "encoders": list(aligned.encoders),
                                   "source_gate": gate.settings() if gate is not None else None})}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)


def load_aligned(path: str | Path) -> AlignedSafetyDirection:
    with safe_open(str(path), framework="pt") as handle:
        meta = json.loads(handle.metadata()["aligned"])
        if meta.get("format") != ALIGNED_FORMAT or int(meta.get("schema_version", 0)) != ALIGNED_SCHEMA_VERSION:
            raise AlignmentError(f"{path} is not an aligned-direction file this version reads (schema "
                                 f"{meta.get('schema_version')}, this version reads {ALIGNED_SCHEMA_VERSION}); "
                                 "fit the alignment again.")
        encoders = {}
        for key in meta["encoders"]:
            parts = {name: handle.get_tensor(f"{key}/{name}") for name in
                     ALIGNED_TENSORS}
            encoders[key] = AlignedDirections(names=meta["names"], **parts)
        gate_settings = meta.pop("source_gate", None)
        gate = None
        if gate_settings is not None:
            gate = SourceGate.from_parts(gate_settings, {k: handle.get_tensor(k) for k in handle.keys()
                                                         if k.startswith("source_gate/")})
    meta.pop("names")
    meta.pop("encoders")
    return AlignedSafetyDirection(encoders=encoders, metadata=meta, source_gate=gate)
