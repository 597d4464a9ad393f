"""Safety Steer's method: torch only, no ComfyUI import, usable on its own.

The package follows the pipeline: ``extraction`` (a source LLM's safety directions -> a pack),
``transfer`` (maps fitted on benign anchors, transport, calibration, mixing, the native baseline),
``application`` (steer hidden states, gates, reports), ``safedig`` (sparse autoencoders, routing,
Repel / Blend, bundles), ``evaluation``. The names below are the public API of both methods; the
README's "Using the method without ComfyUI" shows them together (and a test runs that example).
"""

__version__ = "0.1.0"

from .application.gating import Gate, choose_gate  # noqa: E402
from .application.source_gate import SourceGate  # noqa: E402
from .application.steer import MODES, steer_hidden  # noqa: E402
from .errors import PackFormatError, PromptDataError, SafetySteerError, SourceModelError  # noqa: E402
from .extraction.build import BuildReport, build_pack  # noqa: E402
from .extraction.directions import METHODS, fit_direction  # noqa: E402
from .extraction.features import POOLINGS, extract_features  # noqa: E402
from .extraction.sources import BUILTIN_MODELS, DEFAULT_SOURCE, load_text_model  # noqa: E402
from .pack import DEFAULT_PACK_PATH, DirectionPack, load_pack, save_pack  # noqa: E402
from .prompts import I2P_CATEGORIES, PromptPair, load_anchors, load_pairs  # noqa: E402
from .safedig.bundle import SafeDIGBundle, load_bundle, save_bundle  # noqa: E402
from .safedig.operations import HarmfulFeatures, blend, repel, select_harmful_features  # noqa: E402
from .safedig.sae import SparseAutoencoder, adapt_decoder, load_sae, prompt_codes, save_sae, train_sae  # noqa: E402
from .transfer.aligned import AlignedSafetyDirection, align_pack, load_aligned, save_aligned  # noqa: E402
from .transfer.alignment import MAP_METHODS  # noqa: E402

__all__ = [
    # packs and prompts
    "DEFAULT_PACK_PATH",
    "DirectionPack",
    "I2P_CATEGORIES",
    "PromptPair",
    "load_anchors",
    "load_pack",
    "load_pairs",
    "save_pack",
    # extraction (source side)
    "BUILTIN_MODELS",
    "BuildReport",
    "DEFAULT_SOURCE",
    "METHODS",
    "POOLINGS",
    "build_pack",
    "extract_features",
    "fit_direction",
    "load_text_model",
    # transfer (target side, benign anchors only)
    "AlignedSafetyDirection",
    "MAP_METHODS",
    "align_pack",
    "load_aligned",
    "save_aligned",
    # application
    "Gate",
    "MODES",
    "SourceGate",
    "choose_gate",
    "steer_hidden",
    # SafeDIG
    "HarmfulFeatures",
    "SafeDIGBundle",
    "SparseAutoencoder",
    "adapt_decoder",
    "blend",
    "load_bundle",
    "load_sae",
    "prompt_codes",
    "repel",
    "save_bundle",
    "save_sae",
    "select_harmful_features",
    "train_sae",
    # errors
    "PackFormatError",
    "PromptDataError",
    "SafetySteerError",
    "SourceModelError",
]
