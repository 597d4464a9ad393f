"""The safety meter: one prompt's projection per category before and after the steer, the gate that
ran and the strength, as one JSON-ready dict that the frontend draws on the node.

Projections are in benign-anchor standard deviations (below 0 = unsafe-leaning), averaged over the
token streams of the text encoders that were steered (pooled vectors left out: they are one more
view of the same prompt). Where a point cannot know a prompt (the steer runs later, or is not a
direction), the values are None and ``note`` says why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

#: Words in a report's gate name that mean the source-LLM gate did not run as asked.
FALLBACK_MARKS = ("unavailable", "unknown")


def meter(
    categories: list[str],
    before: Mapping[str, float | None] | None,
    after: Mapping[str, float | None] | None,
    strength: float,
    gate_kind: str,
    gate_open: float | None = None,
    warning: str | None = None,
    note: str | None = None,
    prompt: str | None = None,
) -> dict:
    """The payload (README, "Node UI payloads"): missing values are None, never left out."""
    fallback = warning is not None or any(mark in gate_kind for mark in FALLBACK_MARKS)

    def values(source):
        source = source or {}
        return {c: (None if source.get(c) is None else round(float(source[c]), 4)) for c in categories}

    payload = {
        "categories": list(categories),
        "before": values(before),
        "after": values(after),
        "strength": float(strength),
        "gate": {
            "kind": gate_kind,
            "open": None if gate_open is None else round(float(gate_open), 4),
            "fallback": fallback,
            "warning": warning,
        },
    }
    if note:
        payload["note"] = note
    if prompt is not None:
        payload["prompt"] = prompt
    return payload


def _mean(dicts: list[Mapping[str, float]], categories: list[str]) -> dict[str, float] | None:
    if not dicts or any(d is None for d in dicts):
        return None
    return {c: sum(float(d[c]) for d in dicts) / len(dicts) for c in categories if all(c in d for d in dicts)}


def meter_from_entries(entries: Iterable[Mapping], strength: float | None = None, note: str | None = None) -> dict:
    """The meter of the first steered prompt in report entries (ReportEntry.as_dict(): ``projections``, and
    ``after`` where the point measured it), averaged over its token-stream encoders. ``strength``
    None: the step applied (strength x gate) stands in, which is what a report knows."""
    entries = [e for e in entries if not str(e.get("encoder", "")).endswith(".pooled")]
    if not entries:
        return meter([], None, None, float(strength or 0.0), "none", note=note or "Nothing steered yet: run the graph.")
    first = max(entries, key=lambda e: float(e["applied"]))  # the first of the most steered prompts
    mine = [e for e in entries if e["prompt"] == first["prompt"] and e["point"] == first["point"]]
    categories = list(first["projections"])
    before = _mean([e["projections"] for e in mine], categories)
    after = _mean([e.get("after") for e in mine], categories)
    gate_kind = first.get("gate_kind") or "none"
    warning = None
    if any(mark in gate_kind for mark in FALLBACK_MARKS):
        warning = (
            f"{gate_kind}: the source-LLM gate did not run; the weaker target projection gated instead. "
            "Install or place the pack's source model."
        )
    if after is None and note is None:
        note = f"The {first['point']} point did not measure the projection after the steer."
    return meter(
        categories,
        before,
        after,
        float(strength if strength is not None else first["applied"]),
        gate_kind,
        sum(float(e["gate"]) for e in mine) / len(mine),
        warning,
        note,
        prompt=first["prompt"],
    )
