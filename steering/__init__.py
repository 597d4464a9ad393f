"""Safety Steer's method: torch only, no ComfyUI import, usable on its own.

    from safety_steer.steering import build_pack, load_pack, save_pack
"""
__version__ = "0.1.0"

from .extraction.build import BuildReport, build_pack  # noqa: E402
from .extraction.directions import METHODS, fit_direction  # noqa: E402
from .errors import PackFormatError, PromptDataError, SafetySteerError, SourceModelError  # noqa: E402
from .extraction.features import POOLINGS, extract_features  # noqa: E402
from .pack import DirectionPack, load_pack, save_pack  # noqa: E402
from .prompts import I2P_CATEGORIES, PromptPair, load_anchors, load_pairs  # noqa: E402
from .extraction.sources import BUILTIN_MODELS, DEFAULT_SOURCE, load_text_model  # noqa: E402

__all__ = [
    "BUILTIN_MODELS", "BuildReport", "DEFAULT_SOURCE", "DirectionPack", "I2P_CATEGORIES", "METHODS",
    "POOLINGS", "PackFormatError", "PromptDataError", "PromptPair", "SafetySteerError", "SourceModelError",
    "build_pack", "extract_features", "fit_direction", "load_anchors", "load_pack", "load_pairs",
    "load_text_model", "save_pack",
]
