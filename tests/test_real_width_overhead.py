"""bench/real_width_overhead.py: real block counts match ComfyUI's real configs, and the whole
measurement runs end to end on tiny stand-ins of two families (a DiT with SafeDIG, a UNet)."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from safety_steer.bench import real_width_overhead as rw

#: the depth field(s) of each DiT family's real config, per kept block list
DEPTH_FIELDS = {
    "joint_blocks": ("depth",),
    "double_blocks": ("depth",),
    "single_blocks": ("depth_single_blocks",),
    "blocks": ("num_layers", "depth", "num_blocks"),  # Wan; PixArt; Cosmos Predict2
    "transformer_blocks": ("num_layers",),
    "layers": ("n_layers", "num_layers"),  # Lumina 2 / Z-Image; OmniGen 2
    "noise_refiner": ("num_refiner_layers",),  # OmniGen 2
    "context_refiner": ("num_refiner_layers",),
    "double_layers": ("n_double_layers",),  # AuraFlow: n_layers counts its double and single layers
    "single_layers": ("n_single_layers",),
}


def test_real_block_counts_are_the_real_configs():
    for name, spec in rw.FAMILIES.items():
        if spec.get("unet"):
            continue
        if "n_double_layers" in spec["config"]:
            spec = {**spec, "config": {**spec["config"]}}
            spec["config"]["n_single_layers"] = spec["config"]["n_layers"] - spec["config"]["n_double_layers"]
        for attr, kept in spec["keep"].items():
            field = next(f for f in DEPTH_FIELDS[attr] if f in spec["config"])
            assert sum(kept.values()) == spec["config"][field], (name, attr)
            assert max(kept) < spec["config"][field], (name, attr)
    sdxl = rw.FAMILIES["sdxl"]["real_transformer_blocks"]
    assert sum(sdxl.values()) == 70  # 2x2 + 2x10 down, 10 middle, 3x2 + 3x10 up
    assert sum(rw.FAMILIES["sd15"]["real_transformer_blocks"].values()) == 16


def _tiny(name: str, **config) -> dict:
    spec = copy.deepcopy(rw.FAMILIES[name])
    spec["config"].update(config)
    return spec


def test_runs_end_to_end_on_tiny_stand_ins(comfy, tmp_path, monkeypatch):
    tiny = {
        "tiny_wan": {
            **_tiny("wan21_1.3b", dim=32, ffn_dim=64, num_heads=2, num_layers=3, text_dim=64),
            "keep": {"blocks": {0: 3}},
            "latent": (16, 1, 4, 4),
            "real_image_tokens": 64,
            "text": (8, 64),
            "safedig_width": 32,
        },
        "tiny_sd15": {
            **_tiny(
                "sd15",
                model_channels=32,
                channel_mult=[1, 2],
                num_res_blocks=[1, 1],
                transformer_depth=[1, 1],
                transformer_depth_output=[1, 1, 1, 1],
                context_dim=32,
                num_heads=2,
            ),
            "real_transformer_blocks": {32: 3, 64: 3},
            "latent": (4, 8, 8),
            "real_image_tokens": 256,
            "text": (8, 32),
        },
    }
    monkeypatch.setattr(rw, "FAMILIES", tiny)
    out = tmp_path / "real.json"
    results = rw.run(tuple(tiny), repeats=1, threads=1, out=out, log=lambda _: None)
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    assert not results["skipped"]
    wan, sd15 = results["families"]["tiny_wan"], results["families"]["tiny_sd15"]
    for row in (wan, sd15):
        assert row["full_step_ms_estimate"] > 0 and row["model_point_ms"] > 0
        assert abs(row["model_point_fraction"] - row["model_point_ms"] / row["full_step_ms_estimate"]) <= (
            0.01 * row["model_point_fraction"] + 1e-9
        )
    assert wan["real_blocks"] == 3 and set(wan["blocks"]) == {"blocks[0]"}
    assert wan["safedig_ms"] > 0 and wan["safedig_tokens"] == {"timed": 64, "real": 64, "positions": 2}
    assert sd15["safedig_ms"] is None and sd15["model_point_calls_per_step"] == 6
    assert set(sd15["blocks"]) == {"transformer@32", "transformer@64"}
    table = rw.format_table(results)
    assert "Wan 2.1 T2V 1.3B" in table and "SD1.5" in table


def test_cut_model_is_fully_initialised(comfy):
    spec = {
        **_tiny("flux", hidden_size=32, num_heads=2, axes_dim=[4, 6, 6], context_in_dim=32, vec_in_dim=32),
        "keep": {"double_blocks": {0: 19}, "single_blocks": {5: 38}},
    }
    _, net = rw.build_cut_model(spec)
    assert len(net.double_blocks) == 1 and len(net.single_blocks) == 1
    for name, p in net.named_parameters():
        assert p.device.type == "cpu" and torch.isfinite(p).all(), name
        if p.ndim > 1:
            assert p.std() > 0, name


def test_unused_block_lists_are_dropped(comfy):
    """OmniGen 2's reference-image refiner never runs in text-to-image: the cut model holds none of it."""
    spec = {
        **_tiny("omnigen2", hidden_size=32, num_attention_heads=2, num_kv_heads=1, axes_dim_rope=[4, 6, 6]),
        "keep": {"layers": {3: 32}, "noise_refiner": {0: 2}, "context_refiner": {1: 2}},
    }
    _, net = rw.build_cut_model(spec)
    assert len(net.ref_image_refiner) == 0
    assert len(net.layers) == len(net.noise_refiner) == len(net.context_refiner) == 1
    for name, p in net.named_parameters():
        assert p.device.type == "cpu" and torch.isfinite(p).all(), name


@pytest.mark.parametrize("name,axes", [("hunyuan_video15", [4, 6, 6]), ("hunyuan_image21", [8, 8])])
def test_hunyuan_patch_one_specs_run_at_tiny_width(comfy, name, axes):
    """HunyuanVideo 1.5 and HunyuanImage 2.1 patch 1x1(x1): every latent position is a token."""
    spec = {**_tiny(name, hidden_size=32, num_heads=2, axes_dim=axes, context_in_dim=32), "text": (8, 32)}
    timing = rw.time_model(spec, repeats=1)
    assert timing["timed_image_tokens"] == 16 * 16
    assert set(timing["blocks"]) == {f"{attr}[0]" for attr in spec["keep"]}
    assert timing["forward_ms"]["cpu"] > 0


def test_flux2_real_config_is_what_comfyui_detects(comfy):
    """The FLUX.2 dev row's config, built as a model on the meta device, reads back unchanged through
    ComfyUI's own file detection (comfy.model_detection's "flux2" branch: 48 heads, rope [32]*4, mlp 3,
    patch 1, ...); and the spec runs at tiny width (patch 1: every latent position is a token)."""
    import comfy.model_detection
    import comfy.supported_models

    spec = rw.FAMILIES["flux2"]
    real = comfy.supported_models.Flux2(copy.deepcopy(spec["config"])).get_model({}, "", device=torch.device("meta"))
    detected = comfy.model_detection.detect_unet_config(real.diffusion_model.state_dict(), "")
    assert {key: detected.get(key) for key in spec["config"]} == spec["config"]
    assert sum(spec["keep"]["double_blocks"].values()) == 8 and sum(spec["keep"]["single_blocks"].values()) == 48
    tiny = {**_tiny("flux2", hidden_size=32, num_heads=2, axes_dim=[4, 4, 4, 4], context_in_dim=96), "text": (8, 96)}
    timing = rw.time_model(tiny, repeats=1)
    assert timing["timed_image_tokens"] == 16 * 16
    assert set(timing["blocks"]) == {"double_blocks[0]", "single_blocks[0]"}
    assert timing["forward_ms"]["cpu"] > 0
