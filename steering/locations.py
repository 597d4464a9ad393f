"""Where the pack's files are, and the one rule for where its caches go.

The pack's root is computed here and nowhere else. Caches (alignment fits, float copies of GGUF
source models) go to ``$SAFETY_STEER_CACHE`` when set; else, inside ComfyUI, to the folder the
host registered (ComfyUI's user directory: the pack's own folder may be read-only and is replaced
when the registry updates it); else to an XDG-style user cache (``$XDG_CACHE_HOME/safety-steer``).
"""

from __future__ import annotations

import os
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_VECTORS_DIR = PACK_ROOT / "vectors"
PROMPTS_DIR = PACK_ROOT / "prompts"
CACHE_ENV = "SAFETY_STEER_CACHE"

_host_cache_dir: Path | None = None


def set_host_cache_dir(folder: str | Path | None) -> None:
    """Called by the host (the ComfyUI nodes) with the cache folder it provides."""
    global _host_cache_dir
    _host_cache_dir = Path(folder) if folder is not None else None


def cache_dir() -> Path:
    """The cache root by the rule in the module docstring (not created here)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    if _host_cache_dir is not None:
        return _host_cache_dir
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "safety-steer"
