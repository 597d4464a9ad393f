"""SafetySteerFitNativeDirection: the native baseline, fitted inside the graph's own text encoder."""

from __future__ import annotations

from comfy_api.latest import io

from ...steering.evaluation.transfer import training_pairs_for
from ...steering.extraction.directions import METHODS
from ...steering.pack import pack_sha256
from ...steering.transfer.aligned import AlignedSafetyDirection, anchor_subset, cached_fit, per_category_subset
from ...steering.transfer.native import native_pack
from ..apply.clip_targets import encode_per_encoder, patch_fingerprint
from ..input_checks import check_at_run_time, validation_result
from ..progress import progress_reporter
from ..search_aliases import search_aliases
from ..types import AlignedDirectionType, DirectionPackType
from .fit_alignment import alignment_cache_dir, cache_key, encoder_fingerprints

#: More than any category holds: the default takes every training pair.
MAX_PAIRS_PER_CATEGORY = 1000


class SafetySteerFitNativeDirection(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SafetySteerFitNativeDirection",
            display_name="Fit Native Direction (baseline)",
            category="safety_steer",
            **search_aliases("SafetySteerFitNativeDirection"),
            description=(
                "The native* baseline for side-by-side comparison: estimates the safety directions "
                "directly in this CLIP's encoders from the pack's training pairs. Unlike Fit Cross-Model "
                "Alignment, the target sees unsafe prompts. Cached on disk like the alignment."
            ),
            inputs=[
                io.Clip.Input(
                    "clip",
                    tooltip="This graph's text encoder(s): the directions are estimated in their own space.",
                ),
                DirectionPackType.Input(
                    "direction",
                    tooltip="A pack from Load Safety Direction: its training pairs "
                    "and anchors are used (checked by hash).",
                ),
                io.Combo.Input(
                    "method",
                    options=list(METHODS),
                    default="mean_diff",
                    tooltip="How each direction is estimated from the safe/unsafe pairs: mean_diff (the paper's, "
                    "steadiest), pca of the differences, or logistic regression.",
                ),
                io.Int.Input(
                    "anchors",
                    default=2000,
                    min=20,
                    max=100000,
                    tooltip="Benign anchor prompts (20-100000) for the benign-anchor units, the calibration and the "
                    "gate's statistics; more = steadier, slower.",
                ),
                io.Int.Input(
                    "pairs_per_category",
                    default=MAX_PAIRS_PER_CATEGORY,
                    min=2,
                    max=MAX_PAIRS_PER_CATEGORY,
                    optional=True,
                    tooltip=f"Training pairs per harm category, evenly spread over the pack's list (2-"
                    f"{MAX_PAIRS_PER_CATEGORY}; the default takes all of them, fewer = a quicker, rougher baseline).",
                ),
            ],
            outputs=[
                AlignedDirectionType.Output(
                    display_name="native_direction", tooltip="Use in place of an aligned direction in any Apply node."
                )
            ],
        )

    @classmethod
    def validate_inputs(cls, method) -> bool | str:
        return validation_result(cls, locals())

    @classmethod
    def execute(cls, clip, direction, method, anchors, pairs_per_category=MAX_PAIRS_PER_CATEGORY) -> io.NodeOutput:
        check_at_run_time(cls, locals())
        if isinstance(direction, AlignedSafetyDirection):
            raise ValueError(
                "Fit Native Direction needs the pack itself (Load Safety Direction), not an aligned direction."
            )
        fingerprints = encoder_fingerprints(clip)
        # the full set keeps the key it had before the input existed, so earlier caches stay valid
        fit_name = (
            f"native-{method}"
            if pairs_per_category >= MAX_PAIRS_PER_CATEGORY
            else f"native-{method}-{pairs_per_category}pc"
        )
        key = cache_key(direction, fingerprints, clip.layer_idx, fit_name, anchors, patch_fingerprint(clip))

        def fit() -> AlignedSafetyDirection:
            pairs = per_category_subset(training_pairs_for(direction), pairs_per_category)
            index = anchor_subset(len(direction.anchor_prompts), anchors)
            anchor_prompts = [direction.anchor_prompts[i] for i in index.tolist()]
            prompts = [p.safe for p in pairs] + [p.unsafe for p in pairs] + anchor_prompts
            features = encode_per_encoder(clip, prompts, progress=progress_reporter(len(prompts)))
            n = len(pairs)
            safe, unsafe, benign = (
                {k: v[rows] for k, v in features.items()} for rows in (slice(0, n), slice(n, 2 * n), slice(2 * n, None))
            )
            return native_pack(
                direction,
                pairs,
                safe,
                unsafe,
                benign,
                method,
                metadata={
                    "cache_key": key,
                    "pack_sha256": pack_sha256(direction),
                    "target": type(clip.cond_stage_model).__name__,
                    "encoder_fingerprints": fingerprints,
                },
            )

        return io.NodeOutput(cached_fit(alignment_cache_dir() / f"{key}.safetensors", fit))
