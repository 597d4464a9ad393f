"""Every file reader of the pack fed damaged files (issue #9, items 5 and 8): flipped bytes, truncations,
corrupt header lengths, rewritten headers and metadata (deep nesting, wrong types, huge declared sizes,
wrong format markers). A load must either succeed or raise a SafetySteerError (which names the file
and what to do), never another exception, and must not allocate much more than the file justifies.

Deterministic (derandomize=True, no example database), so CI sees the same examples every run.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import tempfile
import textwrap
import tracemalloc
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from safetensors import safe_open
from safetensors.torch import save_file

from safety_steer.steering.errors import SafetySteerError
from safety_steer.steering.fileformat import CHECKSUM_KEY, content_checksum
from safety_steer.steering.pack import DEFAULT_PACK_PATH, load_pack
from safety_steer.steering.prompts import load_anchors, load_pairs, shipped_anchors_path, shipped_pairs_path
from safety_steer.steering.safedig.bundle import BUNDLE_FORMAT, SafeDIGBundle, load_bundle, save_bundle
from safety_steer.steering.safedig.operations import HarmfulFeatures
from safety_steer.steering.safedig.sae import SAE_FORMAT, TENSOR_NAMES, load_sae, save_sae, train_sae
from safety_steer.steering.transfer.aligned import align_pack, anchor_subset, load_aligned, save_aligned

MB = 1 << 20
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
# hypothesis caches (constants, unicode tables) outside the repository: a .hypothesis/ folder in the
# root would also make its pytest plugin warn, since pyproject replaces pytest's norecursedirs
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "safety-steer-hypothesis")


def fuzz_settings(examples: int):
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=False,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


@dataclass
class Sample:
    """A valid file of one kind, its reader, and (safetensors kinds) its parts for rewriting."""

    data: bytes
    suffix: str
    reader: Callable
    header: dict | None = None  # the safetensors header JSON, parsed
    body: bytes = b""  # the tensor data after the header
    tensors: dict | None = None  # the tensors, to re-sign a rewritten checksummed file
    document_key: str | None = None  # metadata entry holding a JSON document (aligned, bundle)


def _split(data: bytes) -> tuple[dict, bytes]:
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + length]), data[8 + length :]


def _join(header_text: str, body: bytes) -> bytes:
    raw = header_text.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw + body


def _safetensors_sample(path: Path, reader: Callable, document_key: str | None = None) -> Sample:
    data = path.read_bytes()
    header, body = _split(data)
    with safe_open(str(path), framework="pt") as handle:
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118  (a safetensors handle)
    return Sample(data, ".safetensors", reader, header, body, tensors, document_key)


def tiny_sae(seed: int):
    rows = torch.randn(64, 8, generator=torch.Generator().manual_seed(seed))
    return train_sae(rows, expansion=2, k=2, epochs=1, seed=seed, metadata={"position": f"p{seed}"})


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> dict[str, Sample]:
    """One small valid file per reader, built with the pack's own writers."""
    folder = tmp_path_factory.mktemp("fuzz_samples")
    pack = load_pack(DEFAULT_PACK_PATH)
    index = anchor_subset(len(pack.anchor_prompts), 24)
    generator = torch.Generator().manual_seed(0)
    features = {
        "l": torch.randn(len(index), 6, generator=generator),
        "g": torch.randn(len(index), 4, generator=generator),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        aligned = align_pack(pack, features, "ridge", anchor_index=index)
    save_aligned(aligned, folder / "aligned.safetensors")
    first, second = tiny_sae(0), tiny_sae(1)
    save_sae(first, folder / "sae.safetensors")
    bundle = SafeDIGBundle(
        {"double.0": first, "single.1": second},
        {"double.0": HarmfulFeatures([1, 3], [0.5, 0.25]), "single.1": HarmfulFeatures([], [])},
        {
            "model_type": "Flux",
            "routing": {"double.0": {"score": 0.5}, "single.1": {"score": 0.1}},
            "chosen": ["double.0", "single.1"],
        },
    )
    save_bundle(bundle, folder / "bundle.safetensors")
    pairs = b"".join(shipped_pairs_path().read_bytes().splitlines(keepends=True)[:4])
    anchors = b"".join(shipped_anchors_path().read_bytes().splitlines(keepends=True)[:4])
    return {
        "pack": _safetensors_sample(DEFAULT_PACK_PATH, load_pack),
        "aligned": _safetensors_sample(folder / "aligned.safetensors", load_aligned, "aligned"),
        "sae": _safetensors_sample(folder / "sae.safetensors", load_sae),
        "bundle": _safetensors_sample(folder / "bundle.safetensors", load_bundle, "safedig"),
        "pairs": Sample(pairs, ".jsonl", load_pairs),
        "anchors": Sample(anchors, ".jsonl", load_anchors),
    }


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_mutants")


@pytest.fixture(scope="module", autouse=True)
def traced(samples):
    """tracemalloc for the whole module (peaks are reset per example). Torch's own allocations are
    invisible to it: ``test_declared_sizes_...`` guards those through the process's resident size."""
    tracemalloc.start()
    yield
    tracemalloc.stop()


def check_reader(sample: Sample, data: bytes, workdir: Path) -> None:
    """Load ``data``: a valid result or a SafetySteerError, never anything else, and no Python
    allocation far beyond the file's size."""
    path = workdir / f"mutant{sample.suffix}"
    path.write_bytes(data)
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    try:
        sample.reader(path)
    except SafetySteerError as exc:
        assert path.name in str(exc) or str(path) in str(exc), f"the error does not name the file: {exc}"
    peak = tracemalloc.get_traced_memory()[1] - before
    assert peak <= 64 * MB + 4 * len(data), f"the reader allocated {peak / MB:.0f} MB for a {len(data)}-byte file"


# -- mutations ----------------------------------------------------------------------------------------
DEEP_LIST = "[" * 100_000 + "]" * 100_000
DEEP_OBJECT = '{"a":' * 3000 + "1" + "}" * 3000
#: Values that readers have tripped over: deep nesting, huge or odd numbers, wrong markers and types.
SPECIAL_JSON = [
    DEEP_LIST,
    DEEP_OBJECT,
    "[" * 70 + "]" * 70,
    "1" * 5000,
    "20000",
    "0",
    "-1",
    "99999999999999999999999",
    "1.5",
    "NaN",
    "-Infinity",
    "null",
    "true",
    "{}",
    "[]",
    '""',
    '"x"',
    '"1e9"',
    '" 7 "',
    '"0x10"',
    '"\\u0000"',
    '"safety-steer-sae"',
    '"safety-steer-direction-pack"',
    '"safety-steer-safedig-bundle"',
    '"safety-steer-aligned-directions"',
    '{"0": 1}',
    "[0, 0]",
    "[[1], [2]]",
    '{"indices": [0, 0], "scores": [1, 2]}',
    '{"indices": [99999], "scores": [1]}',
    '{"indices": [true], "scores": [NaN]}',
    '{"d_in": 20000, "width": 20000, "k": 1, "sae": {}, "features": {"indices": [], "scores": []}}',
    '{"score": "high"}',
    '["l", "l"]',
    "[1, 2]",
]
# a fixed alphabet (quotes, escapes, NUL, non-ASCII): hypothesis' full-unicode tables cost ~30 s to build
ALPHABET = 'az09 "\\/\n\t\x00\x7f\u00e9\u4e2d\U0001f600{}[]:,'
json_leaves = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(ALPHABET, max_size=12)
random_json = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(ALPHABET, max_size=8), inner, max_size=4),
    max_leaves=10,
).map(json.dumps)
raw_json = st.one_of(st.sampled_from(SPECIAL_JSON), random_json)
PLACEHOLDER = "\u0000fuzz-placeholder\u0000"


def dumps_with(value, raw: str) -> str:
    """``json.dumps(value)`` with the PLACEHOLDER string replaced by raw JSON text (which may be
    nested far deeper than json.dumps itself could write)."""
    return json.dumps(value).replace(json.dumps(PLACEHOLDER), raw)


def _paths(value, prefix=(), depth=0):
    """Every key path into nested dicts, up to four levels (where the readers' metadata lives)."""
    if isinstance(value, dict) and depth < 4:
        for key, child in value.items():
            yield (*prefix, key)
            yield from _paths(child, (*prefix, key), depth + 1)


def _set(document, path, new):
    """A copy of ``document`` with ``path`` set to ``new`` (or removed when ``new`` is ...)."""
    copy = json.loads(json.dumps(document))
    target = copy
    for key in path[:-1]:
        target = target[key]
    if new is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = new
    return copy


def byte_level(draw, data: bytes, header_end: int) -> bytes:
    """Flips (mostly in the header, where the structure is), cuts, a corrupt length prefix, junk appended."""
    choice = draw(st.sampled_from(["flip", "flip", "truncate", "length", "append"]))
    if choice == "flip":
        mutated = bytearray(data)
        for _ in range(draw(st.integers(1, 6))):
            limit = header_end if draw(st.booleans()) else len(data)
            mutated[draw(st.integers(0, max(0, limit - 1)))] ^= draw(st.integers(1, 255))
        return bytes(mutated)
    if choice == "truncate":
        limit = header_end + 64 if draw(st.booleans()) else len(data)
        return data[: draw(st.integers(0, min(limit, len(data) - 1)))]
    if choice == "length":
        real = header_end - 8
        length = draw(
            st.one_of(
                st.integers(0, 2**64 - 1),
                st.integers(max(0, real - 16), real + 16),
                st.sampled_from([0, 1, len(data), len(data) - 8, 2**63, 100_000_001]),
            )
        )
        return struct.pack("<Q", length) + data[8:]
    return data + draw(st.binary(min_size=1, max_size=64))


def header_level(draw, sample: Sample) -> bytes:
    """The header rewritten: a tensor's dtype, shape or offsets replaced, a tensor dropped, a huge
    tensor declared, or the metadata map replaced."""
    header = sample.header
    names = sorted(k for k in header if k != "__metadata__")
    choice = draw(st.sampled_from(["field", "field", "drop", "huge", "metadata"]))
    if choice == "drop":
        return _join(json.dumps(_set(header, (draw(st.sampled_from(names)),), ...)), sample.body)
    if choice == "huge":
        evil = {"dtype": "F32", "shape": [20000, 20000], "data_offsets": [0, 1_600_000_000]}
        return _join(json.dumps({**header, "evil": evil}), sample.body)
    if choice == "metadata":
        return _join(dumps_with({**header, "__metadata__": PLACEHOLDER}, draw(raw_json)), sample.body)
    name = draw(st.sampled_from(names))
    field = draw(st.sampled_from(["dtype", "shape", "data_offsets"]))
    special = {
        "dtype": ['"F16"', '"F64"', '"U8"', '"F4"', '"X"', '"I64"'],
        "shape": [
            "[20000, 20000]",
            "[1099511627776, 1099511627776]",
            "[-1]",
            "[0]",
            "[1e3]",
            "[]",
            "[2, 2, 2, 2, 2, 2, 2, 2, 2]",
            '["8"]',
            "[true]",
        ],
        "data_offsets": ["[0, 9223372036854775807]", "[5, 3]", "[0]", "[-4, 4]", "[0.5, 8]", '["0", "4"]'],
    }
    raw = draw(st.one_of(st.sampled_from(special[field]), raw_json))
    return _join(dumps_with(_set(header, (name, field), PLACEHOLDER), raw), sample.body)


def metadata_level(draw, sample: Sample) -> bytes:
    """One metadata value replaced by odd JSON (inside the JSON document for aligned files and bundles);
    the content checksum is recomputed half of the time so that the checks behind it are reached."""
    metadata = dict(sample.header.get("__metadata__", {}))
    metadata.pop(CHECKSUM_KEY, None)
    if sample.document_key is None:
        key = draw(st.sampled_from(sorted(metadata)))
        value = draw(raw_json)
        metadata = _set(metadata, (key,), ... if draw(st.integers(0, 9)) == 0 else value)
    else:
        document = json.loads(metadata[sample.document_key])
        path = draw(st.sampled_from(sorted(_paths(document))))
        removed = draw(st.integers(0, 9)) == 0
        text = (
            json.dumps(_set(document, path, ...))
            if removed
            else dumps_with(_set(document, path, PLACEHOLDER), draw(raw_json))
        )
        metadata[sample.document_key] = text
    if CHECKSUM_KEY in sample.header.get("__metadata__", {}):
        metadata[CHECKSUM_KEY] = content_checksum(sample.tensors, metadata) if draw(st.booleans()) else "0" * 64
    return _join(json.dumps({**sample.header, "__metadata__": metadata}), sample.body)


class Mutant(bytes):
    """A mutated file; its repr stays short (hypothesis keeps the repr of every drawn value)."""

    def __repr__(self) -> str:
        return f"<{len(self)}-byte mutant {bytes(self[:48])!r}...>"


@st.composite
def safetensors_mutants(draw, sample: Sample) -> Mutant:
    level = draw(st.sampled_from(["bytes", "header", "metadata", "metadata"]))
    if level == "bytes":
        return Mutant(byte_level(draw, sample.data, 8 + struct.unpack("<Q", sample.data[:8])[0]))
    if level == "header":
        return Mutant(header_level(draw, sample))
    return Mutant(metadata_level(draw, sample))


@st.composite
def text_mutants(draw, sample: Sample) -> Mutant:
    """Prompt files: flipped bytes, cuts, invalid UTF-8, a line replaced by odd JSON or binary junk."""
    lines = sample.data.splitlines(keepends=True)
    choice = draw(st.sampled_from(["bytes", "line", "line", "insert"]))
    if choice == "bytes":
        return Mutant(byte_level(draw, sample.data, len(sample.data)))
    at = draw(st.integers(0, len(lines) - 1))
    junk = draw(
        st.one_of(
            raw_json.map(str.encode),
            st.binary(max_size=40),
            st.sampled_from([b"\xff\xfe\x00", b"\xef\xbb\xbf{}", b"\x00" * 8, b'{"prompt": "\xc3"}']),
        )
    )
    if choice == "line":
        lines[at] = junk + b"\n"
    else:
        lines.insert(at, junk + b"\n")
    return Mutant(b"".join(lines))


# -- the fuzz tests -----------------------------------------------------------------------------------
@fuzz_settings(100)
@given(data=st.data())
def test_fuzz_pack_reader(samples, workdir, data):
    sample = samples["pack"]
    check_reader(sample, data.draw(safetensors_mutants(sample)), workdir)


@pytest.mark.parametrize("kind", ["aligned", "sae", "bundle"])
@fuzz_settings(350)
@given(data=st.data())
def test_fuzz_safetensors_readers(samples, workdir, kind, data):
    sample = samples[kind]
    check_reader(sample, data.draw(safetensors_mutants(sample)), workdir)


@pytest.mark.parametrize("kind", ["pairs", "anchors"])
@fuzz_settings(200)
@given(data=st.data())
def test_fuzz_prompt_readers(samples, workdir, kind, data):
    sample = samples[kind]
    check_reader(sample, data.draw(text_mutants(sample)), workdir)


def test_unmutated_samples_load(samples, workdir):
    """The fuzzers start from files that do load (else they would only test the error path)."""
    for kind, sample in samples.items():
        path = workdir / f"valid_{kind}{sample.suffix}"
        path.write_bytes(sample.data)
        assert sample.reader(path) is not None


# -- declared sizes never drive an allocation ----------------------------------------------------------
def test_declared_sizes_are_checked_before_anything_is_allocated(tmp_path):
    """The 340-byte bundle declaring d_in = width = 20000 made the old reader allocate 3.2 GB before it
    failed, and an SAE file's header sizes did the same. Run in a fresh process, whose peak resident
    size (ru_maxrss) shows any torch allocation that tracemalloc cannot see."""
    bundle = tmp_path / "tiny_bundle.safetensors"
    position = {"d_in": 20000, "width": 20000, "k": 1, "sae": {}, "features": {"indices": [], "scores": []}}
    small = {f"double.0/{name}": torch.zeros(()) if name == "input_scale" else torch.zeros(1) for name in TENSOR_NAMES}
    save_file(
        small,
        str(bundle),
        metadata={
            "safedig": json.dumps({"format": BUNDLE_FORMAT, "schema_version": 1, "positions": {"double.0": position}})
        },
    )
    sae = tmp_path / "huge_sae.safetensors"
    save_file(
        {name: torch.zeros(()) if name == "input_scale" else torch.zeros(2) for name in TENSOR_NAMES},
        str(sae),
        metadata={
            "format": SAE_FORMAT,
            "schema_version": "1",
            "d_in": "20000",
            "width": "20000",
            "k": "1",
            "metadata": "{}",
        },
    )
    assert bundle.stat().st_size < 1200 and sae.stat().st_size < 1200
    script = textwrap.dedent("""
        import json, resource, sys, time
        from safety_steer.steering.errors import SafetySteerError
        from safety_steer.steering.safedig.bundle import load_bundle
        from safety_steer.steering.safedig.sae import load_sae

        def peak_mb():
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        results = []
        for reader, path in ((load_bundle, sys.argv[1]), (load_sae, sys.argv[2])):
            before, started = peak_mb(), time.perf_counter()
            try:
                reader(path)
                outcome = "loaded"
            except SafetySteerError as exc:
                outcome = str(exc)
            results.append({"outcome": outcome, "seconds": time.perf_counter() - started,
                            "grew_mb": peak_mb() - before})
        print(json.dumps(results))
    """)
    done = subprocess.run(
        [sys.executable, "-c", script, str(bundle), str(sae)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for result, name in zip(results, (bundle.name, sae.name)):
        assert name in result["outcome"] and "has shape" in result["outcome"], result
        assert result["grew_mb"] < 200 and result["seconds"] < 5, result
