"""SafetySteerCategoryVectorMixer: one direction from a weighted choice of harm categories."""

from __future__ import annotations

from comfy_api.latest import io

from ...steering.prompts import I2P_CATEGORIES
from ...steering.transfer.mixing import PRESETS
from ..apply.inputs import aligned_input, checked_aligned
from ..input_checks import check_at_run_time, validation_result
from ..search_aliases import search_aliases
from ..types import AlignedDirectionType

CUSTOM = "custom (sliders)"


def weight_input_name(category: str) -> str:
    return category.replace(" ", "_").replace("-", "_")


class SafetySteerCategoryVectorMixer(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SafetySteerCategoryVectorMixer",
            display_name="Category Vector Mixer",
            category="safety_steer",
            **search_aliases("SafetySteerCategoryVectorMixer"),
            description=(
                "Combines the per-category safety directions into one, weighted per harm category (and "
                "optionally orthogonalised, so overlapping categories are not counted twice). Apply "
                "nodes with direction 'auto' then steer with the mix."
            ),
            inputs=[
                aligned_input(),
                io.Combo.Input(
                    "preset",
                    options=[CUSTOM, *PRESETS],
                    default="all categories",
                    tooltip="A ready-made selection; 'custom (sliders)' uses the weights below.",
                ),
                *[
                    io.Float.Input(
                        weight_input_name(c),
                        default=1.0,
                        min=0.0,
                        max=2.0,
                        step=0.05,
                        tooltip=f"Weight of the {c} direction (custom preset only; 0 = leave it out).",
                    )
                    for c in I2P_CATEGORIES
                ],
                io.Boolean.Input(
                    "orthogonalise",
                    default=False,
                    tooltip="Remove the overlap between the selected categories' directions first "
                    "(symmetric, order-independent).",
                ),
            ],
            outputs=[
                AlignedDirectionType.Output(
                    display_name="aligned_direction", tooltip="The same aligned direction with a 'mixed' row added."
                )
            ],
        )

    @classmethod
    def validate_inputs(
        cls, preset, hate, harassment, violence, self_harm, sexual, shocking, illegal_activity
    ) -> bool | str:
        return validation_result(cls, locals())

    @classmethod
    def execute(cls, aligned_direction, preset, orthogonalise, **sliders) -> io.NodeOutput:
        check_at_run_time(cls, {**locals(), **sliders})
        aligned = checked_aligned(aligned_direction, "Category Vector Mixer")
        if preset == CUSTOM:
            weights = {c: float(sliders[weight_input_name(c)]) for c in I2P_CATEGORIES}
        elif preset in PRESETS:
            weights = dict(PRESETS[preset])
        else:
            raise ValueError(f"Unknown preset {preset!r}; choose one of {CUSTOM!r}, {', '.join(map(repr, PRESETS))}.")
        return io.NodeOutput(aligned.with_mix(weights, orthogonalise))
