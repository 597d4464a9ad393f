"""The pack file format: round trip, inspect, and a clear error for every kind of bad file."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from safety_steer.steering import PackFormatError, load_pack, save_pack
from safety_steer.steering.pack import DEFAULT_PACK_PATH as SHIPPED_PACK
from safety_steer.steering.pack import DETECTOR_TENSORS, SCHEMA_VERSION, SHIPPED_PACKS

#: hidden size of each shipped pack's source model
SHIPPED_WIDTHS = {"gemma3-270m": 640, "smollm2-135m": 576}


@pytest.fixture(scope="module", params=sorted(SHIPPED_PACKS))
def shipped(request):
    pack = load_pack(SHIPPED_PACKS[request.param])
    assert pack.metadata["source_ref"] == request.param
    return pack


def _rewrite(tmp_path, tensors=None, metadata=None, drop=(), name="edited.safetensors", source=SHIPPED_PACK):
    """Copy the shipped pack with some tensors or metadata replaced or removed."""
    from safetensors import safe_open

    with safe_open(str(source), framework="pt") as handle:
        meta = dict(handle.metadata())
    data = load_file(str(source))
    data.update(tensors or {})
    meta.update(metadata or {})
    for key in drop:
        data.pop(key, None)
        meta.pop(key, None)
    out = tmp_path / name
    save_file(data, str(out), metadata=meta)
    return out


def test_shipped_pack_loads_with_documented_contents(shipped):
    meta = shipped.metadata
    assert meta["format"] == "safety-steer-direction-pack" and int(meta["schema_version"]) == SCHEMA_VERSION
    assert shipped.names == [
        "global",
        "hate",
        "harassment",
        "violence",
        "self-harm",
        "sexual",
        "shocking",
        "illegal activity",
    ]
    d = int(meta["source_hidden_size"])
    assert shipped.directions.shape == (8, d) and d == SHIPPED_WIDTHS[meta["source_ref"]]
    assert torch.allclose(shipped.directions.norm(dim=1), torch.ones(8), atol=1e-4)
    assert shipped.anchor_features.shape == (len(shipped.anchor_prompts), d)
    assert len(shipped.anchor_prompts) >= 2000
    for key in ("source_weights_sha256", "train_pairs_sha256", "heldout_pairs_sha256", "anchors_sha256"):
        assert len(meta[key]) == 64
    # the pack's directions separate held-out pairs far above chance (measured at build time)
    assert meta["heldout_auroc"]["global"] >= 0.8
    assert set(meta["heldout_auroc_global_by_category"]) == set(shipped.categories)
    # and its trained detector, chosen by cross-validation, opens on held-out unsafe prompts while
    # staying shut on anchors it never saw (figures recorded at build time, for the README)
    detector = shipped.detector
    assert detector is not None and detector.classes == ["benign", *shipped.categories]
    assert detector.weight.shape == (len(detector.layers) * d, 8)
    assert detector.info["heldout"]["unsafe_recall"] >= 0.9
    assert detector.info["heldout"]["heldout_anchors_opened"] <= 0.05


def test_detector_round_trip_and_damaged_detector_refused(shipped, tmp_path):
    again = load_pack(save_pack(shipped, tmp_path / "copy.safetensors"))
    assert torch.equal(again.detector.weight, shipped.detector.weight)
    assert again.detector.settings() == shipped.detector.settings()
    path = again.path
    width = again.detector.weight.shape[0]
    bad_shape = _rewrite(tmp_path, {"detector_weight": torch.zeros(width - 1, 8)}, source=path)
    with pytest.raises(PackFormatError, match="detector_weight"):
        load_pack(bad_shape)
    nan = torch.full((width,), float("nan"))
    with pytest.raises(PackFormatError, match="detector"):
        load_pack(_rewrite(tmp_path, {"detector_feature_mean": nan}, source=path, name="nan.safetensors"))
    # a pack without a detector (built before 0.2) still loads, and gates on the projection
    old = load_pack(_rewrite(tmp_path, drop=("detector", *DETECTOR_TENSORS), source=path, name="old.safetensors"))
    assert old.detector is None and torch.equal(old.directions, shipped.directions)


def test_round_trip_is_exact(shipped, tmp_path):
    out = save_pack(shipped, tmp_path / "copy.safetensors")
    again = load_pack(out)
    assert torch.equal(again.directions, shipped.directions)
    assert torch.equal(again.anchor_features, shipped.anchor_features)
    assert again.anchor_prompts == shipped.anchor_prompts
    assert again.metadata == {**shipped.metadata}


def test_pickle_files_are_refused_without_unpickling(tmp_path):
    marker = tmp_path / "was_unpickled"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    bad = tmp_path / "direction.pt"
    bad.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(PackFormatError, match="not a .safetensors file.*pickled"):
        load_pack(bad)
    assert not marker.exists()


def test_garbage_with_safetensors_extension(tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00\x01this is not a safetensors file")
    with pytest.raises(PackFormatError, match="not a readable safetensors file"):
        load_pack(bad)


def test_model_checkpoint_is_not_a_pack(tmp_path):
    other = tmp_path / "some_lora.safetensors"
    save_file({"lora.down.weight": torch.zeros(4, 4)}, str(other))
    with pytest.raises(PackFormatError, match="not a Safety Steer direction pack.*1 tensors"):
        load_pack(other)


def test_newer_schema_asks_to_update(tmp_path):
    newer = _rewrite(tmp_path, metadata={"schema_version": str(SCHEMA_VERSION + 1)})
    with pytest.raises(PackFormatError, match="newer than this Safety Steer reads.*Update"):
        load_pack(newer)


def test_missing_tensor_is_named(tmp_path):
    partial = _rewrite(tmp_path, drop=["anchor_features"])
    with pytest.raises(PackFormatError, match=r"missing tensors \['anchor_features'\]"):
        load_pack(partial)


def test_missing_metadata_is_named(tmp_path):
    partial = _rewrite(tmp_path, drop=["source_model"])
    with pytest.raises(PackFormatError, match=r"missing metadata \['source_model'\]"):
        load_pack(partial)


def test_wrong_shape_is_named(shipped, tmp_path):
    wrong = _rewrite(tmp_path, tensors={"anchor_mean": torch.zeros(10)}, source=shipped.path)
    width = shipped.hidden_size
    with pytest.raises(PackFormatError, match=rf"anchor_mean has shape \[10\], expected \[{width}\]"):
        load_pack(wrong)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_values_are_refused(shipped, tmp_path, value):
    directions = shipped.directions.clone()
    directions[3, 7] = value
    bad = _rewrite(tmp_path, tensors={"directions": directions}, source=shipped.path)
    with pytest.raises(PackFormatError, match="directions contains NaN or Inf"):
        load_pack(bad)


def test_non_unit_directions_are_refused(shipped, tmp_path):
    bad = _rewrite(tmp_path, tensors={"directions": shipped.directions * 2}, source=shipped.path)
    with pytest.raises(PackFormatError, match="unit vectors"):
        load_pack(bad)


def test_missing_file_and_wrong_suffix_on_save(shipped, tmp_path):
    with pytest.raises(PackFormatError, match="not found"):
        load_pack(tmp_path / "nope.safetensors")
    with pytest.raises(PackFormatError, match="must end in .safetensors"):
        save_pack(shipped, tmp_path / "pack.pt")


def test_cli_inspect_prints_a_readable_table(tmp_path):
    exe = [sys.executable, "-m", "safety_steer.cli"]
    out = subprocess.run(exe + ["inspect", str(SHIPPED_PACK)], capture_output=True, text=True, check=True).stdout
    assert "source_model" in out and "google/gemma-3-270m" in out
    assert "held-out AUROC" in out and "illegal activity" in out
    meta = json.loads(
        subprocess.run(
            exe + ["inspect", "--json", str(SHIPPED_PACK)], capture_output=True, text=True, check=True
        ).stdout
    )
    assert meta["format"] == "safety-steer-direction-pack"
    bad = tmp_path / "x.ckpt"
    bad.write_bytes(b"junk")
    failed = subprocess.run(exe + ["inspect", str(bad)], capture_output=True, text=True)
    assert failed.returncode == 2 and "safetensors" in failed.stderr and "Traceback" not in failed.stderr
