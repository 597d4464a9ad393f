"""The ``safety_meter`` UI payload (steering.application.meter) next to a node's text, so the
frontend draws the meter on every Apply node and on Safety Steer Report after a run."""

from __future__ import annotations

from comfy_api.latest import ui

from ...steering.application.meter import meter

METER_KEY = "safety_meter"


def text_and_meter(text: str, payload: dict) -> dict:
    """The node's ``ui``: the text it always showed, plus the meter."""
    return {**ui.PreviewText(text).as_dict(), METER_KEY: [payload]}


def pending_meter(categories: list[str], strength: float, gate_kind: str, note: str, warning: str | None = None):
    """A meter for a point that steers later (at encoding or sampling): the gate and strength are
    known now, the projections only once a prompt runs through it."""
    return meter(list(categories), None, None, strength, gate_kind, None, warning, note)
