"""Prompt inspection: what the source gate sees in each prompt, before anything is generated.

The same source-LLM gate the text-encoder steer runs (steering.application.source_gate), read out
per category instead of folded into one number: the projection on each category's direction
(benign-anchor standard deviations, below 0 = unsafe-leaning) and how far the gate would open for
that category alone (0..1; the trained detector when the pack has one, else the projection gate).
One forward pass of the source LLM reads every layer both need.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from .gating import Gate
from .source_gate import SourceGate

#: A prompt is flagged when the gate over the selected harms opens at least this far (half way:
#: the detector's log-odds at its calibrated threshold, or the projection at the gate's threshold).
FLAG_AT = 0.5
#: top_category of a prompt that is not flagged.
NO_TOP_CATEGORY = "none"


@dataclass
class PromptReading:
    prompt: str
    projection: dict[str, float]  # per category, benign-anchor standard deviations
    detector: dict[str, float]  # per category, how far the gate would open for it alone (0..1)
    score: float  # the gate over the selected categories (0..1): what the steer would apply
    flagged: bool
    top_category: str


@dataclass
class Inspection:
    prompts: list[PromptReading]
    categories: list[str]
    threshold: float  # the gate value at which a prompt counts as flagged
    projection_threshold: float  # the projection gate's threshold (benign-anchor units)
    gate: dict  # kind, source, fallback, warning

    @property
    def score(self) -> float:
        return max((p.score for p in self.prompts), default=0.0)

    @property
    def flagged(self) -> bool:
        return any(p.flagged for p in self.prompts)

    def as_dict(self) -> dict:
        return asdict(self)


def split_prompts(texts) -> list[str]:
    """One prompt per non-empty line, from a multiline string or a (nested) list of them."""
    if isinstance(texts, (list, tuple)):
        return [prompt for text in texts for prompt in split_prompts(text)]
    if not isinstance(texts, str):
        raise ValueError(f"`prompts` must be text or a list of texts; got {type(texts).__name__}.")
    return [line.strip() for line in texts.splitlines() if line.strip()]


def select_categories(available: list[str], wanted: str | list[str] | None) -> list[str]:
    """The categories asked for (comma-separated or a list; empty = all), checked against the pack."""
    if isinstance(wanted, str):
        wanted = [w.strip() for w in wanted.split(",")]
    wanted = [w for w in (wanted or []) if w and w.lower() != "all"]
    unknown = [w for w in wanted if w not in available]
    if unknown:
        raise ValueError(
            f"Unknown categor{'ies' if len(unknown) > 1 else 'y'} {', '.join(map(repr, unknown))}; this pack "
            f"has {', '.join(available)}. Leave categories empty to inspect all of them."
        )
    return [c for c in available if c in wanted] or list(available)


def inspect_prompts(
    gate: SourceGate, names: list[str], prompts: list[str], categories: list[str] | None = None
) -> Inspection:
    """Per prompt and category: projection, the gate's opening, the overall score and top category.

    ``names`` are the pack's direction names (``global`` first, then the categories); ``gate``
    loads its source model on first use and raises SourceModelError when it cannot."""
    if not prompts:
        raise ValueError("No prompt to inspect: write one prompt per line in `prompts`.")
    categories = categories or names[1:]
    rows = [names.index(c) for c in categories]
    # all harms = the global row; a subset gates on the harms of its own rows (as a category mix does)
    score_rows = [0] if len(categories) == len(names) - 1 else rows
    detector = gate.detector
    layers = sorted({gate.layer, *(detector.layers if detector is not None else [])})
    features, owners = gate._read(prompts, layers)
    per_window = gate._projections(features[gate.layer], rows)  # [windows, categories]
    projection = torch.stack([per_window[w].min(dim=0).values for w in owners])
    if detector is not None:
        columns = [detector.scores(features, [row]) for row in [*rows, *score_rows]]
        log_odds = torch.stack(columns[: len(rows)], dim=1)
        per_prompt = torch.stack([log_odds[w].max(dim=0).values for w in owners])
        opening = detector.gate(per_prompt)  # [prompts, categories]
        overall = detector.scores(features, score_rows)
        score = detector.gate(torch.stack([overall[w].max() for w in owners]))
        kind = "source LLM detector"
    else:
        opening = Gate(gate.threshold, gate.temperature)(projection)
        score_projection = gate._projections(features[gate.layer], score_rows)
        worst = torch.stack([score_projection[w].min(dim=0).values for w in owners])
        score = Gate(gate.threshold, gate.temperature)(worst).max(dim=1).values
        kind = "source LLM projection"
    readings = []
    for number, prompt in enumerate(prompts):
        top = int(opening[number].argmax()) if detector is not None else int(projection[number].argmin())
        readings.append(
            PromptReading(
                prompt,
                {c: round(float(projection[number, i]), 4) for i, c in enumerate(categories)},
                {c: round(float(opening[number, i]), 4) for i, c in enumerate(categories)},
                round(float(score[number]), 4),
                bool(float(score[number]) >= FLAG_AT),
                # below the flag line the largest of near-zero readings would name an arbitrary harm
                categories[top] if float(score[number]) >= FLAG_AT else NO_TOP_CATEGORY,
            )
        )
    warning = None
    if detector is None:
        warning = "This pack has no trained detector: the gate reads the direction's projection (weaker)."
    return Inspection(
        readings,
        list(categories),
        FLAG_AT,
        float(gate.threshold),
        {"kind": kind, "source": gate.describe(), "fallback": False, "warning": warning},
    )


def format_inspection(inspection: Inspection) -> str:
    """The inspection as plain text (the node's report output)."""
    gate = inspection.gate
    lines = [
        f"Prompt Safety Inspector: {len(inspection.prompts)} prompt(s), gate: {gate['kind']} ({gate['source']}).",
        f"Flagged when the gate opens >= {inspection.threshold:g}; projections in benign-anchor standard "
        "deviations (below 0 = unsafe-leaning).",
    ]
    if gate.get("warning"):
        lines.insert(0, f"WARNING: {gate['warning']}")
    for reading in inspection.prompts:
        prompt = reading.prompt if len(reading.prompt) <= 70 else reading.prompt[:67] + "..."
        verdict = "FLAGGED" if reading.flagged else "ok"
        lines.append(f"- {verdict} {reading.score:.3f} (top: {reading.top_category}) {prompt!r}")
        lines.append(
            "    "
            + ", ".join(
                f"{c} {reading.projection[c]:+.2f} (gate {reading.detector[c]:.2f})" for c in inspection.categories
            )
        )
    return "\n".join(lines)
