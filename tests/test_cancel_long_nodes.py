"""Cancel during the four long nodes, through ComfyUI's real executor: a progress hook (what the
server's progress messages hang on) presses Cancel after a number of progress ticks, the node stops
with ComfyUI's interruption, and a cancelled run leaves no cache or model file behind."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

import pytest

from safety_steer.runtime import load_module_from
from safety_steer.steering.pack import DEFAULT_PACK_PATH

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
SAE_SETTINGS = {
    "candidates": 1,
    "keep": 1,
    "pairs_per_category": 2,
    "anchors": 4,
    "expansion": 2,
    "k": 4,
    "epochs": 30,
    "learning_rate": 3e-3,
    "harmful_features": 4,
    "noise_level": 0.5,
    "seed": 0,
}


class _RecordingServer:
    client_id = None
    last_node_id = None

    def send_sync(self, event, data, sid=None):
        pass

    def queue_updated(self):
        pass


@contextlib.contextmanager
def cancel_after(ticks: int | None):
    """Presses Cancel (ComfyUI's interrupt flag) at the ``ticks``-th progress update (None: never);
    yields the (value, total) of every update seen."""
    import comfy.model_management
    import comfy.utils

    seen: list[tuple[int, int]] = []

    def hook(value, total, preview=None, node_id=None):
        seen.append((int(value), int(total)))
        if ticks is not None and len(seen) == ticks:
            comfy.model_management.interrupt_current_processing(True)

    previous = comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(hook)
    try:
        yield seen
    finally:
        comfy.utils.set_progress_bar_global_hook(previous)
        comfy.model_management.interrupt_current_processing(False)


def execute(comfy, prompt: dict, cancel_at: int | None = None) -> tuple[list[str], list[tuple[int, int]]]:
    """Run ``prompt`` in a fresh PromptExecutor; (the executor's status message kinds, progress seen)."""
    import execution

    valid = comfy.validate(prompt)
    assert valid[0], valid
    executor = execution.PromptExecutor(_RecordingServer(), execution.CacheType.CLASSIC, {"lru": 0, "ram": 0})
    with cancel_after(cancel_at) as seen:
        executor.execute(prompt, str(uuid.uuid4()), {}, valid[2])
    kinds = [message[0] for message in executor.status_messages]
    if cancel_at is None:
        assert executor.success, executor.status_messages
    return kinds, seen


def graph(family: str, node: str, inputs: dict, extra: dict | None = None) -> dict:
    return {
        "pack": {"class_type": "SafetySteerLoadDirection", "inputs": {"pack": DEFAULT_PACK_PATH.name}},
        "clip": {"class_type": "TinyTestCLIP", "inputs": {"family": family, "seed": 0}},
        "model": {"class_type": "TinyTestModel", "inputs": {"family": family, "seed": 0}},
        **(extra or {}),
        "node": {"class_type": node, "inputs": {"clip": ["clip", 0], "direction": ["pack", 0], **inputs}},
        "capture": {"class_type": "CaptureForTest", "inputs": {"value": ["node", 0], "key": "out"}},
    }


def cached_fits(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.safetensors"))


@pytest.mark.parametrize(
    "node,inputs,cancel_at",
    [
        # mid-encoding of the anchors
        ("SafetySteerFitCrossModelAlignment", {"method": "ridge", "anchors": 60}, 10),
        # in the mlp's epochs, after the 40 anchors were encoded (1 + 40 ticks, then the fit's bar)
        ("SafetySteerFitCrossModelAlignment", {"method": "mlp", "anchors": 40}, 45),
        ("SafetySteerFitNativeDirection", {"method": "mean_diff", "anchors": 40}, 10),
    ],
)
def test_cancelled_fit_stops_and_caches_nothing(
    comfy, tiny_clip_node, tiny_model_node, tmp_path, monkeypatch, node, inputs, cancel_at
):
    monkeypatch.setenv("SAFETY_STEER_CACHE", str(tmp_path))
    prompt = graph("sd15", node, inputs)
    kinds, seen = execute(comfy, prompt, cancel_at)
    assert "execution_interrupted" in kinds and "execution_success" not in kinds, kinds
    assert len(seen) == cancel_at  # stopped at the next check: the very tick after the press
    if inputs["method"] == "mlp":
        assert seen[-1][1] == 200 and seen[-2][1] == 200  # inside the fit's own bar (MLP_EPOCHS)
    assert cached_fits(tmp_path) == []
    kinds, seen = execute(comfy, prompt)  # uncancelled: it runs through and the fit is cached
    assert len(seen) > cancel_at
    assert len(cached_fits(tmp_path)) == 1


def test_cancelled_sae_training_and_adaptation_save_nothing(comfy, tiny_clip_node, tiny_model_node):
    import folder_paths

    tiny = load_module_from(Path(__file__).with_name("tiny_models.py"), "safety_steer_tiny_models")
    latent_type, latent_inputs = tiny.latent_node("flux", 1)
    saes = comfy.base / "models" / "safety_saes"
    latent = {"latent": {"class_type": latent_type, "inputs": latent_inputs}}
    train = {
        **SAE_SETTINGS,
        "model": ["model", 0],
        "latent": ["latent", 0],
        "positions": "single.0",
        "filename_prefix": "cancel_train",
    }
    texts = 2 * 2 * 7 + SAE_SETTINGS["anchors"]  # pairs (safe + unsafe) of 7 categories, and anchors
    # encoding bar (1 + texts ticks), activation bar (1 + texts), then the SAE's own training bar
    cancel_at = 2 * (1 + texts) + 5
    kinds, seen = execute(comfy, graph("flux", "SafetySteerTrainSAE", train, latent), cancel_at)
    assert "execution_interrupted" in kinds and len(seen) == cancel_at
    assert seen[-1][1] != seen[0][1]  # cancelled inside the training loop, not while encoding
    assert not list(saes.glob("cancel_train*"))

    kinds, _ = execute(comfy, graph("flux", "SafetySteerTrainSAE", {**train, "epochs": 2}, latent))
    (trained,) = saes.glob("cancel_train*.safetensors")
    folder_paths.filename_list_cache.clear()
    adapt = {
        "model": ["model", 0],
        "safedig": ["bundle", 0],
        "latent": ["latent", 0],
        "anchors": 4,
        "epochs": 30,
        "noise_level": 0.5,
        "seed": 0,
        "filename_prefix": "cancel_adapt",
    }
    bundle = {"bundle": {"class_type": "SafetySteerLoadSAE", "inputs": {"bundle": trained.name}}}
    cancel_at = 2 * (1 + 4) + 5  # the same stages over 4 anchors, then the decoder's refit
    kinds, seen = execute(comfy, graph("flux", "SafetySteerAdaptSAEDecoder", adapt, {**latent, **bundle}), cancel_at)
    assert "execution_interrupted" in kinds and len(seen) == cancel_at
    assert seen[-1][1] != seen[0][1]
    assert not list(saes.glob("cancel_adapt*"))
