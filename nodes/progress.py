"""Progress and Cancel for long node work (fits, SAE training, activation collection).

ComfyUI's Cancel sets a flag that only code which asks for it notices; every progress tick here
asks, so a long fit stops within one batch instead of running to the end.
"""

from __future__ import annotations

from collections.abc import Callable

import comfy.model_management
import comfy.utils


def progress_reporter(total: int, offset: int = 0) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback for steering code: moves ComfyUI's progress bar (shifted
    by ``offset`` steps of earlier stages) and raises ComfyUI's interruption when Cancel was pressed."""
    bar = comfy.utils.ProgressBar(max(1, int(total)))

    def report(done: int, _stage_total: int | None = None) -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()
        bar.update_absolute(min(offset + int(done), bar.total), bar.total)

    report(0)
    return report


def download_progress() -> Callable[[int, int], None]:
    """A ``progress(bytes done, bytes total)`` callback for a model download: ComfyUI's bar in
    megabytes, created on the first report (nothing shows when nothing downloads)."""
    state: dict = {}

    def report(done: int, total: int) -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()
        megabytes = max(1, total // 2**20)
        if state.get("total") != megabytes:
            state["bar"], state["total"] = comfy.utils.ProgressBar(megabytes), megabytes
        state["bar"].update_absolute(min(done // 2**20, megabytes), megabytes)

    return report
