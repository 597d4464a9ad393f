"""Shared fixtures: the real ComfyUI (in-process and as a server), the real SmolLM2 pack build.

ComfyUI's root has top-level modules named `nodes`, `utils`, `tests`...; this pack has `nodes/`
and `tests/` too. The pack is therefore only ever imported as the package `safety_steer`, and the
repository root is kept off sys.path.
"""
from __future__ import annotations

import asyncio
import json
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

from safety_steer.runtime import PACK_ROOT, comfyui_root, prepare_base_directory

from safety_steer.steering.pack import DEFAULT_PACK_PATH as SHIPPED_PACK

torch.set_num_threads(1)  # tiny models: one thread is fastest with both cores busy


def _keep_pack_root_off_path() -> None:
    for entry in list(sys.path):
        if entry in ("", ".") or Path(entry).resolve() == PACK_ROOT:
            sys.path.remove(entry)


@pytest.fixture(scope="session")
def comfy(tmp_path_factory):
    """The real ComfyUI, imported in-process with the pack loaded by ComfyUI's own loader."""
    _keep_pack_root_off_path()
    base = prepare_base_directory(tmp_path_factory.mktemp("comfy_base"))
    root = str(comfyui_root())
    if root not in sys.path:
        sys.path.insert(0, root)
    from comfy.cli_args import args
    args.cpu = True
    args.base_directory = str(base)
    import utils.extra_config  # noqa: F401  (must precede `nodes`, see the README's notes)
    import folder_paths
    folder_paths.set_output_directory(str(base / "output"))
    import nodes
    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=True, init_api_nodes=False))
    return InProcessComfy(base)


class _ServerStub:
    client_id = None
    last_node_id = None

    def send_sync(self, event, data, sid=None):
        pass

    def queue_updated(self):
        pass


class InProcessComfy:
    """Validate and execute API-format prompts exactly as the server would."""

    def __init__(self, base: Path):
        self.base = base

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
            errors = [m for m in executor.status_messages if m[0] == "execution_error"]
            raise RuntimeError(f"execution failed: {errors}")
        return {node: out.get("output", out) for node, out in executor.history_result["outputs"].items()}


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
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
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


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory):
    """ComfyUI's real server (main.py) on loopback, the pack in its custom_nodes, started by the
    same `safety-steer serve` that `make run` calls."""
    base = tmp_path_factory.mktemp("server_base")
    port = _free_port()
    log = base / "server.log"
    command = [sys.executable, "-m", "safety_steer.cli", "serve", "--port", str(port), "--base-directory", str(base)]
    with open(log, "w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=str(base))
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
                    raise TimeoutError(f"ComfyUI did not start in 120 s: {log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def smollm2():
    from safety_steer.steering import load_text_model
    return load_text_model("smollm2-135m")


@pytest.fixture(scope="session")
def rebuilt_pack(smollm2):
    """The shipped pack rebuilt from the shipped data with the shipped file's own settings (its layer
    given, so that a near-tie in the layer sweep cannot flip the layer on another CPU)."""
    from safety_steer.steering import build_pack, load_pack
    shipped = load_pack(SHIPPED_PACK)
    meta = shipped.metadata
    pack, report = build_pack(smollm2, layer=int(meta["layer"]), method=meta["method"], pooling=meta["pooling"],
                              max_length=int(meta["max_length"]), pack_version=meta["pack_version"])
    return shipped, pack, report


TINY_CLIP = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 3,
             "projection_dim": 32}
# Llama's head_dim is fixed at 128 in ComfyUI; HunyuanVideo reads layer -3, so >= 4 layers.
TINY_LLAMA = {"hidden_size": 256, "intermediate_size": 64, "num_attention_heads": 2, "num_key_value_heads": 1,
              "num_hidden_layers": 4}
TINY_T5 = {"d_model": 32, "d_ff": 64, "d_kv": 16, "num_heads": 2, "num_layers": 2}


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """ComfyUI's ops allocate with torch.empty: give every parameter seeded random values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(module.named_parameters()):
            if "norm" in name.lower() and name.endswith("weight"):
                param.fill_(1.0)
            elif name.endswith("bias"):
                param.zero_()
            else:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)


@pytest.fixture(scope="session")
def tiny_clip(comfy):
    """Factory: a tiny random-weight comfy.sd.CLIP of a family, built from ComfyUI's own classes."""
    import comfy.sd
    import comfy.sd1_clip
    import comfy.sdxl_clip
    import comfy.text_encoders.flux
    import comfy.text_encoders.hunyuan_video
    import comfy.text_encoders.wan
    from comfy.supported_models_base import ClipTarget

    root = comfyui_root()
    spiece = (root / "comfy" / "text_encoders" / "t5_pile_tokenizer" / "tokenizer.model").read_bytes()
    families = {
        "sd15": (comfy.sd1_clip.SD1Tokenizer, comfy.sd1_clip.SD1ClipModel, {"clip_l_model_config": TINY_CLIP}, {}),
        "sdxl": (comfy.sdxl_clip.SDXLTokenizer, comfy.sdxl_clip.SDXLClipModel,
                 {"clip_l_model_config": TINY_CLIP, "clip_g_model_config": TINY_CLIP}, {}),
        "flux": (comfy.text_encoders.flux.FluxTokenizer, comfy.text_encoders.flux.flux_clip(),
                 {"clip_l_model_config": TINY_CLIP, "t5xxl_model_config": TINY_T5}, {}),
        "hunyuan_video": (comfy.text_encoders.hunyuan_video.HunyuanVideoTokenizer,
                          comfy.text_encoders.hunyuan_video.hunyuan_video_clip(),
                          {"clip_l_model_config": TINY_CLIP, "llama_model_config": TINY_LLAMA}, {}),
        "wan": (comfy.text_encoders.wan.WanT5Tokenizer, comfy.text_encoders.wan.te(),
                {"umt5xxl_model_config": {**TINY_T5, "vocab_size": 32000}},
                {"spiece_model": torch.frombuffer(bytearray(spiece), dtype=torch.uint8)}),
    }

    def build(family: str, seed: int = 0):
        tokenizer, encoder, options, tokenizer_data = families[family]
        clip = comfy.sd.CLIP(ClipTarget(tokenizer, encoder), tokenizer_data=tokenizer_data,
                             model_options={**options, "dtype": torch.float32})
        _randomise(clip.cond_stage_model, seed)
        return clip

    return build


@pytest.fixture(scope="session")
def tiny_clip_node(comfy, tiny_clip):
    """Registers a test-only node that outputs a tiny CLIP, so real graphs can feed real nodes
    without weight files (stock loaders reject tiny encoder files). The executor stays real."""
    import nodes
    from comfy_api.latest import io

    class TinyTestCLIP(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="TinyTestCLIP", category="testing",
                             inputs=[io.Combo.Input("family", options=["sd15", "sdxl", "flux", "wan", "hunyuan_video"]),
                                     io.Int.Input("seed", default=0)],
                             outputs=[io.Clip.Output()])

        @classmethod
        def execute(cls, family, seed):
            return io.NodeOutput(tiny_clip(family, seed))

    nodes.NODE_CLASS_MAPPINGS["TinyTestCLIP"] = TinyTestCLIP
    return "TinyTestCLIP"
