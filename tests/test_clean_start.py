"""A clean start: the server `make run` starts logs no traceback while it loads ComfyUI's own nodes
and this pack (ComfyUI's audio nodes need torchaudio: requirements/lock.txt pins a build that
loads beside the pinned torch)."""

from __future__ import annotations

STARTED = "Starting server"  # ComfyUI logs this once every node is loaded


def test_server_starts_without_tracebacks(comfy_server):
    object_info = comfy_server.get("/object_info")
    log = comfy_server.log.read_text()
    startup = log.split(STARTED, 1)[0]  # later lines belong to the prompts other tests queue
    assert STARTED in log, log[-3000:]
    assert "Traceback" not in startup and "IMPORT FAILED" not in startup, startup
    assert "Cannot import" not in startup and "No module named" not in startup, startup
    assert {"LoadAudio", "SaveAudio"} <= set(object_info)  # comfy_extras/nodes_audio.py imports torchaudio
    assert "SafetySteerPromptInspector" in object_info
