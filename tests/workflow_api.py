"""ComfyUI workflows for the tests and the example-workflow builder: node definitions in /object_info
form, and UI-format -> API-format conversion.

Plain functions, no pytest and no ComfyUI import at module level; used by
`scripts/build_example_workflows.py` (to lay out widgets in the right order) and by
`tests/test_example_workflows.py` (to run the shipped workflows on a real server). Load it by file
(``importlib.util.spec_from_file_location``): ComfyUI owns the top-level name ``tests``.

The conversion itself (what ComfyUI's frontend does when you press Queue, ``graphToPrompt``) is the
one `safety-steer eval-images` uses, ``safety_steer.image_eval.ui_format``: re-exported here so the
shipped workflows are tested through the product's own converter.
"""

from __future__ import annotations

from safety_steer.image_eval.ui_format import (  # noqa: F401 (re-exported)
    CONTROL_AFTER_GENERATE,
    MODE_ALWAYS,
    MODE_BYPASS,
    MODE_NEVER,
    UPLOAD_FLAGS,
    VIRTUAL_NODES,
    WIDGET_TYPES,
    WorkflowError,
    _spec,
    has_control_after_generate,
    input_names,
    is_widget,
    ui_to_api,
    widget_names,
    widget_slots,
)

# --------------------------------------------------------------------------- node definitions


def node_info(node_class: type, name: str, display_names: dict | None = None) -> dict:
    """One node's entry of GET /object_info, computed exactly as ComfyUI's server.py does
    (``PromptServer.node_info``, a closure there, so it is repeated here)."""
    if hasattr(node_class, "GET_NODE_INFO_V1"):  # V3 schema (comfy_api.latest.io.ComfyNode)
        return node_class.GET_NODE_INFO_V1()
    input_types = node_class.INPUT_TYPES()
    info = {
        "input": input_types,
        "input_order": {key: list(value.keys()) for key, value in input_types.items()},
        "output": node_class.RETURN_TYPES,
        "output_is_list": getattr(node_class, "OUTPUT_IS_LIST", [False] * len(node_class.RETURN_TYPES)),
        "output_name": getattr(node_class, "RETURN_NAMES", node_class.RETURN_TYPES),
        "name": name,
        "display_name": (display_names or {}).get(name, name),
        "description": getattr(node_class, "DESCRIPTION", ""),
        "python_module": getattr(node_class, "RELATIVE_PYTHON_MODULE", "nodes"),
        "category": getattr(node_class, "CATEGORY", "sd"),
        "output_node": getattr(node_class, "OUTPUT_NODE", False) is True,
    }
    if hasattr(node_class, "OUTPUT_TOOLTIPS"):
        info["output_tooltips"] = node_class.OUTPUT_TOOLTIPS
    return info


def object_info_in_process(names=None) -> dict:
    """GET /object_info of the ComfyUI imported in this process (its ``nodes`` module already loaded
    with the custom nodes), restricted to ``names`` if given."""
    import nodes  # ComfyUI's top-level module

    mappings = nodes.NODE_CLASS_MAPPINGS
    wanted = mappings if names is None else [n for n in names if n in mappings]
    return {n: node_info(mappings[n], n, nodes.NODE_DISPLAY_NAME_MAPPINGS) for n in wanted}


def input_type(info: dict, name: str) -> str:
    kind, _ = _spec(info, name)
    return "COMBO" if isinstance(kind, (list, tuple)) else str(kind)


def combo_options(info: dict, name: str) -> list | None:
    kind, options = _spec(info, name)
    if isinstance(kind, (list, tuple)):
        return list(kind)
    return options.get("options") if kind == "COMBO" else None


def socket_inputs(info: dict) -> list[tuple[str, str, bool]]:
    """(name, type, optional) of the inputs drawn as sockets (not widgets)."""
    optional = set(info.get("input", {}).get("optional", {}))
    return [(n, input_type(info, n), n in optional) for n in input_names(info) if not is_widget(info, n)]


def nodes_of_type(prompt: dict, class_type: str) -> list[dict]:
    """The API-format nodes of one class (to override their inputs in tests)."""
    return [node for node in prompt.values() if node["class_type"] == class_type]
