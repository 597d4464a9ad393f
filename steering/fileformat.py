"""The one safetensors layer: every Safety Steer file is read and written through here.

Why one layer: a file is input from outside (downloaded, copied, cut short by a crash or a full disk,
edited by hand), and each reader used to trust a different part of it. Here:

- the header is parsed and checked against the file's real size BEFORE safetensors or torch touch the
  file, so no size declared in a header or in metadata can make a reader allocate more than the bytes
  on disk (readers build modules from the checked tensor shapes, never from declared numbers alone);
- the format marker and schema version are judged by the same rules for every kind of file;
- every problem is a ``SafetySteerError`` subclass naming the file and what to do;
- every writer writes beside the target under a name unique to itself (pid + random), then renames,
  so a crash leaves no half file under the real name and two writers never share a temporary file;
- numbered names are reserved with ``O_CREAT | O_EXCL``, so two writers never get the same number.

Torch and safetensors only (no ComfyUI import): the CLI and the tests use it without ComfyUI.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import struct
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .errors import FileFormatError, FileWriteError, SafetySteerError

#: Largest header accepted (safetensors' own limit): a bigger one is damage, not a real file.
MAX_HEADER_BYTES = 100_000_000
#: Deepest JSON nesting accepted in metadata; Safety Steer writes at most ~5 levels.
MAX_JSON_DEPTH = 64
#: Largest number of dimensions and size of one dimension of a tensor (element counts stay exact in int64).
MAX_NDIM, MAX_DIM = 8, 2**40
#: Metadata entry holding ``content_checksum`` of a file written with ``write_atomic(..., checksum=True)``.
CHECKSUM_KEY = "content_sha256"
#: safetensors dtype -> (bytes per element, torch name used in messages).
DTYPES = {
    "BOOL": (1, "bool"),
    "U8": (1, "uint8"),
    "I8": (1, "int8"),
    "F8_E5M2": (1, "float8_e5m2"),
    "F8_E4M3": (1, "float8_e4m3fn"),
    "I16": (2, "int16"),
    "U16": (2, "uint16"),
    "F16": (2, "float16"),
    "BF16": (2, "bfloat16"),
    "I32": (4, "int32"),
    "U32": (4, "uint32"),
    "F32": (4, "float32"),
    "I64": (8, "int64"),
    "U64": (8, "uint64"),
    "F64": (8, "float64"),
}
_LOAD_ERRORS = (SafetensorError, OSError, ValueError, RuntimeError, TypeError)


class _Refused(Exception):
    """Internal: why a header is refused; turned into the reader's own error type with its advice."""


def short(value, limit: int = 80) -> str:
    """``repr`` cut to ``limit`` characters: a damaged file must not make a multi-megabyte message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- JSON -------------------------------------------------------------------------------------------
def _unique_keys(pairs):
    result = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the key {short(key)} appears twice")
        result[key] = value
    return result


def _too_deep(value, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def parse_json(text: str, max_depth: int = MAX_JSON_DEPTH, unique_keys: bool = False):
    """``json.loads`` that fails only with ValueError: also for nesting that would exhaust the stack
    (RecursionError) or that later code could not walk, and for integers too long to convert."""
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys if unique_keys else None)
    except RecursionError:
        raise ValueError(f"nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{exc.msg} at character {exc.pos}") from None
    except ValueError as exc:  # over-long integers, duplicate keys
        raise ValueError(str(exc)[:200]) from None
    if isinstance(value, (dict, list)) and _too_deep(value, max_depth):
        raise ValueError(f"nested deeper than {max_depth} levels")
    return value


def as_count(value, low: int = 0, high: int = MAX_DIM) -> int | None:
    """``value`` as an integer in [low, high] (an int, not a bool, or a string of ASCII digits), else None."""
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdecimal() and len(text) <= 15):
            return None
        value = int(text)
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    return value if low <= value <= high else None


def is_number(value) -> bool:
    """A finite JSON number (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# -- reading ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    start: int  # byte offsets in the data section
    end: int

    @property
    def torch_dtype_name(self) -> str:
        return DTYPES[self.dtype][1]


@dataclass(frozen=True)
class Header:
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    file_size: int


def _header_from_bytes(raw: bytes, data_size: int) -> Header:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused("its header is not UTF-8 text") from None
    if not text.startswith("{"):
        raise _Refused("its header does not start with '{'")
    try:
        document = parse_json(text, max_depth=4, unique_keys=True)
    except ValueError as exc:
        raise _Refused(f"its header is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise _Refused("its header is not a JSON object")
    metadata = document.pop("__metadata__", None)
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _Refused("its __metadata__ is not a map of strings")
    tensors = {}
    for name, entry in document.items():
        if not isinstance(entry, dict):
            raise _Refused(f"the header entry {short(name)} is not an object")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise _Refused(f"tensor {short(name)} has dtype {short(dtype)}, not one of {', '.join(DTYPES)}")
        if (
            not isinstance(shape, list)
            or len(shape) > MAX_NDIM
            or any(as_count(d) is None or isinstance(d, str) for d in shape)
        ):
            raise _Refused(f"tensor {short(name)} has shape {short(shape)}, not a list of up to {MAX_NDIM} sizes")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or any(as_count(o, high=data_size) is None or isinstance(o, str) for o in offsets)
            or offsets[0] > offsets[1]
        ):
            raise _Refused(
                f"tensor {short(name)} has data_offsets {short(offsets)}, outside the {data_size} bytes of "
                "tensor data the file holds"
            )
        needed = math.prod(shape) * DTYPES[dtype][0]
        if needed != offsets[1] - offsets[0]:
            raise _Refused(
                f"tensor {short(name)} ({dtype} {shape}) needs {needed} bytes but its span holds "
                f"{offsets[1] - offsets[0]}"
            )
        tensors[name] = TensorInfo(dtype, tuple(shape), offsets[0], offsets[1])
    position = 0
    for info in sorted(tensors.values(), key=lambda t: (t.start, t.end)):
        if info.start != position:
            raise _Refused("its tensors overlap or leave gaps in the data")
        position = info.end
    if position != data_size:
        raise _Refused(f"its header describes {position} bytes of tensor data but the file holds {data_size}")
    return Header(tensors, metadata, data_size)


def read_header(
    path: str | Path, error: type[SafetySteerError] = FileFormatError, fix: str = "Rebuild or re-download it."
) -> Header:
    """Parse and check a safetensors header without safetensors: the length prefix against the file
    size, every tensor's dtype x shape against its byte span, the spans against the data actually
    present. Raises ``error`` naming the file and ``fix``."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise _Refused(f"it has {size} bytes, fewer than the 8 of a safetensors length prefix")
            (length,) = struct.unpack("<Q", prefix)
            if length > size - 8 or length > MAX_HEADER_BYTES or length < 2:
                raise _Refused(f"its header length {length} does not fit a {size}-byte file")
            raw = handle.read(length)
            if len(raw) != length:
                raise _Refused("it changed while being read")
        header = _header_from_bytes(raw, size - 8 - length)
    except _Refused as exc:
        raise error(
            f"{path.name} is not a readable safetensors file ({exc}). It may be truncated, damaged or "
            f"another kind of file. {fix}"
        ) from None
    except OSError as exc:
        raise error(f"{path.name} is not a readable safetensors file ({exc.strerror or exc}). {fix}") from None
    return Header(header.tensors, header.metadata, size)


@dataclass(frozen=True)
class FileKind:
    """One kind of Safety Steer file: how it is marked, what it is called, and what to tell the user."""

    name: str  # "Safety Steer direction pack"
    marker: str  # the value of its "format" entry
    schema_version: int  # the version this code writes
    oldest_version: int  # the oldest version this code still reads
    error: type[SafetySteerError]  # what its reader raises
    fix: str  # what to do about a damaged or too old file
    obtain: str  # how to get a file of this kind (when given another kind)
    document_key: str | None = None  # metadata entry with a JSON object holding format/schema_version
    checksum_required: bool = False  # files of this kind always carry CHECKSUM_KEY


class CheckedFile:
    """A file whose header, format marker and schema version checked out (see ``open_checked``)."""

    def __init__(self, path: Path, kind: FileKind, header: Header, document: dict | None):
        self.path, self.kind, self.header = path, kind, header
        self.metadata = header.metadata  # the flat string metadata
        self.document = document  # the parsed kind.document_key entry (None for flat kinds)

    @property
    def name(self) -> str:
        return self.path.name

    def refuse(self, problem: str, fix: str | None = None) -> SafetySteerError:
        """The reader's error for ``problem``, naming the file and what to do."""
        return self.kind.error(f"{self.name}: {problem}. {fix if fix is not None else self.kind.fix}")

    def info(self, name: str) -> TensorInfo | None:
        return self.header.tensors.get(name)

    def expect(self, name: str, shape: Iterable[int], dtype: str = "F32") -> None:
        """Refuse a tensor that is missing or whose header shape or dtype is not the expected one:
        checked before any tensor is read, so declared sizes never drive an allocation."""
        info, shape = self.info(name), tuple(shape)
        if info is None:
            raise self.refuse(f"the tensor {name} is missing; the file is incomplete")
        if info.shape != shape:
            raise self.refuse(
                f"tensor {name} has shape {list(info.shape)}, expected {list(shape)}; the file is corrupt or was edited"
            )
        if info.dtype != dtype:
            raise self.refuse(f"tensor {name} is {info.torch_dtype_name}, expected {DTYPES[dtype][1]}")

    def load(self, names: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """The named tensors (default all) as ordinary tensors (not inference tensors, whatever mode
        the caller is in: sampler hooks read their version counters). When the file carries a
        checksum, every tensor is read and the checksum verified first."""
        wanted = list(self.header.tensors) if names is None else list(names)
        missing = [n for n in wanted if n not in self.header.tensors]
        if missing:
            raise self.refuse(f"missing tensors {[short(n) for n in missing[:5]]}; the file is incomplete")
        stored = self.metadata.get(CHECKSUM_KEY)
        reading = list(self.header.tensors) if stored is not None else wanted
        try:
            with torch.inference_mode(False), safe_open(str(self.path), framework="pt") as handle:
                tensors = {n: handle.get_tensor(n) for n in reading}
        except _LOAD_ERRORS as exc:
            raise self.kind.error(
                f"{self.name} is not a readable safetensors file ({short(str(exc), 200)}). It may "
                f"have changed while being read, or be damaged. {self.kind.fix}"
            ) from None
        if stored is not None and content_checksum(tensors, self.metadata) != stored:
            raise self.refuse(
                "its content does not match the checksum stored in it: the file was damaged (a disk "
                "or copy error) or edited"
            )
        return {n: tensors[n] for n in wanted}

    def tensors_finite(self, tensors: dict[str, torch.Tensor]) -> None:
        """Refuse NaN or Inf in any floating-point tensor, naming the first."""
        for name, tensor in tensors.items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise self.refuse(f"tensor {name} contains NaN or Inf values")


def schema_version_of(value) -> int | None:
    """A schema version as written in a file (an int in JSON, a string in flat metadata), or None."""
    return as_count(value, high=10**9)


def open_checked(path: str | Path, kind: FileKind) -> CheckedFile:
    """Check a file's header (``read_header``), format marker and schema version by the same rules for
    every kind: wrong marker -> "is not a <kind>", version not an integer -> damaged, newer -> update
    Safety Steer, older than still read -> rebuild it. Nothing is read into tensors yet."""
    path = Path(path)
    header = read_header(path, kind.error, kind.fix)
    document = None
    fields = header.metadata
    if kind.document_key is not None:
        raw = header.metadata.get(kind.document_key)
        fields = {}
        if raw is not None:
            try:
                document = parse_json(raw)
            except ValueError as exc:
                raise kind.error(
                    f"{path.name}: its {kind.document_key!r} metadata is not valid JSON ({exc}); the "
                    f"file is damaged or was edited. {kind.fix}"
                ) from None
            if not isinstance(document, dict):
                raise kind.error(
                    f"{path.name}: its {kind.document_key!r} metadata is not a JSON object; the file "
                    f"is damaged or was edited. {kind.fix}"
                )
            fields = document
    found = fields.get("format")
    if found != kind.marker:
        marker = "no format marker" if found is None else f"format marker {short(found)}"
        raise kind.error(
            f"{path.name} is a safetensors file but not a {kind.name} ({marker}, expected "
            f"{kind.marker!r}; it holds {len(header.tensors)} tensors, e.g. a model checkpoint or "
            f"another kind of file). {kind.obtain}"
        )
    version = schema_version_of(fields.get("schema_version"))
    if version is None:
        raise kind.error(
            f"{path.name}: schema_version {short(fields.get('schema_version'))} is not an integer; "
            f"the file is damaged or was edited. {kind.fix}"
        )
    if version > kind.schema_version:
        raise kind.error(
            f"{path.name} uses {kind.name} schema {version}, newer than this Safety Steer reads "
            f"({kind.schema_version}). Update the Safety Steer node pack."
        )
    if version < kind.oldest_version:
        raise kind.error(
            f"{path.name} uses {kind.name} schema {version}, older than this Safety Steer reads "
            f"({kind.oldest_version} to {kind.schema_version}). {kind.fix}"
        )
    if kind.checksum_required and CHECKSUM_KEY not in header.metadata:
        raise kind.error(
            f"{path.name} carries no content checksum; it was not written by this Safety Steer. {kind.fix}"
        )
    return CheckedFile(path, kind, header, document)


# -- writing ----------------------------------------------------------------------------------------
def content_checksum(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """sha256 over every tensor (name, dtype, shape, bytes) and the metadata (without the checksum
    itself): any byte flipped in a file that still parses is caught."""
    digest = hashlib.sha256()
    digest.update(json.dumps({k: v for k, v in sorted(metadata.items()) if k != CHECKSUM_KEY}).encode())
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"\0{name}\0{tensor.dtype}\0{list(tensor.shape)}\0".encode())
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def temporary_sibling(path: str | Path, suffix: str = ".partial") -> Path:
    """A hidden name beside ``path`` unique to this writer (pid + random): two writers of the same
    target never write into the same temporary file, and a rename is atomic within one folder."""
    path = Path(path)
    return path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}{suffix}"


def _fsync(path: Path, directory: bool = False) -> None:
    descriptor = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _ensure_folder(folder: Path, what: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FileWriteError(
            f"Cannot write {what}: its folder cannot be created ({exc.strerror or exc}). Choose a writable folder."
        ) from None


def write_atomic(
    tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None, checksum: bool = False
) -> Path:
    """Write a safetensors file so that ``path`` is either the old file or the complete new one: written
    to ``temporary_sibling``, flushed to disk, then renamed over ``path`` (which may be a file reserved
    by ``reserve_numbered``). The temporary file is removed on any failure. ``checksum`` stores
    ``content_checksum`` under CHECKSUM_KEY. Raises FileWriteError for an unwritable place."""
    path = Path(path)
    metadata = {str(k): str(v) for k, v in (metadata or {}).items()}
    if checksum:
        metadata[CHECKSUM_KEY] = content_checksum(tensors, metadata)
    _ensure_folder(path.parent, path)
    temporary = temporary_sibling(path)
    try:
        save_file(tensors, str(temporary), metadata=metadata)
        _fsync(temporary)
        os.replace(temporary, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            temporary.unlink()
        if isinstance(exc, (OSError, SafetensorError)):
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else short(str(exc), 200)
            raise FileWriteError(
                f"Cannot write {path} ({reason}). Check that the folder is writable and the disk has space."
            ) from None
        raise
    with contextlib.suppress(OSError):  # the rename itself survives a power cut only once the folder is synced
        _fsync(path.parent, directory=True)
    return path


def reserve_numbered(folder: str | Path, base: str, ext: str, digits: int = 5) -> Path:
    """Create and return the first free ``folder/base_NNNNN.ext`` as an empty file. ``O_CREAT | O_EXCL``
    makes the check and the creation one step, so concurrent writers (threads, processes, two
    ComfyUI servers sharing a models folder) never get the same name; ``write_atomic`` then replaces
    the empty file with the real content."""
    folder = Path(folder)
    _ensure_folder(folder, folder / f"{base}_{'0' * digits}{ext}")
    number = 1
    while True:
        candidate = folder / f"{base}_{number:0{digits}d}{ext}"
        try:
            descriptor = os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            number += 1
            continue
        except OSError as exc:
            raise FileWriteError(
                f"Cannot create {candidate} ({exc.strerror or exc}). Check that the folder is writable."
            ) from None
        os.close(descriptor)
        return candidate


def discard_reservation(path: str | Path) -> None:
    """Remove ``path`` if it is still an empty reservation (a save that failed before writing)."""
    with contextlib.suppress(OSError):
        path = Path(path)
        if path.is_file() and path.stat().st_size == 0:
            path.unlink()
