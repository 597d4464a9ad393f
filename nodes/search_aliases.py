"""Words the node library should find Safety Steer by ("nsfw", "safety filter", ...), declared on every
node's schema. ComfyUI's V3 `io.Schema` has a `search_aliases` field only in releases after 0.3.75 (and
frontend 1.32.9 searches names and display names only), so the field is passed where it exists and
nothing is passed elsewhere."""

from __future__ import annotations

import dataclasses

from comfy_api.latest import io

#: What an artist looking for this kind of pack types.
PACK_ALIASES = ("nsfw", "nsfw filter", "safety filter", "content filter", "censor", "steer", "safe", "moderation")
#: A few more per node, for what that node does.
NODE_ALIASES = {
    "SafetySteerLoadDirection": ("safety direction", "load pack"),
    "SafetySteerDirectionInfo": ("pack info", "auroc"),
    "SafetySteerFitCrossModelAlignment": ("transfer", "align text encoder", "ridge"),
    "SafetySteerFitNativeDirection": ("baseline", "native direction"),
    "SafetySteerCategoryVectorMixer": ("category weights", "violence", "sexual", "hate"),
    "SafetySteerApplyTextEncoder": ("safe clip", "steer clip", "concept removal"),
    "SafetySteerApplyConditioning": ("safe conditioning", "concept removal"),
    "SafetySteerApplyModel": ("safe model", "concept removal"),
    "SafetySteerReport": ("safety meter", "safety report"),
    "SafetySteerPromptInspector": ("prompt check", "nsfw detector", "prompt classifier"),
    "SafetySteerTrainSAE": ("safedig", "sparse autoencoder", "sae"),
    "SafetySteerLoadSAE": ("safedig", "sae"),
    "SafetySteerAdaptSAEDecoder": ("safedig", "sae", "fine-tune"),
    "SafetySteerApplySafeDIG": ("safedig", "concept erasure", "repel", "blend"),
}


def schema_supports_search_aliases() -> bool:
    return "search_aliases" in {field.name for field in dataclasses.fields(io.Schema)}


def search_aliases(node_id: str) -> dict:
    """``io.Schema(..., **search_aliases(node_id))``: the aliases where this ComfyUI takes them."""
    if not schema_supports_search_aliases():
        return {}
    return {"search_aliases": [*PACK_ALIASES, *NODE_ALIASES.get(node_id, ())]}
