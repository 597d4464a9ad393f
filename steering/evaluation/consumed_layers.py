"""The layer of a text model that a ComfyUI diffusion family consumes, as a transformers index.

Our transfer figures were first measured at a target's middle layer, but each family's steer acts
on the layer its diffusion model reads from the text encoder. ``evaluate --target-layer consumed``
measures there instead. The rule per built-in target (ComfyUI 0.3.75, ``comfy/text_encoders/``):

- ``gemma3-270m``: Gemma-3 as Lumina 2's encoder (``lumina2.py``, ``Gemma3_4BModel``:
  ``layer="hidden", layer_idx=-2``): the penultimate hidden layer.
- ``smollm2-135m``: a Llama as HunyuanVideo's encoder (``hunyuan_video.py``, ``LLAMAModel``:
  ``layer="hidden", layer_idx=-3``).
- ``qwen2`` models: Qwen-Image's encoder, read at its last layer (``qwen_image.py``); HunyuanImage 2.1
  and HunyuanVideo 1.5 read the same Qwen2.5-VL 7B at ``layer="hidden", layer_idx=-3``
  (``hunyuan_image.py``, ``HUNYUAN_QWEN25``).
- ``minilm-l6``: an encoder, read at its last layer like T5-XXL (Flux, SD3, Wan, LTX-Video) and
  CLIP-L in SD1.5 without clip skip (``sd1_clip.py``: ``layer="last"``).
- No built-in target is a Mistral: Flux.2 reads Mistral 3 Small 24B at three layers at once
  (``flux.py``, ``Mistral3_24BModel``: ``layer=[10, 20, 30]``; ``Llama2_.forward`` with a list keeps
  each listed block's *input*, so transformers' ``hidden_states[10]``, ``[20]`` and ``[30]``, un-normed)
  and concatenates them per token (``Flux2TEModel``): the space the product aligns and steers in
  (``nodes/apply/clip_targets.token_features``). A single-layer rule cannot describe it.

Index semantics, checked against ``comfy/text_encoders/llama.py`` (``Llama2_.forward``) and
``comfy/sd1_clip.py`` (``SDClipModel.forward``):

- ComfyUI's ``intermediate_output = i`` (``layer="hidden", layer_idx=i``) is the output of block
  ``i`` (0-based); a negative ``i`` counts from the end: block ``L + i`` of ``L`` blocks. These
  families build the encoder with ``layer_norm_hidden_state=False``, so the final norm is *not*
  applied to that block output.
- transformers' ``hidden_states`` has ``L + 1`` entries: ``hidden_states[0]`` is the embedding
  output and ``hidden_states[j + 1]`` is the output of block ``j``, except that the last entry
  ``hidden_states[L]`` is the final-normed output (``last_hidden_state``) in decoders.
- So ComfyUI's block ``i`` is transformers' ``hidden_states[i + 1]`` and, for negative ``i``,
  ``hidden_states[i]`` (``L + i + 1``; the same negative index). That holds for ``i <= -2``; ComfyUI's
  ``layer_idx=-1`` with ``layer="hidden"`` (un-normed last block) has no transformers counterpart and
  is refused here. ComfyUI's ``layer="last"`` is the final-normed output, ``hidden_states[L]``.
- For an encoder without a final norm (BERT / MiniLM, T5's encoder is normed in both) the last
  layer is ``hidden_states[L]`` directly. (transformers' CLIP ``hidden_states[-1]`` is *before* CLIP's
  ``final_layer_norm``, which ComfyUI applies for ``layer="last"``; not a MiniLM concern.)

``tests/test_real_weight_encoders.py`` checks this on real weights: ComfyUI's own ``Llama2_`` holding
SmolLM2 at ``intermediate_output=-3`` (also inside HunyuanVideo's encoder) and holding Gemma-3-270m in
its Gemma 3 form at ``-2`` equal transformers' ``hidden_states`` at the index computed here.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SourceModelError


@dataclass(frozen=True)
class ConsumedLayer:
    """How a ComfyUI family reads a text encoder: ``comfy_layer_idx`` None means ``layer="last"``."""

    comfy_layer_idx: int | None
    family: str  # which ComfyUI family / encoder class reads it, and where that is written

    def hidden_states_index(self, num_layers: int) -> int:
        """The non-negative transformers ``hidden_states`` index of the same tensor."""
        if self.comfy_layer_idx is None:
            return num_layers
        i = self.comfy_layer_idx
        if i == -1:
            raise ValueError("ComfyUI's un-normed last block (hidden, -1) has no transformers hidden_states index.")
        if not -num_layers <= i < num_layers:
            raise ValueError(f"ComfyUI layer_idx {i} does not exist in a model with {num_layers} blocks.")
        return i + 1 if i >= 0 else num_layers + i + 1

    def rule(self, num_layers: int) -> str:
        index = self.hidden_states_index(num_layers)
        if self.comfy_layer_idx is None:
            where = f'ComfyUI layer="last" = transformers hidden_states[{index}] (last of {num_layers} blocks)'
        else:
            block = self.comfy_layer_idx % num_layers
            where = (
                f'ComfyUI layer="hidden", layer_idx={self.comfy_layer_idx} = output of block {block} of '
                f"{num_layers} = transformers hidden_states[{index}]"
            )
        return f"consumed: {self.family}; {where}"


LUMINA2 = ConsumedLayer(-2, "Gemma as Lumina 2's encoder (comfy/text_encoders/lumina2.py)")
HUNYUAN_VIDEO = ConsumedLayer(-3, "Llama as HunyuanVideo's encoder (comfy/text_encoders/hunyuan_video.py)")
Z_IMAGE = ConsumedLayer(-2, "Qwen3 as Z-Image's encoder (comfy/text_encoders/z_image.py)")
#: Both read the final-normed last layer: comfy/text_encoders/omnigen2.py (Qwen25_3BModel, layer="last",
#: Qwen25_3BConfig.final_norm) and qwen_image.py (Qwen25_7BVLIModel, layer="last").
QWEN25_LAST = ConsumedLayer(None, "Qwen2.5 as OmniGen 2 / Qwen-Image's encoder (last layer)")
#: HunyuanImage 2.1 and HunyuanVideo 1.5 read the same Qwen2.5-VL 7B at hidden layer -3
#: (comfy/text_encoders/hunyuan_image.py, ``Qwen25_7BVLIModel``: ``layer="hidden", layer_idx=-3``); a
#: ``qwen2`` target stands in for Qwen-Image's encoder by default (MODEL_TYPE_CONSUMED), so measuring
#: these families' layer takes ``--target-layer`` with this index.
HUNYUAN_QWEN25 = ConsumedLayer(-3, "Qwen2.5-VL as HunyuanImage 2.1 / HunyuanVideo 1.5's encoder (hunyuan_image.py)")
ENCODER_LAST = ConsumedLayer(None, "an encoder read at its last layer, like T5-XXL (Flux, SD3, Wan) or CLIP-L (SD1.5)")

#: Built-in target name -> the family whose encoder slot that model stands in for.
BUILTIN_CONSUMED = {
    "gemma3-270m": LUMINA2,
    "smollm2-135m": HUNYUAN_VIDEO,
    "minilm-l6": ENCODER_LAST,
}

#: transformers ``model_type`` -> family, for targets that are not built-in names.
MODEL_TYPE_CONSUMED = {
    "gemma2": LUMINA2,
    "gemma3": LUMINA2,
    "gemma3_text": LUMINA2,
    "llama": HUNYUAN_VIDEO,
    "qwen3": Z_IMAGE,
    "qwen2": QWEN25_LAST,
}


def consumed_layer(model) -> ConsumedLayer:
    """The ComfyUI reading rule for a LoadedModel: by built-in name, else by model type (decoders),
    else the last layer for encoders."""
    if model.name in BUILTIN_CONSUMED:
        return BUILTIN_CONSUMED[model.name]
    model_type = getattr(getattr(model.model, "config", None), "model_type", None)
    if model_type in MODEL_TYPE_CONSUMED:
        return MODEL_TYPE_CONSUMED[model_type]
    if not model.is_decoder:
        return ENCODER_LAST
    raise SourceModelError(
        f"No ComfyUI family is known to consume {model.name!r} (model type {model_type!r}) as its text encoder; "
        "give --target-layer N instead of 'consumed'."
    )
