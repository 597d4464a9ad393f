"""Inputs shared by every Apply Safety Steer node, so the three read and behave alike."""

from __future__ import annotations

from comfy_api.latest import io

from ...steering.application.steer import MODES
from ...steering.prompts import I2P_CATEGORIES
from ...steering.transfer.aligned import AlignedSafetyDirection
from ..types import AlignedDirectionType

DIRECTION_CHOICES = ("auto", "global", *I2P_CATEGORIES)
APPLY_TO = ("positive", "positive and negative")
REPORT_KEY = "safety_steer_report"  # conditioning-dict key holding the text-encoder point's report


def aligned_input() -> io.Input:
    return AlignedDirectionType.Input(
        "aligned_direction",
        tooltip="From Fit Cross-Model Alignment (or Category Vector Mixer / Fit Native "
        "Direction) with the same CLIP as this graph's.",
    )


def common_inputs() -> list[io.Input]:
    return [
        io.Float.Input(
            "strength",
            default=1.0,
            min=0.0,
            max=20.0,
            step=0.05,
            tooltip="1 = the calibrated step (a typical safe-unsafe gap); 0 = no change at all.",
        ),
        io.Combo.Input(
            "direction",
            options=list(DIRECTION_CHOICES),
            default="auto",
            tooltip="auto: the Category Vector Mixer's mix if one is connected, else the global direction. "
            "Or one harm category's own direction.",
        ),
        io.Combo.Input(
            "mode",
            options=list(MODES),
            default="add",
            tooltip="add: push towards safe (the paper). project: remove the unsafe-leaning component. "
            "both: project, then add.",
        ),
    ]


def threshold_input() -> io.Input:
    return io.Float.Input(
        "gate_threshold",
        default=-1.0,
        min=-6.0,
        max=3.0,
        step=0.05,
        tooltip="target projection gate: opens below this projection, in benign-anchor standard "
        "deviations (-6 to 3; default -1; lower = only clearly unsafe prompts are steered).",
    )


def checked_aligned(aligned, node: str) -> AlignedSafetyDirection:
    if not isinstance(aligned, AlignedSafetyDirection):
        raise ValueError(
            f"{node} needs a direction aligned to this graph's text encoder: pass the pack through "
            "Fit Cross-Model Alignment first."
        )
    return aligned


def point_gate_status(gate: str, threshold: float) -> str:
    """The gate the conditioning and model points run, said on the node: they never see the prompt's
    text, so the source-LLM gate (the strongest) is only at the text-encoder point."""
    if gate == "none":
        return "Gate: none (every prompt is steered in full)."
    return (
        f"Gate: target projection (opens below {threshold:g} benign-anchor standard deviations). For the "
        "stronger source-LLM gate, steer at the text encoder (Apply Safety Steer (Text Encoder))."
    )


def sampling_window_inputs() -> list[io.Input]:
    """When and on which prompt a sampling-time patch (the model point, SafeDIG) acts."""
    return [
        io.Float.Input(
            "start_percent",
            default=0.0,
            min=0.0,
            max=1.0,
            step=0.01,
            tooltip="Start at this fraction of sampling (0 = the first step).",
        ),
        io.Float.Input(
            "end_percent",
            default=1.0,
            min=0.0,
            max=1.0,
            step=0.01,
            tooltip="Stop after this fraction of sampling (1 = the last step).",
        ),
        io.Combo.Input(
            "apply_to",
            options=list(APPLY_TO),
            default="positive",
            tooltip="positive: only the positive prompt (recommended). With CFG, steering the negative prompt "
            "towards safe pushes the image the other way.",
        ),
    ]
