"""`safety-steer doctor`: what a user needs to know before filing a bug, as text or one JSON object.

Versions (Safety Steer, Python, torch, ComfyUI and its frontend / templates), the model families this
pack supports in that ComfyUI, every installed direction pack and whether its source model is here,
every SafeDIG bundle, the cache folders and the settings that decide downloads.

Nothing here imports ComfyUI: its version is read as text, and the supported families are computed
in a child process with ComfyUI's root on sys.path (importing ``comfy`` starts ComfyUI's device
set-up and puts its top-level modules on the path). The report never fails: whatever cannot be
found or read is reported with the reason.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

from .runtime import DIRECTIONS_FOLDER, SAES_FOLDER, comfyui_root
from .steering.locations import CACHE_ENV, PACK_ROOT, SHIPPED_VECTORS_DIR, cache_dir

FRONTEND_PACKAGE = "comfyui-frontend-package"
TEMPLATES_PACKAGE = "comfyui-workflow-templates"
ENCODER_NAMES = {
    "l": "CLIP-L",
    "g": "CLIP-G",
    "t5xxl": "T5-XXL",
    "umt5xxl": "umT5-XXL",
    "llama": "Llama",
    "qwen25_7b": "Qwen2.5-VL 7B",
    "qwen3_4b": "Qwen3-4B",
    "qwen25_3b": "Qwen2.5-VL 3B",
}
FAMILIES_TIMEOUT_S = 180
_MARKER = "SAFETY_STEER_DOCTOR_FAMILIES "


def collect(models_dir: str | Path) -> dict:
    """The whole report for the ComfyUI whose models folder is ``models_dir``."""
    models_dir = Path(models_dir)
    comfyui = comfyui_info()
    return {
        "safety_steer": _guard(safety_steer_info),
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "torch": _guard(torch_info),
        "platform": platform.platform(),
        "comfyui": comfyui,
        "families": supported_families(comfyui["root"]),
        "packs": direction_packs(models_dir / DIRECTIONS_FOLDER, models_dir / "LLM"),
        "sae_bundles": sae_bundles(models_dir / SAES_FOLDER),
        "cache": cache_info(models_dir),
        "settings": settings_info(models_dir),
    }


def _guard(function) -> dict:
    try:
        return function()
    except Exception as exc:  # a report: say what failed, never crash
        return {"error": _why(exc)}


def _why(exc: BaseException) -> str:
    from .steering.errors import SafetySteerError

    return str(exc) if isinstance(exc, SafetySteerError) else f"{type(exc).__name__}: {exc}"


def safety_steer_info() -> dict:
    from .steering import __version__

    return {"version": __version__, "root": str(PACK_ROOT)}


def torch_info() -> dict:
    import torch

    return {
        "version": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": bool(torch.cuda.is_available()),
    }


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def comfyui_info() -> dict:
    """Root (``$COMFYUI_PATH`` or the vendored one), version read from comfyui_version.py as text,
    the installed frontend and templates packages, and the versions ComfyUI's requirements.txt pins."""
    info = {
        "root": None,
        "version": None,
        "frontend": package_version(FRONTEND_PACKAGE),
        "templates": package_version(TEMPLATES_PACKAGE),
        "required": {},
        "error": None,
    }
    try:
        root = comfyui_root()
    except Exception as exc:
        info["error"] = str(exc)
        return info
    info["root"] = str(root)
    version_file = root / "comfyui_version.py"
    try:
        found = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", version_file.read_text(), re.MULTILINE)
        info["version"] = found.group(1) if found else None
        if not found:
            info["error"] = f"{version_file} holds no __version__"
    except OSError as exc:
        info["error"] = f"cannot read {version_file}: {exc.strerror or exc}"
    try:
        for line in (root / "requirements.txt").read_text().splitlines():
            pinned = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(==|>=|~=)\s*([^\s;#]+)", line)
            if pinned and pinned.group(1).lower() in (FRONTEND_PACKAGE, TEMPLATES_PACKAGE):
                info["required"][pinned.group(1).lower()] = pinned.group(2) + pinned.group(3)
    except OSError:
        pass
    return info


# -- supported families (child process) -------------------------------------------------------------
def supported_families(root: str | None) -> dict:
    """The diffusion models and text encoders this pack supports in the ComfyUI at ``root``, computed
    by importing the pack's node modules in a child process with that ComfyUI on sys.path."""
    result = {"diffusion_models": [], "text_encoders": [], "error": None}
    if root is None:
        result["error"] = "no ComfyUI found (see comfyui.error)"
        return result
    package = __package__ or "safety_steer"
    code = f"from {package}.doctor import families_child; families_child()"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, root, package],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=FAMILIES_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        result["error"] = f"importing ComfyUI took more than {FAMILIES_TIMEOUT_S} s"
        return result
    except OSError as exc:
        result["error"] = f"could not start {sys.executable}: {exc}"
        return result
    for line in done.stdout.splitlines():
        if line.startswith(_MARKER):
            try:
                return {**result, **json.loads(line[len(_MARKER) :])}
            except ValueError:
                break
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    result["error"] = f"the check exited with code {done.returncode}: " + " | ".join(tail)
    return result


def families_child() -> None:
    """Entry point of the child process: argv = [root, package]; prints one marked JSON line."""
    root, package = sys.argv[1], sys.argv[2]
    result = {"diffusion_models": [], "text_encoders": [], "error": None}
    try:
        result.update(_families(Path(root), package))
    except BaseException as exc:  # reported, not raised: it is a report
        result["error"] = f"{type(exc).__name__}: {exc}"
    sys.stdout.flush()
    print(_MARKER + json.dumps(result), flush=True)


def _families(root: Path, package: str) -> dict:
    # ComfyUI's root has top-level `nodes`, `utils`...: the pack's own root must stay off sys.path
    for entry in list(sys.path):
        if entry in ("", ".") or Path(entry).resolve() == PACK_ROOT:
            sys.path.remove(entry)
    sys.path.insert(0, str(root))
    from comfy.cli_args import args

    args.cpu = True  # no accelerator set-up for a report
    import comfy.model_base as model_base

    dit_source, encoders_source = _declared_families()
    error = None
    try:
        targets = importlib.import_module(f"{package}.nodes.apply.model_targets")
        clip_targets = importlib.import_module(f"{package}.nodes.apply.clip_targets")
        dit = [(cls.__name__, label) for cls, label, _ in targets.DIT_MODELS]
        labels = list(targets.SUPPORTED_MODELS)
        encoders = list(clip_targets.SUPPORTED_ENCODERS)
        streams = dict(targets.TEXT_STREAM_ENCODERS)
    except Exception as exc:
        error = f"the pack's node code does not import in this ComfyUI ({type(exc).__name__}: {exc})"
        dit, encoders, streams = dit_source, encoders_source, {}
        labels = ["SD1.5", "SDXL", *(label for _, label in dit)]
    unets = {"SD1.5": "BaseModel", "SDXL": "SDXL"}
    classes = {label: name for name, label in dit}
    models = []
    for label in labels:
        name = classes.get(label) or unets.get(label)
        models.append(
            {
                "label": label,
                "kind": "dit" if label in classes else "unet",
                "model_base_class": name,
                "present": hasattr(model_base, name) if name else None,
                "text_from": [sorted(option) for option in streams.get(label, ())],
            }
        )
    return {
        "diffusion_models": models,
        "text_encoders": [{"key": key, "name": ENCODER_NAMES.get(key, key)} for key in encoders],
        "error": error,
    }


def _declared_families() -> tuple[list[tuple[str, str]], list[str]]:
    """DIT_MODELS ((class name, label)) and SUPPORTED_ENCODERS read from the sources, for when the
    node modules do not import (a model_base class missing in this ComfyUI, say)."""
    dit, encoders = [], []
    for file, name in (("model_targets.py", "DIT_MODELS"), ("clip_targets.py", "SUPPORTED_ENCODERS")):
        try:
            tree = ast.parse((PACK_ROOT / "nodes" / "apply" / file).read_text())
        except (OSError, SyntaxError):
            continue
        for node in tree.body:
            targets = [node.target] if isinstance(node, ast.AnnAssign) else getattr(node, "targets", [])
            if not any(isinstance(t, ast.Name) and t.id == name for t in targets) or node.value is None:
                continue
            if name == "SUPPORTED_ENCODERS":
                encoders = [e.value for e in getattr(node.value, "elts", []) if isinstance(e, ast.Constant)]
                continue
            for entry in getattr(node.value, "elts", []):
                parts = getattr(entry, "elts", [])
                if len(parts) >= 2 and isinstance(parts[0], ast.Attribute) and isinstance(parts[1], ast.Constant):
                    dit.append((parts[0].attr, parts[1].value))
    return dit, encoders


# -- direction packs and SafeDIG bundles ------------------------------------------------------------
def _safetensors_in(folder: Path, recursive: bool) -> list[Path]:
    if not folder.is_dir():
        return []
    found = folder.rglob("*.safetensors") if recursive else folder.glob("*.safetensors")
    return sorted(p for p in found if p.is_file())


def direction_packs(directions_dir: Path, llm_dir: Path) -> list[dict]:
    """Shipped packs, then those in models/safety_directions/ (ComfyUI lists subfolders too)."""
    from .steering.extraction.source_models import set_model_dirs

    set_model_dirs([llm_dir])
    files = [(p, True) for p in _safetensors_in(SHIPPED_VECTORS_DIR, False)]
    files += [(p, False) for p in _safetensors_in(directions_dir, True)]
    return [pack_entry(path, shipped, [llm_dir]) for path, shipped in files]


def pack_entry(path: Path, shipped: bool, llm_dirs: list[Path]) -> dict:
    entry = {
        "file": str(path),
        "shipped": shipped,
        "source_ref": None,
        "source_model": None,
        "detector": None,
        "source_found": False,
        "source_origin": None,
        "source_path": None,
        "sha256_match": None,
        "error": None,
    }
    try:
        from .steering.pack import load_pack

        pack = load_pack(path)
    except Exception as exc:
        entry["error"] = _why(exc)
        return entry
    ref, sha = pack.metadata.get("source_ref"), pack.metadata.get("source_weights_sha256") or None
    entry.update(source_ref=ref, source_model=pack.metadata.get("source_model"), detector=pack.detector is not None)
    if not ref:
        entry["error"] = "the pack names no source_ref (built before 0.2): no source-LLM gate, only the target gate"
        return entry
    try:
        from .steering.extraction.source_models import locate_source

        found = locate_source(ref, sha, download=False)
    except Exception as exc:
        entry["error"] = _why(exc)
        entry["sha256_match"] = _present_but_different(ref, sha, llm_dirs)
        return entry
    entry.update(
        source_found=True,
        source_origin=found.origin,
        source_path=str(found.path) if found.path is not None else None,
        sha256_match=(found.sha256 == sha) if found.sha256 and sha else None,
    )
    return entry


def _present_but_different(ref: str, sha: str | None, llm_dirs: list[Path]) -> bool | None:
    """False when a file by the pack's source name is here but is not the one it was built from
    (or a built-in name with other weights recorded); None when simply absent or unknown."""
    from .steering.extraction.sources import BUILTIN_MODELS

    model = BUILTIN_MODELS.get(ref)
    if model is not None and sha and model.sha256 and sha != model.sha256:
        return False
    name = model.file_name if model is not None else ref
    try:
        return False if any((folder / name).exists() for folder in llm_dirs) else None
    except (OSError, ValueError):
        return None


def sae_bundles(folder: Path) -> list[dict]:
    """Each bundle's header metadata (no tensor is read): model type, positions, sizes."""
    return [bundle_entry(path) for path in _safetensors_in(folder, True)]


def bundle_entry(path: Path) -> dict:
    from .steering.fileformat import CHECKSUM_KEY, open_checked
    from .steering.safedig import bundle as bundles

    entry = {"file": str(path), "model_type": None, "positions": {}, "chosen": [], "error": None}
    try:
        checked = open_checked(path, bundles.BUNDLE_KIND)
        meta = dict(checked.document)
        positions = meta.pop("positions", None)
        bundles._check_metadata(checked, positions, meta)
    except Exception as exc:
        entry["error"] = _why(exc)
        return entry
    entry.update(
        model_type=meta.get("model_type"),
        chosen=list(meta.get("chosen", [])),
        n_pairs=meta.get("n_pairs"),
        pack_sha256=meta.get("pack_sha256"),
        checksum=CHECKSUM_KEY in checked.metadata,
        positions={
            position: {
                "d_in": info.get("d_in"),
                "width": info.get("width"),
                "k": info.get("k"),
                "harmful_features": len(info["features"].get("indices") or []),
                "adapted": bool(info["sae"].get("adapted_from")),
            }
            for position, info in positions.items()
        },
    )
    return entry


# -- caches and settings ----------------------------------------------------------------------------
def folder_usage(folder: Path) -> dict:
    """{exists, files, bytes, subfolders: {name: {files, bytes}}} (symlinks are not followed)."""
    usage = {"path": str(folder), "exists": folder.is_dir(), "files": 0, "bytes": 0, "subfolders": {}}
    if not usage["exists"]:
        return usage
    for top, dirs, files in os.walk(folder):
        dirs.sort()
        relative = Path(top).relative_to(folder).parts
        bucket = usage["subfolders"].setdefault(relative[0], {"files": 0, "bytes": 0}) if relative else None
        for name in files:
            try:
                size = (Path(top) / name).lstat().st_size
            except OSError:
                continue
            usage["files"] += 1
            usage["bytes"] += size
            if bucket is not None:
                bucket["files"] += 1
                bucket["bytes"] += size
    for name in sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.is_symlink()):
        usage["subfolders"].setdefault(name, {"files": 0, "bytes": 0})
    usage["subfolders"] = dict(sorted(usage["subfolders"].items()))
    return usage


def cache_info(models_dir: Path) -> dict:
    """The cache this command sees (``cache_dir()``) and the one the nodes use inside that ComfyUI
    (its user directory's safety_steer/cache, unless SAFETY_STEER_CACHE is set)."""
    env = os.environ.get(CACHE_ENV) or None
    here = cache_dir()
    in_comfyui = here if env else models_dir.parent / "user" / "safety_steer" / "cache"
    return {
        "env": env,
        "dir": str(here),
        "usage": folder_usage(here),
        "comfyui_dir": str(in_comfyui),
        "comfyui_usage": folder_usage(in_comfyui) if in_comfyui != here else None,
    }


def settings_info(models_dir: Path) -> dict:
    from .steering.extraction.source_models import DOWNLOAD_ENV, downloads_allowed

    return {
        "COMFYUI_PATH": os.environ.get("COMFYUI_PATH"),
        CACHE_ENV: os.environ.get(CACHE_ENV),
        "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE"),
        DOWNLOAD_ENV: os.environ.get(DOWNLOAD_ENV),
        "downloads_allowed": downloads_allowed(),
        "models_dir": str(models_dir),
        "llm_dir": str(models_dir / "LLM"),
    }


# -- text -------------------------------------------------------------------------------------------
def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _files(n: int) -> str:
    return f"{n} file" + ("" if n == 1 else "s")


def _rows(rows: list[tuple[str, object]]) -> list[str]:
    width = max(len(k) for k, _ in rows)
    return [f"  {k.ljust(width)}  {'-' if v is None else v}" for k, v in rows]


def format_report(report: dict) -> str:
    lines = ["Safety Steer doctor (include this in bug reports)", ""]
    ss, py, th, cu = report["safety_steer"], report["python"], report["torch"], report["comfyui"]
    cuda = "error" if "error" in th else (f"CUDA {th['cuda']}, " if th.get("cuda") else "CPU build, ")
    cuda += "" if "error" in th else ("GPU available" if th["cuda_available"] else "no GPU")
    lines += ["Versions"] + _rows(
        [
            ("Safety Steer", ss.get("version", ss.get("error")) + (f"  ({ss['root']})" if "root" in ss else "")),
            ("Python", f"{py['version']}  ({py['executable']})"),
            ("torch", th.get("error") or f"{th['version']}  ({cuda})"),
            ("platform", report["platform"]),
        ]
    )
    required = cu.get("required", {})

    def with_required(version: str, package: str) -> str:
        pin = required.get(package)
        return version + (f"  (ComfyUI requires {pin})" if pin and pin.lstrip("=~>") != version else "")

    lines += ["", "ComfyUI"] + _rows(
        [
            ("root", cu["root"] or "not found"),
            ("version", cu["version"] or "unknown"),
            ("frontend", with_required(cu["frontend"], FRONTEND_PACKAGE)),
            ("templates", with_required(cu["templates"], TEMPLATES_PACKAGE)),
        ]
        + ([("problem", cu["error"])] if cu["error"] else [])
    )
    fam = report["families"]
    lines += ["", "Supported in this ComfyUI"]
    models = []
    for m in fam["diffusion_models"]:
        text = m["label"]
        if m["present"] is False:
            text += f" (model_base.{m['model_base_class']} MISSING)"
        models.append(text)
    lines += _rows(
        [
            ("diffusion models", ", ".join(models) or "unknown"),
            ("text encoders", ", ".join(f"{e['name']} ({e['key']})" for e in fam["text_encoders"]) or "unknown"),
        ]
        + ([("problem", fam["error"])] if fam["error"] else [])
    )
    lines += ["", f"Direction packs (shipped, then {report['settings']['models_dir']}/{DIRECTIONS_FOLDER}/)"]
    for p in report["packs"]:
        lines.append(f"  {'[shipped] ' if p['shipped'] else ''}{p['file']}")
        if p["source_ref"] is None and p["error"]:
            lines.append(f"      cannot load: {p['error']}")
            continue
        detector = "yes" if p["detector"] else "no"
        lines.append(f"      source {p['source_ref']} ({p['source_model']}), trained detector: {detector}")
        if p["source_found"]:
            verified = ", sha256 verified" if p["sha256_match"] else ""
            lines.append(f"      source model found: {p['source_origin']}: {p['source_path']}{verified}")
        else:
            lines.append(f"      source model NOT found: {p['error']}")
    if not report["packs"]:
        lines.append("  none")
    lines += ["", f"SafeDIG bundles ({report['settings']['models_dir']}/safety_saes/)"]
    for b in report["sae_bundles"]:
        lines.append(f"  {b['file']}")
        if b["error"]:
            lines.append(f"      cannot load: {b['error']}")
            continue
        positions = ", ".join(
            f"{name} (d {p['d_in']}, width {p['width']}, k {p['k']}, {p['harmful_features']} harmful"
            + (", adapted" if p["adapted"] else "")
            + ")"
            for name, p in b["positions"].items()
        )
        lines.append(f"      for {b['model_type']}: {positions}")
    if not report["sae_bundles"]:
        lines.append("  none")
    cache = report["cache"]
    lines += ["", "Cache"]
    here = f"{CACHE_ENV}, used inside ComfyUI too" if cache["env"] else "this command, outside ComfyUI"
    for label, usage in ((here, cache["usage"]), ("inside ComfyUI", cache["comfyui_usage"])):
        if usage is None:
            continue
        state = f"{_size(usage['bytes'])} in {_files(usage['files'])}" if usage["exists"] else "(does not exist yet)"
        lines.append(f"  {label}: {usage['path']}  {state}")
        for name, sub in usage["subfolders"].items():
            lines.append(f"      {name + '/':<14} {_size(sub['bytes']):>10}  {_files(sub['files'])}")
    lines += ["", "Settings"] + _rows(list(report["settings"].items()))
    return "\n".join(lines)
