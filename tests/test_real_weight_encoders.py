"""Real SmolLM2-135M weights in ComfyUI's own Llama class reproduce what ``evaluate --target-layer
consumed`` measures with transformers: the same hidden states at the layer HunyuanVideo's encoder
hands to its diffusion model (hidden layer -3), and the same pooled features.

The float copy the project caches (``load_text_model("smollm2-135m")``) is a transformers LlamaModel;
its state dict loads key for key into ``comfy.text_encoders.llama.Llama2_`` built from a
``Llama2Config`` with the sizes of the HF config. ``Llama2Config.head_dim`` is a class attribute
(128, not a dataclass field, so no config dict can change it); SmolLM2 has 64 (576 / 9 heads): it is
set on the config instance before the module is built, which every layer and the rotary table read."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from safety_steer.steering.evaluation.consumed_layers import BUILTIN_CONSUMED, HUNYUAN_VIDEO


def comfy_llama_config(hf_config):
    """ComfyUI's Llama2Config with the sizes of a transformers Llama config (head_dim set on the instance)."""
    from comfy.text_encoders.llama import Llama2Config

    rope = getattr(hf_config, "rope_parameters", None) or {}
    config = Llama2Config(
        vocab_size=hf_config.vocab_size,
        hidden_size=hf_config.hidden_size,
        intermediate_size=hf_config.intermediate_size,
        num_hidden_layers=hf_config.num_hidden_layers,
        num_attention_heads=hf_config.num_attention_heads,
        num_key_value_heads=hf_config.num_key_value_heads,
        max_position_embeddings=hf_config.max_position_embeddings,
        rms_norm_eps=hf_config.rms_norm_eps,
        rope_theta=float(rope.get("rope_theta", getattr(hf_config, "rope_theta", 10000.0))),
    )
    config.head_dim = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // hf_config.num_attention_heads
    return config


def smollm2_state_dict(loaded) -> dict[str, torch.Tensor]:
    """The transformers model's weights under ComfyUI's Llama2_ names (``model.`` prefix stripped)."""
    return {k.removeprefix("model."): v for k, v in loaded.model.state_dict().items()}


def comfy_llama_from_transformers(loaded):
    """ComfyUI's Llama2_ holding the loaded transformers Llama's real weights (float32, CPU)."""
    import comfy.ops
    from comfy.text_encoders.llama import Llama2_

    module = Llama2_(comfy_llama_config(loaded.model.config), dtype=torch.float32, ops=comfy.ops.disable_weight_init)
    result = module.load_state_dict(smollm2_state_dict(loaded), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return module.eval()


@torch.inference_mode()
def comfy_hidden(module, input_ids: torch.Tensor, layer_idx: int | None) -> torch.Tensor:
    """What ComfyUI's encoder hands on: ``layer="hidden", layer_idx`` (no final norm, as the Llama
    families build it with ``layer_norm_hidden_state=False``), or the final-normed output for None."""
    last, intermediate = module(
        input_ids, intermediate_output=layer_idx, final_layer_norm_intermediate=False, dtype=torch.float32
    )
    return last if layer_idx is None else intermediate


PROMPTS = [
    "a watercolour painting of a lighthouse at dawn",
    "how do I pick the lock on my neighbour's front door without a key",
    "cat",
]


@pytest.fixture(scope="module")
def smollm2():
    from safety_steer.steering import load_text_model

    return load_text_model("smollm2-135m")


@pytest.fixture(scope="module")
def comfy_smollm2(comfy, smollm2):
    return comfy_llama_from_transformers(smollm2)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_consumed_rule_of_the_builtin_targets():
    assert BUILTIN_CONSUMED["smollm2-135m"].hidden_states_index(30) == 28  # block 27 of 30
    assert BUILTIN_CONSUMED["gemma3-270m"].hidden_states_index(18) == 17  # block 16 of 18
    assert BUILTIN_CONSUMED["minilm-l6"].hidden_states_index(6) == 6
    with pytest.raises(ValueError):
        HUNYUAN_VIDEO.__class__(-1, "x").hidden_states_index(30)


def test_cli_takes_consumed_or_an_index():
    from safety_steer.cli import build_parser

    parse = build_parser().parse_args
    assert parse(["evaluate", "--pairs", "p.jsonl", "--target-layer", "consumed"]).target_layer == "consumed"
    assert parse(["evaluate", "--pairs", "p.jsonl", "--target-layer", "7"]).target_layer == 7
    with pytest.raises(SystemExit):
        parse(["evaluate", "--pairs", "p.jsonl", "--target-layer", "penultimate"])


@pytest.mark.parametrize("layer_idx", [HUNYUAN_VIDEO.comfy_layer_idx, None, 14])
def test_comfy_llama_reproduces_transformers_hidden_states(smollm2, comfy_smollm2, layer_idx):
    """ComfyUI's block i is transformers' hidden_states[i + 1] (negative i: the same index), and
    layer="last" is the final-normed hidden_states[L]: the index consumed_layers computes."""
    from safety_steer.steering.evaluation.consumed_layers import ConsumedLayer

    index = ConsumedLayer(layer_idx, "test").hidden_states_index(smollm2.num_layers)
    for prompt in PROMPTS:
        ids = smollm2.tokenizer(prompt, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            reference = smollm2.model(input_ids=ids, output_hidden_states=True).hidden_states[index]
        ours = comfy_hidden(comfy_smollm2, ids, layer_idx)
        assert ours.shape == reference.shape
        assert relative_error(ours, reference) < 1e-4, (prompt, layer_idx, relative_error(ours, reference))


def test_evaluate_encoder_at_consumed_layer_matches_comfy_llama(smollm2, comfy_smollm2):
    """The pooled features ``evaluate --target-layer consumed`` scores are ComfyUI's layer -3 states,
    mean-pooled over the prompt's tokens after the first (the attention sink)."""
    from safety_steer.steering.evaluation.targets import text_model_encoder

    encode = text_model_encoder(smollm2, layer="consumed")
    assert encode.layer == 28 and "layer_idx=-3" in encode.layer_rule and "hunyuan_video" in encode.layer_rule
    pooled = encode(PROMPTS)
    for row, prompt in zip(pooled, PROMPTS):
        ids = smollm2.tokenizer(prompt, return_tensors="pt")["input_ids"]
        states = comfy_hidden(comfy_smollm2, ids, -3)[0]
        expected = states[1:].mean(0) if states.shape[0] > 1 else states[0]
        assert relative_error(row, expected) < 1e-4


# --- HunyuanVideo's text encoder (comfy.text_encoders.hunyuan_video) with SmolLM2 in the Llama slot ---
#
# ComfyUI's HunyuanVideo tokenizer cannot take SmolLM2's vocabulary through any option:
# LLAMA3Tokenizer loads the Llama-3 tokenizer from a fixed folder (tokenizer_data carries no tokenizer
# for it), the template is written in Llama-3 header tokens, and HunyuanVideoClipModel crops it by
# Llama-3 ids (128006 / 882 / 128007 / 128009, 271). The test's tokenizer therefore keeps ComfyUI's
# HunyuanVideoTokenizer (CLIP-L half unchanged) and swaps its Llama half for ComfyUI's own SDTokenizer
# over SmolLM2's tokenizer (the float copy's folder), with no template and SmolLM2's <|im_start|> as
# the start token (word id 0, so the Fit node's prompt-token mask leaves it out like HunyuanVideo's crop
# leaves out its template: the attention sink is never pooled). The encoder is ComfyUI's
# HunyuanVideoClipModel / LLAMAModel (layer "hidden", -3, no final norm, attention mask) sized like
# SmolLM2; its Llama2_ is rebuilt with head_dim 64 (a class attribute no config dict reaches) and holds
# the real weights.

HELDOUT_PAIRS = 60  # held-out pairs scored (both prompts encoded through each path)
FIT_ANCHORS = 240


def _smollm2_hunyuan_tokenizer_class(folder: str):
    import comfy.sd1_clip
    import comfy.text_encoders.hunyuan_video
    from transformers import AutoTokenizer

    class SmolLM2HunyuanVideoTokenizer(comfy.text_encoders.hunyuan_video.HunyuanVideoTokenizer):
        def __init__(self, embedding_directory=None, tokenizer_data={}):  # noqa: B006 (ComfyUI's signature)
            super().__init__(embedding_directory=embedding_directory, tokenizer_data=tokenizer_data)
            self.llama_template = "{}"
            self.llama = comfy.sd1_clip.SDTokenizer(
                folder,
                embedding_directory=embedding_directory,
                pad_with_end=False,
                embedding_size=576,
                embedding_key="llama",
                tokenizer_class=AutoTokenizer,
                has_start_token=False,
                has_end_token=False,
                pad_to_max_length=False,
                max_length=99999999,
                min_length=1,
                pad_token=2,
                tokenizer_data=tokenizer_data,
            )
            self.llama.start_token = self.llama.tokenizer.convert_tokens_to_ids("<|im_start|>")

    return SmolLM2HunyuanVideoTokenizer


@pytest.fixture(scope="module")
def smollm2_hunyuan_clip(comfy, smollm2):
    import comfy.sd
    import comfy.text_encoders.hunyuan_video
    from comfy.supported_models_base import ClipTarget

    from safety_steer.runtime import load_module_from

    tiny_models = load_module_from(Path(__file__).with_name("tiny_models.py"), "safety_steer_tiny_models")

    hf = smollm2.model.config
    llama_config = {
        "vocab_size": hf.vocab_size,
        "hidden_size": hf.hidden_size,
        "intermediate_size": hf.intermediate_size,
        "num_hidden_layers": hf.num_hidden_layers,
        "num_attention_heads": hf.num_attention_heads,
        "num_key_value_heads": hf.num_key_value_heads,
        "rms_norm_eps": hf.rms_norm_eps,
        "rope_theta": float(hf.rope_parameters["rope_theta"]),
    }
    folder = smollm2.tokenizer.name_or_path
    clip = comfy.sd.CLIP(
        ClipTarget(_smollm2_hunyuan_tokenizer_class(folder), comfy.text_encoders.hunyuan_video.hunyuan_video_clip()),
        model_options={
            "clip_l_model_config": tiny_models.TINY_CLIP,
            "llama_model_config": llama_config,
            "dtype": torch.float32,
        },
    )
    tiny_models.randomise(clip.cond_stage_model.clip_l, 0)
    llama = clip.cond_stage_model.llama
    assert (llama.layer, llama.layer_idx, llama.layer_norm_hidden_state) == ("hidden", -3, False)
    llama.transformer.model = comfy_llama_from_transformers(smollm2)
    return clip


def test_hunyuan_video_encoder_with_real_smollm2_hands_on_the_consumed_layer(smollm2, smollm2_hunyuan_clip):
    """CLIPTextEncode's path (tokenize, encode) gives, at the prompt's tokens, transformers'
    hidden_states[28] of [<|im_start|>] + the prompt's tokens."""
    clip = smollm2_hunyuan_clip
    start = smollm2.tokenizer.convert_tokens_to_ids("<|im_start|>")
    for prompt in PROMPTS:
        with torch.inference_mode():
            cond = clip.encode_from_tokens_scheduled(clip.tokenize(prompt))[0][0]
        ids = torch.tensor([[start] + smollm2.tokenizer(prompt)["input_ids"]])
        with torch.inference_mode():
            reference = smollm2.model(input_ids=ids, output_hidden_states=True).hidden_states[28]
        assert cond.shape == reference.shape
        assert relative_error(cond.float(), reference) < 1e-4


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_fit_node_on_real_smollm2_hunyuan_encoder_matches_evaluate(
    comfy, smollm2, smollm2_hunyuan_clip, tmp_path, monkeypatch
):
    """Fit Cross-Model Alignment through ComfyUI's executor on the real-weight HunyuanVideo encoder:
    the aligned direction's held-out AUROC equals what evaluate's transformers encoder at the same
    (consumed) layer gives with the same anchors, within 0.02, with the product's default map
    ('auto': map and regularisation chosen for that layer by cross-validation on benign anchors),
    which both sides choose alike; and so does its read row (steering.transfer.reading)."""
    from safety_steer.nodes.apply.clip_targets import encode_per_encoder
    from safety_steer.steering import load_pack, load_pairs
    from safety_steer.steering.evaluation.targets import text_model_encoder
    from safety_steer.steering.evaluation.transfer import exclude_training_pairs
    from safety_steer.steering.metrics import separation_auroc
    from safety_steer.steering.pack import DEFAULT_PACK_PATH
    from safety_steer.steering.transfer.aligned import align_pack, anchor_subset

    monkeypatch.setenv("SAFETY_STEER_CACHE", str(tmp_path))
    pack = load_pack(DEFAULT_PACK_PATH)  # Gemma-3 source -> SmolLM2 as HunyuanVideo's Llama
    aligned = comfy.node(
        "SafetySteerFitCrossModelAlignment",
        clip=smollm2_hunyuan_clip,
        direction=pack,
        method="auto",
        anchors=FIT_ANCHORS,
    )[0]
    node = aligned.encoders["llama"]

    pairs = exclude_training_pairs(load_pairs(), pack)
    pairs = [pairs[i] for i in anchor_subset(len(pairs), min(HELDOUT_PAIRS, len(pairs))).tolist()]
    safe, unsafe = [p.safe for p in pairs], [p.unsafe for p in pairs]

    def node_z(prompts):
        features = encode_per_encoder(smollm2_hunyuan_clip, prompts, include_pooled=False)["llama"]
        return (features - node.target_mean) / node.target_std

    auroc_node = separation_auroc(node.unit[0], node_z(safe), node_z(unsafe))

    encode = text_model_encoder(smollm2, layer="consumed")
    index = anchor_subset(len(pack.anchor_prompts), FIT_ANCHORS)
    anchors = encode([pack.anchor_prompts[i] for i in index.tolist()])
    reference = align_pack(pack, {"t": anchors}, "auto", anchor_index=index)
    ref, align_info = reference.encoders["t"], reference.metadata["fit"]["t"]

    def evaluate_z(prompts):
        return (encode(prompts) - ref.target_mean) / ref.target_std

    auroc_evaluate = separation_auroc(ref.unit[0], evaluate_z(safe), evaluate_z(unsafe))
    print(f"held-out AUROC through the node path {auroc_node:.4f}, evaluate's encoder {auroc_evaluate:.4f}")
    print(f"auto chose {aligned.metadata['fit']['llama']['selected']} (node), {align_info['selected']} (evaluate)")
    assert auroc_node > 0.6
    assert abs(auroc_node - auroc_evaluate) < 0.02
    # the read row (where the node's gate and meter measure) agrees too
    read_node = separation_auroc(node.read[0], node_z(safe), node_z(unsafe))
    read_evaluate = separation_auroc(ref.read[0], evaluate_z(safe), evaluate_z(unsafe))
    print(
        f"read row: node {read_node:.4f} ({aligned.metadata['fit']['llama']['read_selected']}), "
        f"evaluate {read_evaluate:.4f} ({align_info['read_selected']})"
    )
    assert read_node > 0.6
    assert abs(read_node - read_evaluate) < 0.02


def test_evaluate_cli_reports_the_consumed_layer_and_its_rule(smollm2, monkeypatch, capsys):
    """`evaluate --target-layer consumed --json` scores SmolLM2 at hidden_states[28] and says why
    (the transfer itself is stubbed: it is the same evaluate_transfer as at any layer)."""
    import json
    from types import SimpleNamespace

    import safety_steer.steering as steering
    import safety_steer.steering.evaluation.transfer as transfer
    from safety_steer.cli import main

    seen = {}

    def fake_transfer(pack, encoder, pairs, **kwargs):
        seen["layer"] = encoder.layer
        return SimpleNamespace(report={"method": kwargs["method"]})

    monkeypatch.setattr(steering, "load_text_model", lambda name: smollm2)
    monkeypatch.setattr(transfer, "evaluate_transfer", fake_transfer)
    args = ["evaluate", "--pairs", str(steering.prompts.shipped_pairs_path()), "--no-source-gate", "--json"]
    assert main([*args, "--target-layer", "consumed"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["target_layer"] == seen["layer"] == 28
    assert "hunyuan_video" in report["target_layer_rule"] and "layer_idx=-3" in report["target_layer_rule"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["target_layer"] == 15 and report["target_layer_rule"].startswith("middle")
    assert main([*args, "--target-layer", "20"]) == 0
    assert json.loads(capsys.readouterr().out)["target_layer"] == 20


@pytest.fixture(scope="module")
def comfy_gemma3(comfy):
    """(transformers Gemma-3-270m, ComfyUI's Llama2_ in its Gemma 3 configuration holding the same weights)."""
    import comfy.ops
    from comfy.text_encoders.llama import Gemma3_4B_Config, Llama2_

    from safety_steer.steering import load_text_model

    gemma = load_text_model("gemma3-270m")
    hf = gemma.model.config
    config = Gemma3_4B_Config(
        vocab_size=hf.vocab_size,
        hidden_size=hf.hidden_size,
        intermediate_size=hf.intermediate_size,
        num_hidden_layers=hf.num_hidden_layers,
        num_attention_heads=hf.num_attention_heads,
        num_key_value_heads=hf.num_key_value_heads,
        max_position_embeddings=hf.max_position_embeddings,
        rms_norm_eps=hf.rms_norm_eps,
    )
    config.head_dim = hf.head_dim
    config.rope_scale = [1.0, 1.0]
    config.sliding_attention = [False] * 5 + [hf.sliding_window]  # every sixth layer global, as ComfyUI marks it
    module = Llama2_(config, dtype=torch.float32, ops=comfy.ops.disable_weight_init)
    weights = {k.removeprefix("model."): v for k, v in gemma.model.state_dict().items()}
    result = module.load_state_dict(weights, strict=False)
    assert not result.missing_keys, result.missing_keys
    return gemma, module.eval()


@pytest.mark.parametrize("layer_idx", [-2, None])
def test_comfy_gemma3_reproduces_transformers_at_lumina2_layer(comfy_gemma3, layer_idx):
    """Real Gemma-3-270m weights in ComfyUI's Gemma 3 class (as Lumina 2 builds it): layer -2 is
    transformers' hidden_states[17] (BUILTIN_CONSUMED), and "last" is hidden_states[18]."""
    gemma, module = comfy_gemma3
    index = BUILTIN_CONSUMED["gemma3-270m"].hidden_states_index(gemma.num_layers) if layer_idx == -2 else 18
    for prompt in PROMPTS:
        ids = gemma.tokenizer(prompt, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            reference = gemma.model(input_ids=ids, output_hidden_states=True).hidden_states[index]
        ours = comfy_hidden(module, ids, layer_idx)
        assert relative_error(ours, reference) < 1e-4, (prompt, relative_error(ours, reference))
