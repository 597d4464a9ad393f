"""Input checks every node runs, in ComfyUI's validation and again when it executes.

ComfyUI skips its own min / max check for every input a node's ``validate_inputs`` names (and for
all of them when it takes ``**kwargs``); NaN passes min / max comparisons anyway (NaN < x is
False; Python's JSON parser accepts NaN and Infinity in `/prompt` bodies); and ComfyUI 0.3.75
checks combo options only for old-style list inputs, not for V3 ``io.Combo`` inputs, so an unknown
mode or gate reaches ``execute``. A node therefore names the inputs it checks, and this module
checks them against the node's own schema: numbers finite and inside [min, max], combo values
among the options, a start no later than its end. Linked inputs (unknown during validation) are
checked when the node runs.
"""

from __future__ import annotations

import inspect
import math


def _number_limits(node_cls) -> dict[str, tuple[float | None, float | None]]:
    schema = node_cls.define_schema()
    return {
        i.id: (getattr(i, "min", None), getattr(i, "max", None))
        for i in schema.inputs
        if getattr(i, "get_io_type", lambda: None)() in ("FLOAT", "INT")
    }


def _combo_options(node_cls) -> dict[str, list]:
    schema = node_cls.define_schema()
    return {
        i.id: list(i.options)
        for i in schema.inputs
        if getattr(i, "get_io_type", lambda: None)() == "COMBO" and getattr(i, "options", None)
    }


def number_problem(node_cls, **values) -> str | None:
    """The first problem with the given number or combo inputs of ``node_cls`` (None when all are fine)."""
    limits, combos = _number_limits(node_cls), _combo_options(node_cls)
    for name, value in values.items():
        if value is None or isinstance(value, (list, tuple)):
            continue  # a link: checked when the node runs
        if name in combos:
            if value not in combos[name]:
                return f"{name} must be one of {', '.join(map(repr, combos[name]))}; got {value!r}."
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{name} must be a number; got {value!r}."
        if not math.isfinite(value):
            return f"{name} must be a finite number; got {value!r}."
        low, high = limits.get(name, (None, None))
        if low is not None and value < low:
            hint = " A safety steer never steers towards unsafe content." if name == "strength" else ""
            return f"{name} must be at least {low:g}; got {value!r}.{hint}"
        if high is not None and value > high:
            return f"{name} must be at most {high:g}; got {value!r}."
    start, end = values.get("start_percent"), values.get("end_percent")
    if isinstance(start, (int, float)) and isinstance(end, (int, float)) and start > end:
        return f"start_percent ({start}) must not be after end_percent ({end})."
    return None


def validation_result(node_cls, values: dict) -> bool | str:
    """What a ``validate_inputs`` returns: True, or the message ComfyUI shows on the node. Pass
    ``locals()``: the inputs a node checks are exactly the ones its ``validate_inputs`` names."""
    return number_problem(node_cls, **{k: v for k, v in values.items() if k != "cls"}) or True


def check_at_run_time(node_cls, values: dict) -> None:
    """The node's own ``validate_inputs`` again, on the values that reached ``execute`` (linked
    values were unknown during validation): pass ``locals()`` at the top of ``execute``."""
    names = inspect.signature(node_cls.validate_inputs).parameters
    result = node_cls.validate_inputs(**{name: values[name] for name in names if name in values})
    if result is not True:
        raise ValueError(f"{node_cls.define_schema().display_name}: {result}")
