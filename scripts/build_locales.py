"""Writes the English node labels (locales/en/nodeDefs.json) from the nodes' own schemas.

    .venv/bin/python scripts/build_locales.py            # write the file
    .venv/bin/python scripts/build_locales.py --check    # exit 1 if it differs

ComfyUI (app/custom_node_manager.py) serves a pack's locales/<lang>/main.json with nodeDefs.json merged
in under "nodeDefs" at GET /i18n, and the frontend reads node titles and socket labels from there before it
falls back to /object_info. The English file holds the labels only (display names, input and output
names), taken from the schemas so the two never disagree: descriptions and tooltips stay in the schemas,
where the frontend reads them for English, so editing a tooltip never leaves a stale English copy behind
(a translation adds them under its own language). tests/test_node_help.py checks the file against the live
server. main.json (category, socket-type and Templates-menu labels) is written by hand.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NODE_DEFS = REPO / "locales" / "en" / "nodeDefs.json"


def _workflow_builder():
    spec = importlib.util.spec_from_file_location(
        "safety_steer_build_example_workflows", REPO / "scripts" / "build_example_workflows.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def is_pack_node(info: dict) -> bool:
    """One of this pack's current nodes (not a renamed stub)."""
    return info.get("category", "").startswith("safety_steer") and not info.get("deprecated")


def node_defs(object_info: dict) -> dict:
    """nodeDefs label entries as the frontend reads them: inputs by name, outputs by index."""
    defs = {}
    for node_id in sorted(n for n, info in object_info.items() if is_pack_node(info)):
        info = object_info[node_id]
        names = [name for section in ("required", "optional") for name in info["input"].get(section, {})]
        defs[node_id] = {
            "display_name": info["display_name"],
            "inputs": {name: {"name": name} for name in names},
            "outputs": {str(index): {"name": name} for index, name in enumerate(info["output_name"])},
        }
    return defs


def dumps(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if the file differs")
    options = parser.parse_args(argv)
    text = dumps(node_defs(_workflow_builder().comfyui_object_info()))
    if options.check:
        if not NODE_DEFS.is_file() or NODE_DEFS.read_text() != text:
            print(f"out of date (run scripts/build_locales.py): {NODE_DEFS}")
            return 1
        return 0
    NODE_DEFS.parent.mkdir(parents=True, exist_ok=True)
    NODE_DEFS.write_text(text)
    print(f"wrote {NODE_DEFS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
