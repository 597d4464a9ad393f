"""SafetySteerFitCrossModelAlignment on tiny random-weight CLIP-L, CLIP-G, T5 and umT5 encoders built from
ComfyUI's own classes, run through the real ComfyUI executor."""

from __future__ import annotations

import sys
import time

import pytest
import torch

from safety_steer.steering import load_pack
from safety_steer.steering.pack import DEFAULT_PACK_PATH


@pytest.fixture(scope="module")
def pack():
    return load_pack(DEFAULT_PACK_PATH)


@pytest.mark.parametrize(
    "family,expected",
    [
        ("sd15", {"l": 32}),  # SD1.5/SDXL never read CLIP-L's pooled vector
        ("sdxl", {"l": 32, "g": 32, "g.pooled": 32}),
        ("flux", {"l": 32, "t5xxl": 32}),
        ("wan", {"umt5xxl": 32}),
        ("hunyuan_video", {"l": 32, "llama": 256}),
        ("qwen_image", {"qwen25_7b": 32}),
        ("z_image", {"qwen3_4b": 32}),
        ("omnigen2", {"qwen25_3b": 32}),
        ("hunyuan_video15", {"qwen25_7b": 32}),  # byT5 (quoted text only) is no feature space
        ("hunyuan_image21", {"qwen25_7b": 32}),
        ("flux2", {"mistral3_24b": 96}),  # hidden states 10, 20 and 30 side by side, as Flux.2 reads them
    ],
)
def test_per_encoder_features_and_alignment(comfy, tiny_clip, pack, family, expected):
    from safety_steer.nodes.apply.clip_targets import encode_per_encoder
    from safety_steer.steering.transfer.aligned import align_pack, anchor_subset

    clip = tiny_clip(family)
    index = anchor_subset(len(pack.anchor_prompts), 60)
    prompts = [pack.anchor_prompts[i] for i in index.tolist()]
    features = encode_per_encoder(clip, prompts)
    assert {k: v.shape[1] for k, v in features.items() if k in expected} == expected
    assert all(v.shape[0] == len(prompts) and torch.isfinite(v).all() for v in features.values())
    with pytest.warns(UserWarning, match="under-determined"):
        aligned = align_pack(pack, {k: features[k] for k in expected}, "ridge", anchor_index=index)
    for key, enc in aligned.encoders.items():
        assert enc.unit.shape == (len(pack.names), expected[key])
        assert torch.allclose(enc.unit.norm(dim=1), torch.ones(len(pack.names)), atol=1e-4)
        assert (enc.calibrated.norm(dim=1) > 0).all()


def alignment_graph(family: str, anchors: int = 80, method: str = "ridge", seed: int = 0) -> dict:
    return {
        "1": {"class_type": "SafetySteerLoadDirection", "inputs": {"pack": DEFAULT_PACK_PATH.name}},
        "2": {"class_type": "TinyTestCLIP", "inputs": {"family": family, "seed": seed}},
        "3": {
            "class_type": "SafetySteerFitCrossModelAlignment",
            "inputs": {"clip": ["2", 0], "direction": ["1", 0], "method": method, "anchors": anchors},
        },
        "4": {"class_type": "SafetySteerDirectionInfo", "inputs": {"direction": ["3", 0]}},
    }


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("family", ["sdxl", "flux", "wan"])
def test_node_fits_in_a_real_graph_and_caches_on_disk(comfy, tiny_clip_node, family, tmp_path, monkeypatch):
    monkeypatch.setenv("SAFETY_STEER_CACHE", str(tmp_path))
    first = comfy.run(alignment_graph(family))
    text = "".join(first["4"]["text"])
    assert "with ridge on 80 benign anchors" in text
    for key in {"sdxl": ("l:", "g:", "g.pooled"), "flux": ("l:", "t5xxl:"), "wan": ("umt5xxl:",)}[family]:
        assert key in text
    cached = list((tmp_path / "alignments").glob("*.safetensors"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns

    # the copy of the pack that ComfyUI loaded (from custom_nodes), not the test's own import
    node_module = sys.modules[comfy.node_classes["SafetySteerFitCrossModelAlignment"].__module__]
    calls = []
    original = node_module.encode_per_encoder
    monkeypatch.setattr(node_module, "encode_per_encoder", lambda *a, **k: calls.append(1) or original(*a, **k))
    started = time.perf_counter()
    second = comfy.run(alignment_graph(family))
    print(f"{family}: cached second run {time.perf_counter() - started:.2f} s")
    assert second["4"]["text"] == first["4"]["text"] and not calls
    assert cached[0].stat().st_mtime_ns == stamp

    # other settings or other encoder weights are a different fit
    comfy.run(alignment_graph(family, anchors=60))
    assert calls, "a new setting must refit (and the spy must see the node's calls)"
    comfy.run(alignment_graph(family, seed=1))
    assert len(list((tmp_path / "alignments").glob("*.safetensors"))) == 3


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_node_rejects_an_already_aligned_direction(comfy, tiny_clip_node, tiny_clip, tmp_path, monkeypatch):
    """An aligned direction is another socket type than a pack: the link is refused in validation
    (and, should one arrive anyway, the node itself refuses it)."""
    monkeypatch.setenv("SAFETY_STEER_CACHE", str(tmp_path))
    graph = alignment_graph("sd15", anchors=40)
    graph["5"] = {
        "class_type": "SafetySteerFitCrossModelAlignment",
        "inputs": {"clip": ["2", 0], "direction": ["3", 0], "method": "ridge", "anchors": 40},
    }
    graph["6"] = {"class_type": "SafetySteerDirectionInfo", "inputs": {"direction": ["5", 0]}}
    del graph["4"]  # the only output left is the one fed by the wrong link
    valid, _, _, node_errors = comfy.validate(graph)
    assert valid is False
    assert "received_type(ALIGNED_SAFETY_DIRECTION) mismatch input_type(SAFETY_DIRECTION_PACK)" in str(node_errors)
    clip = tiny_clip("sd15")
    fit = {"clip": clip, "method": "ridge", "anchors": 40}
    (aligned,) = comfy.node("SafetySteerFitCrossModelAlignment", direction=load_pack(DEFAULT_PACK_PATH), **fit)
    with pytest.raises(ValueError, match="already aligned"):
        comfy.node("SafetySteerFitCrossModelAlignment", direction=aligned, **fit)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_auto_map_through_the_executor_chooses_per_encoder_and_matches_the_library(
    comfy, tiny_clip, pack, tmp_path, monkeypatch
):
    """The node's default map, 'auto', fits each sub-encoder with the candidate (ridge penalty, Procrustes
    size, CCA) whose carried direction scores best on benign anchor halves, exactly as align_pack does."""
    from safety_steer.nodes.apply.clip_targets import encode_per_encoder
    from safety_steer.steering.transfer.aligned import align_pack, anchor_subset

    monkeypatch.setenv("SAFETY_STEER_CACHE", str(tmp_path))
    clip = tiny_clip("flux")
    (aligned,) = comfy.node("SafetySteerFitCrossModelAlignment", clip=clip, direction=pack, method="auto", anchors=60)
    assert aligned.metadata["method"] == "auto"
    index = anchor_subset(len(pack.anchor_prompts), 60)
    features = encode_per_encoder(clip, [pack.anchor_prompts[i] for i in index.tolist()])
    library = align_pack(pack, {k: features[k] for k in aligned.encoders}, "auto", anchor_index=index)
    for key, encoder in aligned.encoders.items():
        info = aligned.metadata["fit"][key]
        assert info["selection_scores"][info["selected"]] == max(info["selection_scores"].values())
        assert info["selected"] == library.metadata["fit"][key]["selected"]
        assert torch.allclose(encoder.unit, library.encoders[key].unit, atol=1e-4)


def test_unknown_encoder_is_a_clear_error(comfy, tiny_clip):
    from safety_steer.nodes.apply.clip_targets import UnsupportedEncoderError, sub_encoders

    clip = tiny_clip("sd15")
    original = clip.tokenizer.tokenize_with_weights
    # ACE-Step's umT5-base encoder (an audio model): a key ComfyUI has that the pack does not steer
    clip.tokenizer.tokenize_with_weights = lambda text, *a, **k: {"umt5base": original(text, *a, **k)["l"]}
    with pytest.raises(
        UnsupportedEncoderError,
        match=r"'umt5base'.*Supported encoders: l, g, t5xxl, umt5xxl, llama, qwen25_7b, qwen3_4b, gemma2_2b, "
        r"pile_t5xl, .*mistral3_24b.* \(CLIP-L, .*Pile-T5-XL, .*Mistral 3 Small 24B",
    ):
        sub_encoders(clip)


def test_llama_features_pool_the_prompt_not_hunyuans_template(comfy, tiny_clip):
    from safety_steer.nodes.apply.clip_targets import prompt_token_mask, sub_encoders

    clip = tiny_clip("hunyuan_video")
    llama = sub_encoders(clip)["llama"]
    mask = prompt_token_mask("llama", llama, clip.tokenize("a red fox", return_word_ids=True)["llama"])
    longer = prompt_token_mask(
        "llama", llama, clip.tokenize("a red fox jumps over a frozen river at dawn", return_word_ids=True)["llama"]
    )
    assert 2 <= int(mask.sum()) <= 5 and len(mask) > 90  # ~95 template tokens left out
    assert int(longer.sum()) - int(mask.sum()) >= 5


def test_qwen_image_features_are_the_prompt_tokens_the_diffusion_model_reads(comfy, tiny_clip):
    """Qwen-Image: the whole chat template is encoded, ComfyUI crops the system turn and hands the
    DiT the last layer from the user's text on (user text + "<|im_end|>\\n<|im_start|>assistant\\n").
    The fitted features are the mean of exactly the user's rows of that conditioning."""
    import nodes
    from safety_steer.nodes.apply.clip_targets import encode_per_encoder, prompt_token_mask, sub_encoders

    clip = tiny_clip("qwen_image")
    prompt = "a red fox jumps over a frozen river at dawn"
    tokens = clip.tokenize(prompt, return_word_ids=True)["qwen25_7b"]
    mask = prompt_token_mask("qwen25_7b", sub_encoders(clip)["qwen25_7b"], tokens)
    ids = [t[0] for section in tokens for t in section]
    assert clip.tokenizer.qwen25_7b.tokenizer.decode([i for i, m in zip(ids, mask.tolist()) if m]) == prompt
    (cond,) = nodes.CLIPTextEncode().encode(clip, prompt)
    hidden = cond[0][0][0]
    n_prompt = int(mask.sum())
    assert hidden.shape[0] == n_prompt + 5  # the system turn is cropped, the closing template stays
    features = encode_per_encoder(clip, [prompt])["qwen25_7b"][0]
    torch.testing.assert_close(features, hidden[:n_prompt].mean(0))
    empty = prompt_token_mask("qwen25_7b", None, clip.tokenize("", return_word_ids=True)["qwen25_7b"])
    assert not empty.any()  # an empty user turn has no prompt tokens to steer


@pytest.mark.parametrize("family,closing", [("hunyuan_video15", 5), ("hunyuan_image21", 1)])
def test_hunyuan_features_are_the_prompt_tokens_at_the_layer_the_diffusion_model_reads(
    comfy, tiny_clip, family, closing
):
    """HunyuanVideo 1.5 / HunyuanImage 2.1: ComfyUI's HunyuanImage stack encodes the chat template with
    Qwen2.5-VL at hidden layer -3, crops the system turn and hands the DiT the user's rows plus the
    closing template (5 / 1 tokens). The fitted features are the mean of exactly the user's rows."""
    import nodes
    from safety_steer.nodes.apply.clip_targets import encode_per_encoder, prompt_token_mask, sub_encoders

    clip = tiny_clip(family)
    encoder = sub_encoders(clip)["qwen25_7b"]
    assert set(sub_encoders(clip)) == {"qwen25_7b"} and (encoder.layer, encoder.layer_idx) == ("hidden", -3)
    prompt = 'a red fox jumps over a frozen river at dawn, a sign reading "THIN ICE"'
    tokens = clip.tokenize(prompt, return_word_ids=True)
    assert "byt5" in tokens  # the quoted words also go to the glyph encoder, which no feature space covers
    mask = prompt_token_mask("qwen25_7b", encoder, tokens["qwen25_7b"])
    ids = [t[0] for section in tokens["qwen25_7b"] for t in section]
    assert clip.tokenizer.qwen25_7b.tokenizer.decode([i for i, m in zip(ids, mask.tolist()) if m]) == prompt
    (cond,) = nodes.CLIPTextEncode().encode(clip, prompt)
    hidden, n_prompt = cond[0][0][0], int(mask.sum())
    assert hidden.shape[0] == n_prompt + closing
    features = encode_per_encoder(clip, [prompt])
    assert set(features) == {"qwen25_7b"}
    torch.testing.assert_close(features["qwen25_7b"][0], hidden[:n_prompt].mean(0))


def test_z_image_features_are_the_prompt_tokens_at_the_layer_the_diffusion_model_reads(comfy, tiny_clip):
    """Z-Image: the DiT reads every token of the chat template ("<|im_start|>user\\n" + text +
    "<|im_end|>\\n<|im_start|>assistant\\n") at hidden layer -2, with an attention mask. The fitted
    features are the mean of exactly the user's rows of that conditioning."""
    import nodes
    from safety_steer.nodes.apply.clip_targets import encode_per_encoder, prompt_token_mask, sub_encoders

    clip = tiny_clip("z_image")
    encoder = sub_encoders(clip)["qwen3_4b"]
    assert (encoder.layer, encoder.layer_idx) == ("hidden", -2)
    prompt = "a red fox jumps over a frozen river at dawn"
    tokens = clip.tokenize(prompt, return_word_ids=True)["qwen3_4b"]
    mask = prompt_token_mask("qwen3_4b", encoder, tokens)
    ids = [t[0] for section in tokens for t in section]
    assert clip.tokenizer.qwen3_4b.tokenizer.decode([i for i, m in zip(ids, mask.tolist()) if m]) == prompt
    (cond,) = nodes.CLIPTextEncode().encode(clip, prompt)
    hidden, options = cond[0][0][0], cond[0][1]
    assert hidden.shape[0] == len(ids) == int(mask.sum()) + 8 and options["attention_mask"].shape == (1, len(ids))
    assert mask[:3].sum() == 0 and mask[-5:].sum() == 0  # "<|im_start|>user\\n" ... "assistant\\n"
    features = encode_per_encoder(clip, [prompt])["qwen3_4b"][0]
    torch.testing.assert_close(features, hidden[mask].mean(0))


def test_omnigen2_features_are_the_prompt_tokens_of_the_whole_template(comfy, tiny_clip):
    """OmniGen 2: the DiT reads every token of its chat template (its own system turn, then
    "<|im_start|>user\\n" + text + "<|im_end|>\\n") at the last layer, nothing cropped. The fitted
    features are the mean of exactly the user's rows of that conditioning."""
    import nodes
    from safety_steer.nodes.apply.clip_targets import encode_per_encoder, prompt_token_mask, sub_encoders

    clip = tiny_clip("omnigen2")
    encoder = sub_encoders(clip)["qwen25_3b"]
    assert encoder.layer == "last"
    prompt = "a red fox jumps over a frozen river at dawn"
    tokens = clip.tokenize(prompt, return_word_ids=True)["qwen25_3b"]
    mask = prompt_token_mask("qwen25_3b", encoder, tokens)
    ids = [t[0] for section in tokens for t in section]
    assert clip.tokenizer.qwen25_3b.tokenizer.decode([i for i, m in zip(ids, mask.tolist()) if m]) == prompt
    (cond,) = nodes.CLIPTextEncode().encode(clip, prompt)
    hidden, options = cond[0][0][0], cond[0][1]
    assert hidden.shape[0] == len(ids) == int(mask.sum()) + 25 and options["attention_mask"].shape == (1, len(ids))
    assert mask[:23].sum() == 0 and mask[-2:].sum() == 0  # system turn + "<|im_start|>user\\n"; "<|im_end|>\\n"
    features = encode_per_encoder(clip, [prompt])["qwen25_3b"][0]
    torch.testing.assert_close(features, hidden[mask].mean(0))


def test_flux2_features_are_the_prompt_tokens_of_the_concatenated_states(comfy, tiny_clip):
    """Flux.2: the DiT reads every token of its template ("[SYSTEM_PROMPT]...[/SYSTEM_PROMPT][INST]" +
    text + "[/INST]") as Mistral 3 Small's hidden states 10, 20 and 30 side by side. The fitted
    features are the mean of exactly the user's rows of that concatenated conditioning."""
    import nodes
    from safety_steer.nodes.apply.clip_targets import encode_per_encoder, prompt_token_mask, sub_encoders

    clip = tiny_clip("flux2")
    encoder = sub_encoders(clip)["mistral3_24b"]
    assert encoder.layer == [10, 20, 30]
    prompt = "a red fox jumps over a frozen river at dawn"
    tokens = clip.tokenize(prompt, return_word_ids=True)["mistral3_24b"]
    mask = prompt_token_mask("mistral3_24b", encoder, tokens)
    ids = [t[0] for section in tokens for t in section]
    assert clip.tokenizer.mistral3_24b.tokenizer.decode([i for i, m in zip(ids, mask.tolist()) if m]) == prompt
    (cond,) = nodes.CLIPTextEncode().encode(clip, prompt)
    hidden, options = cond[0][0][0], cond[0][1]
    assert hidden.shape == (len(ids), 3 * 32) and options["attention_mask"].shape == (1, len(ids))
    assert mask[: ids.index(3) + 1].sum() == 0 and not mask[-1]  # the system prompt and [INST]; [/INST]
    features = encode_per_encoder(clip, [prompt])["mistral3_24b"][0]
    torch.testing.assert_close(features, hidden[mask].mean(0))
