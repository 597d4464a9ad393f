"""SafetySteerReport: what the steer did, per prompt and category, on the node and as text."""

from __future__ import annotations

from comfy_api.latest import io

from ...steering.application.meter import meter_from_entries
from ...steering.application.report import ReportEntry, format_report
from ..search_aliases import search_aliases
from .inputs import REPORT_KEY
from .meter_ui import text_and_meter
from .model import LOGS_ATTACHMENT


def conditioning_report(conditioning) -> str:
    entries = [ReportEntry(**entry) for _, options in conditioning for entry in options.get(REPORT_KEY, [])]
    return format_report(entries)


def model_report(model) -> str:
    logs = model.get_attachment(LOGS_ATTACHMENT) or []
    if not logs:
        return "Safety Steer report: this MODEL carries no Apply Safety Steer (Model) patch."
    return "\n".join(log.summary(label) for label, log in logs)


def report_meter(conditioning, model) -> dict:
    """The meter of the first steered prompt: the conditioning's (text-encoder or conditioning
    point), else the latest sampling step's of the model's first steer."""
    entries = [entry for _, options in conditioning or [] for entry in options.get(REPORT_KEY, [])]
    if not entries and model is not None:
        logs = model.get_attachment(LOGS_ATTACHMENT) or []
        entries = [entry.as_dict() for _, log in logs[:1] for entry in log.last_entries]
    return meter_from_entries(entries)


class SafetySteerReport(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SafetySteerReport",
            display_name="Safety Steer Report",
            category="safety_steer",
            **search_aliases("SafetySteerReport"),
            description=(
                "Shows how strongly each prompt projected on every harm category and how much steer "
                "was applied. Connect the conditioning from a steered CLIP (or from Apply Safety Steer "
                "(Conditioning)), and/or a steered MODEL with 'after' fed from the sampler's output so "
                "that the report is read once sampling has run."
            ),
            inputs=[
                io.Conditioning.Input(
                    "conditioning",
                    optional=True,
                    tooltip="The positive prompt's conditioning from a steered CLIP or Apply Safety Steer "
                    "(Conditioning): reports what reached the sampler.",
                ),
                io.Model.Input(
                    "model",
                    optional=True,
                    tooltip="A model from Apply Safety Steer (Model): reports the steer applied while sampling "
                    "(connect 'after' too).",
                ),
                io.AnyType.Input(
                    "after",
                    optional=True,
                    tooltip="Anything produced after sampling (e.g. the LATENT): orders this node after it.",
                ),
            ],
            outputs=[
                io.String.Output(
                    display_name="report",
                    tooltip="Per category: projection (benign-anchor units), gate and steer applied, as text.",
                )
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, conditioning=None, model=None, after=None) -> io.NodeOutput:
        parts = []
        if conditioning is not None:
            parts.append(conditioning_report(conditioning))
        if model is not None:
            parts.append(model_report(model))
        text = "\n\n".join(parts) or "Safety Steer report: connect a conditioning or a model."
        return io.NodeOutput(text, ui=text_and_meter(text, report_meter(conditioning, model)))

    @classmethod
    def fingerprint_inputs(cls, **_) -> float:
        return float("nan")  # re-read every run: a model's sampling log changes without its inputs changing
