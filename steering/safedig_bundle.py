"""A SafeDIG bundle: the SAEs of one model's chosen positions, their harmful features and the
routing that chose them, in one safetensors file (what TrainSafetySAE writes and ApplySafeDIG reads).

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
from safetensors import safe_open
from safetensors.torch import save_file

from .safedig import HarmfulFeatures
from .sae import SAEError, SparseAutoencoder, validate_sae

BUNDLE_FORMAT = "safety-steer-safedig-bundle"
BUNDLE_SCHEMA_VERSION = 1


@dataclass
class SafeDIGBundle:
    saes: dict[str, SparseAutoencoder]
    features: dict[str, HarmfulFeatures]
    metadata: dict = field(default_factory=dict)   # model_type, routing, training settings

    @property
    def positions(self) -> list[str]:
        return list(self.saes)


def save_bundle(bundle: SafeDIGBundle, path: str | Path) -> Path:
    tensors, positions = {}, {}
    for position, sae in bundle.saes.items():
        for key, value in sae.state_dict().items():
            tensors[f"{position}/{key}"] = value.detach().to(torch.float32).contiguous()
        positions[position] = {"sae": sae.metadata, "d_in": sae.d_in, "width": sae.width, "k": sae.k,
                               "features": bundle.features[position].to_dict()}
    meta = {"format": BUNDLE_FORMAT, "schema_version": BUNDLE_SCHEMA_VERSION, **bundle.metadata,
            "positions": positions}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    save_file(tensors, str(tmp), metadata={"safedig": json.dumps(meta)})
    tmp.replace(path)
    return path


def load_bundle(path: str | Path) -> SafeDIGBundle:
    path = Path(path)
    if path.suffix != ".safetensors":
        raise SAEError(f"{path.name} is not a .safetensors file; SafeDIG bundles are only read from safetensors.")
    try:
        handle = safe_open(str(path), framework="pt")
    except Exception as exc:
        raise SAEError(f"{path.name} is not a readable safetensors file ({exc}).") from exc
    with handle:
        raw = (handle.metadata() or {}).get("safedig")
        if raw is None:
            raise SAEError(f"{path.name} is not a SafeDIG bundle (no 'safedig' metadata); train one with Train "
                           "Safety SAE.")
        meta = json.loads(raw)
        if meta.get("format") != BUNDLE_FORMAT or int(meta.get("schema_version", 0)) > BUNDLE_SCHEMA_VERSION:
            raise SAEError(f"{path.name} is a SafeDIG bundle of a newer schema ({meta.get('schema_version')}); "
                           "update Safety Steer.")
        positions = meta.pop("positions")
        saes, features = {}, {}
        for position, info in positions.items():
            sae = SparseAutoencoder(int(info["d_in"]), int(info["width"]), int(info["k"]), metadata=info["sae"])
            state = {}
            for key in sae.state_dict():
                name = f"{position}/{key}"
                if name not in handle.keys():
                    raise SAEError(f"{path.name} lacks the tensor {name!r}: the file is incomplete.")
                state[key] = handle.get_tensor(name)
            try:
                sae.load_state_dict(state)
            except RuntimeError as exc:
                raise SAEError(f"{path.name}: the {position} SAE's tensors do not fit its stated sizes ({exc}).") from exc
            validate_sae(sae, f"{path.name} ({position})")
            saes[position] = sae.eval().requires_grad_(False)
            features[position] = HarmfulFeatures.from_dict(info["features"])
    return SafeDIGBundle(saes=saes, features=features, metadata=meta)
