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
