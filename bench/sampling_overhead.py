"""Per-step sampling overhead of each application point, steered / unsteered, on tiny models.

For each family (tiny random-weight models built from ComfyUI's own classes: the test kit's
tests/tiny_models.py) and each point (text encoder, conditioning, model), a real KSampler runs
the same seed and steps steered and unsteered, interleaved round by round in random order in one
process, so drift and warm-up hit every variant alike; the ratio of medians of this process's CPU
time (one torch thread) is reported. Tiny
models on CPU are the worst case: the model itself costs almost nothing, so any per-step cost of
the steer shows at full size. The one-off cost of steering at the text encoder (per prompt, not per
step) is reported separately.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ..runtime import PACK_ROOT, load_module_from, start_comfyui_in_process

POINTS = ("text encoder", "conditioning", "model")
#: SafetySteerApplySafeDIG (repel at two routed positions)
SAFEDIG_FAMILIES = ("sd3", "flux", "wan", "wan22", "qwen_image", "chroma", "flux2")
PROMPT = "a man stabbing another man in a dark alley, blood everywhere, photo"
GOALS = {"text encoder": 1.01, "conditioning": 1.01, "model": 1.05}
SAFEDIG_TRAINING = {
    "positions": "auto",
    "candidates": 4,
    "keep": 2,
    "pairs_per_category": 2,
    "anchors": 6,
    "expansion": 4,
    "k": 8,
    "epochs": 3,
    "learning_rate": 3e-3,
    "harmful_features": 16,
    "noise_level": 0.5,
    "seed": 0,
    "filename_prefix": "bench",
}


def _timed(fn) -> float:
    """CPU time of this process (one torch thread): other processes on the machine do not count."""
    started = time.process_time()
    fn()
    return time.process_time() - started


def run(
    families=None, steps: int = 10, rounds: int = 15, threads: int = 1, seed: int = 0, earlier: dict | None = None
) -> dict:
    """``earlier``: a previous run's JSON whose other families are kept (same steps/rounds/threads only)."""
    torch.set_num_threads(threads)
    data = Path(tempfile.mkdtemp(prefix="safety-steer-bench-"))
    import os

    os.environ.setdefault("SAFETY_STEER_CACHE", str(data / "cache"))
    start_comfyui_in_process(data / "comfyui", custom_nodes=False)
    import comfy.utils

    import nodes

    from ..nodes.apply.conditioning import SafetySteerApplyConditioning
    from ..nodes.apply.model import SafetySteerApplyModel
    from ..nodes.apply.text_encoder import SafetySteerApplyTextEncoder
    from ..nodes.directions.fit_alignment import SafetySteerFitCrossModelAlignment
    from ..nodes.model_folders import register_model_folders
    from ..nodes.safedig.nodes import SafetySteerApplySafeDIG, SafetySteerTrainSAE
    from ..steering import load_pack
    from ..steering.pack import DEFAULT_PACK_PATH

    comfy.utils.PROGRESS_BAR_ENABLED = False
    register_model_folders()
    tiny = load_module_from(PACK_ROOT / "tests" / "tiny_models.py", "safety_steer_tiny_models")
    families = tiny.FAMILIES if families is None else families  # every family the tests build
    pack = load_pack(DEFAULT_PACK_PATH)
    rng = random.Random(seed)
    common = {"direction": "auto", "mode": "add", "gate": "none", "gate_threshold": -1.0}
    results = {"steps": steps, "rounds": rounds, "threads": threads, "device": "cpu", "families": {}}
    if earlier is not None:
        settings = {k: earlier.get(k) for k in ("steps", "rounds", "threads")}
        if settings != {"steps": steps, "rounds": rounds, "threads": threads}:
            raise ValueError(
                f"The earlier results were measured with {settings}; rerun these families with the same settings "
                "to merge, or rerun every family."
            )
        results["families"] = {k: v for k, v in earlier["families"].items() if k not in families}
    for family in families:
        clip, model = tiny.build_clip(family), tiny.build_model(family)
        aligned = SafetySteerFitCrossModelAlignment.execute(clip, pack, "ridge", 40).result[0]
        encode = lambda c, text: nodes.CLIPTextEncode().encode(c, text)[0]  # noqa: E731
        positive, negative = encode(clip, PROMPT), encode(clip, "")
        steered_clip = SafetySteerApplyTextEncoder.execute(clip, aligned, 1.0, **common).result[0]
        te_positive, te_negative = encode(steered_clip, PROMPT), encode(steered_clip, "")
        cond_positive = SafetySteerApplyConditioning.execute(positive, aligned, 1.0, **common).result[0]
        steered_model = SafetySteerApplyModel.execute(
            model, aligned, 1.0, **common, start_percent=0.0, end_percent=1.0, apply_to="positive"
        ).result[0]
        latent = tiny.empty_latent(family, 1)

        def sampler(m, pos, neg):
            return lambda: nodes.common_ksampler(m, 7, steps, 2.0, "euler", "normal", pos, neg, latent)

        variants = {
            "unsteered": sampler(model, positive, negative),
            "unsteered again": sampler(model, positive, negative),  # A/A: the noise floor
            "text encoder": sampler(model, te_positive, te_negative),
            "conditioning": sampler(model, cond_positive, negative),
            "model": sampler(steered_model, positive, negative),
        }
        if family in SAFEDIG_FAMILIES:
            bundle = SafetySteerTrainSAE.execute(model, clip, pack, latent, **SAFEDIG_TRAINING).result[0]
            repelled = SafetySteerApplySafeDIG.execute(model, bundle, "repel", 1.0, 0.0, 1.0, "positive").result[0]
            variants["safedig"] = sampler(repelled, positive, negative)
        for fn in variants.values():  # warm-up: model load, allocator, kernels
            fn()
        times = {name: [] for name in variants}
        for _ in range(rounds):
            order = list(variants)
            rng.shuffle(order)
            for name in order:
                times[name].append(_timed(variants[name]) / steps)
        base = statistics.median(times["unsteered"])
        encode_plain = statistics.median(_timed(lambda: encode(clip, PROMPT)) for _ in range(rounds))
        encode_steered = statistics.median(_timed(lambda: encode(steered_clip, PROMPT)) for _ in range(rounds))
        results["families"][family] = {
            "unsteered_ms_per_step": round(base * 1000, 3),
            "ratio": {
                point: round(statistics.median(times[point]) / base, 4)
                for point in (*POINTS, "safedig")
                if point in times
            },
            "noise_ratio_a_a": round(statistics.median(times["unsteered again"]) / base, 4),
            "text_encoder_one_off_ratio": round(encode_steered / encode_plain, 3),
        }
    order = [f for f in tiny.FAMILIES if f in results["families"]] + [
        f for f in results["families"] if f not in tiny.FAMILIES
    ]
    results["families"] = {f: results["families"][f] for f in order}  # a merged rerun keeps the table's order
    results["worst_ratio"] = {p: max(f["ratio"][p] for f in results["families"].values()) for p in POINTS}
    results["safedig_ratio"] = {
        f: row["ratio"]["safedig"] for f, row in results["families"].items() if "safedig" in row["ratio"]
    }
    results["noise_a_a_range"] = [
        min(f["noise_ratio_a_a"] for f in results["families"].values()),
        max(f["noise_ratio_a_a"] for f in results["families"].values()),
    ]
    results["goals"] = GOALS
    results["goals_met"] = {p: results["worst_ratio"][p] <= GOALS[p] for p in POINTS}
    return results


def format_result(results: dict) -> str:
    lines = [
        f"per-step sampling time steered / unsteered (median of {results['rounds']} interleaved rounds, "
        f"{results['steps']} steps, {results['threads']} thread(s), tiny models on CPU)",
        f"{'family':15} {'ms/step':>8} " + " ".join(f"{p:>13}" for p in POINTS) + "  A/A noise  TE one-off  SafeDIG",
    ]
    for family, row in results["families"].items():
        lines.append(
            f"{family:15} {row['unsteered_ms_per_step']:8.2f} "
            + " ".join(f"{row['ratio'][p]:13.3f}" for p in POINTS)
            + f"  {row['noise_ratio_a_a']:9.3f}  {row['text_encoder_one_off_ratio']:10.2f}"
            + (f"  {row['ratio']['safedig']:7.3f}" if "safedig" in row["ratio"] else "")
        )
    low, high = results["noise_a_a_range"]
    lines.append(f"A/A (unsteered vs unsteered) ratios span {low:.3f}-{high:.3f}: differences inside that are noise")
    lines.append("worst: " + ", ".join(f"{p} {v:.3f} (goal <= {GOALS[p]})" for p, v in results["worst_ratio"].items()))
    return "\n".join(lines)
