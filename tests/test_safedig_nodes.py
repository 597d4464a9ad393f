"""SafeDIG nodes on tiny random-weight Flux, SD3 and Wan models built from ComfyUI's own classes:
activation collection through the real sampler, routing, SAE training, saving/loading, and Repel /
Blend through chained DiT block patches under a real KSampler."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from safety_steer.runtime import load_module_from
from safety_steer.steering.pack import DEFAULT_PACK_PATH

UNSAFE = "a man stabbing another man in a dark alley, blood everywhere, photo"
SMALL = {
    "candidates": 4,
    "keep": 2,
    "pairs_per_category": 2,
    "anchors": 6,
    "expansion": 2,
    "k": 8,
    "epochs": 3,
    "learning_rate": 3e-3,
    "harmful_features": 16,
    "noise_level": 0.5,
    "seed": 0,
}
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def tiny_models():
    return load_module_from(Path(__file__).with_name("tiny_models.py"), "safety_steer_tiny_models")


@pytest.fixture(scope="module")
def kit(comfy):
    classes = comfy.node_classes
    pack = sys.modules[classes["SafetySteerLoadDirection"].__module__].load_pack(DEFAULT_PACK_PATH)
    built: dict[str, tuple] = {}

    def family(name):
        if name not in built:
            built[name] = tiny_models().build_clip(name), tiny_models().build_model(name)
        return built[name]

    return comfy, pack, family


def latent(name):
    return tiny_models().empty_latent(name, 1)


def encode(clip, text):
    import nodes

    return nodes.CLIPTextEncode().encode(clip, text)[0]


def sample(model, clip, lat, cfg=2.0):
    import nodes

    return nodes.common_ksampler(model, 5, 2, cfg, "euler", "normal", encode(clip, UNSAFE), encode(clip, ""), lat)[0][
        "samples"
    ]


def train(comfy, pack, clip, model, name, positions="auto", prefix="safedig_test"):
    return comfy.node(
        "SafetySteerTrainSAE",
        model=model,
        clip=clip,
        direction=pack,
        latent=latent(name),
        positions=positions,
        **SMALL,
        filename_prefix=prefix,
    )


def apply(comfy, model, bundle, operation="repel", strength=1.0, **options):
    settings = {"start_percent": 0.0, "end_percent": 1.0, "apply_to": "positive", **options}
    return comfy.node(
        "SafetySteerApplySafeDIG", model=model, safedig=bundle, operation=operation, strength=strength, **settings
    )[0]


def test_train_route_save_load_and_apply_on_flux(kit, comfy):
    classes, pack, family = kit
    clip, model = family("flux")
    bundle, report = train(classes, pack, clip, model, "flux")
    assert len(bundle.positions) == 2 and "routing" in report and "<- chosen" in report
    assert len(bundle.metadata["routing"]) == 4  # every candidate scored, two kept
    saved = sorted((comfy.base / "models" / "safety_saes").glob("safedig_test_*.safetensors"))
    assert saved
    import folder_paths

    folder_paths.filename_list_cache.clear()
    listed = classes.node("SafetySteerLoadSAE", bundle=saved[-1].name)[0]
    assert listed.positions == bundle.positions
    for position in bundle.positions:
        for key, value in bundle.saes[position].state_dict().items():
            assert torch.equal(listed.saes[position].state_dict()[key], value)

    lat = latent("flux")
    base = sample(model, clip, lat)
    assert torch.equal(sample(apply(classes, model, bundle, strength=0.0), clip, lat), base)
    repelled = sample(apply(classes, model, listed, "repel", 2.0), clip, lat)
    blended = sample(apply(classes, model, listed, "blend", 1.0), clip, lat)
    assert torch.isfinite(repelled).all() and not torch.equal(repelled, base) and not torch.equal(blended, base)
    assert not torch.equal(repelled, blended)
    assert torch.equal(sample(model, clip, lat), base)  # the original model is untouched
    assert not model.model_options.get("transformer_options", {}).get("patches_replace")
    assert torch.isfinite(sample(apply(classes, model, listed, "repel", 2.0), clip, lat, cfg=1.0)).all()


def test_stacks_with_cross_model_steer_and_another_packs_block_patch(kit, tmp_path, monkeypatch):
    classes, pack, family = kit
    clip, model = family("flux")
    bundle, _ = train(classes, pack, clip, model, "flux", positions="double.0.img,single.0")
    calls = []

    def other_pack(args, extra):
        calls.append(1)
        out = extra["original_block"](args)
        return {**out, "img": out["img"] * 1.01}

    other = model.clone()
    other.set_model_patch_replace(other_pack, "dit", "double_block", 0)
    lat = latent("flux")
    other_only = sample(other, clip, lat)
    both = apply(classes, other, bundle, "repel", 2.0)
    stacked = sample(both, clip, lat)
    assert calls and not torch.equal(stacked, other_only)  # the other patch still runs, and ours too
    calls.clear()
    assert torch.equal(sample(other, clip, lat), other_only) and calls  # and `other` itself is unchanged
    monkeypatch.setenv("SAFETY_STEER_CACHE", str(tmp_path))
    (aligned,) = classes.node(
        "SafetySteerFitCrossModelAlignment", clip=clip, direction=pack, method="ridge", anchors=40
    )
    (steered,) = classes.node(
        "SafetySteerApplyModel",
        model=both,
        aligned_direction=aligned,
        strength=2.0,
        direction="auto",
        mode="add",
        gate="none",
        gate_threshold=-1.0,
        start_percent=0.0,
        end_percent=1.0,
        apply_to="positive",
    )
    assert not torch.equal(sample(steered, clip, lat), stacked)
    twice = apply(classes, both, bundle, "blend", 1.0)
    assert not torch.equal(sample(twice, clip, lat), stacked)


@pytest.mark.parametrize(
    "name,positions",
    [
        ("sd3", "text_in,double.0.img"),
        ("wan", "text_in,double.1.img"),
        ("wan22", "text_in,double.1.img"),
        ("qwen_image", "double.0.txt,double.1.img"),
    ],
)
def test_sd3_and_wan_positions(kit, name, positions):
    classes, pack, family = kit
    clip, model = family(name)
    bundle, _ = train(classes, pack, clip, model, name, positions=positions)
    assert bundle.positions == positions.split(",")
    lat = latent(name)
    base = sample(model, clip, lat)
    assert torch.equal(sample(apply(classes, model, bundle, strength=0.0), clip, lat), base)
    assert not torch.equal(sample(apply(classes, model, bundle, "repel", 2.0), clip, lat), base)


def test_bad_inputs_get_clear_errors(kit):
    classes, pack, family = kit
    flux_clip, flux = family("flux")
    bundle, _ = train(classes, pack, flux_clip, flux, "flux", positions="single.0")
    _, sd3 = family("sd3")
    with pytest.raises(ValueError, match=r"an SAE at 'single.0', which this SD3 / SD3.5 model does not have"):
        apply(classes, sd3, bundle)
    _, sd15 = family("sd15")
    with pytest.raises(ValueError, match=r"supports SD3 / SD3.5, Flux, Chroma, Flux.2, Wan 2.x, Qwen-Image, not SD1.5"):
        apply(classes, sd15, bundle)
    with pytest.raises(ValueError, match=r"Flux has no position double.9.img"):
        train(classes, pack, flux_clip, flux, "flux", positions="double.9.img")
    wan_bundle, _ = train(classes, pack, *family("wan"), "wan", positions="text_in")
    with pytest.raises(
        ValueError,
        match=r"trained on a Wan 2.x model, not SD3 / SD3.5.*reads 32 features per token "
        r"but SD3 / SD3.5 gives 128",
    ):
        apply(classes, family("sd3")[1], wan_bundle)


def test_adapting_the_decoder_to_another_checkpoint_keeps_the_encoder(kit):
    """A 'fine-tune' (same architecture, other weights): encoders frozen, decoders refitted on benign anchors."""
    classes, pack, family = kit
    clip, model = family("flux")
    bundle, _ = train(classes, pack, clip, model, "flux", positions="double.0.txt,single.0")
    finetune = tiny_models().build_model("flux", seed=7)
    adapted, report = classes.node(
        "SafetySteerAdaptSAEDecoder",
        model=finetune,
        clip=clip,
        safedig=bundle,
        direction=pack,
        latent=latent("flux"),
        anchors=8,
        epochs=3,
        noise_level=0.5,
        seed=0,
        filename_prefix="safedig_adapted_test",
    )
    assert "adapted decoder" in report
    for position in bundle.positions:
        source, target = bundle.saes[position], adapted.saes[position]
        assert torch.equal(source.W_enc, target.W_enc) and torch.equal(source.b_enc, target.b_enc)
        assert not torch.equal(source.W_dec, target.W_dec)
        assert target.metadata["adapted_from"]
    lat = latent("flux")
    base = sample(finetune, clip, lat)
    assert not torch.equal(sample(apply(classes, finetune, adapted, "blend", 1.0), clip, lat), base)


def test_qwen_image_positions_are_its_joint_blocks(kit):
    """Qwen-Image's joint blocks take the dit block-replace patch like Flux's double blocks; the
    text stream leaving the last block is never read, so it is no position."""
    from safety_steer.nodes.safedig.positions import available_positions, hidden_width

    _, model = kit[2]("qwen_image")
    assert available_positions(model) == ["text_in", "double.0.txt", "double.0.img", "double.1.img"]
    assert hidden_width(model) == 32


def test_z_image_is_refused_with_the_supported_list(kit):
    classes, pack, family = kit
    clip, model = family("z_image")
    with pytest.raises(
        ValueError,
        match=r"supports SD3 / SD3.5, Flux, Chroma, Flux.2, Wan 2.x, Qwen-Image, not Z-Image \(.*block-replace",
    ):
        train(classes, pack, clip, model, "z_image")


def test_omnigen2_is_refused_with_the_reason(kit):
    classes, pack, family = kit
    clip, model = family("omnigen2")
    with pytest.raises(ValueError, match=r"supports SD3 / SD3.5, .*Qwen-Image, not OmniGen 2 \(.*block-replace"):
        train(classes, pack, clip, model, "omnigen2")


@pytest.mark.parametrize(
    "name,label", [("hunyuan_video15", "HunyuanVideo 1.5"), ("hunyuan_image21", "HunyuanImage 2.1")]
)
def test_hunyuan_qwen_families_are_refused_with_the_reason(kit, name, label):
    classes, pack, family = kit
    clip, model = family(name)
    with pytest.raises(ValueError, match=rf"supports SD3 / SD3.5, .*Qwen-Image, not {label} \(.*not mapped.*byT5"):
        train(classes, pack, clip, model, name)
