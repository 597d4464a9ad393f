"""A pack's directions aligned to every sub-encoder of one target (what steering nodes consume).

Saved as safetensors so that a fit is computed once per (pack, encoder weights, settings) and
reloaded at once afterwards.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..application.source_gate import SourceGate
from ..errors import SafetySteerError
from ..extraction.directions import anchor_statistics
from ..fileformat import CheckedFile, FileKind, as_count, is_number, open_checked, short, write_atomic
from ..pack import DirectionPack
from .alignment import MAP_METHODS, AlignmentError, fit_map
from .mixing import MIXED, add_mixed_row
from .reading import attach_read
from .transport import AlignedDirections, transport_pack

ALIGNED_FORMAT = "safety-steer-aligned-directions"
ALIGNED_SCHEMA_VERSION = 4  # 3: content checksum; 4: read rows. Written by save_aligned whatever the metadata says
log = logging.getLogger(__name__)
ALIGNED_TENSORS = (
    "unit",
    "calibrated",
    "anchor_projection",
    "target_mean",
    "target_std",
    "anchor_covariance",
    "read",
    "read_projection",
    "read_covariance",
)


@dataclass
class AlignedSafetyDirection:
    """Directions of one pack, one AlignedDirections per target encoder key (``l``, ``t5xxl``...)."""

    encoders: dict[str, AlignedDirections]
    metadata: dict = field(default_factory=dict)  # pack identity, method, anchors, fingerprints, fit info
    source_gate: SourceGate | None = None  # the pack's source LLM as a per-prompt detector

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

    def with_mix(self, weights: dict[str, float], orthogonalise: bool) -> AlignedSafetyDirection:
        """A copy with a ``mixed`` row in every encoder's space (steering.transfer.mixing)."""
        names = [n for n in self.names if n != MIXED]
        encoders = {key: add_mixed_row(enc, weights, orthogonalise) for key, enc in self.encoders.items()}
        rows = [names.index(c) for c, w in weights.items() if w > 0]
        mix = {"weights": {c: w for c, w in weights.items() if w > 0}, "orthogonalise": orthogonalise, "rows": rows}
        return AlignedSafetyDirection(
            encoders=encoders, metadata={**self.metadata, "mix": mix}, source_gate=self.source_gate
        )


def anchor_subset(n_total: int, n_wanted: int) -> torch.Tensor:
    """Evenly spaced anchor indices: a subset keeps the mix of caption / art / video / text prompts."""
    if n_wanted >= n_total:
        return torch.arange(n_total)
    return torch.linspace(0, n_total - 1, n_wanted).round().long().unique()


def per_category_subset(pairs: list, count: int) -> list:
    """Up to ``count`` pairs of every category, evenly spread over each category's list: a quicker
    fit that still sees every category."""
    picked = []
    for category in sorted({p.category for p in pairs}):
        items = [p for p in pairs if p.category == category]
        picked += [items[i] for i in anchor_subset(len(items), count).tolist()]
    return picked


def align_pack(
    pack: DirectionPack,
    target_features: dict[str, torch.Tensor],
    method: str = "auto",
    anchor_index: torch.Tensor | None = None,
    seed: int = 0,
    metadata: dict | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> AlignedSafetyDirection:
    """Fit one map per target encoder from the pack's source anchor features (benign only);
    ``progress(done, total)`` is called by iterative fits (mlp: every epoch), so it may cancel."""
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
        fitted = fit_map(source_z, z_target, method, seed=seed, progress=progress, direction=pack.directions[0])
        read_info = attach_read(fitted, source_z, z_target, pack.directions[0])
        fit_info[key] = {
            **fitted.info,
            **read_info,
            "seconds": round(time.perf_counter() - started, 3),
            "dim": int(features.shape[1]),
        }
        encoders[key] = transport_pack(pack, fitted, z_target, mean, std)
    meta = {
        "format": ALIGNED_FORMAT,
        "schema_version": ALIGNED_SCHEMA_VERSION,
        "method": method,
        "n_anchors": len(index),
        "source_model": pack.metadata["source_model"],
        "layer": pack.metadata["layer"],
        "pack_version": pack.metadata["pack_version"],
        "fit": fit_info,
        **(metadata or {}),
    }
    gate = SourceGate.from_pack(pack) if pack.metadata.get("source_ref") else None
    return AlignedSafetyDirection(encoders=encoders, metadata=meta, source_gate=gate)


ALIGNED_KIND = FileKind(
    name="Safety Steer aligned-direction file",
    marker=ALIGNED_FORMAT,
    schema_version=ALIGNED_SCHEMA_VERSION,
    oldest_version=ALIGNED_SCHEMA_VERSION,
    error=AlignmentError,
    fix="Delete it and fit the alignment again (a cached fit is rebuilt on the next run).",
    obtain="Fit the alignment again.",
    document_key="aligned",
    checksum_required=True,
)


def save_aligned(aligned: AlignedSafetyDirection, path: str | Path) -> Path:
    """Write atomically, with a checksum over tensors and metadata (a damaged cache is then always
    caught on reading, even a flipped bit in a float)."""
    tensors = {}
    for key, enc in aligned.encoders.items():
        for name in ALIGNED_TENSORS:
            tensors[f"{key}/{name}"] = getattr(enc, name).detach().to("cpu", torch.float32).contiguous()
    gate = aligned.source_gate
    if gate is not None:
        tensors.update({k: v.detach().to("cpu", torch.float32).contiguous() for k, v in gate.tensors().items()})
    document = {
        **aligned.metadata,
        "format": ALIGNED_FORMAT,
        "schema_version": ALIGNED_SCHEMA_VERSION,
        "names": aligned.names,
        "encoders": list(aligned.encoders),
        "source_gate": gate.settings() if gate is not None else None,
    }
    return write_atomic(tensors, path, {"aligned": json.dumps(document)}, checksum=True)


def load_aligned(path: str | Path) -> AlignedSafetyDirection:
    """Load and validate a saved fit: checksum, every tensor's shape against the names and encoders
    in its metadata (on the header, before reading), finite values. AlignmentError otherwise."""
    checked = open_checked(path, ALIGNED_KIND)
    meta = dict(checked.document)
    names, encoder_keys, gate_settings = _check_layout(checked, meta)
    k, gate_rows = len(names), len([n for n in names if n != MIXED])
    for key in encoder_keys:
        unit = checked.info(f"{key}/unit")
        if unit is None or len(unit.shape) != 2:
            raise checked.refuse(f"the tensor {key}/unit is missing or not 2-D; the file is incomplete")
        dim = unit.shape[1]
        shapes = {
            "unit": (k, dim),
            "calibrated": (k, dim),
            "anchor_projection": (k, 2),
            "target_mean": (dim,),
            "target_std": (dim,),
            "anchor_covariance": (k, k),
            "read": (k, dim),
            "read_projection": (k, 2),
            "read_covariance": (k, k),
        }
        for name, shape in shapes.items():
            checked.expect(f"{key}/{name}", shape)
    if gate_settings is not None:
        directions = checked.info("source_gate/directions")
        if directions is None or len(directions.shape) != 2:
            raise checked.refuse("the tensor source_gate/directions is missing or not 2-D; the file is incomplete")
        dim = directions.shape[1]
        for name, shape in {
            "directions": (gate_rows, dim),
            "anchor_mean": (dim,),
            "anchor_std": (dim,),
            "projection_stats": (gate_rows, 4),
        }.items():
            checked.expect(f"source_gate/{name}", shape)
        detector = gate_settings.get("detector")
        if detector:
            width, classes = len(detector["layers"]) * dim, len(detector["classes"])
            for name, shape in {
                "detector_weight": (width, classes),
                "detector_bias": (classes,),
                "detector_feature_mean": (width,),
                "detector_feature_std": (width,),
            }.items():
                checked.expect(f"source_gate/{name}", shape)
    with torch.inference_mode(False):
        tensors = checked.load()
    checked.tensors_finite(tensors)
    positive = [f"{key}/target_std" for key in encoder_keys]
    if gate_settings:
        positive.append("source_gate/anchor_std")
        if gate_settings.get("detector"):
            positive.append("source_gate/detector_feature_std")
    for name in positive:
        if not bool((tensors[name] > 0).all()):
            raise checked.refuse(f"tensor {name} must be positive everywhere")
    encoders = {
        key: AlignedDirections(names=list(names), **{name: tensors[f"{key}/{name}"] for name in ALIGNED_TENSORS})
        for key in encoder_keys
    }
    gate = None
    if gate_settings is not None:
        gate = SourceGate.from_parts(gate_settings, {k: v for k, v in tensors.items() if k.startswith("source_gate/")})
    for key in ("names", "encoders", "source_gate"):
        meta.pop(key, None)
    return AlignedSafetyDirection(encoders=encoders, metadata=meta, source_gate=gate)


def _detector_settings_ok(detector) -> bool:
    if detector is None:
        return True
    return (
        isinstance(detector, dict)
        and isinstance(detector.get("layers"), list)
        and bool(detector["layers"])
        and all(as_count(x, high=10**6) is not None for x in detector["layers"])
        and isinstance(detector.get("classes"), list)
        and len(detector["classes"]) >= 2
        and is_number(detector.get("threshold"))
        and is_number(detector.get("temperature"))
    )


def _check_layout(checked: CheckedFile, meta: dict) -> tuple[list[str], list[str], dict | None]:
    """(direction names, encoder keys, gate settings) from the metadata, type-checked, plus the keys
    the nodes read (a damaged file must fail here, not in a node)."""
    names, encoders, gate = meta.get("names"), meta.get("encoders"), meta.get("source_gate")
    for label, value in (("names", names), ("encoders", encoders)):
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, str) and v for v in value)
            or len(set(value)) != len(value)
        ):
            raise checked.refuse(f"its {label!r} must be a non-empty list of distinct names; got {short(value)}")
    if gate is not None:
        ok = (
            isinstance(gate, dict)
            and isinstance(gate.get("source_ref"), str)
            and isinstance(gate.get("pooling"), str)
            and as_count(gate.get("layer"), high=10**6) is not None
            and is_number(gate.get("threshold"))
            and is_number(gate.get("temperature"))
            and isinstance(gate.get("weights_sha256", ""), (str, type(None)))
            and _detector_settings_ok(gate.get("detector"))
        )
        if not ok:
            raise checked.refuse(f"its source_gate settings are malformed: {short(gate)}")
    if MIXED in names:
        mix = meta.get("mix")
        base = len(names) - 1
        ok = (
            isinstance(mix, dict)
            and isinstance(mix.get("rows"), list)
            and isinstance(mix.get("weights"), dict)
            and all(as_count(r, high=base - 1) is not None and not isinstance(r, str) for r in mix["rows"])
            and all(is_number(w) for w in mix["weights"].values())
        )
        if not ok:
            raise checked.refuse(f"it has a {MIXED!r} row but no valid 'mix' settings")
    if not isinstance(meta.get("method"), str) or as_count(meta.get("n_anchors")) is None:
        raise checked.refuse("its metadata lacks the fit's method or anchor count")
    fit, fingerprints = meta.get("fit", {}), meta.get("encoder_fingerprints", {})
    if (
        not isinstance(fit, dict)
        or not all(isinstance(v, dict) for v in fit.values())
        or not isinstance(fingerprints, dict)
    ):
        raise checked.refuse("its 'fit' and 'encoder_fingerprints' must be objects")
    return names, encoders, gate


def cached_fit(path: str | Path, compute: Callable[[], AlignedSafetyDirection]) -> AlignedSafetyDirection:
    """The fit cached at ``path``, else ``compute()`` saved there. A cache is never trusted blindly nor
    allowed to cost the result: a damaged one (unreadable, truncated, wrong shapes, NaN, checksum
    mismatch, old schema) is logged, deleted and rebuilt; one that cannot be written (read-only or
    full disk) is logged and the computed fit returned all the same."""
    path = Path(path)
    if path.exists():
        try:
            return load_aligned(path)
        except SafetySteerError as exc:
            log.warning(
                "Safety Steer: the cached alignment %s cannot be used (%s); deleting it and fitting again.", path, exc
            )
            try:
                path.unlink()
            except OSError as error:
                log.warning("Safety Steer: could not delete the damaged cache %s (%s).", path, error)
    result = compute()
    try:
        save_aligned(result, path)
    except (OSError, SafetySteerError) as exc:
        log.warning(
            "Safety Steer: could not cache the fit in %s (%s); using it without caching, so it will be "
            "fitted again next time.",
            path,
            exc,
        )
    return result
