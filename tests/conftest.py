"""Shared fixtures: the real ComfyUI (in-process and as a server), the real SmolLM2 pack build.

ComfyUI's root has top-level modules named `nodes`, `utils`, `tests`...; this pack has `nodes/`
and `tests/` too. The pack is therefore only ever imported as the package `safety_steer`, and the
repository root is kept off sys.path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import torch

from safety_steer.runtime import load_module_from, prepare_base_directory, start_comfyui_in_process
from safety_steer.steering.locations import CACHE_ENV, PACK_ROOT, cache_dir
from safety_steer.steering.pack import SHIPPED_VECTORS_DIR

SMOLLM2_PACK = SHIPPED_VECTORS_DIR / "smollm2-135m-i2p.safetensors"

# one cache for the whole run (float copies of the source LLM are built once), in the git-ignored data/;
# tests that check caching point SAFETY_STEER_CACHE at a folder of their own
os.environ.setdefault(CACHE_ENV, str(PACK_ROOT / "data" / "test-cache"))
# Tests never reach for a hub: a missing source model must show as missing, not as a slow retry.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)  # tiny models: one thread is fastest with both cores busy


@pytest.fixture(scope="session")
def comfy(tmp_path_factory):
    """The real ComfyUI, imported in-process with the pack loaded by ComfyUI's own loader."""
    return InProcessComfy(start_comfyui_in_process(tmp_path_factory.mktemp("comfy_base")))


class _ServerStub:
    client_id = None
    last_node_id = None

    def send_sync(self, event, data, sid=None):
        pass

    def queue_updated(self):
        pass


class _AnyType(str):
    """ComfyUI's convention for a socket that takes (or gives) every type."""

    def __ne__(self, other):
        return False


_OBJECTS: dict[str, object] = {}
_CAPTURED: dict[str, object] = {}


class ObjectForTest:
    """Test-only source node: hands a Python object (a CLIP, MODEL, conditioning...) built by the
    test to the graph, so a node under test gets it through the executor's own wiring."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"key": ("STRING", {"default": ""})}}

    RETURN_TYPES = (_AnyType("*"),)
    FUNCTION = "give"
    CATEGORY = "testing"

    @classmethod
    def IS_CHANGED(cls, key):
        return float("nan")

    def give(self, key):
        return (_OBJECTS[key],)


class CaptureForTest:
    """Test-only output node: keeps whatever reaches it, so tests read node outputs by key."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": (_AnyType("*"),), "key": ("STRING", {"default": "out"})}}

    RETURN_TYPES = ()
    FUNCTION = "capture"
    OUTPUT_NODE = True
    CATEGORY = "testing"

    def capture(self, value, key):
        _CAPTURED[key] = value
        return {}


def _exception_class(name: str) -> type:
    """The class ComfyUI reported by name (module.Class, or a builtin), RuntimeError if unknown."""
    import builtins
    import importlib

    module, _, attribute = name.rpartition(".")
    try:
        found = getattr(importlib.import_module(module) if module else builtins, attribute)
    except (ImportError, AttributeError, ValueError):
        return RuntimeError
    return found if isinstance(found, type) and issubclass(found, BaseException) else RuntimeError


class InProcessComfy:
    """Validate and execute API-format prompts exactly as the server would."""

    def __init__(self, base: Path):
        import nodes

        self.base = base
        nodes.NODE_CLASS_MAPPINGS.update({"ObjectForTest": ObjectForTest, "CaptureForTest": CaptureForTest})

    @property
    def node_classes(self) -> dict:
        import nodes

        return nodes.NODE_CLASS_MAPPINGS

    def validate(self, prompt: dict):
        import execution

        return asyncio.run(execution.validate_prompt(str(uuid.uuid4()), prompt, None))

    def run(self, prompt: dict) -> dict:
        """Run a prompt; return {node_id: ui outputs}. Raises with ComfyUI's message on failure."""
        import execution

        valid = self.validate(prompt)
        if not valid[0]:
            raise AssertionError(f"prompt invalid: {valid[1]} {valid[3]}")
        executor = execution.PromptExecutor(_ServerStub(), execution.CacheType.CLASSIC, {"lru": 0, "ram": 0})
        executor.execute(prompt, str(uuid.uuid4()), {}, valid[2])
        if not executor.success:
            errors = [m[1] for m in executor.status_messages if m[0] == "execution_error"]
            message = errors[0].get("exception_message", "") if errors else ""
            kind = _exception_class(errors[0].get("exception_type", "")) if errors else RuntimeError
            raise (ValueError if issubclass(kind, ValueError) else RuntimeError)(
                f"execution failed: {message} {errors}"
            )
        self.last_outputs = {node: out.get("output", out) for node, out in executor.history_result["outputs"].items()}
        return self.last_outputs

    def run_capturing(self, prompt: dict) -> dict:
        """Run a prompt; return {key: value} of everything its CaptureForTest nodes received."""
        _CAPTURED.clear()
        self.run(prompt)
        return dict(_CAPTURED)

    def node(self, class_type: str, **inputs) -> tuple:
        """Run one node through the executor (validation, inference mode, progress, interruption)
        and return all of its outputs. Objects that a JSON prompt cannot carry (a CLIP, a MODEL, a
        conditioning, an aligned direction) reach it through an ObjectForTest node."""
        _OBJECTS.clear()
        _CAPTURED.clear()
        prompt, wired = {}, {}
        for name, value in inputs.items():
            if value is None or isinstance(value, (bool, int, float, str)):
                wired[name] = value
            else:
                key = f"{name}-{len(_OBJECTS)}"
                _OBJECTS[key] = value
                prompt[f"object {name}"] = {"class_type": "ObjectForTest", "inputs": {"key": key}}
                wired[name] = [f"object {name}", 0]
        prompt["node"] = {"class_type": class_type, "inputs": wired}
        outputs = self.node_classes[class_type].RETURN_TYPES
        for slot in range(len(outputs)):
            prompt[f"capture {slot}"] = {
                "class_type": "CaptureForTest",
                "inputs": {"value": ["node", slot], "key": str(slot)},
            }
        ran = self.run(prompt)
        self.last_ui = ran.get("node", {})
        return tuple(_CAPTURED[str(slot)] for slot in range(len(outputs)))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ComfyServer:
    def __init__(self, url: str, process: subprocess.Popen, log: Path):
        self.url, self.process, self.log = url, process, log

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.loads(response.read())

    def post(self, path: str, body: dict):
        request = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def run_prompt(self, prompt: dict, timeout: float = 120) -> dict:
        status, body = self.post("/prompt", {"prompt": prompt, "client_id": "tests"})
        assert status == 200, body
        prompt_id = body["prompt_id"]
        deadline = time.time() + timeout
        while time.time() < deadline:
            history = self.get(f"/history/{prompt_id}")
            if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
                return history[prompt_id]
            time.sleep(0.25)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout}s; log: {self.log.read_text()[-3000:]}")


@contextlib.contextmanager
def _running_server(base: Path):
    """ComfyUI's real server (main.py) on loopback with ``base`` as its base directory, started by
    the same `safety-steer serve` that `make run` calls (which links the pack into custom_nodes)."""
    port = _free_port()
    log = base / "server.log"
    command = [sys.executable, "-m", "safety_steer.cli", "serve", "--port", str(port), "--base-directory", str(base)]
    # the server's alignment cache in this test's own folder (tests must not fill or read the repo's
    # data/), the converted-model cache shared (converting the source LLM again costs time, not truth)
    env = {**os.environ, "SAFETY_STEER_CACHE": str(cache_dir())}
    with open(log, "w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=str(base), env=env)
    server = ComfyServer(f"http://127.0.0.1:{port}", process, log)
    deadline = time.time() + 120
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {process.returncode}: {log.read_text()[-3000:]}")
            try:
                server.get("/system_stats")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.time() > deadline:
                    raise TimeoutError(f"ComfyUI did not start in 120 s: {log.read_text()[-3000:]}") from None
                time.sleep(0.5)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory):
    """ComfyUI's real server (main.py) on loopback, the pack in its custom_nodes, started by the
    same `safety-steer serve` that `make run` calls."""
    with _running_server(tmp_path_factory.mktemp("server_base")) as server:
        yield server


# >>> tiny models: a real server that loads tiny files through the stock loaders >>>
@pytest.fixture(scope="session")
def tiny_model_server(comfy, tmp_path_factory):
    """Like ``comfy_server``, but its models/ hold the tiny files of every by-file family
    (tiny_models.FILE_FAMILIES, under the usual real file names) and its custom_nodes also hold
    tests/tiny_loader_extension, which makes the stock loaders recognise tiny files.
    ``.models``: family -> the stock loaders' inputs (see tiny_models.write_model_files and
    tiny_models.api_prompt)."""
    base = prepare_base_directory(tmp_path_factory.mktemp("tiny_server_base"))
    models = {family: tiny_models.write_model_files(base / "models", family) for family in tiny_models.FILE_FAMILIES}
    (base / "custom_nodes" / "tiny_loader_extension").symlink_to(
        Path(__file__).resolve().parent / "tiny_loader_extension", target_is_directory=True
    )
    with _running_server(base) as server:
        server.models = models
        server.base = base
        yield server


# <<< tiny models <<<


@pytest.fixture(scope="session")
def smollm2():
    from safety_steer.steering import load_text_model

    return load_text_model("smollm2-135m")


@pytest.fixture(scope="session")
def rebuilt_pack(smollm2):
    """The shipped SmolLM2 pack rebuilt from the shipped data with the shipped file's own settings (its layer
    given, so that a near-tie in the layer sweep cannot flip the layer on another CPU)."""
    from safety_steer.steering import build_pack, load_pack

    shipped = load_pack(SMOLLM2_PACK)
    meta = shipped.metadata
    pack, report = build_pack(
        smollm2,
        layer=int(meta["layer"]),
        method=meta["method"],
        pooling=meta["pooling"],
        max_length=int(meta["max_length"]),
        pack_version=meta["pack_version"],
    )
    return shipped, pack, report


# >>> tiny models (tests/tiny_models.py) >>>
# loaded by path: the repository root stays off sys.path
tiny_models = load_module_from(Path(__file__).with_name("tiny_models.py"), "safety_steer_tiny_models")


@pytest.fixture(scope="session")
def tiny_clip(comfy):
    """Factory: a tiny random-weight comfy.sd.CLIP of a family (tiny_models.FAMILIES), built from
    ComfyUI's own classes: ``tiny_clip(family, seed=0)``."""

    def build(family: str, seed: int = 0):
        return tiny_models.build_clip(family, seed)

    return build


@pytest.fixture(scope="session")
def tiny_model(comfy):
    """Factory: a tiny random-weight diffusion model (a ModelPatcher) of a family whose text
    context matches ``tiny_clip(family)``: ``tiny_model(family, seed=0)``."""

    def build(family: str, seed: int = 0):
        return tiny_models.build_model(family, seed)

    return build


@pytest.fixture(scope="session")
def tiny_model_node(comfy, tiny_model):
    """Registers a test-only node ``TinyTestModel`` (family, seed) -> MODEL, the diffusion-model
    twin of ``TinyTestCLIP``. The executor stays real."""
    from comfy_api.latest import io

    import nodes

    class TinyTestModel(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(
                node_id="TinyTestModel",
                category="testing",
                inputs=[io.Combo.Input("family", options=list(tiny_models.FAMILIES)), io.Int.Input("seed", default=0)],
                outputs=[io.Model.Output()],
            )

        @classmethod
        def execute(cls, family, seed):
            return io.NodeOutput(tiny_model(family, seed))

    nodes.NODE_CLASS_MAPPINGS["TinyTestModel"] = TinyTestModel
    return "TinyTestModel"


# <<< tiny models <<<


@pytest.fixture(scope="session")
def tiny_clip_node(comfy, tiny_clip):
    """Registers a test-only node that outputs a tiny CLIP, so real graphs can feed real nodes
    without weight files (in-process, without tests/tiny_loader_extension, stock loaders reject
    tiny encoder files; ``tiny_model_server`` loads them by file). The executor stays real."""
    from comfy_api.latest import io

    import nodes

    class TinyTestCLIP(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(
                node_id="TinyTestCLIP",
                category="testing",
                inputs=[
                    io.Combo.Input("family", options=list(tiny_models.FAMILIES)),  # tiny models block
                    io.Int.Input("seed", default=0),
                ],
                outputs=[io.Clip.Output()],
            )

        @classmethod
        def execute(cls, family, seed):
            return io.NodeOutput(tiny_clip(family, seed))

    nodes.NODE_CLASS_MAPPINGS["TinyTestCLIP"] = TinyTestCLIP
    return "TinyTestCLIP"
