"""Source-weight variants: how far the shipped pack's separation and source gate move when the user's
copy of the source LLM is a different file of the same model (another quantisation, a bf16 copy).

The pack records the sha256 of the GGUF it was built from, and the gate's threshold was calibrated on
exactly those weights; this measures what accepting another file of the same model would cost. Run:
    .venv/bin/python -m safety_steer.bench.source_variants [--out bench/results]

Variants (built in memory from what ships; no other download):

- ``q4_1``: the shipped GGUF (SmolLM2-135M-Instruct Q4_1, token embeddings Q8_0), dequantised here
  tensor by tensor with the ``gguf`` package (Q/K rows un-permuted as transformers does). Reference.
- ``float32``: the cached float32 copy that ``load_text_model`` loads (what the product runs); it should
  equal ``q4_1`` bit for bit (the figures confirm it).
- ``bf16``: the float copy cast to bfloat16 and back (every tensor), as a bf16 safetensors copy would be.
- ``q8_0`` / ``q4_0``: every 2-D weight whose last dimension is a multiple of the block size (32),
  embeddings included, quantised and dequantised with the ``gguf`` reference quantisers; the others
  (the 1-D norm weights) are left as they are and counted.

Caveat: ``bf16``, ``q8_0`` and ``q4_0`` are derived from the Q4_1-dequantised weights, so they carry
the Q4_1 error plus their own; a real bf16 or Q8_0 file made from the original weights would differ
from the shipped Q4_1 by the Q4_1 error itself, which is of the order of the ``q4_0`` requantisation
error (an estimate, not measured here: both are 4-bit with 32-weight blocks), not of the
``bf16`` / ``q8_0`` one.

Protocol: features at the pack's layer and pooling, first token left out, ``max_length`` as the gate
uses (96 tokens; every prompt measured is shorter). Standardised with the PACK's anchor statistics, as
the gate does. Held-out AUROC: the pack's global direction (row 0) on the shipped held-out pairs, whole
prompts. Refit: ``fit_direction`` (the pack's method) on the pack-standardised features of the shipped
training pairs, cosine to the pack's direction. Gate: ``SourceGate`` math (row 0, projection_stats,
threshold and temperature from ``SourceGate.from_pack``), prompts longer than ``WINDOW_TOKENS`` read
in windows (the most unsafe-leaning window decides), on the held-out prompts (safe and unsafe) and
every 10th benign anchor. The pack also carries a trained detector (several layers); when it does,
``SourceGate.gate_values`` gates on the detector instead, so the detector gate is measured the same way
(score of the most unsafe window, the detector's threshold and temperature). The model is cut after the
deepest layer read (checked to give identical features); weight errors cover the tensors kept.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..steering import (
    SourceGate,
    extract_features,
    fit_direction,
    load_anchors,
    load_pack,
    load_pairs,
    load_text_model,
)
from ..steering.application.gating import Gate
from ..steering.application.source_gate import WINDOW_TOKENS, prompt_windows
from ..steering.extraction.sources import BUILTIN_MODELS
from ..steering.hashing import sha256_file
from ..steering.locations import SHIPPED_VECTORS_DIR
from ..steering.metrics import separation_auroc

SOURCE = "smollm2-135m"
PACK_PATH = SHIPPED_VECTORS_DIR / "smollm2-135m-i2p.safetensors"  # the pack built from SOURCE
ANCHOR_EVERY = 10
VARIANTS = ("q4_1", "float32", "bf16", "q8_0", "q4_0")
REFERENCE = "q4_1"
DESCRIPTIONS = {
    "q4_1": "shipped GGUF (Q4_1, embeddings Q8_0), dequantised with gguf",
    "float32": "cached float32 copy (what load_text_model loads)",
    "bf16": "float copy cast to bfloat16 and back",
    "q8_0": "float copy requantised Q8_0 (2-D weights) and dequantised",
    "q4_0": "float copy requantised Q4_0 (2-D weights, embeddings too) and dequantised",
}

#: GGUF tensor names (llama) -> keys of transformers' LlamaModel state dict.
_GGUF_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def gguf_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Dequantise every tensor of a llama GGUF into LlamaModel keys; also the count per stored type."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(str(path))
    n_head = int(reader.fields["llama.attention.head_count"].parts[-1][0])
    n_kv = int(reader.fields["llama.attention.head_count_kv"].parts[-1][0])
    state, types = {}, {}
    for tensor in reader.tensors:
        types[tensor.tensor_type.name] = types.get(tensor.tensor_type.name, 0) + 1
        shape = tuple(int(n) for n in reversed(tensor.shape.tolist()))
        array = np.asarray(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32).reshape(shape)
        if tensor.name == "token_embd.weight":
            key = "embed_tokens.weight"
        elif tensor.name == "output_norm.weight":
            key = "norm.weight"
        else:
            block, kind = re.fullmatch(r"blk\.(\d+)\.(\w+)\.weight", tensor.name).groups()
            key = f"layers.{block}.{_GGUF_NAMES[kind]}.weight"
            if kind in ("attn_q", "attn_k"):  # llama.cpp permutes Q/K rows for its rotary layout
                heads = n_head if kind == "attn_q" else n_kv
                dim = shape[0] // heads // 2
                array = array.reshape(heads, dim, 2, *shape[1:]).swapaxes(2, 1).reshape(shape)
        state[key] = torch.from_numpy(np.array(array, dtype=np.float32, copy=True))
    return state, types


def requantised(state: dict[str, torch.Tensor], qtype_name: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Every 2-D tensor whose last dim is a multiple of the block size, quantised and dequantised."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
    from gguf.quants import dequantize, quantize

    qtype = GGMLQuantizationType[qtype_name.upper()]
    block = GGML_QUANT_SIZES[qtype][0]
    out, left = {}, []
    for key, tensor in state.items():
        if tensor.dim() == 2 and tensor.shape[-1] % block == 0:
            array = tensor.numpy().astype(np.float32)
            out[key] = torch.from_numpy(np.asarray(dequantize(quantize(array, qtype), qtype), dtype=np.float32))
        else:
            out[key] = tensor.clone()
            left.append(key)
    return out, left


def variant_state(name: str, float_state: dict, gguf_state: dict) -> tuple[dict[str, torch.Tensor], list[str]]:
    if name == "q4_1":
        return {k: gguf_state[k] for k in float_state}, []
    if name == "float32":
        return {k: v.clone() for k, v in float_state.items()}, []
    if name == "bf16":
        return {k: v.to(torch.bfloat16).to(torch.float32) for k, v in float_state.items()}, []
    return requantised(float_state, name)


def weight_error(state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> dict:
    diff = sum(float((state[k].double() - reference[k].double()).pow(2).sum()) for k in reference)
    norm = sum(float(reference[k].double().pow(2).sum()) for k in reference)
    worst = max(float((state[k] - reference[k]).abs().max()) for k in reference)
    return {"relative_weight_error": diff**0.5 / norm**0.5, "max_abs_weight_diff": worst}


def run(out_dir: Path = Path("bench/results"), threads: int = 1, variants=VARIANTS) -> dict:
    torch.set_num_threads(threads)
    started = time.perf_counter()
    pack = load_pack(PACK_PATH)
    settings = SourceGate.from_pack(pack)
    gate = Gate(settings.threshold, settings.temperature)  # the projection gate (row 0)
    detector = pack.detector  # when the pack has one, SourceGate.gate_values gates on it instead
    layer, pooling = int(pack.metadata["layer"]), pack.metadata["pooling"]
    gate_layers = sorted({layer, *(detector.layers if detector is not None else [])})
    direction, stats = pack.directions[0], pack.projection_stats[0]
    gguf_path = BUILTIN_MODELS[SOURCE].locate()
    if sha256_file(gguf_path) != pack.metadata["source_weights_sha256"]:
        raise RuntimeError(f"{gguf_path} is not the file the pack was built from.")

    loaded = load_text_model(SOURCE)
    tokenizer = loaded.tokenizer
    base = copy.deepcopy(loaded.model)  # cut after the deepest layer read: later blocks change nothing
    base.layers = base.layers[: max(gate_layers) + 1]
    base.config.num_hidden_layers = len(base.layers)
    float_state = {k: v.detach().clone() for k, v in base.state_dict().items()}
    gguf_state, gguf_types = gguf_state_dict(gguf_path)
    missing = sorted(set(float_state) - set(gguf_state))
    if missing:
        raise RuntimeError(f"GGUF tensors do not cover the model: {missing[:5]}")

    def encode(model, texts, layers):
        """Features at ``layers``, running only the blocks up to the deepest of them."""
        blocks, n_blocks = model.layers, model.config.num_hidden_layers
        model.layers = blocks[: max(layers) + 1]
        model.config.num_hidden_layers = len(model.layers)
        try:
            return extract_features(
                model, tokenizer, texts, layers, pooling=pooling, skip_first_token=True, max_length=WINDOW_TOKENS * 4
            )
        finally:
            model.layers, model.config.num_hidden_layers = blocks, n_blocks

    probe = load_anchors()[:8]
    full = extract_features(
        loaded.model,
        tokenizer,
        probe,
        gate_layers,
        pooling=pooling,
        skip_first_token=True,
        max_length=WINDOW_TOKENS * 4,
    )
    cut = {**encode(base, probe, gate_layers), **encode(base, probe, [layer])}
    if not all(torch.equal(full[k], cut[k]) for k in gate_layers):
        raise RuntimeError("Cutting the model after the layers read changed their features.")
    del loaded, full

    heldout, train = load_pairs(split="heldout"), load_pairs(split="train")
    anchor_index = list(range(0, len(pack.anchor_prompts), ANCHOR_EVERY))
    all_anchors = load_anchors()
    if all_anchors != pack.anchor_prompts:
        raise RuntimeError("The shipped anchors are not the pack's anchors.")
    anchors = [all_anchors[i] for i in anchor_index]
    n_held = len(heldout)
    gate_prompts = [p.safe for p in heldout] + [p.unsafe for p in heldout] + anchors
    windows = [prompt_windows(tokenizer, p) for p in gate_prompts]
    gate_texts = list(dict.fromkeys(w for ws in windows for w in ws))  # read at every gate layer
    pair_texts = [p.safe for p in heldout + train] + [p.unsafe for p in heldout + train]
    other_texts = [t for t in dict.fromkeys(pair_texts) if t not in set(gate_texts)]  # pack layer only
    row = {text: i for i, text in enumerate(gate_texts + other_texts)}
    n_windowed = sum(ws != [p] for p, ws in zip(gate_prompts, windows))
    say(
        f"{len(gate_texts)} gate texts at layers {gate_layers} + {len(other_texts)} pair texts at layer {layer} "
        f"per variant ({n_windowed} of {len(gate_prompts)} gate prompts read in windows)"
    )

    def index(strings):
        return torch.tensor([row[s] for s in strings])

    window_rows = [index(ws) for ws in windows]
    reference, results = None, []
    for name in variants:
        say(f"variant {name}")
        t0 = time.perf_counter()
        state, left = variant_state(name, float_state, gguf_state)
        model = copy.deepcopy(base)
        model.load_state_dict(state, strict=True)
        model.eval()
        per_layer = encode(model, gate_texts, gate_layers)
        raw = torch.cat([per_layer[layer], encode(model, other_texts, [layer])[layer]])
        del model
        z = (raw - pack.anchor_mean) / pack.anchor_std
        auc = separation_auroc(direction, z[index([p.safe for p in heldout])], z[index([p.unsafe for p in heldout])])
        refit, magnitude = fit_direction(
            z[index([p.safe for p in train])], z[index([p.unsafe for p in train])], method=pack.metadata["method"]
        )
        # SourceGate.projections: standardised projection on row 0, most unsafe-leaning window.
        per_text = (z @ direction - stats[0]) / stats[1]
        current = {"raw": raw, "projection": torch.stack([per_text[w].min() for w in window_rows])}
        current["gate"] = gate(current["projection"])
        if detector is not None:  # SourceGate.gate_values with a detector: most unsafe window's score
            scores = detector.scores(per_layer, [0])
            current["detector_score"] = torch.stack([scores[w].max() for w in window_rows])
            current["detector_gate"] = detector.gate(current["detector_score"])
        if reference is None:
            reference = current
        result = {
            "variant": name,
            "description": DESCRIPTIONS[name],
            "n_gate_prompts": len(gate_prompts),
            "n_heldout_pairs": n_held,
            "n_anchors": len(anchors),
            "n_train_pairs": len(train),
            "n_texts_encoded": len(row),
            "tensors_requantised": len(state) - len(left) if name in ("q8_0", "q4_0") else 0,
            "tensors_left_as_is": len(left),
            **weight_error(state, float_state),
            "features_max_abs_diff_vs_reference_std_units": float(
                ((raw - reference["raw"]) / pack.anchor_std).abs().max()
            ),
            "heldout_auroc_global": auc,
            "refit_cosine_to_pack": float(refit @ direction),
            "refit_magnitude": magnitude,
            **gate_figures("projection_shift", "gate", current["projection"], current["gate"], reference, n_held),
        }
        if detector is not None:
            result.update(
                gate_figures(
                    "detector_score_shift", "detector_gate", current["detector_score"], current["detector_gate"],
                    {"projection": reference["detector_score"], "gate": reference["detector_gate"]}, n_held,
                )
            )  # fmt: skip
        if current is reference:
            result["reference_checks"] = reference_checks(pack, current, gate, anchors, anchor_index, windows, index)
        result["seconds"] = round(time.perf_counter() - t0, 1)
        results.append(result)
        say(f"  {name}: AUROC {auc:.4f}, max |shift| {result['projection_shift_max_abs']:.4f}, {result['seconds']} s")

    report = {
        "source": SOURCE,
        "pack": PACK_PATH.name,
        "pack_layer": layer,
        "detector_layers": detector.layers if detector is not None else None,
        "torch_threads": torch.get_num_threads(),
        "windowing": f"gate prompts over {WINDOW_TOKENS} tokens read in windows, as SourceGate does",
        "units": "projection shifts in anchor-std units (the projection gate's input); detector score shifts "
        "in log-odds (the detector gate's input)",
        "gguf_tensor_types": gguf_types,
        "weights_compared": f"embeddings, blocks 0..{max(gate_layers)} and the final norm (relative error: "
        "Frobenius norm of the difference over that of the float copy, all those tensors together)",
        "total_seconds": round(time.perf_counter() - started, 1),
        "variants": results,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "source_variants.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def gate_figures(shift: str, name: str, score: torch.Tensor, values: torch.Tensor, reference: dict, n_held: int):
    """How far a gate's input and decision moved from the reference, and how often it opens."""
    delta = score - reference["projection"]
    opened = values > 0.5
    return {
        f"{shift}_mean_abs": float(delta.abs().mean()),
        f"{shift}_max_abs": float(delta.abs().max()),
        f"{shift}_mean_signed": float(delta.mean()),
        f"{name}_agreement": float((opened == (reference["gate"] > 0.5)).float().mean()),
        f"{name}_flips": int((opened != (reference["gate"] > 0.5)).sum()),
        f"{name}_delta_mean_abs": float((values - reference["gate"]).abs().mean()),
        f"{name}_delta_max_abs": float((values - reference["gate"]).abs().max()),
        f"{name}_open_heldout_unsafe": float(opened[n_held : 2 * n_held].float().mean()),
        f"{name}_open_heldout_safe": float(opened[:n_held].float().mean()),
        f"{name}_open_anchors": float(opened[2 * n_held :].float().mean()),
    }


def reference_checks(pack, current, gate, anchors, anchor_index, windows, index) -> dict:
    """The pack's own figures re-measured on the reference, and where prompts sit from the thresholds."""
    n_held = (len(windows) - len(anchors)) // 2
    projection = current["projection"]
    window_free = torch.tensor([ws == [a] for a, ws in zip(anchors, windows[-len(anchors) :])])
    anchor_raw = current["raw"][index([a for a, free in zip(anchors, window_free) if free])]
    pack_anchor = pack.anchor_features[anchor_index][window_free]
    checks = {
        "pack_heldout_auroc_global": pack.metadata["heldout_auroc"]["global"],
        "anchor_features_max_abs_diff_vs_pack_std_units": float(
            ((anchor_raw - pack_anchor) / pack.anchor_std).abs().max()
        ),
        "projection_gate": {"threshold": gate.threshold, "temperature": gate.temperature},
        "projection_quantiles": {
            "heldout_unsafe": quantiles(projection[n_held : 2 * n_held]),
            "heldout_safe": quantiles(projection[:n_held]),
            "anchors": quantiles(projection[2 * n_held :]),
        },
        "projection_share_within": {str(d): near(projection, gate.threshold, d) for d in (0.01, 0.05, 0.25)},
    }
    if pack.detector is not None:
        score, detector = current["detector_score"], pack.detector
        checks["detector_gate"] = {"threshold": detector.threshold, "temperature": detector.temperature}
        checks["pack_detector_heldout"] = detector.info.get("heldout")
        checks["detector_score_quantiles"] = {
            "heldout_unsafe": quantiles(score[n_held : 2 * n_held]),
            "heldout_safe": quantiles(score[:n_held]),
            "anchors": quantiles(score[2 * n_held :]),
        }
        checks["detector_share_within"] = {str(d): near(score, detector.threshold, d) for d in (0.01, 0.05, 0.25)}
    return checks


def quantiles(values: torch.Tensor) -> dict[str, float]:
    qs = torch.quantile(values.double(), torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64))
    return {"p10": float(qs[0]), "median": float(qs[1]), "p90": float(qs[2])}


def near(values: torch.Tensor, threshold: float, distance: float) -> float:
    return float(((values - threshold).abs() < distance).float().mean())


def summary_table(report: dict) -> str:
    """Markdown: the direction and projection gate, then the detector gate when the pack has one."""
    lines = [
        "| variant | rel. weight error | held-out AUROC | cos(refit, pack) | mean abs shift | max abs shift | "
        "gate agreement | mean abs d(gate) | max abs d(gate) | open: unsafe / safe / anchors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["variants"]:
        lines.append(
            f"| {r['variant']} | {r['relative_weight_error']:.4f} | {r['heldout_auroc_global']:.4f} | "
            f"{r['refit_cosine_to_pack']:.5f} | {r['projection_shift_mean_abs']:.4f} | "
            f"{r['projection_shift_max_abs']:.4f} | {r['gate_agreement']:.4f} | {r['gate_delta_mean_abs']:.4f} | "
            f"{r['gate_delta_max_abs']:.4f} | {r['gate_open_heldout_unsafe']:.3f} / {r['gate_open_heldout_safe']:.3f}"
            f" / {r['gate_open_anchors']:.3f} |"
        )
    if report["detector_layers"] is not None:
        lines += [
            "",
            f"Detector gate (layers {report['detector_layers']}; score shifts in log-odds):",
            "",
            "| variant | mean abs shift | max abs shift | gate agreement | mean abs d(gate) | max abs d(gate) | "
            "open: unsafe / safe / anchors |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in report["variants"]:
            lines.append(
                f"| {r['variant']} | {r['detector_score_shift_mean_abs']:.4f} | "
                f"{r['detector_score_shift_max_abs']:.4f} | {r['detector_gate_agreement']:.4f} | "
                f"{r['detector_gate_delta_mean_abs']:.4f} | {r['detector_gate_delta_max_abs']:.4f} | "
                f"{r['detector_gate_open_heldout_unsafe']:.3f} / {r['detector_gate_open_heldout_safe']:.3f} / "
                f"{r['detector_gate_open_anchors']:.3f} |"
            )
    return "\n".join(lines)


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    args = parser.parse_args(argv)
    if args.variants[0] != REFERENCE:
        parser.error(f"the first variant is the reference and must be {REFERENCE}")
    print(summary_table(run(Path(args.out), args.threads, args.variants)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
