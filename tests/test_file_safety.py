"""Writers and caches under concurrency and damage (issue #9, items 5 and 8): numbered names and
temporary files unique to each writer, damaged alignment caches and GGUF float copies logged and
rebuilt, an unwritable cache costing the cache but never the result. Nodes run through the real
ComfyUI executor."""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from safety_steer.steering.errors import FileWriteError
from safety_steer.steering.extraction import sources
from safety_steer.steering.fileformat import (
    CHECKSUM_KEY,
    read_header,
    reserve_numbered,
    temporary_sibling,
    write_atomic,
)
from safety_steer.steering.pack import DEFAULT_PACK_PATH, load_pack
from safety_steer.steering.safedig.bundle import SafeDIGBundle, load_bundle, save_bundle
from safety_steer.steering.safedig.operations import HarmfulFeatures
from safety_steer.steering.safedig.sae import SAEError, SparseAutoencoder, load_sae, save_sae, train_sae
from safety_steer.steering.transfer.aligned import align_pack, anchor_subset, load_aligned, save_aligned

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def run_threads(count: int, work) -> None:
    """``work(i)`` in ``count`` threads released together; re-raises the first failure."""
    barrier, failures = threading.Barrier(count), []

    def body(i):
        try:
            barrier.wait()
            work(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


@pytest.fixture(scope="module")
def tiny_bundle() -> SafeDIGBundle:
    rows = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    sae = train_sae(rows, expansion=2, k=2, epochs=1, metadata={"position": "double.0", "model_type": "Flux"})
    return SafeDIGBundle({"double.0": sae}, {"double.0": HarmfulFeatures([1, 3], [0.5, 0.25])}, {"model_type": "Flux"})


# -- concurrent writers --------------------------------------------------------------------------------
def test_numbered_names_are_unique_across_threads_and_processes(tmp_path):
    """Two processes and four threads number files in one folder at the same moment: every name is
    handed out once, and the numbers have no gaps."""
    folder, go = tmp_path / "saes", tmp_path / "go"
    script = textwrap.dedent("""
        import sys, time
        from pathlib import Path
        from safety_steer.steering.fileformat import reserve_numbered
        print("ready", flush=True)
        while not Path(sys.argv[2]).exists():
            time.sleep(0.002)
        for _ in range(30):
            print(reserve_numbered(sys.argv[1], "safedig", ".safetensors"), flush=True)
    """)
    processes = [
        subprocess.Popen([sys.executable, "-c", script, str(folder), str(go)], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for process in processes:
        assert process.stdout.readline().strip() == "ready"
    names: list[Path] = []
    go.touch()
    run_threads(4, lambda i: names.extend(reserve_numbered(folder, "safedig", ".safetensors") for _ in range(30)))
    for process in processes:
        out, _ = process.communicate(timeout=60)
        assert process.returncode == 0
        names.extend(Path(line) for line in out.split())
    assert len(names) == len(set(names)) == 180
    assert sorted(int(p.stem.rsplit("_", 1)[1]) for p in names) == list(range(1, 181))
    assert all(p.is_file() and p.stat().st_size == 0 for p in names)


def test_concurrent_bundle_saves_for_one_prefix_keep_every_bundle(tmp_path, tiny_bundle):
    folder, saved = tmp_path / "safety_saes", []
    run_threads(
        4, lambda i: saved.append(save_bundle(tiny_bundle, reserve_numbered(folder, "safedig", ".safetensors")))
    )
    assert len(set(saved)) == 4
    for path in saved:
        assert load_bundle(path).positions == ["double.0"]
    assert sorted(p.name for p in folder.iterdir()) == [f"safedig_{n:05d}.safetensors" for n in range(1, 5)]


def test_sae_save_path_reserves_a_distinct_file_per_call(comfy, tiny_bundle):
    """The node helper SafetySteerTrainSAE / SafetySteerAdaptSAEDecoder save through, as ComfyUI loaded it."""
    nodes_module = sys.modules[comfy.node_classes["SafetySteerTrainSAE"].__module__]
    reserved: list[str] = []
    prefix = f"concurrency_test_{os.getpid()}"
    try:
        run_threads(2, lambda i: reserved.extend(nodes_module.sae_save_path(prefix) for _ in range(10)))
        assert len(set(reserved)) == 20 and all(os.path.getsize(p) == 0 for p in reserved)
        written = nodes_module.save_bundle(tiny_bundle, reserved[0])
        assert load_bundle(written).positions == ["double.0"]
    finally:
        for path in reserved:
            Path(path).unlink(missing_ok=True)


def test_a_failed_save_releases_its_reserved_name(tmp_path):
    path = reserve_numbered(tmp_path, "safedig", ".safetensors")
    broken = SafeDIGBundle({"double.0": SparseAutoencoder(4, 8, 2)}, {"double.0": HarmfulFeatures([], [])})
    with pytest.raises(SAEError, match="unit norm"):
        save_bundle(broken, path)
    assert not path.exists()


def test_writers_of_one_file_never_share_a_temporary_file(tmp_path):
    """Six threads rewrite the same file: no writer trips over another's temporary file, the result is
    one writer's complete file, and no temporary file is left behind."""
    target = tmp_path / "shared.safetensors"

    def write(i):
        for _ in range(5):
            write_atomic({"x": torch.full((2000,), float(i))}, target, {"writer": str(i)}, checksum=True)

    run_threads(6, write)
    assert os.listdir(tmp_path) == ["shared.safetensors"]
    with safe_open(str(target), framework="pt") as handle:
        writer = float(handle.metadata()["writer"])
        assert torch.equal(handle.get_tensor("x"), torch.full((2000,), writer))


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path):
    target = write_atomic({"x": torch.ones(3)}, tmp_path / "kept.safetensors")
    with pytest.raises(ValueError):
        write_atomic({"x": torch.ones(4, 4).t()}, target)  # not contiguous: safetensors refuses it
    assert os.listdir(tmp_path) == ["kept.safetensors"] and read_header(target).tensors["x"].shape == (3,)
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a folder should be")
    with pytest.raises(FileWriteError, match="blocked"):
        write_atomic({"x": torch.ones(3)}, blocked / "new.safetensors")


def test_readers_return_ordinary_tensors_inside_inference_mode(tmp_path, tiny_bundle):
    """ComfyUI runs loaders inside torch.inference_mode(); a sampler hook later reads the tensors'
    version counters, which inference tensors lack."""
    pack = load_pack(DEFAULT_PACK_PATH)
    index = anchor_subset(len(pack.anchor_prompts), 24)
    features = {"l": torch.randn(len(index), 6, generator=torch.Generator().manual_seed(0))}
    save_aligned(align_pack(pack, features, "ridge", anchor_index=index), tmp_path / "aligned.safetensors")
    save_sae(tiny_bundle.saes["double.0"], tmp_path / "sae.safetensors")
    save_bundle(tiny_bundle, tmp_path / "bundle.safetensors")
    with torch.inference_mode():
        loaded_pack = load_pack(DEFAULT_PACK_PATH)
        aligned = load_aligned(tmp_path / "aligned.safetensors")
        sae = load_sae(tmp_path / "sae.safetensors")
        bundle = load_bundle(tmp_path / "bundle.safetensors")
    tensors = [
        loaded_pack.directions,
        loaded_pack.anchor_features,
        *aligned.encoders["l"].__dict__.values(),
        aligned.source_gate.directions,
        *sae.state_dict().values(),
        *bundle.saes["double.0"].state_dict().values(),
        bundle.features["double.0"].indices,
    ]
    tensors = [t for t in tensors if torch.is_tensor(t)]
    assert len(tensors) > 15 and not any(t.is_inference() for t in tensors)
    assert all(isinstance(t._version, int) for t in tensors)


# -- damaged and unwritable alignment caches -----------------------------------------------------------
def fit_graph(node: str = "SafetySteerFitCrossModelAlignment", anchors: int = 40) -> dict:
    method = "ridge" if node == "SafetySteerFitCrossModelAlignment" else "mean_diff"
    return {
        "1": {"class_type": "SafetySteerLoadDirection", "inputs": {"pack": DEFAULT_PACK_PATH.name}},
        "2": {"class_type": "TinyTestCLIP", "inputs": {"family": "sd15", "seed": 0}},
        "3": {
            "class_type": node,
            "inputs": {"clip": ["2", 0], "direction": ["1", 0], "method": method, "anchors": anchors},
        },
        "4": {"class_type": "SafetySteerDirectionInfo", "inputs": {"direction": ["3", 0]}},
    }


def _rewrite(path: Path, edit) -> None:
    """Apply ``edit(tensors, metadata)`` and write the file again with a valid checksum, so that only
    the checks behind the checksum can catch the damage."""
    with safe_open(str(path), framework="pt") as handle:
        metadata, tensors = dict(handle.metadata()), {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118  (a safetensors handle)
    metadata.pop(CHECKSUM_KEY)
    edit(tensors, metadata)
    write_atomic(tensors, path, metadata, checksum=True)


def _nan_in_a_direction(tensors, metadata):
    tensors[next(k for k in sorted(tensors) if k.endswith("/unit"))][0, 0] = float("nan")


def _wrong_shape(tensors, metadata):
    name = next(k for k in sorted(tensors) if k.endswith("/target_mean"))
    tensors[name] = tensors[name][:-1].clone()


def _old_schema(tensors, metadata):
    document = json.loads(metadata["aligned"])
    metadata["aligned"] = json.dumps({**document, "schema_version": 2})


def _flip_a_data_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x10
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "not safetensors": lambda p: p.write_bytes(b"\x00garbage"),
    "flipped byte (checksum)": _flip_a_data_byte,
    "NaN": lambda p: _rewrite(p, _nan_in_a_direction),
    "wrong shape": lambda p: _rewrite(p, _wrong_shape),
    "old schema": lambda p: _rewrite(p, _old_schema),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_alignment_cache_is_logged_deleted_and_rebuilt(
    comfy, tiny_clip_node, tmp_path, monkeypatch, caplog, damage
):
    monkeypatch.setenv("SAFETY_STEER_CACHE", str(tmp_path))
    first = comfy.run(fit_graph())
    [cached] = (tmp_path / "alignments").glob("*.safetensors")
    DAMAGE[damage](cached)
    node_module = sys.modules[comfy.node_classes["SafetySteerFitCrossModelAlignment"].__module__]
    calls, original = [], node_module.encode_per_encoder
    monkeypatch.setattr(node_module, "encode_per_encoder", lambda *a, **k: calls.append(1) or original(*a, **k))
    with caplog.at_level(logging.WARNING):
        second = comfy.run(fit_graph())
    assert second["4"]["text"] == first["4"]["text"] and calls, "the damaged cache must be refitted"
    assert cached.name in caplog.text and "deleting it and fitting again" in caplog.text
    assert load_aligned(cached).names[0] == "global"  # rebuilt: reads cleanly again
    assert [p.name for p in cached.parent.iterdir()] == [cached.name]


@pytest.mark.parametrize("node", ["SafetySteerFitCrossModelAlignment", "SafetySteerFitNativeDirection"])
def test_both_fit_nodes_reuse_their_cache(comfy, tiny_clip_node, tmp_path, monkeypatch, node):
    monkeypatch.setenv("SAFETY_STEER_CACHE", str(tmp_path))
    first = comfy.run(fit_graph(node))
    node_module = sys.modules[comfy.node_classes[node].__module__]
    calls, original = [], node_module.encode_per_encoder
    monkeypatch.setattr(node_module, "encode_per_encoder", lambda *a, **k: calls.append(1) or original(*a, **k))
    assert comfy.run(fit_graph(node))["4"]["text"] == first["4"]["text"] and not calls


@pytest.mark.parametrize("blocked", ["read-only folder", "a file where the folder should be"])
def test_an_unwritable_cache_still_returns_the_fit(comfy, tiny_clip_node, tmp_path, monkeypatch, caplog, blocked):
    monkeypatch.setenv("SAFETY_STEER_CACHE", str(tmp_path))
    folder = tmp_path / "alignments"
    if blocked == "read-only folder":
        folder.mkdir(parents=True)
        folder.chmod(0o555)
        if os.access(folder, os.W_OK):
            folder.chmod(0o755)
            pytest.skip("running as root: a read-only mode does not stop writes (the other case covers it)")
    else:
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.write_text("a file where the cache folder should be")
    try:
        with caplog.at_level(logging.WARNING):
            out = comfy.run(fit_graph())
        assert "with ridge on 40 benign anchors" in "".join(out["4"]["text"])
        assert "could not cache the fit" in caplog.text
    finally:
        if folder.is_dir():
            folder.chmod(0o755)
    assert not folder.is_dir() or not list(folder.iterdir())


# -- GGUF float copies ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def float_copy(smollm2):
    """(GGUF path, its valid float copy in the shared cache): the smollm2 fixture built or checked it."""
    gguf = sources._smollm2()
    folder = sources.locations.cache_dir() / "float" / f"{gguf.stem}-{sources.sha256_file(gguf)[:16]}"
    assert sources._float_copy_problem(folder) is None
    return gguf, folder


@pytest.fixture
def cache_copy(float_copy, tmp_path):
    """A private cache holding a copy of the valid float copy (deleted afterwards: 540 MB)."""
    gguf, source = float_copy
    cache = tmp_path / "cache"
    shutil.copytree(source, cache / "float" / source.name)
    yield gguf, source, cache / "float" / source.name
    shutil.rmtree(cache, ignore_errors=True)


def test_a_truncated_float_copy_is_rebuilt(smollm2, cache_copy, caplog):
    """The real path: detected from the header before use, converted again from the GGUF (~30 s)."""
    gguf, source, copy = cache_copy
    weights = copy / "model.safetensors"
    with open(weights, "r+b") as handle:
        handle.truncate(weights.stat().st_size // 2)
    with caplog.at_level(logging.WARNING):
        loaded = sources._from_gguf(gguf, "smollm2-135m", "SmolLM2", copy.parent.parent)
    assert copy.name in caplog.text and "truncated" in caplog.text
    assert weights.stat().st_size == (source / "model.safetensors").stat().st_size
    expected = smollm2.model.state_dict()
    assert all(torch.equal(value, expected[name]) for name, value in loaded.model.state_dict().items())
    assert [p.name for p in copy.parent.iterdir()] == [copy.name]


def _install_valid_copy(source: Path, rebuilt: list):
    """Stands in for the ~30 s dequantisation: installs a copy of the valid float copy the way
    _write_float_copy does (written aside, then renamed)."""

    def write(gguf_path, out_dir):
        rebuilt.append(out_dir)
        scratch = temporary_sibling(out_dir)
        shutil.copytree(source, scratch)
        sources._install_float_copy(scratch, out_dir)

    return write


def test_a_float_copy_with_nan_weights_is_rebuilt(cache_copy, monkeypatch, caplog):
    gguf, source, copy = cache_copy
    weights = copy / "model.safetensors"
    embedding = read_header(weights).tensors["model.embed_tokens.weight"]  # read by feature extraction
    with open(weights, "rb") as handle:
        header_length = struct.unpack("<Q", handle.read(8))[0]
    with open(weights, "r+b") as handle:
        handle.seek(8 + header_length + embedding.start)
        handle.write(struct.pack("<f", float("nan")))
    rebuilt: list[Path] = []
    monkeypatch.setattr(sources, "_write_float_copy", _install_valid_copy(source, rebuilt))
    with caplog.at_level(logging.WARNING):
        loaded = sources._from_gguf(gguf, "smollm2-135m", "SmolLM2", copy.parent.parent)
    assert rebuilt == [copy] and "NaN" in caplog.text and copy.name in caplog.text
    assert all(bool(torch.isfinite(w).all()) for w in loaded.model.state_dict().values())


def test_an_unwritable_float_cache_loads_through_a_temporary_folder(float_copy, tmp_path, monkeypatch, caplog):
    gguf, source = float_copy
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder should be")
    rebuilt: list[Path] = []
    install = _install_valid_copy(source, rebuilt)

    def write(gguf_path, out_dir):
        if blocked in out_dir.parents:
            raise FileWriteError(f"Cannot write the float copy {out_dir} (Not a directory)")
        install(gguf_path, out_dir)

    monkeypatch.setattr(sources, "_write_float_copy", write)
    with caplog.at_level(logging.WARNING):
        loaded = sources._from_gguf(gguf, "smollm2-135m", "SmolLM2", blocked)
    assert loaded.hidden_size == 576 and "temporary folder" in caplog.text
    assert len(rebuilt) == 1 and not rebuilt[0].exists()  # the temporary copy is gone again


def test_a_valid_copy_installed_by_another_writer_is_kept(tmp_path):
    def fake_copy(folder: Path, value: float) -> None:
        folder.mkdir(parents=True)
        save_file({"w": torch.full((4,), value)}, str(folder / "model.safetensors"))
        (folder / "config.json").write_text("{}")

    out = tmp_path / "float" / "model-0123456789abcdef"
    fake_copy(out, 1.0)  # another process finished first
    mine = temporary_sibling(out)
    fake_copy(mine, 2.0)
    sources._install_float_copy(mine, out)
    with safe_open(str(out / "model.safetensors"), framework="pt") as handle:
        assert float(handle.get_tensor("w")[0]) == 1.0  # theirs kept
    (out / "model.safetensors").write_bytes(b"\x08" + b"\x00" * 12)  # now damaged: mine replaces it
    sources._install_float_copy(mine, out)
    with safe_open(str(out / "model.safetensors"), framework="pt") as handle:
        assert float(handle.get_tensor("w")[0]) == 2.0
    assert [p.name for p in out.parent.iterdir()] == [out.name]
