"""Target encoders for evaluation: a transformers text model at one layer, pooled like the source."""

from __future__ import annotations

from ..extraction.features import extract_features
from ..extraction.sources import LoadedModel


def default_target_layer(model: LoadedModel) -> int:
    """Middle block: on the models measured here middle layers carried the safety contrast better
    than the last one (which was the worst space even for a natively fitted direction)."""
    return model.num_layers // 2


def text_model_encoder(model: LoadedModel, layer: int | str | None = None, pooling: str = "mean", batch_size: int = 32):
    """An Encoder at ``layer``: a transformers ``hidden_states`` index, None for the middle block, or
    ``"consumed"`` for the layer the ComfyUI family that uses this model as its text encoder hands to
    its diffusion model (see ``consumed_layers``). ``encode.layer`` is the index used and
    ``encode.layer_rule`` says how it was chosen."""
    if layer == "consumed":
        from .consumed_layers import consumed_layer

        reading = consumed_layer(model)
        layer = reading.hidden_states_index(model.num_layers)
        rule = reading.rule(model.num_layers)
    elif layer is None:
        layer = default_target_layer(model)
        rule = f"middle: transformers hidden_states[{layer}] of 0..{model.num_layers}"
    else:
        layer = int(layer)
        rule = f"given: transformers hidden_states[{layer}]"

    def encode(prompts: list[str]):
        return extract_features(
            model.model,
            model.tokenizer,
            prompts,
            [layer],
            pooling=pooling,
            batch_size=batch_size,
            skip_first_token=model.is_decoder,
        )[layer]

    encode.layer = layer
    encode.layer_rule = rule
    return encode


def memoized(encode):
    """Encode each distinct prompt once across calls (benchmarks run several maps per target)."""
    memo: dict[str, object] = {}

    def cached(prompts: list[str]):
        import torch

        missing = list(dict.fromkeys(p for p in prompts if p not in memo))
        if missing:
            for prompt, row in zip(missing, encode(missing)):
                memo[prompt] = row
        return torch.stack([memo[p] for p in prompts])

    cached.layer = getattr(encode, "layer", None)
    cached.layer_rule = getattr(encode, "layer_rule", None)
    return cached


def pack_source_encoder(pack, progress=None):
    """The pack's own source LLM as an encoder at the pack's layer and pooling, or None when the
    model the pack names (``source_ref``) cannot be loaded here."""
    from ..errors import SourceModelError
    from ..extraction.source_models import load_source

    ref = pack.metadata.get("source_ref")
    if not ref:
        return None
    try:
        model = load_source(ref, pack.metadata.get("source_weights_sha256"))
    except SourceModelError as exc:
        if progress:
            progress(f"source model {ref!r} not available here ({exc}); the source-detector gate is skipped")
        return None
    return text_model_encoder(model, layer=int(pack.metadata["layer"]), pooling=pack.metadata["pooling"])


def pack_detector_gate(pack):
    """The pack's trained detector as the product runs it (prompt -> gate value, long prompts read in
    windows), or None for a pack without one."""
    if pack.detector is None:
        return None
    from ..application.source_gate import SourceGate

    gate = SourceGate.from_pack(pack)
    return lambda prompts: gate.gate_values(prompts, 0)
