"""Help inside the UI, read from the real server the way the frontend reads it: a tooltip on every
input and output (GET /object_info), search aliases where this ComfyUI's schema has the field, a
help page per node (web/docs/<NodeId>.md, fetched by frontend 1.32.9's node help from
/extensions/<pack folder>/docs/<NodeId>.md) and English labels (GET /i18n, merged by ComfyUI from
locales/en/main.json and nodeDefs.json). Nodes added later are covered: everything is walked from
the server's own node list."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest

from safety_steer.runtime import load_module_from

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "web" / "docs"
LOCALES = REPO / "locales" / "en"
SEARCH_WORDS = ("nsfw", "safety filter", "content filter", "censor", "steer")
HELP_SECTIONS = ("## Inputs", "## Outputs", "## Typical graph", "## Pitfalls")

locales = load_module_from(REPO / "scripts" / "build_locales.py", "safety_steer_build_locales")


@pytest.fixture(scope="module")
def object_info(comfy_server) -> dict:
    return comfy_server.get("/object_info")


@pytest.fixture(scope="module")
def pack_nodes(object_info) -> dict:
    """This pack's nodes as the server lists them: every node its module registers (whatever its category),
    renamed stubs included."""
    module = object_info["SafetySteerLoadDirection"]["python_module"]
    found = {name: info for name, info in object_info.items() if info.get("python_module") == module}
    assert len(found) >= 13, sorted(found)
    return found


@pytest.fixture(scope="module")
def current_nodes(pack_nodes) -> dict:
    return {name: info for name, info in pack_nodes.items() if not info.get("deprecated")}


def _inputs(info: dict):
    for section in ("required", "optional"):
        for name, spec in info["input"].get(section, {}).items():
            yield name, spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def _get_text(server, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(server.url + path, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def test_every_input_and_output_has_a_tooltip(pack_nodes):
    missing = []
    for name, info in pack_nodes.items():
        missing += [
            f"{name}.{i} (input)" for i, options in _inputs(info) if not str(options.get("tooltip", "")).strip()
        ]
        tips = info.get("output_tooltips") or [None] * len(info["output"])
        missing += [f"{name}.{o} (output)" for o, tip in zip(info["output_name"], tips) if not (tip or "").strip()]
        assert info.get("description", "").strip(), f"{name} has no description"
    assert not missing, "no tooltip on: " + ", ".join(missing)


def test_tooltips_say_the_range_of_bounded_numbers(current_nodes):
    """A number input's tooltip says what its values do: a range, or what its ends/defaults mean."""
    vague = []
    for name, info in current_nodes.items():
        for input_name, options in _inputs(info):
            bounded = "min" in options and "max" in options and input_name != "seed"  # a seed's range says nothing
            if bounded and not re.search(r"\d", options.get("tooltip", "")):
                vague.append(f"{name}.{input_name}: {options.get('tooltip')!r}")
    assert not vague, vague


def test_search_aliases_reach_object_info_where_supported(current_nodes):
    nodes_package = pytest.importorskip("safety_steer.nodes.search_aliases")
    if not nodes_package.schema_supports_search_aliases():
        pytest.skip(
            "this ComfyUI's io.Schema has no search_aliases field (0.3.75; frontend 1.32.9 searches names "
            "only): the nodes pass none, as the guard intends"
        )
    for name, info in current_nodes.items():
        aliases = " | ".join(info.get("search_aliases", []))
        assert all(word in aliases for word in SEARCH_WORDS), (name, info.get("search_aliases"))


def test_every_node_has_a_help_page_that_the_server_serves(comfy_server, current_nodes):
    pages = {path.stem for path in DOCS.glob("*.md")}
    assert not set(current_nodes) - pages, f"no web/docs/<NodeId>.md for {sorted(set(current_nodes) - pages)}"
    for name, info in current_nodes.items():
        module = info["python_module"]
        assert module.startswith("custom_nodes."), module  # how the frontend tells custom nodes apart
        folder = module.split(".", 1)[1].split("@")[0]
        status, served = _get_text(comfy_server, f"/extensions/{folder}/docs/{name}.md")
        assert status == 200, (name, status)
        page = (DOCS / f"{name}.md").read_text()
        assert served == page, name
        # the page covers the node as it is now: its sections, every input and every output by name
        assert page.startswith(f"# {info['display_name']}\n"), (name, page.splitlines()[0])
        for section in HELP_SECTIONS:
            assert f"\n{section}\n" in page, (name, section)
        for input_name, _ in _inputs(info):
            assert f"`{input_name}`" in page, (name, input_name)
        for output_name in info["output_name"]:
            assert f"`{output_name}`" in page, (name, output_name)


def test_no_help_page_for_a_node_that_does_not_exist(current_nodes):
    stray = {path.stem for path in DOCS.glob("*.md")} - set(current_nodes)
    assert not stray, f"help pages for unknown node ids: {sorted(stray)}"


def test_server_returns_the_english_labels(comfy_server, current_nodes):
    english = comfy_server.get("/i18n")["en"]
    main = json.loads((LOCALES / "main.json").read_text())
    assert english["nodeCategories"]["safety_steer"] == main["nodeCategories"]["safety_steer"] == "Safety Steer"
    for socket_type in ("SAFETY_DIRECTION_PACK", "ALIGNED_SAFETY_DIRECTION", "SAFETY_SAE"):
        assert english["dataTypes"][socket_type], socket_type
    # the Templates menu names the pack's category by its folder (the README's install folder)
    assert english["templateWorkflows"]["category"]["comfyui-safety-steer"] == "Safety Steer"
    # nodeDefs.json is the schemas' own text, for every current node (scripts/build_locales.py)
    served = english["nodeDefs"]
    assert served == {**served, **locales.node_defs(current_nodes)}, (
        "locales/en/nodeDefs.json differs from the node schemas: run `.venv/bin/python scripts/build_locales.py`"
    )
    assert json.loads((LOCALES / "nodeDefs.json").read_text()) == locales.node_defs(current_nodes)
