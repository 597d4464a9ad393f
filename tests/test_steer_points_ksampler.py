"""The three application points (text encoder, conditioning, model) under a real KSampler, on tiny
random-weight models of all seven families built from ComfyUI's own classes (image and 5-D video
latents). Node classes come from the copy of the pack that ComfyUI itself loaded."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from safety_steer.runtime import load_module_from
from safety_steer.steering.pack import DEFAULT_PACK_PATH

UNSAFE = "a man stabbing another man in a dark alley, blood everywhere, photo"
BENIGN = "a lighthouse on a cliff at dusk, oil painting"
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def tiny_models():
    return load_module_from(Path(__file__).with_name("tiny_models.py"), "safety_steer_tiny_models")


FAMILIES = tiny_models().FAMILIES


@pytest.fixture(scope="module")
def kit(comfy, tmp_path_factory):
    """Node classes, the shipped pack, and per-family tiny CLIP/model/alignment, built once."""
    import os

    classes = comfy.node_classes
    pack = sys.modules[classes["SafetySteerLoadDirection"].__module__].load_pack(DEFAULT_PACK_PATH)
    data = tmp_path_factory.mktemp("steer_data")
    previous = os.environ.get("SAFETY_STEER_CACHE")
    os.environ["SAFETY_STEER_CACHE"] = str(data)
    cache: dict[str, tuple] = {}

    def family(name: str):
        if name not in cache:
            clip, model = tiny_models().build_clip(name), tiny_models().build_model(name)
            (aligned,) = comfy.node(
                "SafetySteerFitCrossModelAlignment", clip=clip, direction=pack, method="ridge", anchors=40
            )
            cache[name] = clip, model, aligned
        return cache[name]

    yield comfy, pack, family
    if previous is None:
        os.environ.pop("SAFETY_STEER_CACHE", None)
    else:
        os.environ["SAFETY_STEER_CACHE"] = previous


def encode(clip, text):
    import nodes

    return nodes.CLIPTextEncode().encode(clip, text)[0]


def latent(name: str, batch: int = 1):
    return tiny_models().empty_latent(name, batch)


def sample(model, positive, negative, lat, cfg=2.0, steps=2):
    import nodes

    return nodes.common_ksampler(model, 7, steps, cfg, "euler", "normal", positive, negative, lat)[0]["samples"]


def steer_model(comfy, model, aligned, strength, **options):
    settings = {
        "direction": "auto",
        "mode": "add",
        "gate": "none",
        "gate_threshold": -1.0,
        "start_percent": 0.0,
        "end_percent": 1.0,
        "apply_to": "positive",
        **options,
    }
    return comfy.node("SafetySteerApplyModel", model=model, aligned_direction=aligned, strength=strength, **settings)[0]


def steer_conditioning(comfy, conditioning, aligned, strength, **options):
    settings = {"direction": "auto", "mode": "add", "gate": "none", "gate_threshold": -1.0, **options}
    return comfy.node(
        "SafetySteerApplyConditioning",
        conditioning=conditioning,
        aligned_direction=aligned,
        strength=strength,
        **settings,
    )


def steer_clip(comfy, clip, aligned, strength, **options):
    settings = {"direction": "auto", "mode": "add", "gate": "none", "gate_threshold": -1.0, **options}
    return comfy.node(
        "SafetySteerApplyTextEncoder", clip=clip, aligned_direction=aligned, strength=strength, **settings
    )[0]


def patch_state(model):
    """What a clone-then-patch must leave untouched on the original."""
    options = model.model_options.get("transformer_options", {})
    return (
        repr(sorted((k, len(v)) for k, v in options.get("patches", {}).items())),
        repr({k: {kk: len(vv) for kk, vv in v.items()} for k, v in model.wrappers.items()}),
        repr(model.attachments.keys()),
    )


@pytest.mark.parametrize("name", FAMILIES)
def test_every_point_steers_zero_is_identical_and_nothing_is_mutated(kit, name):
    classes, _, family = kit
    clip, model, aligned = family(name)
    positive, negative = encode(clip, UNSAFE), encode(clip, "")
    lat = latent(name)
    weights_before = {k: v.clone() for k, v in list(model.model.state_dict().items())[:8]}
    state_before = patch_state(model)
    base = sample(model, positive, negative, lat)
    assert torch.isfinite(base).all()

    # model point
    assert torch.equal(sample(steer_model(classes, model, aligned, 0.0), positive, negative, lat), base)
    steered_model = steer_model(classes, model, aligned, 3.0)
    by_model = sample(steered_model, positive, negative, lat)
    assert by_model.shape == base.shape and torch.isfinite(by_model).all() and not torch.equal(by_model, base)

    # conditioning point
    zero_cond, _ = steer_conditioning(classes, positive, aligned, 0.0)
    assert torch.equal(sample(model, zero_cond, negative, lat), base)
    cond, report = steer_conditioning(classes, positive, aligned, 3.0)
    assert not torch.equal(sample(model, cond, negative, lat), base)
    assert "applied 3.000" in report

    # text-encoder point
    zero_clip = steer_clip(classes, clip, aligned, 0.0)
    assert torch.equal(sample(model, encode(zero_clip, UNSAFE), encode(zero_clip, ""), lat), base)
    steered_clip = steer_clip(classes, clip, aligned, 3.0)
    assert not torch.equal(sample(model, encode(steered_clip, UNSAFE), encode(steered_clip, ""), lat), base)

    # the originals are untouched: same weights, same patches, same output
    assert patch_state(model) == state_before
    assert all(torch.equal(model.model.state_dict()[k], v) for k, v in weights_before.items())
    assert torch.equal(sample(model, encode(clip, UNSAFE), encode(clip, ""), lat), base)


@pytest.mark.parametrize("name", FAMILIES)
def test_batches_cfg_one_and_stacking_with_other_patches(kit, name):
    classes, _, family = kit
    clip, model, aligned = family(name)
    positive, negative = encode(clip, UNSAFE), encode(clip, BENIGN)
    lat = latent(name, batch=2)
    base = sample(model, positive, negative, lat)
    once = steer_model(classes, model, aligned, 2.0)
    twice = steer_model(classes, once, aligned, 2.0)
    for cfg in (1.0, 2.0):  # CFG 1: guidance-distilled (no uncond pass)
        out = sample(once, positive, negative, lat, cfg=cfg)
        assert out.shape[0] == 2 and torch.isfinite(out).all()
    one, two = sample(once, positive, negative, lat), sample(twice, positive, negative, lat)
    assert not torch.equal(one, two) and not torch.equal(one, base)

    # another pack's patch on the same point, before and after ours: both stay and both act
    other = model.clone()
    seen = []
    if name in ("sd15", "sdxl"):

        def other_patch(n, context, value, extra_options):
            seen.append(1)
            return n, context * 1.5, value * 1.5

        other.set_model_attn2_patch(other_patch)
    else:
        from comfy.patcher_extension import WrappersMP

        def other_wrapper(executor, x, t, c_concat, c_crossattn, control, transformer_options, **kwargs):
            seen.append(1)
            return executor(x, t, c_concat, c_crossattn * 1.5, control, transformer_options, **kwargs)

        other.add_wrapper_with_key(WrappersMP.APPLY_MODEL, "another_pack", other_wrapper)
    other_only = sample(other, positive, negative, lat)
    both = steer_model(classes, other, aligned, 2.0)
    stacked = sample(both, positive, negative, lat)
    assert seen and not torch.equal(stacked, other_only) and not torch.equal(stacked, one)
    ours_first = other_patch if name in ("sd15", "sdxl") else None
    if ours_first is not None:
        assert len(both.model_options["transformer_options"]["patches"]["attn2_patch"]) == 2
    else:
        assert set(both.wrappers["apply_model"]) == {"another_pack", "safety_steer"}


def test_positive_only_by_default_and_step_range(kit):
    classes, _, family = kit
    clip, model, aligned = family("flux")
    positive, negative = encode(clip, UNSAFE), encode(clip, BENIGN)
    lat = latent("flux")
    base = sample(model, positive, negative, lat, steps=3)
    late_only = sample(
        steer_model(classes, model, aligned, 3.0, start_percent=0.99, end_percent=1.0), positive, negative, lat, steps=3
    )
    full = sample(steer_model(classes, model, aligned, 3.0), positive, negative, lat, steps=3)
    assert not torch.equal(full, late_only)
    both = sample(
        steer_model(classes, model, aligned, 3.0, apply_to="positive and negative"), positive, negative, lat, steps=3
    )
    assert not torch.equal(both, full) and not torch.equal(full, base)


def test_report_node_reads_conditioning_and_model(kit):
    classes, _, family = kit
    clip, model, aligned = family("sd15")
    steered_clip = steer_clip(classes, clip, aligned, 2.0)
    positive = encode(steered_clip, UNSAFE)
    (text,) = classes.node("SafetySteerReport", conditioning=positive)
    assert "text encoder" in text and "applied 2.000" in text and "violence" in text and UNSAFE[:30] in text
    steered = steer_model(classes, model, aligned, 2.0)
    assert "no steer yet" in classes.node("SafetySteerReport", model=steered)[0]
    sample(steered, encode(clip, UNSAFE), encode(clip, ""), latent("sd15"))
    (text,) = classes.node("SafetySteerReport", model=steered)
    assert "over 2 step(s)" in text and "'positive 1': applied 2.000" in text
    assert "'negative 1': applied 0.000" in text  # the negative prompt is left alone by default


def test_mismatched_encoder_and_unsupported_model_errors(kit):
    classes, _, family = kit
    _, _, sd15_aligned = family("sd15")
    _, flux_model, _ = family("flux")
    flux_clip, _, _ = family("flux")
    with pytest.raises(
        ValueError, match=r"Flux model reads its text from the t5xxl encoder.*aligned to SD1ClipModel \(encoders l\)"
    ):
        steer_model(classes, flux_model, sd15_aligned, 1.0)
    _, _, sdxl_aligned = family("sdxl")
    with pytest.raises(
        ValueError, match=r"SD1.5 model reads text features of width 32.*aligned to SDXLClipModel.*another text encoder"
    ):
        steer_model(classes, family("sd15")[1], sdxl_aligned, 1.0)
    with pytest.raises(ValueError, match=r"64 features per token.*l \(32\)"):
        steer_conditioning(classes, encode(family("sdxl")[0], UNSAFE), sd15_aligned, 1.0)
    with pytest.raises(ValueError, match=r"aligned to SD1ClipModel.*FluxClipModel"):
        steer_clip(classes, flux_clip, sd15_aligned, 1.0)
    import comfy.model_base
    import comfy.model_patcher
    import comfy.supported_models

    # Mochi (its DiT asserts its full widths: built on the meta device, nothing allocated)
    config = comfy.supported_models.GenmoMochi(
        {
            "image_model": "mochi_preview",
            "depth": 48,
            "patch_size": 2,
            "num_heads": 24,
            "hidden_size_x": 3072,
            "hidden_size_y": 1536,
            "mlp_ratio_x": 4.0,
            "mlp_ratio_y": 4.0,
            "learn_sigma": False,
            "in_channels": 12,
            "qk_norm": True,
            "qkv_bias": False,
            "out_bias": True,
            "attn_drop": 0.0,
            "patch_embed_bias": True,
            "posenc_preserve_area": True,
            "timestep_mlp_bias": True,
            "attend_to_padding": False,
            "timestep_scale": 1000.0,
            "use_t5": True,
            "t5_feat_dim": 4096,
            "t5_token_length": 256,
            "rope_theta": 10000.0,
        }
    )
    config.set_inference_dtype(torch.float32, None)
    unsupported = comfy.model_patcher.ModelPatcher(
        config.get_model({}, "", device=torch.device("meta")), torch.device("cpu"), torch.device("cpu")
    )
    with pytest.raises(
        ValueError,
        match=r"cannot steer a GenmoMochi model yet.*SD1.5, SDXL, SD3 / SD3.5, Flux, Chroma, Flux.2, Wan.*AuraFlow",
    ):
        steer_model(classes, unsupported, sd15_aligned, 1.0)


@pytest.mark.parametrize("name", ["sdxl", "wan"])
def test_model_and_conditioning_points_in_a_real_graph(
    comfy, tiny_clip_node, tiny_model_node, name, tmp_path, monkeypatch
):
    """The executor, validation and UI outputs as a server runs them: steered vs unsteered latents."""
    from safetensors.torch import load_file

    monkeypatch.setenv("SAFETY_STEER_CACHE", str(tmp_path))
    latent_type, latent_inputs = tiny_models().latent_node(name, 2)

    def graph(strength: float) -> dict:
        return {
            "1": {"class_type": "SafetySteerLoadDirection", "inputs": {"pack": DEFAULT_PACK_PATH.name}},
            "2": {"class_type": "TinyTestCLIP", "inputs": {"family": name, "seed": 0}},
            "3": {"class_type": "TinyTestModel", "inputs": {"family": name, "seed": 0}},
            "4": {
                "class_type": "SafetySteerFitCrossModelAlignment",
                "inputs": {"clip": ["2", 0], "direction": ["1", 0], "method": "ridge", "anchors": 40},
            },
            "5": {
                "class_type": "SafetySteerApplyModel",
                "inputs": {
                    "model": ["3", 0],
                    "aligned_direction": ["4", 0],
                    "strength": strength,
                    "direction": "violence",
                    "mode": "add",
                    "gate": "none",
                    "gate_threshold": -1.0,
                    "start_percent": 0.0,
                    "end_percent": 1.0,
                    "apply_to": "positive",
                },
            },
            "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 0], "text": UNSAFE}},
            "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 0], "text": ""}},
            "8": {
                "class_type": "SafetySteerApplyConditioning",
                "inputs": {
                    "conditioning": ["6", 0],
                    "aligned_direction": ["4", 0],
                    "strength": strength,
                    "direction": "auto",
                    "mode": "project",
                    "gate": "target projection",
                    "gate_threshold": 3.0,
                },
            },
            "9": {"class_type": latent_type, "inputs": latent_inputs},
            "10": {
                "class_type": "KSampler",
                "inputs": {
                    "model": ["5", 0],
                    "positive": ["8", 0],
                    "negative": ["7", 0],
                    "latent_image": ["9", 0],
                    "seed": 3,
                    "steps": 2,
                    "cfg": 2.0,
                    "sampler_name": "euler",
                    "scheduler": "normal",
                    "denoise": 1.0,
                },
            },
            "11": {
                "class_type": "SaveLatent",
                "inputs": {"samples": ["10", 0], "filename_prefix": f"steer_{name}_{strength}"},
            },
            "12": {"class_type": "SafetySteerReport", "inputs": {"model": ["5", 0], "after": ["10", 0]}},
        }

    def latent_of(outputs) -> torch.Tensor:
        saved = outputs["11"]["latents"][0]
        return load_file(str(comfy.base / "output" / saved["subfolder"] / saved["filename"]))["latent_tensor"]

    plain = comfy.run(graph(0.0))
    steered = comfy.run(graph(2.0))
    assert torch.equal(latent_of(plain), latent_of(comfy.run(graph(0.0))))
    assert latent_of(steered).shape == latent_of(plain).shape and not torch.equal(latent_of(steered), latent_of(plain))
    report = "".join(steered["12"]["text"])
    assert "violence x2: applied" in report and "'positive 2': applied 2.000" in report
    assert "no Apply Safety Steer (Model) patch" in "".join(plain["12"]["text"])  # strength 0: no patch at all
    conditioning_report = "".join(steered["8"]["text"])
    assert "[conditioning |" in conditioning_report and "gate" in conditioning_report


@pytest.mark.parametrize(
    "dim,in_dim,out_dim,ffn,layers,config_class,base_class",
    [
        (5120, 16, 16, 13824, 40, "WAN21_T2V", "WAN21"),  # Wan 2.2 T2V 14B (high- and low-noise experts)
        (3072, 48, 48, 14336, 30, "WAN22_T2V", "WAN22"),  # Wan 2.2 TI2V 5B
        (1536, 16, 16, 8960, 30, "WAN21_T2V", "WAN21"),  # Wan 2.1 T2V 1.3B
    ],
)
def test_wan_2_2_checkpoints_are_detected_and_steered_as_wan_2x(
    comfy, dim, in_dim, out_dim, ffn, layers, config_class, base_class
):
    """ComfyUI's own detection on the real checkpoints' key shapes (meta tensors, nothing allocated):
    Wan 2.2 14B loads as the Wan 2.1 model class, the 5B as WAN22 (a WAN21 subclass); the model
    point takes both as Wan 2.x."""
    from types import SimpleNamespace

    import comfy.model_detection

    from safety_steer.nodes.apply.model_targets import model_kind

    meta = {"device": "meta"}
    sd = {
        "head.modulation": torch.empty(1, 2, dim, **meta),
        "head.head.weight": torch.empty(out_dim * 4, dim, **meta),
        "patch_embedding.weight": torch.empty(dim, in_dim, 1, 2, 2, **meta),
        "text_embedding.0.weight": torch.empty(dim, 4096, **meta),
        **{f"blocks.{i}.ffn.0.weight": torch.empty(ffn, dim, **meta) for i in range(layers)},
    }
    config = comfy.model_detection.model_config_from_unet(sd, "")
    assert type(config).__name__ == config_class
    config.set_inference_dtype(torch.bfloat16, None)
    base = config.get_model(sd, "", device=torch.device("meta"))
    assert type(base).__name__ == base_class
    assert model_kind(SimpleNamespace(model=base)) == ("dit", "Wan 2.x")


def test_z_image_and_lumina_2_share_a_model_class_but_not_an_encoder(kit):
    """ComfyUI runs Z-Image and Lumina Image 2.0 on the same model_base.Lumina2: the model config
    tells them apart, and a direction aligned to the other one's encoder is refused by name."""
    from safety_steer.nodes.apply.model_targets import model_kind

    classes, _, family = kit
    _, z_image, z_aligned = family("z_image")
    _, lumina, lumina_aligned = family("lumina2")
    assert type(z_image.model) is type(lumina.model)
    assert model_kind(z_image) == ("dit", "Z-Image") and model_kind(lumina) == ("dit", "Lumina 2")
    with pytest.raises(ValueError, match=r"Lumina 2 model reads its text from the gemma2_2b encoder.*qwen3_4b"):
        steer_model(classes, lumina, z_aligned, 1.0)
    with pytest.raises(ValueError, match=r"Z-Image model reads its text from the qwen3_4b encoder.*gemma2_2b"):
        steer_model(classes, z_image, lumina_aligned, 1.0)


@pytest.mark.parametrize("class_name", ["ChromaRadiance"])
def test_other_families_on_a_supported_model_class_are_refused(comfy, class_name):
    """ComfyUI builds Chroma Radiance on a subclass of Chroma (pixel space): it is refused with the
    supported list, not steered as its parent. (An uninitialised instance: model_kind reads only its
    class.) Flux.2, also a Flux subclass, is a family of its own: test_flux2_is_its_own_family."""
    from types import SimpleNamespace

    import comfy.model_base

    from safety_steer.nodes.apply.model_targets import SUPPORTED_MODELS, UnsupportedModelError, model_kind

    cls = getattr(comfy.model_base, class_name)
    with pytest.raises(UnsupportedModelError, match=rf"cannot steer a {class_name} model yet.*Chroma"):
        model_kind(SimpleNamespace(model=cls.__new__(cls)))
    assert "Chroma" in SUPPORTED_MODELS


@pytest.mark.parametrize(
    "class_name,label",
    [
        ("HunyuanVideo15", "HunyuanVideo 1.5"),
        ("HunyuanVideo15_SR_Distilled", "HunyuanVideo 1.5"),  # its 1080p super-resolution model
        ("HunyuanImage21", "HunyuanImage 2.1"),
        ("HunyuanImage21Refiner", "HunyuanImage 2.1"),  # the refiner reads the same Qwen2.5-VL tokens
    ],
)
def test_hunyuan_qwen_families_are_told_apart_from_hunyuan_video(comfy, class_name, label):
    """HunyuanVideo 1.5 subclasses HunyuanVideo (Llama) but reads Qwen2.5-VL 7B: the most derived
    class wins, and a direction aligned to HunyuanVideo's Llama is refused by name."""
    from types import SimpleNamespace

    import comfy.model_base

    from safety_steer.nodes.apply.model_targets import UnsupportedModelError, check_text_stream, model_kind

    cls = getattr(comfy.model_base, class_name)
    assert model_kind(SimpleNamespace(model=cls.__new__(cls))) == ("dit", label)
    check_text_stream(label, {"qwen25_7b"}, "HunyuanImageTEModel_")
    with pytest.raises(UnsupportedModelError, match=rf"{label} model reads its text from the qwen25_7b encoder"):
        check_text_stream(label, {"llama", "l", "l.pooled"}, "HunyuanVideoClipModel")


@pytest.mark.parametrize("name", ["hunyuan_video15", "hunyuan_image21"])
def test_hunyuan_glyph_stream_passes_unsteered(kit, name):
    """A quoted phrase also goes to the byT5 glyph encoder (conditioning_byt5small, the model's
    txt_byt5): every point steers the Qwen2.5-VL stream and leaves the glyph stream bit-identical,
    and the model samples with it (strength 0 identical, steered different)."""
    classes, _, family = kit
    clip, model, aligned = family(name)
    prompt = 'a poster of a man stabbing another man, the words "KILL THEM" in red letters'
    positive, negative = encode(clip, prompt), encode(clip, "")
    glyphs = positive[0][1]["conditioning_byt5small"]
    assert glyphs.shape[-1] == 1472 and "conditioning_byt5small" not in negative[0][1]
    steered_clip = encode(steer_clip(classes, clip, aligned, 3.0), prompt)
    steered_cond, _ = steer_conditioning(classes, positive, aligned, 3.0)
    for steered in (steered_clip, steered_cond):
        assert torch.equal(steered[0][1]["conditioning_byt5small"], glyphs)
        assert not torch.equal(steered[0][0], positive[0][0])
    lat = latent(name)
    base = sample(model, positive, negative, lat)
    without_glyphs = [[positive[0][0], {k: v for k, v in positive[0][1].items() if k != "conditioning_byt5small"}]]
    assert not torch.equal(sample(model, without_glyphs, negative, lat), base)  # the glyph stream is read
    assert torch.equal(sample(steer_model(classes, model, aligned, 0.0), positive, negative, lat), base)
    assert not torch.equal(sample(steer_model(classes, model, aligned, 3.0), positive, negative, lat), base)


def test_flux2_is_its_own_family(kit):
    """Flux.2 subclasses Flux but reads Mistral 3 Small's hidden states 10/20/30 side by side per
    token: the most derived class wins, a Flux (T5) direction is refused by name, and the text
    encoder's steer is exactly the conditioning point's steer (both act in the concatenated space)."""
    classes, _, family = kit
    clip, model, aligned = family("flux2")
    assert type(model.model).__name__ == "Flux2"
    assert aligned.encoders["mistral3_24b"].unit.shape[-1] == 3 * 32  # the concatenated space
    with pytest.raises(ValueError, match=r"Flux.2 model reads its text from the mistral3_24b encoder"):
        steer_model(classes, model, family("flux")[2], 1.0)
    positive = encode(clip, UNSAFE)
    assert positive[0][0].shape[-1] == 3 * 32
    by_clip = encode(steer_clip(classes, clip, aligned, 2.0, gate="none"), UNSAFE)[0][0]
    by_cond = steer_conditioning(classes, positive, aligned, 2.0, gate="none")[0][0][0]
    ids = [token[0] for token in clip.tokenize(UNSAFE)["mistral3_24b"][0]]
    start, end = ids.index(3) + 1, ids.index(4)  # the prompt, between [INST] and [/INST]
    # the encoder point steers the prompt's tokens (the system prompt and template stay as they are),
    # the conditioning point every token; on the prompt's tokens both make the same features
    assert torch.equal(by_clip[:, :start], positive[0][0][:, :start])
    assert torch.equal(by_clip[:, end:], positive[0][0][:, end:])
    assert not torch.equal(by_clip[:, start:end], positive[0][0][:, start:end])
    assert torch.allclose(by_clip[:, start:end], by_cond[:, start:end], atol=1e-5)


def test_omnigen2_steers_with_reference_images(kit):
    """OmniGen 2 reads its whole chat template (system turn included, nothing cropped) at the last
    layer; in edit mode (ReferenceLatent on the positive prompt: ref_latents beside c_crossattn) the
    three points still steer, strength 0 stays bit-identical, and the reference image is read."""
    classes, _, family = kit
    clip, model, aligned = family("omnigen2")
    assert type(model.model).__name__ == "Omnigen2"
    tokens = clip.tokenize(UNSAFE)["qwen25_3b"][0]
    positive, negative = encode(clip, UNSAFE), encode(clip, "")
    assert positive[0][0].shape[1] == len(tokens)  # every template token reaches the DiT
    lat = latent("omnigen2")
    reference = {"samples": torch.randn(1, 16, 4, 4, generator=torch.Generator().manual_seed(3))}

    def with_reference(conditioning):
        return classes.node("ReferenceLatent", conditioning=conditioning, latent=reference)[0]

    edit = with_reference(positive)
    base = sample(model, edit, negative, lat)
    assert torch.isfinite(base).all() and not torch.equal(base, sample(model, positive, negative, lat))
    assert torch.equal(sample(steer_model(classes, model, aligned, 0.0), edit, negative, lat), base)
    assert not torch.equal(sample(steer_model(classes, model, aligned, 3.0), edit, negative, lat), base)
    zero_cond, _ = steer_conditioning(classes, edit, aligned, 0.0)
    assert torch.equal(sample(model, zero_cond, negative, lat), base)
    steered_cond, _ = steer_conditioning(classes, edit, aligned, 3.0)
    assert "reference_latents" in steered_cond[0][1]
    assert not torch.equal(sample(model, steered_cond, negative, lat), base)
    steered_clip = steer_clip(classes, clip, aligned, 3.0)
    by_clip = sample(model, with_reference(encode(steered_clip, UNSAFE)), encode(steered_clip, ""), lat)
    assert not torch.equal(by_clip, base)
