"""ApplySafetySteer (text encoder): a cloned CLIP whose sub-encoders steer their own conditioning.

ComfyUI's CLIP.clone() shares the encoder modules, so nothing on them may change: another thread
may be encoding with the original CLIP at the same moment. The clone instead gets a wrapper of the
text-encoder stack; each encode runs on a shallow view of the stack whose sub-encoder slots hold
steering proxies of the shared modules (wrap, never swap). The original CLIP never sees a change,
and wrappers nest, so several steers (and other packs' CLIP clones) stack.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable

import torch
from comfy_api.latest import io

from ...steering.application.gating import Gate
from ...steering.application.report import ReportEntry, entries_from
from ...steering.application.steer import steer_hidden
from ...steering.errors import SourceModelError
from ...steering.transfer.aligned import AlignedSafetyDirection
from ..directions.fit_alignment import encoder_fingerprints
from ..input_checks import check_at_run_time, validation_result
from ..progress import download_progress
from ..search_aliases import search_aliases
from .clip_targets import prompt_token_mask, sub_encoders, token_features
from .inputs import REPORT_KEY, aligned_input, checked_aligned, common_inputs, threshold_input
from .meter_ui import live_meter, pending_meter, text_and_meter

GATES = ("source LLM", "target projection", "none")


class PromptTexts:
    """Remembers which text produced which token dict, so the source gate can read the prompt.
    Holds the token dicts themselves (identity check), a few at a time."""

    def __init__(self, keep: int = 32):
        self._entries: list[tuple[dict, str]] = []
        self._keep = keep

    def record(self, tokens: dict, text: str) -> None:
        self._entries = [*self._entries[-(self._keep - 1) :], (tokens, text)]

    def text_of(self, tokens: dict) -> str | None:
        return next((text for known, text in reversed(self._entries) if known is tokens), None)


class _SubEncoderProxy:
    """Stands in a view's sub-encoder slot: encodes through the shared module, then steers."""

    def __init__(self, target, encode):
        self._target, self._encode = target, encode

    def encode_token_weights(self, sections):
        return self._encode(self._target, sections)

    def __getattr__(self, name):
        target = self.__dict__.get("_target")
        if target is None:
            raise AttributeError(name)
        return getattr(target, name)


def slot_names(stack, encoders: dict[str, torch.nn.Module]) -> dict[str, str]:
    """{encoder key: the attribute of the underlying text-encoder module that holds it}."""
    base = stack
    while isinstance(base, SteeredTextEncoder):
        base = base._inner
    found = {}
    for key, module in encoders.items():
        name = next((n for n, m in base._modules.items() if m is module), None)
        if name is None:
            raise ValueError(f"Could not find the {key!r} sub-encoder among {type(base).__name__}'s modules.")
        found[key] = name
    return found


def view_with(stack, replacements: dict[str, object]):
    """A shallow copy of a text-encoder stack whose named slots hold ``replacements``; the shared
    stack keeps its own modules. Works through nested SteeredTextEncoders."""
    if isinstance(stack, SteeredTextEncoder):
        view = copy.copy(stack)
        view._inner = view_with(stack._inner, replacements)
        return view
    view = copy.copy(stack)
    object.__setattr__(view, "_modules", {**stack._modules, **replacements})
    return view


class SteeredTextEncoder:
    """Delegates to the wrapped text-encoder stack; steers its sub-encoders during encoding and
    adds the steer's report to the output (it lands in the conditioning, for Safety Steer Report)."""

    def __init__(
        self,
        inner,
        encoders: dict[str, torch.nn.Module],
        aligned: AlignedSafetyDirection,
        strength: float,
        mode: str,
        gate_mode: str,
        gate_threshold: float,
        choice: str,
        texts: PromptTexts,
        on_report: Callable[[list[dict]], None] | None = None,
    ):
        self._inner, self._aligned, self._on_report = inner, aligned, on_report
        self._slots = slot_names(inner, encoders)
        self._strength, self._mode, self._texts, self._choice = strength, mode, texts, choice
        self._row, self._source_rows = aligned.resolve(choice)
        self._gate_mode, self._gate_threshold = gate_mode, gate_threshold

    def __getattr__(self, name):
        inner = self.__dict__.get("_inner")  # absent while copy.copy rebuilds the object
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)

    def _gate_for(self, text: str | None) -> tuple[Gate | None, torch.Tensor | None, str]:
        """(gate on the target projection, or a fixed per-prompt gate value from the source LLM,
        and the name of the gate that really ran, for the report)."""
        if self._gate_mode == "none":
            return None, None, "none"
        if text is not None and not text.strip():
            return None, torch.zeros(1), "empty prompt"  # a usual negative: nothing to steer away from
        source = self._aligned.source_gate
        if self._gate_mode == "source LLM" and text is not None and source is not None:
            try:
                return None, source.gate_values([text], self._source_rows), "source LLM"
            except SourceModelError as exc:
                logging.warning(
                    f"Safety Steer: the source LLM gate is unavailable ({exc}); gating on the target "
                    "projection instead. Install the source model's package to use it."
                )
                return Gate(threshold=self._gate_threshold), None, "target projection (source LLM unavailable)"
        if self._gate_mode == "source LLM":
            logging.warning(
                "Safety Steer: the prompt text is not known here (the CLIP was cloned again after "
                "Apply Safety Steer, or the pack has no source model); gating on the target projection."
            )
            return Gate(threshold=self._gate_threshold), None, "target projection (prompt text unknown)"
        return Gate(threshold=self._gate_threshold), None, "target projection"

    def encode_token_weights(self, token_weight_pairs):
        text = self._texts.text_of(token_weight_pairs)
        gate, fixed, gate_kind = self._gate_for(text)
        entries: list[ReportEntry] = []
        proxies = {}
        for key, slot in self._slots.items():
            current = self._slot(slot)
            proxies[slot] = _SubEncoderProxy(current, self._steered(key, gate, fixed, gate_kind, text, entries))
        out = view_with(self._inner, proxies).encode_token_weights(token_weight_pairs)
        extra = dict(out[2]) if len(out) > 2 else {}
        extra[REPORT_KEY] = [*extra.get(REPORT_KEY, []), *(e.as_dict() for e in entries)]
        if self._on_report is not None and text and text.strip():  # the node's meter: this prompt
            self._on_report([e.as_dict() for e in entries])
        return (out[0], out[1], extra)

    def _slot(self, slot: str):
        stack = self._inner
        while isinstance(stack, SteeredTextEncoder):
            stack = stack._inner
        return stack._modules[slot]

    def _steered(self, key, gate, fixed_gate, gate_kind, text, entries):
        directions = self._aligned.encoders[key]
        pooled_directions = self._aligned.encoders.get(f"{key}.pooled")
        names, label = self._aligned.names, self._aligned.names[self._row]

        def steered(module, sections):
            out = module.encode_token_weights(sections)
            # several hidden states (Flux.2): steered side by side per token, then put back as they came
            (cond, own_layout), pooled = token_features(out[0]), out[1]
            mask = prompt_token_mask(key, module, sections)
            if mask.numel() != cond.shape[1]:
                mask = torch.ones(cond.shape[1], dtype=torch.bool)
            weights = fixed_gate.expand(cond.shape[0]) if fixed_gate is not None else None
            cond, report = steer_hidden(
                cond,
                mask.unsqueeze(0).expand(cond.shape[0], -1),
                directions,
                self._strength,
                self._mode,
                gate,
                self._row,
                weights,
            )
            if fixed_gate is not None:  # the gate that ran is the source LLM's
                report["gate"] = fixed_gate.expand(cond.shape[0]).tolist()
            _, after = steer_hidden(  # read the steered states (strength 0: nothing changes)
                cond, mask.unsqueeze(0).expand(cond.shape[0], -1), directions, 0.0, self._mode, None, self._row
            )
            entries.extend(
                entries_from({key: report}, "text encoder", [text or "(prompt)"], names, label, gate_kind, {key: after})
            )
            if pooled is not None and pooled_directions is not None:
                pooled_weights = fixed_gate.expand(pooled.shape[0]) if fixed_gate is not None else None
                steered_pooled, report = steer_hidden(
                    pooled.reshape(pooled.shape[0], 1, -1),
                    torch.ones(pooled.shape[0], 1),
                    pooled_directions,
                    self._strength,
                    self._mode,
                    gate,
                    self._row,
                    pooled_weights,
                )
                pooled = steered_pooled.reshape(pooled.shape)
            return (own_layout(cond), pooled, *out[2:])

        return steered


def gate_status(aligned: AlignedSafetyDirection, gate: str, threshold: float) -> str:
    """The gate this node will run, said on the node; a fallback from the source LLM is a warning
    with its reason and the fix (a log line alone goes unseen). A missing built-in source model is
    downloaded into models/LLM/ first where the hub is reachable, with ComfyUI's progress bar."""
    if gate == "none":
        return "Gate: none (every prompt is steered in full)."
    if gate == "target projection":
        return f"Gate: target projection (opens below {threshold:g} benign-anchor standard deviations)."
    source = aligned.source_gate
    if source is None:
        reason = "this direction carries no source model"
    else:
        reason = source.unavailable_reason(progress=download_progress())
    if reason is None:
        return f"Gate: source LLM ({source.describe()})."
    return (
        f"WARNING: gate falls back to the target projection (weaker): {reason} "
        "Fix: install or place the pack's source model (see the README, Gating), or choose another gate."
    )


def check_alignment_matches(aligned: AlignedSafetyDirection, clip) -> dict[str, torch.nn.Module]:
    encoders = sub_encoders(clip)
    missing = [k for k in encoders if k not in aligned.encoders]
    expected = aligned.metadata.get("encoder_fingerprints", {})
    changed = [k for k, fp in encoder_fingerprints(clip).items() if k in expected and expected[k] != fp]
    if missing or changed:
        raise ValueError(
            f"This direction was aligned to {aligned.metadata.get('target', '?')} (encoders "
            f"{', '.join(k for k in aligned.encoders if '.pooled' not in k)}), but the CLIP in this graph is "
            f"{type(clip.cond_stage_model).__name__} (encoders {', '.join(encoders)})"
            + (f"; encoders with other weights: {', '.join(changed)}" if changed else "")
            + ". Fit Cross-Model Alignment with the CLIP you steer."
        )
    return encoders


class SafetySteerApplyTextEncoder(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SafetySteerApplyTextEncoder",
            display_name="Apply Safety Steer (Text Encoder)",
            category="safety_steer",
            **search_aliases("SafetySteerApplyTextEncoder"),
            description=(
                "Returns a copy of the CLIP whose text encoders push every prompt's conditioning along "
                "the aligned safety direction (the paper's application point). Every CLIPTextEncode "
                "fed by it yields steered conditioning; the original CLIP is unchanged."
            ),
            inputs=[
                io.Clip.Input("clip", tooltip="The CLIP to steer (the one the direction was aligned to)."),
                aligned_input(),
                *common_inputs(),
                io.Combo.Input(
                    "gate",
                    options=list(GATES),
                    default="source LLM",
                    tooltip="Steer each prompt in proportion to how unsafe it is, so benign prompts keep "
                    "their look. source LLM: the pack's source model reads the prompt (best "
                    "separation; one small forward pass per prompt). target projection: the "
                    "prompt's projection in this encoder (weaker). none: steer every prompt.",
                ),
                threshold_input(),
            ],
            hidden=[io.Hidden.unique_id],
            outputs=[
                io.Clip.Output(
                    display_name="steered_clip",
                    tooltip="A steered copy of the CLIP: feed it to every CLIP Text Encode of the graph.",
                )
            ],
        )

    @classmethod
    def validate_inputs(cls, strength, direction, mode, gate, gate_threshold) -> bool | str:
        return validation_result(cls, locals())

    @classmethod
    def execute(cls, clip, aligned_direction, strength, direction, mode, gate, gate_threshold) -> io.NodeOutput:
        check_at_run_time(cls, locals())
        aligned_direction = checked_aligned(aligned_direction, "Apply Safety Steer (Text Encoder)")
        aligned_direction.resolve(direction)  # an unknown direction fails here, not mid-encode
        encoders = check_alignment_matches(aligned_direction, clip)
        steered = clip.clone()
        status = gate_status(aligned_direction, gate, gate_threshold)
        fell_back = status.startswith("WARNING")
        payload = pending_meter(
            aligned_direction.names,
            strength,
            "target projection (source LLM unavailable)" if fell_back else gate,
            "The steer runs when a prompt is encoded through this CLIP: this meter fills in then (the "
            "latest prompt), and Safety Steer Report on the conditioning shows it after the run.",
            status if fell_back else None,
        )
        if strength == 0:
            return io.NodeOutput(
                steered, ui=text_and_meter(f"strength 0: the CLIP is returned unchanged. {status}", payload)
            )
        texts = PromptTexts()
        tokenize = steered.tokenize

        def tokenize_and_remember(text, *args, **kwargs):
            tokens = tokenize(text, *args, **kwargs)
            texts.record(tokens, text)
            return tokens

        steered.tokenize = tokenize_and_remember  # an attribute of this clone only
        steered.cond_stage_model = SteeredTextEncoder(
            clip.cond_stage_model,
            encoders,
            aligned_direction,
            strength,
            mode,
            gate,
            gate_threshold,
            direction,
            texts,
            live_meter(cls.hidden.unique_id if cls.hidden else None, status, strength),
        )
        return io.NodeOutput(steered, ui=text_and_meter(status, payload))
