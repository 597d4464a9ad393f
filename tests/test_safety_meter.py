"""The ``safety_meter`` UI payload of every Apply node and of Safety Steer Report, read from the
executor's own UI outputs after a real graph ran on tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safety_steer.runtime import load_module_from
from safety_steer.steering.pack import DEFAULT_PACK_PATH

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
UNSAFE = "a man stabbing another man in a dark alley, blood everywhere, photo"
NAMES = ["global", "hate", "harassment", "violence", "self-harm", "sexual", "shocking", "illegal activity"]


def tiny_models():
    return load_module_from(Path(__file__).with_name("tiny_models.py"), "safety_steer_tiny_models")


def only_meter(ui: dict) -> dict:
    (payload,) = ui["safety_meter"]
    json.dumps(payload)  # what the frontend receives
    assert set(payload) >= {"categories", "before", "after", "strength", "gate"}
    assert set(payload["gate"]) == {"kind", "open", "fallback", "warning"}
    assert set(payload["before"]) == set(payload["after"]) == set(payload["categories"])
    return payload


def test_meter_on_every_direction_point_and_the_report(comfy, tiny_clip_node, tiny_model_node, tmp_path, monkeypatch):
    monkeypatch.setenv("SAFETY_STEER_CACHE", str(tmp_path))
    latent_type, latent_inputs = tiny_models().latent_node("sd15", 1)
    steer = {"direction": "violence", "mode": "add", "gate_threshold": -1.0}
    prompt = {
        "1": {"class_type": "SafetySteerLoadDirection", "inputs": {"pack": DEFAULT_PACK_PATH.name}},
        "2": {"class_type": "TinyTestCLIP", "inputs": {"family": "sd15", "seed": 0}},
        "3": {"class_type": "TinyTestModel", "inputs": {"family": "sd15", "seed": 0}},
        "4": {
            "class_type": "SafetySteerFitCrossModelAlignment",
            "inputs": {"clip": ["2", 0], "direction": ["1", 0], "method": "ridge", "anchors": 40},
        },
        "5": {
            "class_type": "SafetySteerApplyTextEncoder",
            "inputs": {"clip": ["2", 0], "aligned_direction": ["4", 0], "strength": 2.0, "gate": "none", **steer},
        },
        "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["5", 0], "text": UNSAFE}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 0], "text": UNSAFE}},
        "8": {
            "class_type": "SafetySteerApplyConditioning",
            "inputs": {
                "conditioning": ["7", 0],
                "aligned_direction": ["4", 0],
                "strength": 1.5,
                "gate": "none",
                **steer,
            },
        },
        "9": {
            "class_type": "SafetySteerApplyModel",
            "inputs": {
                "model": ["3", 0],
                "aligned_direction": ["4", 0],
                "strength": 3.0,
                "gate": "target projection",
                "start_percent": 0.0,
                "end_percent": 1.0,
                "apply_to": "positive",
                **steer,
                "gate_threshold": 3.0,  # open on the tiny model's prompts
            },
        },
        "10": {"class_type": latent_type, "inputs": latent_inputs},
        "11": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["9", 0],
                "positive": ["8", 0],
                "negative": ["7", 0],
                "latent_image": ["10", 0],
                "seed": 3,
                "steps": 1,
                "cfg": 2.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
            },
        },
        "12": {"class_type": "SafetySteerReport", "inputs": {"conditioning": ["6", 0], "after": ["11", 0]}},
        "13": {"class_type": "SafetySteerReport", "inputs": {"model": ["9", 0], "after": ["11", 0]}},
    }
    ui = comfy.run(prompt)

    # the text-encoder and model points steer later: gate and strength now, projections in the report
    for node, strength, kind in (("5", 2.0, "none"), ("9", 3.0, "target projection")):
        meter = only_meter(ui[node])
        assert meter["categories"] == NAMES and meter["strength"] == strength and meter["gate"]["kind"] == kind
        assert set(meter["before"].values()) == {None} and "Safety Steer Report" in meter["note"]
        assert meter["gate"]["fallback"] is False and ui[node]["text"]  # the old text output stays

    # conditioning point: measured here; the steer moved the prompt towards safe on its row
    conditioning = only_meter(ui["8"])
    assert conditioning["strength"] == 1.5 and conditioning["gate"] == {
        "kind": "none",
        "open": 1.0,
        "fallback": False,
        "warning": None,
    }
    assert conditioning["after"]["violence"] > conditioning["before"]["violence"]
    assert "[conditioning |" in ui["8"]["text"][0]

    # report on the steered CLIP's conditioning: the text-encoder point's before and after
    text_encoder = only_meter(ui["12"])
    assert text_encoder["prompt"] == UNSAFE and text_encoder["gate"]["kind"] == "none"
    assert text_encoder["after"]["violence"] > text_encoder["before"]["violence"]
    assert text_encoder["strength"] == pytest.approx(2.0)  # the step applied: strength x gate (open)
    assert all(isinstance(value, float) for value in text_encoder["before"].values())

    # report on the steered MODEL: the latest sampling step, positive prompt steered
    model = only_meter(ui["13"])
    assert model["gate"]["kind"] == "target projection" and model["prompt"].startswith("positive")
    assert all(value is not None for value in model["after"].values())


def test_safedig_meter_says_why_it_has_no_projection(comfy):
    import sys

    classes = comfy.node_classes
    pack = sys.modules[classes["SafetySteerLoadDirection"].__module__].load_pack(DEFAULT_PACK_PATH)
    tiny = tiny_models()
    clip, model = tiny.build_clip("flux"), tiny.build_model("flux")
    small = {"candidates": 1, "keep": 1, "pairs_per_category": 2, "anchors": 4, "expansion": 2, "k": 4}
    small |= {"epochs": 1, "learning_rate": 3e-3, "harmful_features": 4, "noise_level": 0.5, "seed": 0}
    bundle, _ = comfy.node(
        "SafetySteerTrainSAE",
        model=model,
        clip=clip,
        direction=pack,
        latent=tiny.empty_latent("flux", 1),
        positions="single.0",
        filename_prefix="meter_test",
        **small,
    )
    comfy.node(
        "SafetySteerApplySafeDIG",
        model=model,
        safedig=bundle,
        operation="repel",
        strength=1.5,
        start_percent=0.0,
        end_percent=1.0,
        apply_to="positive",
    )
    meter = only_meter(comfy.last_ui)
    assert meter["categories"] == [] and meter["strength"] == 1.5 and "SafeDIG" in meter["note"]
    assert meter["gate"]["open"] is None and meter["gate"]["fallback"] is False


def test_meter_warns_when_the_source_llm_gate_falls_back(comfy, tiny_clip, tmp_path, monkeypatch):
    """A pack whose source model is not on this machine: the text-encoder node's meter carries the
    warning at once, and the report's meter says which gate really ran."""
    import dataclasses
    import sys

    monkeypatch.setenv("SAFETY_STEER_CACHE", str(tmp_path))
    pack = sys.modules[comfy.node_classes["SafetySteerLoadDirection"].__module__].load_pack(DEFAULT_PACK_PATH)
    clip = tiny_clip("sd15")
    (aligned,) = comfy.node("SafetySteerFitCrossModelAlignment", clip=clip, direction=pack, method="ridge", anchors=40)
    missing = dataclasses.replace(aligned.source_gate, source_ref="no-such-model", weights_sha256=None)
    aligned = dataclasses.replace(aligned, source_gate=missing)
    settings = {"strength": 2.0, "direction": "violence", "mode": "add", "gate": "source LLM", "gate_threshold": 3.0}
    (steered,) = comfy.node("SafetySteerApplyTextEncoder", clip=clip, aligned_direction=aligned, **settings)
    meter = only_meter(comfy.last_ui)
    assert meter["gate"]["fallback"] is True and "no-such-model" in meter["gate"]["warning"]
    assert meter["gate"]["kind"] == "target projection (source LLM unavailable)"
    (conditioning,) = comfy.node("CLIPTextEncode", clip=steered, text=UNSAFE)
    comfy.node("SafetySteerReport", conditioning=conditioning)
    meter = only_meter(comfy.last_ui)
    assert meter["gate"]["fallback"] is True and meter["gate"]["kind"].endswith("(source LLM unavailable)")
    assert "source-LLM gate did not run" in meter["gate"]["warning"] and meter["prompt"] == UNSAFE


def test_text_encoder_meter_fills_in_when_the_prompt_is_encoded(tiny_model_server):
    """On the real server, as the browser sees it (websocket): Apply Safety Steer (Text Encoder)
    first shows the gate and strength, then, once CLIPTextEncode has encoded the prompt through the
    steered CLIP, its meter again with that prompt's projections before and after."""
    import asyncio
    import uuid

    import aiohttp

    server = tiny_model_server
    prompt = tiny_models().api_prompt("sd15", server.models["sd15"], text=UNSAFE, steps=1)
    clip = prompt["positive"]["inputs"]["clip"]
    prompt["pack"] = {"class_type": "SafetySteerLoadDirection", "inputs": {"pack": DEFAULT_PACK_PATH.name}}
    prompt["aligned"] = {
        "class_type": "SafetySteerFitCrossModelAlignment",
        "inputs": {"clip": clip, "direction": ["pack", 0], "method": "ridge", "anchors": 40},
    }
    prompt["steer"] = {
        "class_type": "SafetySteerApplyTextEncoder",
        "inputs": {
            "clip": clip,
            "aligned_direction": ["aligned", 0],
            "strength": 2.0,
            "direction": "violence",
            "mode": "add",
            "gate": "none",
            "gate_threshold": -1.0,
        },
    }
    prompt["positive"]["inputs"]["clip"] = ["steer", 0]
    client_id = str(uuid.uuid4())

    async def run() -> list[dict]:
        messages = []
        url = f"{server.url}/ws?clientId={client_id}"
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as socket:
            body = {"prompt": prompt, "client_id": client_id}
            async with session.post(f"{server.url}/prompt", json=body) as response:
                assert response.status == 200, await response.text()
                prompt_id = (await response.json())["prompt_id"]
            async for message in socket:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(message.data)
                messages.append(data)
                if data["type"] == "execution_error":
                    raise AssertionError(data)
                done = data["type"] == "executing" and data["data"].get("node") is None
                if done and data["data"].get("prompt_id") == prompt_id:
                    return messages
        return messages

    messages = asyncio.run(asyncio.wait_for(run(), 600))
    sent = [m["data"]["output"] for m in messages if m["type"] == "executed" and m["data"]["node"] == "steer"]
    assert len(sent) == 2, sent  # when the node ran, and when the prompt was encoded through its CLIP
    pending, encoded = (only_meter(output) for output in sent)
    assert set(pending["before"].values()) == {None} and pending["strength"] == 2.0
    assert encoded["prompt"] == UNSAFE and encoded["strength"] == 2.0 and encoded["gate"]["kind"] == "none"
    assert encoded["after"]["violence"] > encoded["before"]["violence"]
    assert sent[1]["text"] == sent[0]["text"]  # the node's text stays what it was
