"""The pack inside the real ComfyUI: loaded by ComfyUI's own custom-node loader, in-process and
as a real server on loopback."""

from __future__ import annotations

import shutil

from safety_steer.steering.pack import DEFAULT_PACK_PATH

PACK_NAME = DEFAULT_PACK_PATH.name


def direction_graph(pack_name: str = PACK_NAME) -> dict:
    return {
        "1": {"class_type": "SafetySteerLoadDirection", "inputs": {"pack": pack_name}},
        "2": {"class_type": "SafetySteerDirectionInfo", "inputs": {"direction": ["1", 0]}},
    }


def test_pack_registers_its_nodes_in_process(comfy):
    classes = comfy.node_classes
    assert {"SafetySteerLoadDirection", "SafetySteerDirectionInfo"} <= set(classes)
    schema = classes["SafetySteerLoadDirection"].GET_SCHEMA()
    assert schema.description and all(i.tooltip for i in schema.inputs)
    assert [o.io_type for o in schema.outputs] == ["SAFETY_DIRECTION_PACK"]


def test_direction_graph_runs_in_process(comfy):
    outputs = comfy.run(direction_graph())
    text = "".join(outputs["2"]["text"])
    assert "google/gemma-3-270m" in text and "global:" in text


def test_user_model_folder_is_listed_and_loaded(comfy, tmp_path):
    import folder_paths

    user_copy = comfy.base / "models" / "safety_directions" / "my_pack.safetensors"
    shutil.copy(DEFAULT_PACK_PATH, user_copy)
    try:
        assert "my_pack.safetensors" in folder_paths.get_filename_list("safety_directions")
        outputs = comfy.run(direction_graph("my_pack.safetensors"))
        assert "global:" in "".join(outputs["2"]["text"])
    finally:
        user_copy.unlink()


def test_non_safetensors_files_are_not_listed(comfy):
    import folder_paths

    stray = comfy.base / "models" / "safety_directions" / "old_direction.pt"
    stray.write_bytes(b"not listed")
    try:
        folder_paths.filename_list_cache.clear()
        assert "old_direction.pt" not in folder_paths.get_filename_list("safety_directions")
    finally:
        stray.unlink()


def test_unknown_pack_name_fails_validation(comfy):
    valid = comfy.validate(direction_graph("does_not_exist.safetensors"))
    assert valid[0] is False
    assert "does_not_exist.safetensors" in str(valid[3])


def test_server_lists_nodes_and_runs_the_graph(comfy_server):
    info = comfy_server.get("/object_info/SafetySteerLoadDirection")["SafetySteerLoadDirection"]
    assert info["category"] == "safety_steer"
    assert PACK_NAME in info["input"]["required"]["pack"][1]["options"]
    assert info["output"] == ["SAFETY_DIRECTION_PACK"]
    assert "SafetySteerDirectionInfo" in comfy_server.get("/object_info")
    result = comfy_server.run_prompt(direction_graph())
    assert result["status"]["status_str"] == "success", result["status"]
    assert "global:" in "".join(result["outputs"]["2"]["text"])


def test_server_rejects_a_bad_graph_with_a_400(comfy_server):
    status, body = comfy_server.post("/prompt", {"prompt": direction_graph("nope.safetensors")})
    assert status == 400 and body["error"]["type"] == "prompt_outputs_failed_validation"


def test_server_serves_the_web_extension_and_example_workflows(comfy_server):
    import urllib.request

    extensions = comfy_server.get("/extensions")
    script = next(e for e in extensions if e.endswith("direction_links.js"))
    with urllib.request.urlopen(comfy_server.url + script, timeout=30) as response:
        assert b"SAFETY_DIRECTION" in response.read()
    templates = comfy_server.get("/workflow_templates")
    assert any("inspect_safety_direction" in name for names in templates.values() for name in names)
