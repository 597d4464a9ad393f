"""Registers the `safety_directions` model folder with ComfyUI's folder_paths.

Users drop packs into models/safety_directions/; the packs shipped in vectors/ are listed too.
Only .safetensors is listed: packs are never unpickled.
"""
import folder_paths

from ..runtime import DIRECTIONS_FOLDER, PACK_ROOT

SHIPPED_VECTORS = str(PACK_ROOT / "vectors")


def register_direction_folder() -> None:
    user_folder = f"{folder_paths.models_dir}/{DIRECTIONS_FOLDER}"
    paths, _ = folder_paths.folder_names_and_paths.get(DIRECTIONS_FOLDER, ([], set()))
    for path in (user_folder, SHIPPED_VECTORS):
        if path not in paths:
            paths.append(path)
    folder_paths.folder_names_and_paths[DIRECTIONS_FOLDER] = (paths, {".safetensors"})


def list_direction_packs() -> list[str]:
    return folder_paths.get_filename_list(DIRECTIONS_FOLDER)


def direction_pack_path(name: str) -> str:
    path = folder_paths.get_full_path(DIRECTIONS_FOLDER, name)
    if path is None:
        raise FileNotFoundError(f"Direction pack {name!r} is not in models/{DIRECTIONS_FOLDER}/ nor in the "
                                f"shipped vectors/. Available: {', '.join(list_direction_packs()) or 'none'}.")
    return path
