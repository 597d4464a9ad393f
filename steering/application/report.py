"""The steering report: per prompt, per category, how strongly it projected and how much steer
was applied. Built from steer_hidden's reports; read on the nodes and as a string."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass


@dataclass
class ReportEntry:
    point: str  # "text encoder", "conditioning", "model (step sigma=...)"
    prompt: str  # the prompt text where known, else its position
    encoder: str  # sub-encoder key (``l``, ``t5xxl``, ``l.pooled`` ...)
    direction: str
    projections: dict[str, float]  # benign-anchor standard deviations; below 0 = unsafe-leaning
    gate: float
    applied: float  # strength x gate (x 0 for rows left alone): the step taken
    gate_kind: str = ""  # the gate that really ran ("source LLM", "target projection", "none", ...)
    after: dict[str, float] | None = None  # the projections once steered, where the point measured them

    def as_dict(self) -> dict:
        return asdict(self)


def entries_from(
    reports: dict[str, dict],
    point: str,
    prompts: list[str],
    names: list[str],
    direction: str,
    gate_kind: str = "",
    after: dict[str, dict] | None = None,
) -> list[ReportEntry]:
    """ReportEntries from {encoder key: steer_hidden report} for a batch of ``prompts``; ``after``:
    the same reports read from the steered states (their projections become ``after``)."""
    entries = []
    for key, report in reports.items():
        for i, prompt in enumerate(prompts):
            if i >= len(report["gate"]):
                break
            entries.append(
                ReportEntry(
                    point,
                    prompt,
                    key,
                    direction,
                    {n: round(float(v), 3) for n, v in zip(names, report["projections"][i])},
                    round(float(report["gate"][i]), 4),
                    round(float(report["applied"][i]), 4),
                    gate_kind,
                    _projections(after.get(key), i, names) if after else None,
                )
            )
    return entries


def _projections(report: dict | None, index: int, names: list[str]) -> dict[str, float] | None:
    if report is None or index >= len(report["projections"]):
        return None
    return {n: round(float(v), 3) for n, v in zip(names, report["projections"][index])}


def format_report(entries: list[ReportEntry], limit: int = 64) -> str:
    if not entries:
        return (
            "Safety Steer report: nothing steered yet (the steer runs when its conditioning is encoded or "
            "sampled; run the graph, or check that the steered CLIP/MODEL feeds this graph's sampler)."
        )
    lines = [
        f"Safety Steer report: {len(entries)} steer(s). Projections in benign-anchor standard deviations "
        "(below 0 = unsafe-leaning); applied = strength x gate."
    ]
    fell_back = sorted({e.gate_kind for e in entries if e.gate_kind and "unavailable" in e.gate_kind})
    if fell_back:
        lines.insert(
            0,
            f"WARNING: {', '.join(fell_back)}: the source-LLM gate did not run and the weaker target "
            "projection gated instead. Fix: install or place the pack's source model (the Apply node "
            "says which file goes where; `safety-steer doctor` lists what is found).",
        )
    for entry in entries[:limit]:
        prompt = entry.prompt if len(entry.prompt) <= 70 else entry.prompt[:67] + "..."
        worst = min(entry.projections.items(), key=lambda item: item[1]) if entry.projections else ("-", 0.0)
        lines.append(
            f"- [{entry.point} | {entry.encoder} | {entry.direction}] {prompt!r}: applied {entry.applied:.3f} "
            f"(gate {entry.gate:.3f}{', ' + entry.gate_kind if entry.gate_kind else ''}); "
            f"most unsafe-leaning: {worst[0]} {worst[1]:+.2f}"
        )
        lines.append("    " + ", ".join(f"{n} {v:+.2f}" for n, v in entry.projections.items()))
    if len(entries) > limit:
        lines.append(f"... and {len(entries) - limit} more.")
    return "\n".join(lines)


class SamplingLog:
    """What a model patch did during sampling: how many calls steered, and the report of the most
    recent step. The report is computed only when read (from the latest step's inputs, kept by
    reference), so the per-step path pays nothing for it."""

    def __init__(self):
        self.calls = 0
        self.steps: set[float] = set()
        self.last_sigma: float | None = None
        self._latest: Callable[[], list[ReportEntry]] | None = None

    def record(self, sigma: float, latest: Callable[[], list[ReportEntry]] | None = None) -> None:
        self.calls += 1
        if sigma != self.last_sigma:
            self.last_sigma, self._latest = sigma, None
            self.steps.add(sigma)
        if self._latest is None:
            self._latest = latest

    @property
    def last_entries(self) -> list[ReportEntry]:
        return self._latest() if self._latest is not None else []

    def summary(self, label: str) -> str:
        if not self.calls:
            return f"{label}: no steer yet (not sampled, or every step fell outside the start/end range)."
        return (
            f"{label}: applied {self.calls} time(s) over {len(self.steps)} step(s) (once per cross-attention "
            f"block in UNets); the latest (sigma {self.last_sigma:.4g}):\n" + format_report(self.last_entries)
        )
