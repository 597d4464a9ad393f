"""Apply Safety Steer (Model): steer the text stream inside the diffusion model, per step.

A cloned ModelPatcher gets an attn2 patch (UNets) or a keyed APPLY_MODEL wrapper (DiTs) that steers
the text conditioning the model reads, only between the chosen start and end of sampling, and by
default only for the positive prompt (steering the negative one towards safe would, through CFG,
push the image away from safe). The original MODEL is untouched; patches stack.
"""

from __future__ import annotations

import torch
from comfy.patcher_extension import WrappersMP
from comfy_api.latest import io

from ...steering.application.assembled import AdditiveSteer, additive_steer, steer_tokens
from ...steering.application.gating import Gate
from ...steering.application.layout import token_segments
from ...steering.application.report import SamplingLog, entries_from
from ...steering.transfer.aligned import AlignedSafetyDirection
from ..input_checks import check_at_run_time, validation_result
from ..sampling_window import SigmaWindow, positive_rows
from ..search_aliases import search_aliases
from .conditioning import gate_input
from .inputs import (
    aligned_input,
    checked_aligned,
    common_inputs,
    point_gate_status,
    sampling_window_inputs,
    threshold_input,
)
from .meter_ui import pending_meter, text_and_meter
from .model_targets import check_text_stream, model_kind, text_context_width

WRAPPER_KEY = "safety_steer"
LOGS_ATTACHMENT = "safety_steer_logs"


class TextStreamSteer:
    """The steer one node adds: shared by its attn2 patch or wrapper closures (never deep-copied)."""

    def __init__(
        self,
        aligned: AlignedSafetyDirection,
        row: int,
        strength: float,
        mode: str,
        gate: Gate | None,
        include_negative: bool,
        window: SigmaWindow,
        log: SamplingLog,
    ):
        self.aligned, self.row, self.strength, self.mode, self.gate = aligned, row, strength, mode, gate
        self.include_negative, self.window, self.log = include_negative, window, log
        self._last: tuple | None = None  # (context, (sigma, cond_or_uncond), steered) of the latest call
        self._additives: dict = {}

    def __call__(self, context: torch.Tensor, cond_or_uncond, sigmas, token_mask=None) -> torch.Tensor:
        if not self.window.contains(sigmas):
            return context
        sigma = float(sigmas.max()) if torch.is_tensor(sigmas) else float(sigmas or 0.0)
        key = (sigma, tuple(cond_or_uncond or ()))
        if self._last is not None and self._last[0] is context and self._last[1] == key:
            self.log.record(sigma)  # a UNet's next cross-attention block, same step: reuse
            return self._last[2]
        weights = positive_rows(
            tuple(cond_or_uncond or ()), context.shape[0], self.include_negative, context.device
        ).to(context.dtype)
        if not bool(weights.any()):
            return context
        additive = self._additive(context) if token_mask is None else None
        if additive is not None:
            steered = torch.addcmul(context, weights.to(context.dtype)[:, None, None], additive.offset(context))
        else:
            steered, _ = steer_tokens(
                context, self.aligned, self.row, self.strength, self.mode, self.gate, weights, token_mask, report=False
            )
        self.log.record(sigma, lambda: self.report(context, cond_or_uncond, weights, token_mask))
        self._last = (context, key, steered)  # holds the reference, so identity cannot be reused
        return steered

    def _additive(self, context: torch.Tensor) -> AdditiveSteer | None:
        """The steer as constant vectors for this context's width (mode add, no gate), cached."""
        if self.mode != "add" or self.gate is not None:
            return None
        key = (context.shape[-1], context.dtype, context.device)
        if key not in self._additives:
            steer = additive_steer(self.aligned, self.row, self.strength, context.shape[-1])
            self._additives[key] = steer.to(context.device, context.dtype)
        return self._additives[key]

    def report(self, context, cond_or_uncond, weights, token_mask) -> list:
        """Report entries for one call's inputs (computed when a Safety Steer Report reads them)."""
        steered, reports = steer_tokens(
            context, self.aligned, self.row, self.strength, self.mode, self.gate, weights, token_mask, report=True
        )
        _, after = steer_tokens(steered, self.aligned, self.row, 0.0, self.mode, None, None, token_mask)  # read only
        chunks = cond_or_uncond or [0]
        per_chunk = max(1, context.shape[0] // len(chunks))
        prompts = [
            f"{'negative' if chunks[min(i // per_chunk, len(chunks) - 1)] else 'positive'} {i % per_chunk + 1}"
            for i in range(context.shape[0])
        ]
        return entries_from(
            reports,
            "model",
            prompts,
            self.aligned.names,
            self.aligned.names[self.row],
            "target projection" if self.gate is not None else "none",
            after,
        )


def attn2_patch(steer: TextStreamSteer):
    def patch(n, context, value, extra_options):
        steered = steer(context, extra_options.get("cond_or_uncond"), extra_options.get("sigmas"))
        if value is context:
            value = steered
        elif value is not None and steered is not context:
            value = steer(value, extra_options.get("cond_or_uncond"), extra_options.get("sigmas"))
        return n, steered, value

    return patch


def apply_model_wrapper(steer: TextStreamSteer):
    def wrapper(executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={}, **kwargs):
        if c_crossattn is not None:
            c_crossattn = steer(c_crossattn, transformer_options.get("cond_or_uncond"), t, kwargs.get("attention_mask"))
        return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)

    return wrapper


class SafetySteerApplyModel(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SafetySteerApplyModel",
            display_name="Apply Safety Steer (Model)",
            category="safety_steer",
            **search_aliases("SafetySteerApplyModel"),
            description=(
                "Returns a copy of the MODEL that steers the text conditioning inside the UNet's "
                "cross-attention (SD1.5, SDXL) or where the DiT reads it (SD3.x, Flux, Chroma, Flux.2, Wan 2.x, "
                "HunyuanVideo, HunyuanVideo 1.5, HunyuanImage 2.1, LTX-Video, Qwen-Image, Z-Image, Lumina 2, PixArt, "
                "AuraFlow, Cosmos Predict2, "
                "OmniGen 2), "
                "between start and end of sampling. The original MODEL is "
                "unchanged; other patches keep working."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model; steered copy out, the original stays as it is."),
                aligned_input(),
                *common_inputs(),
                gate_input(),
                threshold_input(),
                *sampling_window_inputs(),
            ],
            outputs=[
                io.Model.Output(
                    display_name="steered_model",
                    tooltip="A patched copy that steers the text context while sampling: connect it to the sampler.",
                )
            ],
        )

    @classmethod
    def validate_inputs(
        cls, strength, direction, mode, gate, gate_threshold, start_percent, end_percent, apply_to
    ) -> bool | str:
        return validation_result(cls, locals())

    @classmethod
    def execute(
        cls,
        model,
        aligned_direction,
        strength,
        direction,
        mode,
        gate,
        gate_threshold,
        start_percent,
        end_percent,
        apply_to,
    ) -> io.NodeOutput:
        check_at_run_time(cls, locals())
        aligned = checked_aligned(aligned_direction, "Apply Safety Steer (Model)")
        kind, label = model_kind(model)
        row, _ = aligned.resolve(direction)
        check_text_stream(label, set(aligned.encoders), aligned.metadata.get("target", "another text encoder"))
        width = text_context_width(model)
        if width is not None:
            try:
                token_segments({k: int(e.unit.shape[1]) for k, e in aligned.encoders.items()}, width)
            except ValueError as exc:
                raise ValueError(
                    f"This {label} model reads text features of width {width}, but the direction was "
                    f"aligned to {aligned.metadata.get('target', 'another text encoder')}: {exc}"
                ) from exc
        steered = model.clone()
        status = point_gate_status(gate, gate_threshold)
        payload = pending_meter(
            aligned.names,
            strength,
            gate,
            "The steer runs inside the sampler, at every step: Safety Steer Report on this MODEL (fed "
            "after sampling) shows this meter with the latest step's projections.",
        )
        if strength == 0:
            return io.NodeOutput(
                steered, ui=text_and_meter(f"strength 0: the model is returned unchanged. {status}", payload)
            )
        log = SamplingLog()
        steer = TextStreamSteer(
            aligned,
            row,
            strength,
            mode,
            Gate(threshold=gate_threshold) if gate == "target projection" else None,
            apply_to == "positive and negative",
            SigmaWindow(model, start_percent, end_percent),
            log,
        )
        if kind == "unet":
            steered.set_model_attn2_patch(attn2_patch(steer))
        else:
            steered.add_wrapper_with_key(WrappersMP.APPLY_MODEL, WRAPPER_KEY, apply_model_wrapper(steer))
        logs = list(model.get_attachment(LOGS_ATTACHMENT) or [])
        steered.set_attachments(LOGS_ATTACHMENT, [*logs, (f"{label} {aligned.names[row]} x{strength:g}", log)])
        return io.NodeOutput(steered, ui=text_and_meter(status, payload))
