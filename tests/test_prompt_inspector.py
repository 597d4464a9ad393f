"""Prompt Safety Inspector through the real executor, with the shipped pack's embedded source model
(Gemma-3-270m, installed from PyPI): nothing else is needed, as on a fresh `make run`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safety_steer.runtime import load_module_from
from safety_steer.steering.prompts import I2P_CATEGORIES

wf = load_module_from(Path(__file__).with_name("workflow_api.py"), "safety_steer_workflow_api")

NODE = "SafetySteerPromptInspector"
BENIGN = "a watercolor painting of a lighthouse at dawn"
VIOLENT = "a man stabbing another man, blood everywhere, gore"
SEXUAL = "naked woman, explicit sex scene"
WORKFLOWS = Path(__file__).resolve().parent.parent / "example_workflows"


def _run(comfy, inputs: dict, extra: dict | None = None) -> tuple[dict, dict]:
    """Run the inspector (and ``extra`` nodes); return (ui payload, captured outputs)."""
    prompt = {"inspector": {"class_type": NODE, "inputs": {"pack": "gemma3-270m-i2p.safetensors", **inputs}}}
    prompt.update(extra or {})
    for slot in range(4):
        prompt[f"capture {slot}"] = {
            "class_type": "CaptureForTest",
            "inputs": {"value": ["inspector", slot], "key": str(slot)},
        }
    captured = comfy.run_capturing(prompt)
    return comfy.last_outputs["inspector"], captured


def test_inspector_flags_unsafe_prompts_and_spares_benign_ones(comfy):
    ui, captured = _run(comfy, {"prompts": f"{BENIGN}\n\n{VIOLENT}\n{SEXUAL}\n"})
    (payload,) = ui["safety_inspector"]
    json.dumps(payload)  # what the frontend receives
    assert payload["categories"] == list(I2P_CATEGORIES)
    assert payload["gate"]["kind"] == "source LLM detector" and payload["gate"]["fallback"] is False
    assert "gemma3-270m" in payload["gate"]["source"]
    readings = {p["prompt"]: p for p in payload["prompts"]}
    assert list(readings) == [BENIGN, VIOLENT, SEXUAL]  # one per non-empty line
    benign, violent, sexual = readings[BENIGN], readings[VIOLENT], readings[SEXUAL]
    assert not benign["flagged"] and benign["score"] < payload["threshold"]
    assert benign["top_category"] == "none"  # no harm named for a prompt that passes
    assert violent["flagged"] and violent["top_category"] == "violence"
    assert sexual["flagged"] and sexual["top_category"] == "sexual"
    # projections in benign-anchor units: the unsafe prompt leans unsafe (below 0) on its category
    assert violent["projection"]["violence"] < -1 < 0 < benign["projection"]["violence"]
    assert sexual["detector"]["sexual"] > payload["threshold"] > benign["detector"]["sexual"]
    chart, score, flagged, report = (captured[str(i)] for i in range(4))
    assert chart.ndim == 4 and chart.shape[0] == 1 and chart.shape[2] == 768 and chart.shape[3] == 3
    assert float(chart.min()) >= 0 and float(chart.max()) <= 1
    assert score == pytest.approx(max(p["score"] for p in payload["prompts"])) and flagged is True
    assert "FLAGGED" in report and VIOLENT in report and ui["text"][0] == report


def test_inspector_categories_and_benign_only(comfy):
    ui, captured = _run(comfy, {"prompts": BENIGN, "categories": "sexual, violence"})
    (payload,) = ui["safety_inspector"]
    assert payload["categories"] == ["violence", "sexual"]  # the pack's order
    assert set(payload["prompts"][0]["projection"]) == {"violence", "sexual"}
    assert captured["2"] is False and captured["1"] < 0.5
    with pytest.raises(ValueError, match="Unknown category 'gore'.*hate"):
        _run(comfy, {"prompts": BENIGN, "categories": "gore"})
    with pytest.raises(ValueError, match="one prompt per line"):
        _run(comfy, {"prompts": "  \n"})


def test_inspector_takes_a_list_of_prompts(comfy):
    """A list output upstream (OUTPUT_IS_LIST) reaches the node as one list: one reading per item."""
    import nodes

    class PromptListForTest:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {}}

        RETURN_TYPES = ("STRING",)
        OUTPUT_IS_LIST = (True,)
        FUNCTION = "give"
        CATEGORY = "testing"

        def give(self):
            return ([BENIGN, VIOLENT],)

    nodes.NODE_CLASS_MAPPINGS["PromptListForTest"] = PromptListForTest
    ui, captured = _run(comfy, {"prompts": ["list", 0]}, {"list": {"class_type": "PromptListForTest", "inputs": {}}})
    (payload,) = ui["safety_inspector"]
    assert [p["prompt"] for p in payload["prompts"]] == [BENIGN, VIOLENT]
    assert [p["flagged"] for p in payload["prompts"]] == [False, True] and captured["2"] is True


def test_inspector_template_runs_on_the_real_server(comfy_server):
    """The inspector's template, as a user queues it: no model but the embedded source LLM is needed."""
    object_info = comfy_server.get("/object_info")
    assert object_info[NODE]["display_name"] == "Prompt Safety Inspector"
    templates = [p for p in sorted(WORKFLOWS.glob("*.json")) if f'"type": "{NODE}"' in p.read_text()]
    assert templates, f"no example workflow in {WORKFLOWS} uses {NODE}"
    prompt = wf.ui_to_api(json.loads(templates[0].read_text()), object_info)
    entry = comfy_server.run_prompt(prompt, timeout=600)
    assert entry["status"]["status_str"] == "success", entry["status"]
    by_type = {node["class_type"]: node_id for node_id, node in prompt.items()}
    (payload,) = entry["outputs"][by_type[NODE]]["safety_inspector"]
    flags = {p["prompt"]: p["flagged"] for p in payload["prompts"]}
    assert any(flags.values()) and not all(flags.values()), flags
    assert len(entry["outputs"][by_type["PreviewImage"]]["images"]) == 1
