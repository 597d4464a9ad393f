"""SafetySteerFitCrossModelAlignment: carry a pack's directions into every sub-encoder of a CLIP."""

from __future__ import annotations

import hashlib
import json

from comfy_api.latest import io

from ...steering.locations import cache_dir
from ...steering.pack import DirectionPack, pack_sha256
from ...steering.transfer.aligned import AlignedSafetyDirection, align_pack, anchor_subset, cached_fit
from ...steering.transfer.alignment import MAP_METHODS, MLP_EPOCHS
from ..apply.clip_targets import base_encoder_fingerprints, encode_per_encoder, patch_fingerprint
from ..input_checks import check_at_run_time, validation_result
from ..progress import progress_reporter
from ..search_aliases import search_aliases
from ..types import AlignedDirectionType, DirectionPackType


def alignment_cache_dir():
    return cache_dir() / "alignments"


def encoder_fingerprints(clip) -> dict[str, str]:
    return base_encoder_fingerprints(clip)


def cache_key(
    pack: DirectionPack, fingerprints: dict[str, str], layer_idx, method: str, n_anchors: int, patches: str = ""
) -> str:
    identity = {
        "pack": pack_sha256(pack),
        "method": method,
        "n_anchors": n_anchors,
        "layer_idx": layer_idx,
        "encoders": fingerprints,
        "patches": patches,
        "version": 3,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


class SafetySteerFitCrossModelAlignment(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SafetySteerFitCrossModelAlignment",
            display_name="Fit Cross-Model Alignment",
            category="safety_steer",
            **search_aliases("SafetySteerFitCrossModelAlignment"),
            description=(
                "Carries a safety direction pack from its source LLM into this CLIP's text encoders "
                "(each sub-encoder: CLIP-L, CLIP-G, T5, umT5, Llama, Qwen2.5-VL, Qwen3) through a map fitted on benign "
                "anchor prompts only; no unsafe prompt ever reaches the target. The fit is cached on "
                "disk: the same pack, encoder and settings return at once the second time."
            ),
            inputs=[
                io.Clip.Input(
                    "clip", tooltip="The text encoder(s) of your workflow, e.g. from Load Checkpoint or DualCLIPLoader."
                ),
                DirectionPackType.Input("direction", tooltip="A pack from Load Safety Direction (source-model space)."),
                io.Combo.Input(
                    "method",
                    options=list(MAP_METHODS),
                    default="auto",
                    tooltip="auto: the map (ridge / Procrustes / CCA) and its regularisation chosen for this "
                    "encoder's layer by cross-validation on the benign anchors (best in our measurements); "
                    "ridge: closed form, regularisation chosen by leave-one-out on the anchors; "
                    "procrustes: orthogonal map after PCA; cca; "
                    "mlp: small network, Jacobian-averaged transport (slowest).",
                ),
                io.Int.Input(
                    "anchors",
                    default=2000,
                    min=20,
                    max=100000,
                    step=1,
                    tooltip="How many of the pack's benign anchor prompts (20-100000) to encode and fit on "
                    "(evenly spread over the set). More anchors transport better.",
                ),
            ],
            outputs=[
                AlignedDirectionType.Output(
                    display_name="aligned_direction",
                    tooltip="The pack's directions, calibrated, in each sub-encoder's space.",
                )
            ],
        )

    @classmethod
    def validate_inputs(cls, method) -> bool | str:
        return validation_result(cls, locals())

    @classmethod
    def execute(cls, clip, direction, method, anchors) -> io.NodeOutput:
        check_at_run_time(cls, locals())
        if isinstance(direction, AlignedSafetyDirection):
            raise ValueError(
                "This direction is already aligned to a text encoder; connect Load Safety Direction "
                "(the source-space pack) instead."
            )
        fingerprints = encoder_fingerprints(clip)
        key = cache_key(direction, fingerprints, clip.layer_idx, method, anchors, patch_fingerprint(clip))

        def fit() -> AlignedSafetyDirection:
            index = anchor_subset(len(direction.anchor_prompts), anchors)
            prompts = [direction.anchor_prompts[i] for i in index.tolist()]
            features = encode_per_encoder(clip, prompts, progress=progress_reporter(len(prompts)))
            return align_pack(
                direction,
                features,
                method,
                anchor_index=index,
                progress=progress_reporter(MLP_EPOCHS) if method == "mlp" else None,
                metadata={
                    "cache_key": key,
                    "pack_sha256": pack_sha256(direction),
                    "target": type(clip.cond_stage_model).__name__,
                    "encoder_fingerprints": fingerprints,
                },
            )

        return io.NodeOutput(cached_fit(alignment_cache_dir() / f"{key}.safetensors", fit))
