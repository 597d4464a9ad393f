"""A SafeDIG bundle: the SAEs of one model's chosen positions, their harmful features and the
routing that chose them, in one safetensors file (what SafetySteerTrainSAE writes and SafetySteerApplySafeDIG reads).

Tensors are stored as ``<position>/<SAE state key>``; metadata holds, per position, the SAE's own
metadata and its harmful features, plus the bundle's model type and routing scores. Loading
rebuilds every SAE, validates it as a single SAE file would be (shapes, finite values, unit
decoder columns) and never unpickles anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..fileformat import (
    CheckedFile,
    FileKind,
    as_count,
    discard_reservation,
    is_number,
    open_checked,
    short,
    write_atomic,
)
from .operations import HarmfulFeatures
from .sae import TENSOR_NAMES, SAEError, SparseAutoencoder, check_sae_header, sae_from_tensors, validate_sae

BUNDLE_FORMAT = "safety-steer-safedig-bundle"
BUNDLE_SCHEMA_VERSION = 1


@dataclass
class SafeDIGBundle:
    saes: dict[str, SparseAutoencoder]
    features: dict[str, HarmfulFeatures]
    metadata: dict = field(default_factory=dict)  # model_type, routing, training settings

    @property
    def positions(self) -> list[str]:
        return list(self.saes)


BUNDLE_KIND = FileKind(
    name="SafeDIG bundle",
    marker=BUNDLE_FORMAT,
    schema_version=BUNDLE_SCHEMA_VERSION,
    oldest_version=1,
    error=SAEError,
    fix="Train it again with Train Safety SAE, or re-download it.",
    obtain="Choose a bundle written by Train Safety SAE (in models/safety_saes/).",
    document_key="safedig",
)


def save_bundle(bundle: SafeDIGBundle, path: str | Path) -> Path:
    """Validate, then write atomically with a content checksum. ``path`` may be the empty file that
    ``sae_save_path`` reserved; it is removed again if the save fails before writing."""
    path = Path(path)
    try:
        if path.suffix != ".safetensors":
            raise SAEError(f"SafeDIG bundles must end in .safetensors; got {path.name}.")
        tensors, positions = {}, {}
        for position, sae in bundle.saes.items():
            validate_sae(sae, f"{path.name} ({position})")
            for name in TENSOR_NAMES:
                tensors[f"{position}/{name}"] = getattr(sae, name).detach().to("cpu", torch.float32).contiguous()
            positions[position] = {
                "sae": sae.metadata,
                "d_in": sae.d_in,
                "width": sae.width,
                "k": sae.k,
                "features": bundle.features[position].to_dict(),
            }
        meta = {
            **bundle.metadata,
            "format": BUNDLE_FORMAT,
            "schema_version": BUNDLE_SCHEMA_VERSION,
            "positions": positions,
        }
        try:
            encoded = json.dumps(meta)
        except (TypeError, ValueError) as exc:
            raise SAEError(f"{path.name}: the bundle's metadata must be JSON-serialisable ({exc}).") from None
        return write_atomic(tensors, path, {"safedig": encoded}, checksum=True)
    except BaseException:
        discard_reservation(path)
        raise


def load_bundle(path: str | Path) -> SafeDIGBundle:
    """Load and validate a bundle. Every SAE is built from tensors whose header shapes match the sizes
    its metadata declares (checked before anything is read), then validated like a single SAE file."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise SAEError(f"{path.name} is not a .safetensors file; SafeDIG bundles are only read from safetensors.")
    if not path.is_file():
        raise SAEError(f"SafeDIG bundle not found: {path}.")
    checked = open_checked(path, BUNDLE_KIND)
    meta = dict(checked.document)
    positions = meta.pop("positions", None)
    _check_metadata(checked, positions, meta)
    sizes = {
        position: check_sae_header(checked, f"{position}/", info, f"the {position} SAE's ")
        for position, info in positions.items()
    }
    with torch.inference_mode(False):  # ordinary tensors even when ComfyUI loads inside inference mode
        tensors = checked.load([f"{position}/{name}" for position in positions for name in TENSOR_NAMES])
        saes, features = {}, {}
        for position, info in positions.items():
            d_in, width, k = sizes[position]
            saes[position] = sae_from_tensors(
                tensors, f"{position}/", d_in, width, k, info["sae"], f"{path.name} ({position})"
            )
            features[position] = _features(checked, position, info["features"], width)
    return SafeDIGBundle(saes=saes, features=features, metadata=meta)


def _check_metadata(checked: CheckedFile, positions, meta: dict) -> None:
    """The metadata the nodes index into, type-checked: a damaged bundle fails here, not in a node."""
    if not isinstance(positions, dict) or not positions:
        raise checked.refuse("its metadata has no 'positions' map of SAEs; the file is damaged or was edited")
    for position, info in positions.items():
        if (
            not position
            or not isinstance(info, dict)
            or not isinstance(info.get("sae"), dict)
            or not isinstance(info.get("features"), dict)
        ):
            raise checked.refuse(
                f"the entry of position {short(position)} must be an object with 'sae' and "
                "'features' objects; the file is damaged or was edited"
            )
        if not isinstance(info["sae"].get("adapted_from", ""), str):
            raise checked.refuse(f"the {short(position)} SAE's 'adapted_from' must be a string")
    routing, chosen = meta.get("routing", {}), meta.get("chosen", [])
    if not isinstance(routing, dict) or not all(
        isinstance(s, dict) and isinstance(s.get("score"), (int, float)) and not isinstance(s["score"], bool)
        for s in routing.values()
    ):
        raise checked.refuse("its 'routing' must map positions to objects with a numeric 'score'")
    if not isinstance(chosen, list) or not all(isinstance(c, str) for c in chosen):
        raise checked.refuse("its 'chosen' must be a list of position names")
    if not isinstance(meta.get("model_type", ""), str):
        raise checked.refuse("its 'model_type' must be a string")


def _features(checked: CheckedFile, position: str, data: dict, width: int) -> HarmfulFeatures:
    indices, scores = data.get("indices"), data.get("scores")
    if (
        not isinstance(indices, list)
        or not isinstance(scores, list)
        or len(indices) != len(scores)
        or not all(as_count(i, high=width - 1) is not None and not isinstance(i, str) for i in indices)
        or len(set(indices)) != len(indices)
        or not all(is_number(s) for s in scores)
    ):
        raise checked.refuse(
            f"the {position} harmful features must be equally long lists of distinct 'indices' "
            f"below the width {width} and finite 'scores'; the file is damaged or was edited"
        )
    return HarmfulFeatures(
        indices=torch.tensor(indices, dtype=torch.long), scores=torch.tensor(scores, dtype=torch.float32)
    )
