"""Node ids before the rename: refused with a message naming the new id, migrated by the CLI and
by the frontend (whose copy of the table must equal the Python one)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from safety_steer.steering.pack import DEFAULT_PACK_PATH
from safety_steer.steering.renamed_nodes import RENAMED_NODES, migrate_workflow

ROOT = Path(__file__).resolve().parent.parent
OLD_IDS = {new: old for old, new in RENAMED_NODES.items()}


def test_an_api_prompt_with_old_ids_names_the_new_ones(comfy):
    prompt = {
        "1": {"class_type": "LoadSafetyDirection", "inputs": {"pack": DEFAULT_PACK_PATH.name}},
        "2": {"class_type": "SafetyDirectionInfo", "inputs": {"direction": ["1", 0]}},
    }
    valid, _, _, node_errors = comfy.validate(prompt)
    assert valid is False
    assert "renamed to SafetySteerLoadDirection" in json.dumps(node_errors)
    assert "migrate-workflow" in json.dumps(node_errors)


def test_stubs_are_deprecated_and_hidden_from_new_graphs(comfy):
    for old, new in RENAMED_NODES.items():
        schema = comfy.node_classes[old].GET_SCHEMA()
        assert schema.is_deprecated and new in schema.display_name


def test_migrating_an_old_ui_and_api_workflow_gives_todays(tmp_path):
    shipped = json.loads((ROOT / "example_workflows" / "safety_steer_sdxl.json").read_text())
    old = json.loads(json.dumps(shipped))
    for node in old["nodes"]:
        node["type"] = OLD_IDS.get(node["type"], node["type"])
    assert old != shipped
    migrated, changed = migrate_workflow(old)
    assert migrated == shipped and changed == sum(n["type"] in OLD_IDS for n in shipped["nodes"]) >= 3

    api = {"1": {"class_type": "ApplySafeDIG", "inputs": {}}, "2": {"class_type": "KSampler", "inputs": {}}}
    path = tmp_path / "api.json"
    path.write_text(json.dumps(api))
    done = subprocess.run(
        [sys.executable, "-m", "safety_steer.cli", "migrate-workflow", str(path), "--in-place"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "1 node(s) renamed" in done.stdout
    assert json.loads(path.read_text())["1"]["class_type"] == "SafetySteerApplySafeDIG"


def test_the_frontends_table_equals_the_python_one():
    script = (ROOT / "web" / "safety_steer.js").read_text()
    literal = re.search(r"const RENAMED_NODES = (\{.*?\});", script, re.S).group(1)
    assert json.loads(literal) == RENAMED_NODES
