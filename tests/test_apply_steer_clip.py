"""Apply Safety Steer (Text Encoder) on tiny random-weight CLIPs of four families, through the
node classes that ComfyUI itself loaded and CLIPTextEncode exactly as a graph runs it."""

from __future__ import annotations

import sys

import pytest
import torch

from safety_steer.steering.pack import SHIPPED_PACKS

PROMPTS = ["a lighthouse on a cliff at dusk, oil painting", "a man stabbing another man in a dark alley, photo"]


@pytest.fixture(scope="module")
def node(comfy):
    """Node classes and helpers from the copy of the pack that ComfyUI loaded."""
    pack_module = sys.modules[comfy.node_classes["SafetySteerLoadDirection"].__module__]
    return comfy, pack_module.load_pack(SHIPPED_PACKS["smollm2-135m"])


def encode(clip, text):
    import nodes

    (cond,) = nodes.CLIPTextEncode().encode(clip, text)
    return cond[0][0], cond[0][1].get("pooled_output")


def aligned_for(node, clip, tmp_path, monkeypatch):
    monkeypatch.setenv("SAFETY_STEER_CACHE", str(tmp_path))
    comfy, pack = node
    return comfy.node("SafetySteerFitCrossModelAlignment", clip=clip, direction=pack, method="ridge", anchors=60)[0]


def steer(node, clip, aligned, strength, **options):
    settings = {"direction": "global", "mode": "add", "gate": "none", "gate_threshold": -1.0, **options}
    return node[0].node(
        "SafetySteerApplyTextEncoder", clip=clip, aligned_direction=aligned, strength=strength, **settings
    )[0]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    "family",
    [
        "sd15",
        "sdxl",
        "flux",
        "wan",
        "hunyuan_video",
        "qwen_image",
        "z_image",
        "omnigen2",
        "hunyuan_video15",
        "hunyuan_image21",
        "flux2",
    ],
)
def test_steer_changes_conditioning_and_leaves_the_original_alone(node, tiny_clip, family, tmp_path, monkeypatch):
    clip = tiny_clip(family)
    aligned = aligned_for(node, clip, tmp_path, monkeypatch)
    baseline = [encode(clip, p) for p in PROMPTS]

    zero = steer(node, clip, aligned, 0.0)
    for prompt, (cond, pooled) in zip(PROMPTS, baseline):
        again = encode(zero, prompt)
        assert torch.equal(again[0], cond)  # strength 0: bit-identical
        assert (pooled is None) == (again[1] is None) and (pooled is None or torch.equal(again[1], pooled))

    steered = steer(node, clip, aligned, 2.0)
    for prompt, (cond, pooled) in zip(PROMPTS, baseline):
        cond_s, pooled_s = encode(steered, prompt)
        assert cond_s.shape == cond.shape and not torch.allclose(cond_s, cond)
        if family == "sdxl":  # the pooled vector SDXL reads (CLIP-G's) too
            assert not torch.allclose(pooled_s, pooled)
        if family == "sd15":  # SD1.5's UNet reads no pooled vector: left alone
            assert torch.equal(pooled_s, pooled)
        if family in ("qwen_image", "hunyuan_video15"):  # the closing chat template the DiT also reads keeps its values
            assert torch.equal(cond_s[:, -5:], cond[:, -5:]) and not torch.allclose(cond_s[:, :-5], cond[:, :-5])
        if family == "hunyuan_image21":  # its template closes with "<|im_end|>" only
            assert torch.equal(cond_s[:, -1:], cond[:, -1:]) and not torch.allclose(cond_s[:, :-1], cond[:, :-1])
        if family == "z_image":  # Z-Image's DiT reads the whole template: only the user's rows move
            assert torch.equal(cond_s[:, :3], cond[:, :3]) and torch.equal(cond_s[:, -5:], cond[:, -5:])
        if family == "omnigen2":  # the whole template too: the system turn and "<|im_end|>\n" keep their values
            assert torch.equal(cond_s[:, :23], cond[:, :23]) and torch.equal(cond_s[:, -2:], cond[:, -2:])
        if family == "flux2":  # the whole template too: the system prompt, [INST] and [/INST] keep their values
            start = [t[0] for t in clip.tokenize(prompt)["mistral3_24b"][0]].index(3) + 1
            assert torch.equal(cond_s[:, :start], cond[:, :start]) and torch.equal(cond_s[:, -1:], cond[:, -1:])
        # original CLIP unchanged afterwards, and no wrapper is left on the shared modules
        again = encode(clip, prompt)
        assert torch.equal(again[0], cond)
    sub_encoders = sys.modules[node[0].node_classes["SafetySteerApplyTextEncoder"].__module__].sub_encoders
    assert all("encode_token_weights" not in m.__dict__ for m in sub_encoders(clip).values())


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_padding_tokens_keep_their_values_and_steers_stack(node, tiny_clip, tmp_path, monkeypatch):
    clip = tiny_clip("sd15")
    aligned = aligned_for(node, clip, tmp_path, monkeypatch)
    cond, _ = encode(clip, "a red fox")
    once, _ = encode(steer(node, clip, aligned, 1.5), "a red fox")
    changed = (once - cond).abs().amax(-1)[0] > 0
    assert changed[1:4].all() and not changed[0] and not changed[5:].any()  # start, end and padding untouched
    # two steers stack (add mode, ungated, same tokens: strengths add up) instead of overwriting
    twice, _ = encode(steer(node, steer(node, clip, aligned, 1.0), aligned, 0.5), "a red fox")
    assert torch.allclose(twice, once, atol=1e-5)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_gate_spares_prompts_that_do_not_project_as_unsafe(node, tiny_clip, tmp_path, monkeypatch):
    clip = tiny_clip("sd15")
    aligned = aligned_for(node, clip, tmp_path, monkeypatch)
    cond, _ = encode(clip, PROMPTS[0])
    closed, _ = encode(steer(node, clip, aligned, 2.0, gate="target projection", gate_threshold=-6.0), PROMPTS[0])
    open_, _ = encode(steer(node, clip, aligned, 2.0, gate="none"), PROMPTS[0])
    assert (closed - cond).norm() < 0.05 * (open_ - cond).norm()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_source_llm_gate_reads_the_prompt_with_the_real_smollm2(node, tiny_clip, tmp_path, monkeypatch):
    """The pack's own source model (real SmolLM2) gates: an unsafe prompt is steered far more
    than a benign one, though the tiny target encoder itself knows nothing about safety."""
    clip = tiny_clip("sd15")
    aligned = aligned_for(node, clip, tmp_path, monkeypatch)
    assert aligned.source_gate is not None and aligned.source_gate.source_ref == "smollm2-135m"
    gated = steer(node, clip, aligned, 2.0, gate="source LLM")
    ungated = steer(node, clip, aligned, 2.0, gate="none")
    moved = {}
    for prompt in PROMPTS:
        cond, _ = encode(clip, prompt)
        moved[prompt] = float((encode(gated, prompt)[0] - cond).norm() / (encode(ungated, prompt)[0] - cond).norm())
    benign, unsafe = moved[PROMPTS[0]], moved[PROMPTS[1]]
    assert benign < 0.2 and unsafe > 0.5, moved
    # an empty prompt (the usual negative) is left exactly as it is, not an error
    empty, _ = encode(clip, "")
    assert torch.equal(encode(gated, "")[0], empty)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_direction_aligned_to_another_encoder_is_refused(node, tiny_clip, tmp_path, monkeypatch):
    sdxl, flux = tiny_clip("sdxl"), tiny_clip("flux")
    aligned = aligned_for(node, sdxl, tmp_path, monkeypatch)
    with pytest.raises(
        ValueError, match=r"aligned to SDXLClipModel \(encoders g, l\).*FluxClipModel_? \(encoders l, t5xxl\)"
    ):
        steer(node, flux, aligned, 1.0)
    with pytest.raises(ValueError, match="encoders with other weights: g, l"):
        steer(node, tiny_clip("sdxl", seed=5), aligned, 1.0)
    with pytest.raises(ValueError, match="Fit Cross-Model Alignment first"):
        steer(node, sdxl, node[1], 1.0)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_stacks_with_another_packs_weight_patch_on_the_same_clip(node, tiny_clip, tmp_path, monkeypatch):
    """A LoRA-style weight patch (what other packs put on a CLIP) before or after the steer: both act."""
    clip = tiny_clip("sd15")
    aligned = aligned_for(node, clip, tmp_path, monkeypatch)
    key = next(k for k in clip.get_key_patches() if k.endswith("mlp.fc1.weight"))

    def with_lora(c):
        patched = c.clone()
        weight = patched.get_key_patches()[key][0]
        weight = weight[0] if isinstance(weight, tuple) else weight
        patched.add_patches({key: (torch.ones_like(weight) * 0.05,)}, 1.0)
        return patched

    plain, _ = encode(clip, PROMPTS[1])
    lora_only, _ = encode(with_lora(clip), PROMPTS[1])
    steer_only, _ = encode(steer(node, clip, aligned, 2.0), PROMPTS[1])
    steer_then_lora, _ = encode(with_lora(steer(node, clip, aligned, 2.0)), PROMPTS[1])
    lora_then_steer, _ = encode(steer(node, with_lora(clip), aligned, 2.0), PROMPTS[1])
    for both in (steer_then_lora, lora_then_steer):
        assert not torch.allclose(both, lora_only) and not torch.allclose(both, steer_only)
    assert torch.allclose(steer_then_lora, lora_then_steer, atol=1e-5)
    assert torch.equal(encode(clip, PROMPTS[1])[0], plain)
