"""What the source-LLM gate costs per prompt, beside what a real-size text encoder costs.

The gate runs once per prompt (not per sampling step): one forward pass of the pack's source model
over the prompt (long prompts: one per 24-token window) and the detector's linear read-out. Beside
it, one encode of the same prompt by CLIP-L at full size (ComfyUI's own SD1 CLIP class and config,
random weights: the cost does not depend on the values), the text encoder of SD1.5 / SDXL / Flux.
Both are timed in this process, interleaved prompt by prompt, on CPU with the same thread count;
medians of process CPU time. Run: `safety-steer bench gate`.
"""

from __future__ import annotations

import statistics
import time

import torch

from ..steering import SourceGate, load_pack, load_pairs
from ..steering.pack import SHIPPED_PACKS


def _cpu_ms(fn) -> float:
    started = time.process_time()
    fn()
    return (time.process_time() - started) * 1000


def _clip_l():
    """Full-size CLIP-L from ComfyUI's classes (random weights), and its tokenizer."""
    from ..runtime import start_comfyui_in_process

    start_comfyui_in_process(None, custom_nodes=False)
    import comfy.ops
    import comfy.sd1_clip

    with torch.inference_mode(False):
        model = comfy.sd1_clip.SDClipModel(device="cpu", dtype=torch.float32)
        for parameter in model.parameters():  # ComfyUI skips weight init: give the memory values
            torch.nn.init.normal_(parameter.data, std=0.02)
    tokenizer = comfy.sd1_clip.SDTokenizer()
    return model, tokenizer


def run(n_prompts: int = 24, threads: int = 2) -> dict:
    torch.set_num_threads(threads)
    prompts = [p.unsafe if i % 2 else p.safe for i, p in enumerate(load_pairs(split="heldout")[:n_prompts])]
    clip, tokenizer = _clip_l()
    results = {"threads": threads, "n_prompts": len(prompts), "packs": {}}
    clip_ms = []
    for name, path in SHIPPED_PACKS.items():
        pack = load_pack(path)
        gate = SourceGate.from_pack(pack)
        load_started = time.perf_counter()
        reason = gate.unavailable_reason()
        load_s = time.perf_counter() - load_started
        if reason is not None:
            results["packs"][name] = {"error": reason}
            continue
        gate.gate_values(prompts[:2])  # warm-up
        gate_ms = []
        for prompt in prompts:
            gate_ms.append(_cpu_ms(lambda prompt=prompt: gate.gate_values([prompt])))
            tokens = tokenizer.tokenize_with_weights(prompt)
            with torch.inference_mode():
                clip_ms.append(_cpu_ms(lambda tokens=tokens: clip.encode_token_weights(tokens)))
        results["packs"][name] = {
            "gate_ms_per_prompt": round(statistics.median(gate_ms), 1),
            "first_load_s": round(load_s, 1),
            "detector_layers": gate.detector.layers if gate.detector is not None else None,
        }
    results["clip_l_encode_ms_per_prompt"] = round(statistics.median(clip_ms), 1) if clip_ms else None
    for entry in results["packs"].values():
        if "gate_ms_per_prompt" in entry and results["clip_l_encode_ms_per_prompt"]:
            entry["ratio_to_clip_l_encode"] = round(
                entry["gate_ms_per_prompt"] / results["clip_l_encode_ms_per_prompt"], 2
            )
    return results


def format_result(results: dict) -> str:
    lines = [
        f"source-LLM gate vs a full-size CLIP-L encode, per prompt (median CPU ms, {results['threads']} threads, "
        f"{results['n_prompts']} prompts)",
        f"CLIP-L encode: {results['clip_l_encode_ms_per_prompt']} ms",
    ]
    for name, entry in results["packs"].items():
        if "error" in entry:
            lines.append(f"{name}: unavailable ({entry['error'][:120]})")
        else:
            lines.append(
                f"{name}: gate {entry['gate_ms_per_prompt']} ms ({entry['ratio_to_clip_l_encode']}x CLIP-L), "
                f"first load {entry['first_load_s']} s, detector layers {entry['detector_layers']}"
            )
    return "\n".join(lines)
