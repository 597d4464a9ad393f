"""Real SmolLM2-135M weights in ComfyUI's own Llama class reproduce what ``evaluate --target-layer
consumed`` measures with transformers: the same hidden states at the layer HunyuanVideo's encoder
hands to its diffusion model (hidden layer -3), and the same pooled features.

The float copy the project caches (``load_text_model("smollm2-135m")``) is a transformers LlamaModel;
its state dict loads key for key into ``comfy.text_encoders.llama.Llama2_`` built from a
``Llama2Config`` with the sizes of the HF config. ``Llama2Config.head_dim`` is a class attribute
(128, not a dataclass field, so no config dict can change it); SmolLM2 has 64 (576 / 9 heads): it is
set on the config instance before the module is built, which every layer and the rotary table read."""

from __future__ import annotations

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
