"""The ``safety_meter`` UI payload (steering.application.meter) next to a node's text, so the
frontend draws the meter on every Apply node and on Safety Steer Report after a run."""

from __future__ import annotations

import logging
from collections.abc import Callable

from comfy_api.latest import ui

from ...steering.application.meter import meter, meter_from_entries

METER_KEY = "safety_meter"


def text_and_meter(text: str, payload: dict) -> dict:
    """The node's ``ui``: the text it always showed, plus the meter."""
    return {**ui.PreviewText(text).as_dict(), METER_KEY: [payload]}


def pending_meter(categories: list[str], strength: float, gate_kind: str, note: str, warning: str | None = None):
    """A meter for a point that steers later (at encoding or sampling): the gate and strength are
    known now, the projections only once a prompt runs through it."""
    return meter(list(categories), None, None, strength, gate_kind, None, warning, note)


def push_ui(node_id: str | None, node_ui: dict) -> None:
    """Send ``node_ui`` to the browser as the node's output now (the message ComfyUI sends when a node
    has run), for a steer that runs after its node did: the meter fills in when the prompt is encoded.
    Nothing happens without a running server (in-process use, tests)."""
    try:
        from server import PromptServer
    except ImportError:
        return
    server = getattr(PromptServer, "instance", None)
    if server is None or node_id is None:
        return
    message = {
        "node": node_id,
        "display_node": node_id,
        "output": node_ui,
        "prompt_id": getattr(server, "last_prompt_id", None),
    }
    try:
        server.send_sync("executed", message, server.client_id)
    except Exception as exc:  # a meter must never break encoding
        logging.getLogger(__name__).debug("Safety Steer: could not update the meter of node %s (%s)", node_id, exc)


def live_meter(node_id: str | None, text: str, strength: float) -> Callable[[list[dict]], None]:
    """A callback for the text-encoder steer: after each encode of a non-empty prompt, the node's
    meter (with the text it showed) becomes that prompt's before and after."""

    def update(entries: list[dict]) -> None:
        push_ui(node_id, text_and_meter(text, meter_from_entries(entries, strength)))

    return update
