"""Which diffusion models the MODEL application point supports, and how it reaches their text.

UNets (SD1.5, SDXL): an attn2 patch, which sees the text context of every cross-attention.
DiTs (SD3.x, Flux, Chroma, Flux.2, Wan, HunyuanVideo, HunyuanVideo 1.5, HunyuanImage 2.1, LTX-Video,
Qwen-Image, Z-Image, Lumina 2, PixArt,
AuraFlow, Cosmos Predict2, OmniGen 2): a keyed APPLY_MODEL
wrapper, which sees the text conditioning (c_crossattn) before the model's own text projection.
Both stack with other patches and wrappers and survive ModelPatcher.clone().
"""

from __future__ import annotations

import comfy.model_base as model_base
import comfy.supported_models as supported_models
from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

from ...steering.errors import SafetySteerError

#: (model_base class, label, attribute path to the Linear that first reads the text context)
DIT_MODELS = (
    (model_base.SD3, "SD3 / SD3.5", "context_embedder"),
    (model_base.Flux, "Flux", "txt_in"),
    # model_base.Chroma subclasses Flux (T5 only, no pooled vector): the most derived class matches
    (model_base.Chroma, "Chroma", "txt_in"),
    # model_base.Flux2 subclasses Flux too: Mistral 3 Small's hidden states 10/20/30 side by side per
    # token (3 x 5120 = 15360 wide) go into txt_in, left-padded with zeros to 512 tokens
    (model_base.Flux2, "Flux.2", "txt_in"),
    # Wan 2.1, Wan 2.2 T2V/I2V 14B (ComfyUI loads them as WAN21) and Wan 2.2 TI2V 5B (WAN22, a subclass)
    (model_base.WAN21, "Wan 2.x", "text_embedding.0"),
    (model_base.HunyuanVideo, "HunyuanVideo", "txt_in.input_embedder"),
    # HunyuanVideo 1.5 (a HunyuanVideo subclass; its 1080p super-resolution model subclasses it in
    # turn) and HunyuanImage 2.1 (with its refiner, a subclass): the same DiT code and token refiner,
    # reading Qwen2.5-VL 7B tokens (hidden layer -3). The byT5 glyph stream of quoted text enters
    # through byt5_in, beside c_crossattn: not steered.
    (model_base.HunyuanVideo15, "HunyuanVideo 1.5", "txt_in.input_embedder"),
    (model_base.HunyuanImage21, "HunyuanImage 2.1", "txt_in.input_embedder"),
    (model_base.LTXV, "LTX-Video", "caption_projection.linear_1"),
    # txt_norm (an RMSNorm) reads the context first, then txt_in
    (model_base.QwenImage, "Qwen-Image", "txt_in"),
    # model_base.Lumina2 runs Z-Image (Qwen3-4B) and Lumina Image 2.0 (Gemma 2 2B): the config tells them apart
    (model_base.Lumina2, "Z-Image", "cap_embedder.1"),
    (model_base.Lumina2, "Lumina 2", "cap_embedder.1"),
    # PixArt Alpha and Sigma: the caption MLP (y_embedder.y_proj) reads the T5 tokens
    (model_base.PixArt, "PixArt", "y_embedder.y_proj.fc1"),
    (model_base.AuraFlow, "AuraFlow", "cond_seq_linear"),
    # Cosmos Predict2 (text-to-image and image-to-video): no text projection; every block's
    # cross-attention reads the T5 tokens (block 0's key projection gives the width)
    (model_base.CosmosPredict2, "Cosmos Predict2", "blocks.0.cross_attn.k_proj"),
    # OmniGen 2: caption_embedder = (RMSNorm, Linear): the norm reads the context first, then the Linear
    (model_base.Omnigen2, "OmniGen 2", "time_caption_embed.caption_embedder.1"),
)
#: Labels whose model_base class other families share: the model config class must match too (the
#: most derived config wins: supported_models.ZImage subclasses Lumina2).
CONFIG_CLASSES = {"Z-Image": supported_models.ZImage, "Lumina 2": supported_models.Lumina2}
#: Subclasses of a supported model_base class that are other families (other text encoders, or a
#: pixel-space model never tested here): refused, not taken for their parent.
OTHER_FAMILIES = tuple(getattr(model_base, name) for name in ("ChromaRadiance",) if hasattr(model_base, name))
SUPPORTED_MODELS = ("SD1.5", "SDXL", *(label for _, label, _ in DIT_MODELS))
#: The text encoders whose tokens each model's text stream is made of (any one set must be aligned).
TEXT_STREAM_ENCODERS = {
    "SD1.5": ({"l"},),
    "SDXL": ({"l", "g"}, {"g"}),
    "SD3 / SD3.5": ({"l", "g"}, {"t5xxl"}),
    "Flux": ({"t5xxl"},),
    "Chroma": ({"t5xxl"},),
    "Flux.2": ({"mistral3_24b"},),
    "Wan 2.x": ({"umt5xxl"},),
    "HunyuanVideo": ({"llama"},),
    "HunyuanVideo 1.5": ({"qwen25_7b"},),
    "HunyuanImage 2.1": ({"qwen25_7b"},),
    "LTX-Video": ({"t5xxl"},),
    "Qwen-Image": ({"qwen25_7b"},),
    "Z-Image": ({"qwen3_4b"},),
    "Lumina 2": ({"gemma2_2b"},),
    "PixArt": ({"t5xxl"},),
    "AuraFlow": ({"pile_t5xl"},),
    "Cosmos Predict2": ({"t5xxl"},),
    "OmniGen 2": ({"qwen25_3b"},),
}


class UnsupportedModelError(SafetySteerError):
    pass


def model_kind(model) -> tuple[str, str]:
    """("unet" | "dit", label) for a ModelPatcher; an unsupported model is an error listing the supported ones."""
    base = model.model
    if isinstance(getattr(base, "diffusion_model", None), UNetModel) and type(base).__name__ in (
        "BaseModel",
        "SDXL",
        "SDXLRefiner",
        "SD15_instructpix2pix",
        "SDXL_instructpix2pix",
    ):
        return "unet", "SDXL" if "SDXL" in type(base).__name__ else "SD1.5"
    match = _dit_entry(base)
    if match is not None:
        return "dit", match[1]
    raise UnsupportedModelError(
        f"Safety Steer cannot steer a {type(base).__name__} model yet. Supported diffusion "
        f"models: {', '.join(SUPPORTED_MODELS)}."
    )


def _dit_entry(base) -> tuple[type, str, str] | None:
    """The DIT_MODELS entry of the most derived class the model is an instance of (Chroma before
    Flux), then of the most derived config class (Z-Image before Lumina 2)."""
    matches = [entry for entry in DIT_MODELS if _is(base, entry[0], entry[1])]

    def depth(entry) -> tuple[int, int]:
        config = CONFIG_CLASSES.get(entry[1])
        return len(entry[0].__mro__), len(config.__mro__) if config is not None else 0

    return max(matches, key=depth, default=None)


def _is(base, cls: type, label: str) -> bool:
    config = CONFIG_CLASSES.get(label)
    if isinstance(base, OTHER_FAMILIES):
        return False
    return isinstance(base, cls) and (config is None or isinstance(getattr(base, "model_config", None), config))


def check_text_stream(label: str, aligned_keys: set[str], target: str) -> None:
    """The direction must be aligned to the encoders this model reads its text from."""
    options = TEXT_STREAM_ENCODERS[label]
    if not any(needed <= aligned_keys for needed in options):
        wanted = " or ".join("+".join(sorted(o)) for o in options)
        raise UnsupportedModelError(
            f"This {label} model reads its text from the {wanted} encoder(s), but the direction was aligned to "
            f"{target} (encoders {', '.join(sorted(k for k in aligned_keys if '.pooled' not in k))}). Fit Cross-Model "
            f"Alignment with this model's own CLIP."
        )


def text_context_width(model) -> int | None:
    """Feature width of the text conditioning the model expects (None when it cannot be read)."""
    base = model.model
    if isinstance(getattr(base, "diffusion_model", None), UNetModel):
        return base.model_config.unet_config.get("context_dim")
    match = _dit_entry(base)
    if match is None:
        return None
    module = base.diffusion_model
    for part in match[2].split("."):
        module = module[int(part)] if part.isdigit() else getattr(module, part, None)
        if module is None:
            return None
    return getattr(module, "in_features", None)
