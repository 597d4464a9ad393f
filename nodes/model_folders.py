"""Registers Safety Steer's model folders with ComfyUI's folder_paths.

models/safety_directions/: direction packs (the packs shipped in vectors/ are listed too);
models/safety_saes/: SafeDIG bundles (Train Safety SAE saves there). Only .safetensors is listed:
nothing is ever unpickled.
"""

import os

import folder_paths

from ..runtime import DIRECTIONS_FOLDER, SAES_FOLDER
from ..steering.fileformat import reserve_numbered
from ..steering.locations import SHIPPED_VECTORS_DIR, set_host_cache_dir

SHIPPED_VECTORS = str(SHIPPED_VECTORS_DIR)
SOURCE_MODELS_FOLDER = "LLM"


def _register(name: str, extra: list[str]) -> None:
    paths, _ = folder_paths.folder_names_and_paths.get(name, ([], set()))
    for path in (f"{folder_paths.models_dir}/{name}", *extra):
        if path not in paths:
            paths.append(path)
    folder_paths.folder_names_and_paths[name] = (paths, {".safetensors"})


def register_model_folders() -> None:
    _register(DIRECTIONS_FOLDER, [SHIPPED_VECTORS])
    _register(SAES_FOLDER, [])
    register_source_model_folder()
    set_host_cache_dir(os.path.join(folder_paths.get_user_directory(), "safety_steer", "cache"))


def register_source_model_folder() -> None:
    """models/LLM/ (and its extra_model_paths.yaml entries), where a pack's source model may be
    looked up by name; the folder keeps the extensions another pack may already have given it."""
    from ..steering.extraction.source_models import set_model_dirs

    paths, extensions = folder_paths.folder_names_and_paths.get(SOURCE_MODELS_FOLDER, ([], set()))
    default = f"{folder_paths.models_dir}/{SOURCE_MODELS_FOLDER}"
    if default not in paths:
        paths.append(default)
    folder_paths.folder_names_and_paths[SOURCE_MODELS_FOLDER] = (paths, set(extensions) | {".gguf", ".safetensors"})
    set_model_dirs(paths)


def list_sae_bundles() -> list[str]:
    return folder_paths.get_filename_list(SAES_FOLDER)


def _full_path(folder: str, name: str, missing: str) -> str:
    """The file's path in a model folder, or FileNotFoundError with ``missing`` (says where to look)."""
    path = folder_paths.get_full_path(folder, name)
    if path is None:
        raise FileNotFoundError(missing)
    return path


def sae_bundle_path(name: str) -> str:
    return _full_path(
        SAES_FOLDER,
        name,
        f"SafeDIG bundle {name!r} is not in models/{SAES_FOLDER}/. Available: "
        f"{', '.join(list_sae_bundles()) or 'none (train one with Train Safety SAE)'}.",
    )


def sae_save_path(prefix: str) -> str:
    """A new file in models/safety_saes/, reserved as an empty file so that two trainings running at
    once never get the same number (save_bundle then replaces it atomically); never overwrites."""
    folder = folder_paths.get_folder_paths(SAES_FOLDER)[0]
    base = "".join(c if c.isalnum() or c in "-_" else "_" for c in prefix) or "safedig"
    return str(reserve_numbered(folder, base, ".safetensors"))


def list_direction_packs() -> list[str]:
    return folder_paths.get_filename_list(DIRECTIONS_FOLDER)


def direction_pack_path(name: str) -> str:
    return _full_path(
        DIRECTIONS_FOLDER,
        name,
        f"Direction pack {name!r} is not in models/{DIRECTIONS_FOLDER}/ nor "
        f"in the shipped vectors/. Available: {', '.join(list_direction_packs()) or 'none'}.",
    )
