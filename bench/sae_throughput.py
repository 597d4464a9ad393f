"""SAE training throughput on CPU: activations (token rows) per second, by width and thread count, one run.

For each activation width d (default 256, 640, 3072: a small encoder, SD1.5-size CLIP, Flux/SD3 DiT
hidden size) a top-k SAE of width 4d and k 32 is trained with ``train_sae`` on seeded synthetic rows,
with 1 and then 2 torch threads. Two figures per run:

- ``steady_rows_per_s``: training steps only (forward, backward, Adam, column renormalisation,
  dead-latent bookkeeping), timed between the first and the last mini-batch through the progress
  callback, so start-up costs do not count;
- ``end_to_end_rows_per_s``: the whole ``train_sae`` call (input statistics, initialisation, the final
  pass over all rows for the fit metrics, hashing) divided into the rows trained on.

``adapt_rows_per_s`` is the steady throughput of ``adapt_decoder`` on the same rows (encoder frozen,
codes computed once, so it is much cheaper). Content does not change the cost of a step (dense encoder
product, top-k, sparse decoder), so Gaussian rows stand in for real activations. Wall-clock time:
the machine's load average is recorded, since anything else running on the cores slows every figure.
"""

from __future__ import annotations

import os
import time

import torch

from ..steering.safedig.sae import adapt_decoder, train_sae

DIMS = (256, 640, 3072)
THREADS = (1, 2)


def _rows_for(d: int, batch_size: int) -> int:
    """16384 * 256 / d rows, at least 8 batches: a few seconds per run at every width."""
    return batch_size * max(8, 16384 // d)


def _timed_training(fn) -> tuple[float, float]:
    """(seconds for batches 2..last, seconds for the whole call) via the progress callback."""
    stamps = []
    start = time.perf_counter()
    fn(lambda done, total: stamps.append(time.perf_counter()))
    total = time.perf_counter() - start
    if len(stamps) < 2:
        return total, total
    return stamps[-1] - stamps[0], total


def run(
    dims: tuple[int, ...] = DIMS,
    expansion: int = 4,
    k: int = 32,
    threads: tuple[int, ...] = THREADS,
    batch_size: int = 256,
    epochs: int = 1,
    seed: int = 0,
) -> dict:
    before = torch.get_num_threads()
    results = []
    try:
        for d in dims:
            n = _rows_for(d, batch_size)
            g = torch.Generator().manual_seed(seed)
            rows = torch.randn(n, d, generator=g) * 3.0 + torch.randn(d, generator=g)
            for t in threads:
                torch.set_num_threads(t)
                train_sae(rows[: 2 * batch_size], expansion=expansion, k=k, epochs=1, batch_size=batch_size)  # warm-up
                trained = {}

                def train(progress):
                    trained["sae"] = train_sae(
                        rows,
                        expansion=expansion,
                        k=k,
                        epochs=epochs,
                        batch_size=batch_size,
                        seed=seed,
                        progress=progress,
                    )

                steady, whole = _timed_training(train)
                adapt_steady, _ = _timed_training(
                    lambda progress: adapt_decoder(
                        trained["sae"], rows, epochs=epochs, batch_size=batch_size, progress=progress
                    )
                )
                steady_rows = n * epochs - batch_size  # timed from the end of the first (full) batch
                results.append(
                    {
                        "d_in": d,
                        "width": expansion * d,
                        "k": k,
                        "threads": t,
                        "rows": n * epochs,
                        "batch_size": batch_size,
                        "steady_rows_per_s": round(steady_rows / steady, 1),
                        "end_to_end_rows_per_s": round(n * epochs / whole, 1),
                        "adapt_rows_per_s": round(steady_rows / adapt_steady, 1),
                        "seconds": round(whole, 2),
                    }
                )
    finally:
        torch.set_num_threads(before)
    return {
        "device": "cpu",
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "runs": results,
    }


def format_result(result: dict) -> str:
    lines = [
        f"SAE training throughput (CPU, {result['cpu_count']} cores, torch {result['torch']}, "
        f"1-min load average {result['load_average_1min']}), rows = token activations",
        f"{'d_in':>6} {'width':>6} {'k':>3} {'threads':>7} {'train rows/s':>13} {'end-to-end':>11} "
        f"{'adapt rows/s':>13} {'rows':>6}",
    ]
    for r in result["runs"]:
        lines.append(
            f"{r['d_in']:>6} {r['width']:>6} {r['k']:>3} {r['threads']:>7} {r['steady_rows_per_s']:>13} "
            f"{r['end_to_end_rows_per_s']:>11} {r['adapt_rows_per_s']:>13} {r['rows']:>6}"
        )
    lines.append(
        "train rows/s: training steps only; end-to-end: the whole train_sae call (statistics, init, final "
        "fit pass); adapt: adapt_decoder steps (frozen encoder)."
    )
    return "\n".join(lines)
