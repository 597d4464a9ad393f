"""Extraction throughput on CPU: prompts per second, batched vs one prompt at a time, one run.

Both passes encode the same prompts with the same model in the same process, interleaved in
that order after a warm-up, so the ratio is comparable even when absolute speed varies.
"""

from __future__ import annotations

import time

import torch

from ..steering import extract_features, load_anchors, load_text_model


def run(n_prompts: int = 128, source: str = "smollm2-135m", batch_size: int = 32, threads: int | None = None) -> dict:
    if threads is not None:
        torch.set_num_threads(threads)
    model = load_text_model(source)
    prompts = load_anchors()[:n_prompts]
    extract_features(model.model, model.tokenizer, prompts[:8], batch_size=8)  # warm-up
    timings = {}
    for label, size in (("one_at_a_time", 1), ("batched", batch_size)):
        start = time.perf_counter()
        extract_features(model.model, model.tokenizer, prompts, batch_size=size)
        timings[label] = time.perf_counter() - start
    return {
        "source": model.display_name,
        "prompts": len(prompts),
        "batch_size": batch_size,
        "torch_threads": torch.get_num_threads(),
        "prompts_per_s_one_at_a_time": round(len(prompts) / timings["one_at_a_time"], 2),
        "prompts_per_s_batched": round(len(prompts) / timings["batched"], 2),
        "speedup_batched_over_one_at_a_time": round(timings["one_at_a_time"] / timings["batched"], 2),
    }


def format_result(result: dict) -> str:
    return "\n".join(f"{k}: {v}" for k, v in result.items())
