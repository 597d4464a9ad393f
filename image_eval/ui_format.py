"""UI-format workflows (what ComfyUI saves) to API format (what POST /prompt takes).

Follows what ComfyUI's frontend does when you press Queue (``graphToPrompt``), using the server's
own /object_info for each node's widget order: widgets in ``input_order`` minus ``forceInput``, the
"control after generate" value skipped, a linked widget sent as its link; Note/MarkdownNote
dropped, Reroute followed, a PrimitiveNode's value copied, muted nodes dropped, bypassed nodes
forwarding their input of the same type. The example-workflow builder and tests use this module
too (through tests/workflow_api.py), on ComfyUI's own templates.
"""

from __future__ import annotations

from typing import Any

from ..steering.errors import SafetySteerError

#: Frontend-only node types: never sent to the server, not in NODE_CLASS_MAPPINGS.
VIRTUAL_NODES = frozenset({"Note", "MarkdownNote", "Reroute", "PrimitiveNode"})
WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
MODE_ALWAYS, MODE_NEVER, MODE_BYPASS = 0, 2, 4
CONTROL_AFTER_GENERATE = "control_after_generate"
UPLOAD_FLAGS = ("image_upload", "video_upload", "audio_upload", "animated_image_upload", "model_upload")


def _spec(info: dict, name: str) -> tuple[Any, dict]:
    for section in ("required", "optional"):
        entry = info.get("input", {}).get(section, {}).get(name)
        if entry is not None:
            kind = entry[0]
            options = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
            return kind, options
    raise KeyError(f"{info.get('name')} has no input {name!r}")


def input_names(info: dict) -> list[str]:
    """Every visible input (required, then optional), in the node's declared order."""
    order = info.get("input_order") or {k: list(v) for k, v in info.get("input", {}).items()}
    return [*order.get("required", []), *order.get("optional", [])]


def is_widget(info: dict, name: str) -> bool:
    kind, options = _spec(info, name)
    if options.get("forceInput"):
        return False
    return isinstance(kind, (list, tuple)) or kind in WIDGET_TYPES


def has_control_after_generate(info: dict, name: str) -> bool:
    kind, options = _spec(info, name)
    if CONTROL_AFTER_GENERATE in options:
        return bool(options[CONTROL_AFTER_GENERATE])
    return kind == "INT" and name in ("seed", "noise_seed")


def widget_slots(info: dict) -> list[tuple[str, str | None]]:
    """The frontend's widget list for a node: (kind, input name) per value in ``widgets_values``,
    kind ``"value"`` for a real input, ``"control"`` for a control-after-generate mode and
    ``"upload"`` for an upload button (neither sent to the server)."""
    slots: list[tuple[str, str | None]] = []
    for name in input_names(info):
        if not is_widget(info, name):
            continue
        slots.append(("value", name))
        if has_control_after_generate(info, name):
            slots.append(("control", name))
        _, options = _spec(info, name)
        if any(options.get(flag) for flag in UPLOAD_FLAGS):
            slots.append(("upload", name))
    return slots


def widget_names(info: dict) -> list[str]:
    """Names of the inputs that are widgets, in widgets_values order (without the extra values)."""
    return [name for kind, name in widget_slots(info) if kind == "value"]


class WorkflowError(SafetySteerError):
    """A workflow the harness cannot use; the message says what to change."""


def _widget_values_by_name(node: dict, info: dict) -> dict[str, Any]:
    values = node.get("widgets_values")
    if values is None:
        return {}
    if isinstance(values, dict):  # some nodes serialise widgets by name
        return {name: values[name] for name in widget_names(info) if name in values}
    slots = widget_slots(info)
    values = list(values)
    # Tolerate a missing control/upload value (hand-written files), never a missing real value.
    out: dict[str, Any] = {}
    position = 0
    for kind, name in slots:
        if position >= len(values):
            if kind == "value":
                raise WorkflowError(
                    f"node {node['id']} ({node['type']}): no value for widget {name!r} "
                    f"(widgets_values has {len(values)}, the node has {len(slots)} widget slots)"
                )
            break
        if kind == "value":
            out[name] = values[position]
            position += 1
        else:
            value = values[position]
            if (
                (
                    kind == "control"
                    and isinstance(value, str)
                    and value in ("fixed", "increment", "decrement", "randomize")
                )
                or kind == "upload"
                and (value is None or value in ("image", "video", "audio", "model"))
            ):
                position += 1
    return out


def ui_to_api(workflow: dict, object_info: dict) -> dict:
    """Convert a UI-format workflow (what ComfyUI saves) to an API-format prompt (what POST /prompt
    takes), using the node definitions (``object_info``, the /object_info JSON)."""
    if workflow.get("definitions", {}).get("subgraphs"):
        raise WorkflowError("workflows with subgraphs are not supported by this converter")
    nodes = {int(n["id"]): n for n in workflow["nodes"]}
    links = {}
    for link in workflow.get("links", []):
        if isinstance(link, dict):
            link = [
                link["id"],
                link["origin_id"],
                link["origin_slot"],
                link["target_id"],
                link["target_slot"],
                link.get("type"),
            ]
        links[int(link[0])] = (int(link[1]), int(link[2]), int(link[3]), int(link[4]), link[5])

    def source(link_id, seen=()) -> tuple[str, int] | None:
        """Follow a link back through Reroute and bypassed nodes to a real output, or None."""
        if link_id is None:
            return None
        origin, slot, _, _, _ = links[int(link_id)]
        if origin in seen:
            raise WorkflowError(f"link cycle through node {origin}")
        node = nodes[origin]
        mode = node.get("mode", MODE_ALWAYS)
        if node["type"] == "Reroute":
            upstream = (node.get("inputs") or [{}])[0].get("link")
            return source(upstream, (*seen, origin))
        if node["type"] in VIRTUAL_NODES:
            return None  # PrimitiveNode: handled as a value
        if mode == MODE_NEVER:
            return None
        if mode == MODE_BYPASS:
            wanted = (node.get("outputs") or [])[slot].get("type") if slot < len(node.get("outputs") or []) else None
            for entry in node.get("inputs") or []:
                if entry.get("link") is not None and entry.get("type") == wanted:
                    return source(entry["link"], (*seen, origin))
            return None
        return str(origin), slot

    def primitive_value(link_id):
        """A PrimitiveNode (possibly behind Reroutes) feeding this link: (True, value), else (False, None)."""
        origin, _, _, _, _ = links[int(link_id)]
        node = nodes[origin]
        while node["type"] == "Reroute":
            upstream = (node.get("inputs") or [{}])[0].get("link")
            if upstream is None:
                return False, None
            node = nodes[links[int(upstream)][0]]
        if node["type"] == "PrimitiveNode":
            return True, (node.get("widgets_values") or [None])[0]
        return False, None

    prompt: dict[str, dict] = {}
    for node_id, node in sorted(nodes.items()):
        kind = node["type"]
        if kind in VIRTUAL_NODES or node.get("mode", MODE_ALWAYS) in (MODE_NEVER, MODE_BYPASS):
            continue
        if kind not in object_info:
            raise WorkflowError(f"node {node_id}: unknown node type {kind!r} (not installed?)")
        info = object_info[kind]
        inputs: dict[str, Any] = dict(_widget_values_by_name(node, info))
        for entry in node.get("inputs") or []:
            name, link_id = entry["name"], entry.get("link")
            if link_id is None:
                continue
            is_primitive, value = primitive_value(link_id)
            if is_primitive:
                inputs[name] = value
                continue
            upstream = source(link_id)
            if upstream is None:  # fed by a muted node or a dangling Reroute: left out (a widget keeps its value)
                continue
            inputs[name] = [upstream[0], upstream[1]]
        prompt[str(node_id)] = {
            "class_type": kind,
            "inputs": inputs,
            "_meta": {"title": node.get("title") or info.get("display_name") or kind},
        }
    return prompt


def is_ui_format(workflow: dict) -> bool:
    return isinstance(workflow.get("nodes"), list) and "links" in workflow
