"""Apply Safety Steer (Conditioning): steer a CONDITIONING that came from anywhere.

For graphs whose conditioning does not come from a CLIP this pack can wrap (conditioning loaded,
combined or scheduled elsewhere). Each entry's token stream (and pooled vector, where an aligned
pooled space fits it) is steered once, here; nothing happens per sampling step.
"""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ...steering.application.assembled import steer_pooled, steer_tokens
from ...steering.application.gating import Gate
from ...steering.application.meter import meter_from_entries
from ...steering.application.report import entries_from, format_report
from ..input_checks import check_at_run_time, validation_result
from ..search_aliases import search_aliases
from .inputs import REPORT_KEY, aligned_input, checked_aligned, common_inputs, point_gate_status, threshold_input
from .meter_ui import text_and_meter

ASSEMBLED_GATES = ("target projection", "none")


def gate_input() -> io.Input:
    return io.Combo.Input(
        "gate",
        options=list(ASSEMBLED_GATES),
        default="target projection",
        tooltip="target projection: steer each prompt in proportion to how far below the benign "
        "anchors it projects (here over all token positions: weaker than at the text "
        "encoder, where the source LLM can gate). none: steer every prompt.",
    )


class SafetySteerApplyConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SafetySteerApplyConditioning",
            display_name="Apply Safety Steer (Conditioning)",
            category="safety_steer",
            **search_aliases("SafetySteerApplyConditioning"),
            description=(
                "Steers a CONDITIONING along the aligned safety direction: for conditioning that comes "
                "from elsewhere. Prefer Apply Safety Steer (Text Encoder) when you have the CLIP: it "
                "steers only the prompt's own tokens and can gate with the source LLM."
            ),
            inputs=[
                io.Conditioning.Input(
                    "conditioning", tooltip="From CLIP Text Encode (an unsteered CLIP); each prompt in it is steered."
                ),
                aligned_input(),
                *common_inputs(),
                gate_input(),
                threshold_input(),
            ],
            outputs=[
                io.Conditioning.Output(
                    display_name="conditioning", tooltip="The steered conditioning: connect it to the sampler."
                ),
                io.String.Output(
                    display_name="report", tooltip="Per prompt and category: projection and steer applied."
                ),
            ],
            is_output_node=False,
        )

    @classmethod
    def validate_inputs(cls, strength, direction, mode, gate, gate_threshold) -> bool | str:
        return validation_result(cls, locals())

    @classmethod
    def execute(cls, conditioning, aligned_direction, strength, direction, mode, gate, gate_threshold) -> io.NodeOutput:
        check_at_run_time(cls, locals())
        aligned = checked_aligned(aligned_direction, "Apply Safety Steer (Conditioning)")
        row, _ = aligned.resolve(direction)
        label = aligned.names[row]
        target_gate = Gate(threshold=gate_threshold) if gate == "target projection" else None
        steered, entries = [], []
        for number, (cond, options) in enumerate(conditioning, start=1):
            if not torch.isfinite(cond).all():
                raise ValueError(f"Conditioning entry {number} holds NaN or Inf values; fix the node that produced it.")
            mask = options.get("attention_mask")
            new_cond, reports = steer_tokens(cond, aligned, row, strength, mode, target_gate, token_mask=mask)
            _, after = steer_tokens(new_cond, aligned, row, 0.0, mode, None, token_mask=mask)  # read, not steered
            new_options = dict(options)
            prompts = [
                f"conditioning {number}" + (f".{b + 1}" if cond.shape[0] > 1 else "") for b in range(cond.shape[0])
            ]
            gate_kind = gate if target_gate is None else "target projection"
            point_entries = entries_from(reports, "conditioning", prompts, aligned.names, label, gate_kind, after)
            pooled = options.get("pooled_output")
            if pooled is not None:
                new_pooled, pooled_reports = steer_pooled(pooled, aligned, row, strength, mode, target_gate)
                new_options["pooled_output"] = new_pooled
                point_entries += entries_from(pooled_reports, "conditioning", prompts, aligned.names, label, gate_kind)
            new_options[REPORT_KEY] = [*options.get(REPORT_KEY, []), *(e.as_dict() for e in point_entries)]
            entries += point_entries
            steered.append([new_cond, new_options])
        if strength == 0:
            steered = conditioning  # bit-identical: the very same objects
        text = format_report(entries)
        payload = meter_from_entries([e.as_dict() for e in entries], strength)
        return io.NodeOutput(
            steered, text, ui=text_and_meter(f"{point_gate_status(gate, gate_threshold)}\n{text}", payload)
        )
