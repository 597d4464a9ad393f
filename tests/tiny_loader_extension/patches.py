"""The patches behind tests/tiny_loader_extension (test-only).

Stock ComfyUI 0.3.75 hard-codes full-size values while detecting model files, so tiny files fail
to load (or load wrongly). Three patches, all keyed on the exact tiny widths of tests/tiny_models.py:

1. Diffusion models: tiny subclasses of the families' ``comfy.supported_models`` classes are put
   at the front of ``comfy.supported_models.models``. Their ``unet_config`` matches only the tiny
   widths (e.g. Flux hidden_size 32; real Flux is 3072), and they replace the values detection
   hard-codes (Flux/HunyuanVideo heads and rope axes, HunyuanVideo vec_in_dim 768, Wan heads =
   dim // 128 and text_dim 4096) with the tiny ones (tiny_models.DETECTION_OVERRIDES). Wan 2.1
   and Wan 2.2 TI2V 5B files of the same tiny width are told apart by out_dim (16 / 48).
   SD1.5/SDXL need the subclass only to be recognised at all; SD3 loads stock. Qwen-Image's
   detection reads no width at all: its tiny class checks txt_in's width in the state dict.
   Z-Image's (Lumina 2's) sets heads, rope and modulation only for the real widths 2304 / 3840.
   Chroma's (Flux's, then its own) sets Flux's heads and rope and the approximator's full widths.
   Lumina Image 2.0's sets heads and rope only for its real width 2304. PixArt's reads no width
   (hard-coded 1152, T5 caption 4096): its tiny class checks the patch embedding in the state dict.
   OmniGen 2's reads nothing from the file (every width hard-coded): its tiny class checks
   x_embedder's width in the state dict and takes every value from the tiny config.
2. Text encoders: ``comfy.sd.load_text_encoder_state_dicts`` (CLIPLoader, DualCLIPLoader) and
   ``comfy.sd.load_state_dict_guess_config`` (CheckpointLoaderSimple) look at the state dicts; if
   they hold tiny encoders (CLIP/T5/Llama embeddings of tiny width), the tiny encoder configs are
   deep-merged into ``model_options`` when ``comfy.sd.CLIP`` is built for that load (a deep merge:
   ``load_clip`` itself sets ``clip_l_model_config={"max_position_embeddings": 77}``). A tiny
   Qwen2.5-VL encoder also gets ``qwen25_7b_class``: ComfyUI's class with a tiny vision tower
   (tiny_models.tiny_qwen25_class; the stock one is ~630M parameters whatever the file holds).
   ``comfy.sd.detect_te_model`` takes Mistral 3 for Flux.2's encoder only at the real width 5120:
   a tiny Mistral file (it carries its tekken tokenizer, as the real one) is routed to ComfyUI's
   30-layer Flux.2 encoder. Under transformers 5, tiny_models.install_mistral_converter_compat puts
   back the transformers 4.x tokenizer-converter API that ComfyUI's Flux.2 tokenizer calls.

3. The Wan 2.2 VAE: ``comfy.sd.VAE`` builds it at dim 160 / dec_dim 256 whatever the file holds;
   while a file with tiny_models.TINY_WAN22_VAE widths is loaded, ``vae2_2.WanVAE`` is built at
   those widths instead. HunyuanImage 2.1's VAE likewise (fixed block_out_channels; the tiny file's
   are tiny_models.TINY_HUNYUAN_IMAGE_VAE). A tiny Qwen2.5-VL encoder loaded as hunyuan_image /
   hunyuan_video_15 gets the tiny class of ComfyUI's HunyuanImage Qwen class (hidden layer -3), and a
   tiny byT5-small (1472 wide like the real one, tiny depth) gets tiny_models.TINY_BYT5.

The file-format details (CLIP-G's layer-30 key, T5-XXL's block-23 key) are in tiny_models.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import importlib.util
import sys
from pathlib import Path

_TINY_MODELS_NAME = "safety_steer_tiny_models"


def tiny_models():
    """tests/tiny_models.py (one module for conftest and this extension, loaded by path)."""
    if _TINY_MODELS_NAME not in sys.modules:
        path = Path(__file__).resolve().parent.parent / "tiny_models.py"
        spec = importlib.util.spec_from_file_location(_TINY_MODELS_NAME, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[_TINY_MODELS_NAME] = module
        spec.loader.exec_module(module)
    return sys.modules[_TINY_MODELS_NAME]


# --- 1. diffusion models --------------------------------------------------------------------------


def tiny_model_classes() -> list[type]:
    """Tiny subclasses of comfy.supported_models classes, matching only tiny_models' widths."""
    import comfy.supported_models as sm

    tm = tiny_models()
    configs = tm.UNET_CONFIGS

    def with_overrides(base: type, family: str, match: dict) -> type:
        overrides = tm.DETECTION_OVERRIDES.get(family, {})

        def __init__(self, unet_config):
            base.__init__(self, {**unet_config, **copy.deepcopy(overrides)})

        return type(
            f"Tiny{base.__name__}", (base,), {"unet_config": match, "__init__": __init__, "__module__": __name__}
        )

    sd15, sdxl = configs["sd15"], configs["sdxl"]

    # Qwen-Image's detection reads in_channels and num_layers only, neither of them a width: the
    # tiny class looks at the text projection's width in the state dict (and never matches without one).
    tiny_qwen = with_overrides(sm.QwenImage, "qwen_image", {"image_model": "qwen_image"})

    def qwen_matches(cls, unet_config, state_dict=None):
        weight = (state_dict or {}).get("txt_in.weight")
        return (
            sm.QwenImage.matches.__func__(cls, unet_config, state_dict)
            and weight is not None
            and weight.shape[-1] == configs["qwen_image"]["joint_attention_dim"]
        )

    tiny_qwen.matches = classmethod(qwen_matches)

    # PixArt's detection reads no width either (it hard-codes 1152): the tiny class reads the patch
    # embedding's width from the state dict.
    tiny_pixart = with_overrides(sm.PixArtSigma, "pixart", {"image_model": "pixart_sigma"})

    def pixart_matches(cls, unet_config, state_dict=None):
        weight = (state_dict or {}).get("x_embedder.proj.weight")
        return (
            sm.PixArtSigma.matches.__func__(cls, unet_config, state_dict)
            and weight is not None
            and weight.shape[0] == configs["pixart"]["hidden_size"]
        )

    tiny_pixart.matches = classmethod(pixart_matches)

    # OmniGen 2's detection hard-codes every value (width 2520): the tiny class reads x_embedder's width.
    tiny_omnigen2 = with_overrides(sm.Omnigen2, "omnigen2", {"image_model": "omnigen2"})

    def omnigen2_matches(cls, unet_config, state_dict=None):
        weight = (state_dict or {}).get("x_embedder.weight")
        return (
            sm.Omnigen2.matches.__func__(cls, unet_config, state_dict)
            and weight is not None
            and weight.shape[0] == configs["omnigen2"]["hidden_size"]
        )

    tiny_omnigen2.matches = classmethod(omnigen2_matches)
    return [
        with_overrides(
            sm.SD15,
            "sd15",
            {
                key: sd15[key]
                for key in (
                    "context_dim",
                    "model_channels",
                    "use_linear_in_transformer",
                    "adm_in_channels",
                    "use_temporal_attention",
                )
            },
        ),
        with_overrides(
            sm.SDXL,
            "sdxl",
            {
                key: sdxl[key]
                for key in (
                    "model_channels",
                    "use_linear_in_transformer",
                    "transformer_depth",
                    "context_dim",
                    "adm_in_channels",
                    "use_temporal_attention",
                )
            },
        ),
        with_overrides(sm.Flux, "flux", {"image_model": "flux", "hidden_size": configs["flux"]["hidden_size"]}),
        with_overrides(
            sm.HunyuanVideo,
            "hunyuan_video",
            {
                "image_model": "hunyuan_video",
                "hidden_size": configs["hunyuan_video"]["hidden_size"],
                "context_in_dim": configs["hunyuan_video"]["context_in_dim"],
            },
        ),
        # Wan 2.1 (16 latent channels) and Wan 2.2 TI2V 5B (48) share the tiny width: out_dim tells them apart.
        with_overrides(
            sm.WAN22_T2V,
            "wan22",
            {"image_model": "wan2.1", "model_type": "t2v", "dim": configs["wan22"]["dim"], "out_dim": 48},
        ),
        with_overrides(
            sm.WAN21_T2V,
            "wan",
            {"image_model": "wan2.1", "model_type": "t2v", "dim": configs["wan"]["dim"], "out_dim": 16},
        ),
        tiny_qwen,
        # HunyuanVideo 1.5 and HunyuanImage 2.1 (HunyuanVideo's detection: heads = width // 128, rope
        # axes for full widths); told apart by the SigLIP vision input that only HunyuanVideo 1.5 has
        with_overrides(
            sm.HunyuanVideo15,
            "hunyuan_video15",
            {
                "image_model": "hunyuan_video",
                "hidden_size": configs["hunyuan_video15"]["hidden_size"],
                "context_in_dim": configs["hunyuan_video15"]["context_in_dim"],
                "vision_in_dim": 1152,
            },
        ),
        with_overrides(
            sm.HunyuanImage21,
            "hunyuan_image21",
            {
                "image_model": "hunyuan_video",
                "hidden_size": configs["hunyuan_image21"]["hidden_size"],
                "context_in_dim": configs["hunyuan_image21"]["context_in_dim"],
                "patch_size": [1, 1],
                "vec_in_dim": None,
                "vision_in_dim": None,
            },
        ),
        with_overrides(sm.ZImage, "z_image", {"image_model": "lumina2", "dim": configs["z_image"]["dim"]}),
        # Chroma's detection hard-codes Flux's heads and rope axes and the approximator's full widths
        with_overrides(sm.Chroma, "chroma", {"image_model": "chroma", "hidden_size": configs["chroma"]["hidden_size"]}),
        with_overrides(sm.Lumina2, "lumina2", {"image_model": "lumina2", "dim": configs["lumina2"]["dim"]}),
        tiny_pixart,
        with_overrides(
            sm.CosmosT2IPredict2,
            "cosmos_predict2",
            {"image_model": "cosmos_predict2", "model_channels": configs["cosmos_predict2"]["model_channels"]},
        ),
        # AuraFlow's config (supported_models.AuraFlow) matches the real text width 2048 only
        with_overrides(sm.AuraFlow, "auraflow", {"cond_seq_dim": configs["auraflow"]["cond_seq_dim"]}),
        tiny_omnigen2,
        # Flux.2's detection hard-codes 48 heads and rope axes [32, 32, 32, 32]
        with_overrides(sm.Flux2, "flux2", {"image_model": "flux2", "hidden_size": configs["flux2"]["hidden_size"]}),
    ]


# --- 2. text encoders -----------------------------------------------------------------------------


def tiny_encoder_options(state_dicts, clip_type=None) -> dict:
    """The tiny encoder configs to merge into model_options for these state dicts ({} if none
    of them holds a tiny encoder). Recognised by embedding width alone, whatever the key prefix.
    ``clip_type`` (the loader's comfy.sd.CLIPType) picks the tiny Qwen2.5-VL class: HunyuanImage 2.1
    and HunyuanVideo 1.5 read it at hidden layer -3, Qwen-Image at the last layer."""
    tm = tiny_models()
    options: dict = {}
    hunyuan = getattr(clip_type, "name", None) in ("HUNYUAN_IMAGE", "HUNYUAN_VIDEO_15")
    for sd in state_dicts:
        for key, value in sd.items():
            shape = getattr(value, "shape", None)
            if shape is None or len(shape) != 2:
                continue
            if key.endswith("token_embedding.weight") and shape[1] == tm.TINY_CLIP["hidden_size"]:
                options["clip_l_model_config"] = dict(tm.TINY_CLIP)
                options["clip_g_model_config"] = dict(tm.TINY_CLIP)
            elif key.endswith("shared.weight") and shape[1] == tm.TINY_T5["d_model"]:
                options["t5xxl_model_config"] = {**tm.TINY_T5, "vocab_size": int(shape[0])}
                options["umt5xxl_model_config"] = {**tm.TINY_T5, "vocab_size": int(shape[0])}
                options["pile_t5xl_model_config"] = {**tm.TINY_T5, "vocab_size": int(shape[0])}
            elif (
                key.endswith("encoder.block.0.layer.1.DenseReluDense.wi_0.weight")
                and shape[0] == tm.TINY_BYT5["d_ff"]
                and shape[1] == 1472
            ):
                options["_model_config"] = dict(tm.TINY_BYT5)  # byT5-small (built with no model name)
            elif key.endswith("embed_tokens.weight") and shape[1] == tm.TINY_LLAMA["hidden_size"]:
                options["llama_model_config"] = {**tm.TINY_LLAMA, "vocab_size": int(shape[0])}
            elif key.endswith("embed_tokens.weight") and shape[1] in (
                tm.TINY_QWEN25["hidden_size"],
                tm.TINY_QWEN25_3B["hidden_size"],
                tm.TINY_QWEN3["hidden_size"],
                tm.TINY_GEMMA2["hidden_size"],
            ):
                prefix = key[: -len("embed_tokens.weight")]
                # ComfyUI tells them apart the same way (comfy.sd.detect_te_model)
                if f"{prefix}layers.0.post_feedforward_layernorm.weight" in sd:
                    if shape[1] == tm.TINY_GEMMA2["hidden_size"]:
                        options["gemma2_2b_model_config"] = {**tm.TINY_GEMMA2, "vocab_size": int(shape[0])}  # Gemma 2
                elif (
                    f"{prefix}layers.0.self_attn.k_proj.bias" in sd
                    and sd[f"{prefix}layers.0.self_attn.k_proj.bias"].shape[0] == 256  # 2 KV heads x 128: 3B
                    and shape[1] == tm.TINY_QWEN25_3B["hidden_size"]
                ):
                    options["qwen25_3b_model_config"] = {**tm.TINY_QWEN25_3B, "vocab_size": int(shape[0])}  # OmniGen 2
                elif f"{prefix}layers.0.self_attn.k_proj.bias" in sd and shape[1] == tm.TINY_QWEN25["hidden_size"]:
                    options["qwen25_7b_model_config"] = {**tm.TINY_QWEN25, "vocab_size": int(shape[0])}
                    # Qwen2.5 (q/k/v biases)
                    options["qwen25_7b_class"] = tm.tiny_qwen25_class("hunyuan_image" if hunyuan else "qwen_image")
                elif f"{prefix}layers.0.self_attn.q_norm.weight" in sd and shape[1] == tm.TINY_QWEN3["hidden_size"]:
                    options["qwen3_4b_model_config"] = {**tm.TINY_QWEN3, "vocab_size": int(shape[0])}  # Qwen3
                elif "tekken_model" in sd and shape[1] == tm.TINY_MISTRAL3["hidden_size"]:  # Mistral 3 (Flux.2)
                    options["mistral3_24b_model_config"] = {**tm.TINY_MISTRAL3, "vocab_size": int(shape[0])}
    return options


def deep_merge(base: dict, extra: dict) -> dict:
    """A copy of ``base`` with ``extra`` merged in, dicts merged key by key (extra wins)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


_PENDING: contextvars.ContextVar[dict | None] = contextvars.ContextVar("tiny_encoder_options", default=None)


# --- 3. the Wan 2.2 VAE ---------------------------------------------------------------------------

_WAN22_VAE: contextvars.ContextVar[dict | None] = contextvars.ContextVar("tiny_wan22_vae", default=None)


def tiny_wan22_vae_widths(sd) -> dict | None:
    """{"dim", "dec_dim"} when ``sd`` is a Wan 2.2 VAE of tiny_models' tiny widths, else None.
    comfy.sd.VAE builds every Wan 2.2 VAE at dim 160 / dec_dim 256, whatever the file holds."""
    tm = tiny_models()
    if not isinstance(sd, dict) or "decoder.upsamples.0.upsamples.0.residual.2.weight" not in sd:
        return None
    encoder, head = sd.get("encoder.conv1.weight"), sd.get("decoder.head.0.gamma")
    if encoder is None or head is None:
        return None
    widths = {"dim": int(encoder.shape[0]), "dec_dim": int(head.shape[0])}
    return widths if widths == tm.TINY_WAN22_VAE else None


def patched_wan22_vae_class(original: type) -> type:
    """A subclass of vae2_2.WanVAE built at the tiny widths while a tiny file is being loaded."""

    class TinyAwareWanVAE(original):
        def __init__(self, *args, **kwargs):
            widths = _WAN22_VAE.get()
            if widths:
                kwargs.update(widths)
            super().__init__(*args, **kwargs)

    TinyAwareWanVAE.__name__ = TinyAwareWanVAE.__qualname__ = original.__name__
    TinyAwareWanVAE._tiny_loader_patch = True
    return TinyAwareWanVAE


_HUNYUAN_IMAGE_VAE: contextvars.ContextVar[dict | None] = contextvars.ContextVar("tiny_hy_image_vae", default=None)


def tiny_hunyuan_image_vae_widths(sd) -> dict | None:
    """{"block_out_channels"} when ``sd`` is a HunyuanImage 2.1 VAE (64 latent channels) whose decoder
    input is tiny_models' tiny width, else None (the real one's is 1024)."""
    tm = tiny_models()
    weight = sd.get("decoder.conv_in.weight") if isinstance(sd, dict) else None
    if weight is None or weight.ndim != 4 or weight.shape[1] != 64:
        return None
    widths = tm.TINY_HUNYUAN_IMAGE_VAE
    return dict(widths) if weight.shape[0] == widths["block_out_channels"][-1] else None


def patched_hunyuan_image_vae_class(original: type) -> type:
    """A subclass of hunyuan_video.vae.Encoder / Decoder built at the tiny widths while a tiny file loads."""

    class TinyAware(original):
        def __init__(self, *args, **kwargs):
            widths = _HUNYUAN_IMAGE_VAE.get()
            if widths:
                kwargs.update(widths)
            super().__init__(*args, **kwargs)

    TinyAware.__name__ = TinyAware.__qualname__ = original.__name__
    TinyAware._tiny_loader_patch = True
    return TinyAware


def patched_vae_init(original_init):
    @functools.wraps(original_init)
    def vae_init(self, sd=None, *args, **kwargs):
        widths = tiny_wan22_vae_widths(sd)
        hunyuan_image = tiny_hunyuan_image_vae_widths(sd)
        if widths is None and hunyuan_image is None:
            return original_init(self, sd, *args, **kwargs)
        token = _WAN22_VAE.set(widths)
        token_hy = _HUNYUAN_IMAGE_VAE.set(hunyuan_image)
        try:
            return original_init(self, sd, *args, **kwargs)
        finally:
            _HUNYUAN_IMAGE_VAE.reset(token_hy)
            _WAN22_VAE.reset(token)

    vae_init._tiny_loader_patch = True
    return vae_init


def _with_tiny_encoders(load, get_state_dicts, get_clip_type=lambda *args, **kwargs: None):
    @functools.wraps(load)
    def wrapper(*args, **kwargs):
        options = tiny_encoder_options(get_state_dicts(*args, **kwargs), get_clip_type(*args, **kwargs))
        if not options:
            return load(*args, **kwargs)
        token = _PENDING.set(options)
        try:
            return load(*args, **kwargs)
        finally:
            _PENDING.reset(token)

    wrapper._tiny_loader_patch = True
    return wrapper


def patched_attributes() -> list[tuple[object, str, object]]:
    """(object, attribute, new value) for every patch, computed from the current (unpatched)
    ComfyUI; ``install`` sets them for good, a test can set them with monkeypatch instead."""
    import comfy.ldm.hunyuan_video.vae
    import comfy.ldm.wan.vae2_2
    import comfy.sd
    import comfy.supported_models as sm

    original_init = comfy.sd.CLIP.__init__

    @functools.wraps(original_init)
    def clip_init(
        self, target=None, embedding_directory=None, no_init=False, tokenizer_data={}, parameters=0, model_options={}
    ):
        options = _PENDING.get()
        if options and not no_init:
            model_options = deep_merge(model_options, options)
        original_init(
            self,
            target=target,
            embedding_directory=embedding_directory,
            no_init=no_init,
            tokenizer_data=tokenizer_data,
            parameters=parameters,
            model_options=model_options,
        )

    original_detect = comfy.sd.detect_te_model

    @functools.wraps(original_detect)
    def detect_te_model(sd):
        # ComfyUI takes a Mistral 3 file for Flux.2's encoder only at the real width 5120 (else for
        # Llama 3 8B): a tiny one (with its tekken tokenizer) is the 30-layer "pruned" kind, as a real
        # file without a layer 39 is.
        width = getattr(sd.get("model.layers.0.post_attention_layernorm.weight"), "shape", [None])[0]
        if "tekken_model" in sd and width == tiny_models().TINY_MISTRAL3["hidden_size"]:
            return comfy.sd.TEModel.MISTRAL3_24B_PRUNED_FLUX2
        return original_detect(sd)

    # ComfyUI 0.3.75 builds Flux.2's tokenizer with transformers 4.x's MistralConverter API (see there)
    tiny_models().install_mistral_converter_compat()
    return [
        # model_detection reads comfy.supported_models.models at each call: a new list is enough.
        (sm, "models", tiny_model_classes() + list(sm.models)),
        (comfy.sd.CLIP, "__init__", clip_init),
        # load_text_encoder_state_dicts looks detect_te_model up in comfy.sd at each call
        (comfy.sd, "detect_te_model", detect_te_model),
        # comfy.sd.VAE looks WanVAE up in the module at each call: a subclass there is enough.
        (comfy.ldm.wan.vae2_2, "WanVAE", patched_wan22_vae_class(comfy.ldm.wan.vae2_2.WanVAE)),
        # comfy.sd.VAE names HunyuanImage 2.1's encoder/decoder by module path (instantiate_from_config)
        (
            comfy.ldm.hunyuan_video.vae,
            "Encoder",
            patched_hunyuan_image_vae_class(comfy.ldm.hunyuan_video.vae.Encoder),
        ),
        (
            comfy.ldm.hunyuan_video.vae,
            "Decoder",
            patched_hunyuan_image_vae_class(comfy.ldm.hunyuan_video.vae.Decoder),
        ),
        (comfy.sd.VAE, "__init__", patched_vae_init(comfy.sd.VAE.__init__)),
        (
            comfy.sd,
            "load_text_encoder_state_dicts",
            _with_tiny_encoders(
                comfy.sd.load_text_encoder_state_dicts,
                lambda state_dicts=[], *args, **kwargs: state_dicts,
                lambda state_dicts=[], embedding_directory=None, clip_type=None, *args, **kwargs: clip_type,
            ),
        ),
        (
            comfy.sd,
            "load_state_dict_guess_config",
            _with_tiny_encoders(comfy.sd.load_state_dict_guess_config, lambda sd, *args, **kwargs: [sd]),
        ),
    ]


def install() -> None:
    """Patch the running ComfyUI (once per process)."""
    import comfy.sd

    if getattr(comfy.sd, "_tiny_loader_installed", False):
        return
    for target, attribute, value in patched_attributes():
        setattr(target, attribute, value)
    comfy.sd._tiny_loader_installed = True
