"""Cross-model transport benchmark on real models: every map against native and random, with
the strength sweep (attack success vs benign preservation), written as JSON and PNG plots.

Evaluation pairs: the shipped held-out pairs (never fitted on). Each pair is measured at the target's
middle block (keys ``source->target:method``) and at the layer the ComfyUI family using the target
as its text encoder consumes (keys ``source->target (consumed):method``). Run:
    .venv/bin/python -m safety_steer.bench.transport_report [--out bench/results] [--layers middle consumed]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from ..steering import load_pairs, load_text_model
from ..steering.evaluation.targets import memoized, pack_detector_gate, pack_source_encoder, text_model_encoder
from ..steering.evaluation.transfer import evaluate_transfer, resolve_pack
from ..steering.transfer.alignment import MAP_METHODS

ANCHOR_STUDY = (100, 300, 1000)
COMBOS = (
    ("smollm2-135m", "gemma3-270m"),
    ("gemma3-270m", "smollm2-135m"),
    ("smollm2-135m", "minilm-l6"),
    ("gemma3-270m", "minilm-l6"),
    ("minilm-l6", "smollm2-135m"),
)


TARGET_LAYERS = ("middle", "consumed")


def result_key(source: str, target: str, layer: str, method: str) -> str:
    return f"{source}->{target}{' (consumed)' if layer == 'consumed' else ''}:{method}"


def run(
    combos=COMBOS, methods=MAP_METHODS, out_dir: Path = Path("bench/results"), layers=TARGET_LAYERS, anchor_study=True
) -> dict:
    torch.set_num_threads(2)
    out_dir.mkdir(parents=True, exist_ok=True)
    pairs = [p for p in load_pairs() if p.split == "heldout"]
    results = {}
    for source, target_name in combos:
        say(f"{source} -> {target_name}")
        pack = resolve_pack(None, source, progress=say)
        target = load_text_model(target_name)
        source_encoder = pack_source_encoder(pack, progress=say)
        source_encoder = memoized(source_encoder) if source_encoder is not None else None
        detector = pack_detector_gate(pack) if source_encoder is not None else None
        detector = memoized(detector) if detector is not None else None
        for layer in layers:
            encoder = memoized(text_model_encoder(target, layer=None if layer == "middle" else layer))
            for method in methods:
                results[result_key(source, target_name, layer, method)] = one_report(
                    pack, encoder, pairs, method, source_encoder, detector, target
                )
        if anchor_study and (source, target_name) == combos[0]:
            encoder = memoized(text_model_encoder(target))
            for n_anchors in ANCHOR_STUDY:
                report = evaluate_transfer(
                    pack,
                    encoder,
                    pairs,
                    method="ridge",
                    encode_source=source_encoder,
                    max_fit_anchors=n_anchors,
                    detector_gate=detector,
                ).report
                results[f"{source}->{target_name}:ridge@{n_anchors} anchors"] = report
                say(f"  ridge on {n_anchors} anchors: ratio {report['goals']['auroc_ratio_transported_over_native']}")
    (out_dir / "transport.json").write_text(json.dumps(results, indent=1))
    plot(results, out_dir)
    return results


def one_report(pack, encoder, pairs, method, source_encoder, detector, target) -> dict:
    """evaluate_transfer at one target layer with one map, plus where it was measured."""
    started = time.perf_counter()
    report = evaluate_transfer(
        pack, encoder, pairs, method=method, encode_source=source_encoder, detector_gate=detector
    ).report
    report.update(
        source=pack.metadata["source_model"],
        source_layer=int(pack.metadata["layer"]),
        target=target.display_name,
        target_layer=encoder.layer,
        target_layer_rule=encoder.layer_rule,
        seconds=round(time.perf_counter() - started, 1),
    )
    say(
        f"  {method} at {encoder.layer_rule}: AUROC transported {report['auroc_transported']:.3f} "
        f"native {report['auroc_native']:.3f} random {report['auroc_random']:.3f}; goals {report['goals']}"
    )
    return report


def plot(results: dict, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = {k: v for k, v in results.items() if "@" not in k}
    combos = sorted({key.split(":")[0] for key in results})
    fig, axes = plt.subplots(1, len(combos), figsize=(6 * len(combos), 4.8), squeeze=False)
    for ax, combo in zip(axes[0], combos):
        for key, report in results.items():
            if not key.startswith(combo + ":"):
                continue
            method = key.split(":")[1]
            for gate, style in (("none", ":"), ("source", "--"), ("detector", "-")):
                rows = [e for e in report["sweep"] if e["gate"] == gate]
                ax.plot(
                    [e["benign_preservation_transported"] for e in rows],
                    [e["rep_asr_transported"] for e in rows],
                    style,
                    marker="o",
                    ms=3,
                    label=f"{method}, gate {gate}",
                )
        native = next(r for k, r in results.items() if k.startswith(combo + ":"))
        for gate, style in (("none", ":"), ("target", "-.")):
            rows = [e for e in native["sweep"] if e["gate"] == gate]
            ax.plot(
                [e["benign_preservation_native"] for e in rows],
                [e["rep_asr_native"] for e in rows],
                style,
                color="black",
                label=f"native*, gate {gate}",
            )
        ax.axvline(0.95, color="grey", lw=0.8)
        ax.axvline(0.99, color="grey", lw=0.8, ls="--")
        ax.set_xlim(0.5, 1.001)
        ax.invert_xaxis()
        ax.set_xlabel("benign preservation (centred cosine, held-out anchors)")
        ax.set_ylabel("representation-level attack success rate")
        ax.set_title(combo.replace("->", " -> "), fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle(
        "Strength sweep: attack success vs benign preservation (*native uses target-side unsafe data)", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(out_dir / "transport_tradeoff.png", dpi=110)


def summary_table(results: dict) -> str:
    """A Markdown table of the headline figures (what the README shows)."""
    lines = [
        "| source -> target : map | AUROC transported | native* | random | ratio | cos(t, n*) | fit s | "
        "unsteered repASR | best repASR at pres >= 0.95 (setting) | best repASR at pres >= 0.99 (setting) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, r in results.items():
        g = r["goals"]
        setting = g["best_setting"] and f"{g['best_setting']['strength']}, gate {g['best_setting']['gate']}"
        strict = g.get("best_setting_at_preservation_0.99")
        strict = strict and f"{strict['strength']}, gate {strict['gate']}"
        lines.append(
            f"| {key} | {r['auroc_transported']:.3f} | {r['auroc_native']:.3f} | {r['auroc_random']:.3f} | "
            f"{g['auroc_ratio_transported_over_native']:.3f} | {r['cosine_transported_native']:+.3f} | "
            f"{r['map_fit_seconds']:.2f} | {g['unsteered_rep_asr']:.3f} | "
            f"{g['best_rep_asr_at_preservation_0.95']} ({setting}) | "
            f"{g.get('best_rep_asr_at_preservation_0.99')} ({strict}) |"
        )
    return "\n".join(lines)


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--methods", nargs="*", default=list(MAP_METHODS))
    parser.add_argument("--layers", nargs="*", choices=TARGET_LAYERS, default=list(TARGET_LAYERS))
    parser.add_argument(
        "--auroc-only",
        action="store_true",
        help="AUROC at the middle and consumed layers only (no strength sweep): transport_layers.json",
    )
    parser.add_argument("--features", default=None, help="folder of cached per-target features (--auroc-only)")
    args = parser.parse_args(argv)
    if args.auroc_only:
        methods = args.methods if args.methods != list(MAP_METHODS) else ["ridge", "auto"]
        print(json.dumps(auroc_by_layer(methods=methods, features_dir=args.features, out_dir=Path(args.out)), indent=1))
        return 0
    print(summary_table(run(methods=args.methods, out_dir=Path(args.out), layers=args.layers)))
    return 0


def pooled_features_all_layers(model_name: str, texts: list[str]) -> dict[int, torch.Tensor]:
    """Every layer of a target in one pass (evaluate's encoder settings: mean pooling, first token
    left out for decoders), so the middle and consumed layers cost one encoding."""
    from ..steering.extraction.features import extract_features

    model = load_text_model(model_name)
    layers = list(range(model.num_layers + 1))
    return extract_features(model.model, model.tokenizer, texts, layers, skip_first_token=model.is_decoder)


def auroc_by_layer(
    combos=COMBOS[:4],
    methods=("ridge", "auto"),
    features_dir: Path | None = None,
    out_dir: Path = Path("bench/results"),
) -> dict:
    """Held-out (and paraphrased-pair) AUROC of the transported direction against native*, at the
    middle and the consumed layer of each target (and its last layer when that is not the consumed
    one), for each map: evaluate_transfer's AUROC part
    (same anchor split, standardisation, map fit and transport), without the strength sweep.
    ``features_dir`` holds ``<target>.pt`` ({"texts", "feats": {layer: [n, d]}}), written when missing."""
    from ..steering.evaluation.consumed_layers import consumed_layer
    from ..steering.evaluation.targets import default_target_layer
    from ..steering.evaluation.transfer import split_anchors, training_pairs_for
    from ..steering.extraction.directions import anchor_statistics
    from ..steering.metrics import separation_auroc
    from ..steering.transfer.alignment import fit_map
    from ..steering.transfer.reading import attach_read, whiten
    from ..steering.transfer.transport import transport_pack

    torch.set_num_threads(2)
    features_dir = Path(features_dir or out_dir / "features")
    features_dir.mkdir(parents=True, exist_ok=True)
    all_pairs = load_pairs()
    train = [p for p in all_pairs if p.split == "train"]
    heldout = [p for p in all_pairs if p.split == "heldout"]
    paraphrased = load_pairs(Path(__file__).resolve().parent.parent / "prompts" / "paraphrased_pairs.jsonl")
    results = {}
    for source, target_name in combos:
        pack = resolve_pack(None, source, progress=say)
        training_pairs_for(pack, all_pairs)  # the pack was built from these training pairs
        anchors = pack.anchor_prompts
        sets = {"train": train, "heldout": heldout, "paraphrased": paraphrased}
        texts = anchors + [t for pairs in sets.values() for p in pairs for t in (p.safe, p.unsafe)]
        cache = features_dir / f"{target_name}.pt"
        stored = torch.load(cache) if cache.is_file() else None
        if stored is None or not set(texts) <= set(stored["texts"]):
            say(f"encoding {len(texts)} prompts with {target_name} at every layer (cached in {cache})")
            stored = {"texts": texts, "feats": pooled_features_all_layers(target_name, texts)}
            torch.save(stored, cache)
        row_of = {t: i for i, t in enumerate(stored["texts"])}
        target = load_text_model(target_name)
        layers = {
            "middle": default_target_layer(target),
            "consumed": consumed_layer(target).hidden_states_index(target.num_layers),
        }
        if layers["consumed"] != target.num_layers:  # a family reading the decoder's last layer instead
            layers["last"] = target.num_layers
        fit_idx, _ = split_anchors(len(anchors))
        source_z = pack.standardise(pack.anchor_features)
        for label, layer in layers.items():
            feats = stored["feats"][layer]

            def rows(prompts, feats=feats):
                return feats[torch.tensor([row_of[p] for p in prompts])]

            mean, std = anchor_statistics(rows(anchors)[fit_idx])
            z = {
                name: ((rows([p.safe for p in ps]) - mean) / std, (rows([p.unsafe for p in ps]) - mean) / std)
                for name, ps in sets.items()
            }
            z_anchor = (rows(anchors) - mean) / std
            native = (z["train"][0] - z["train"][1]).mean(0)
            native = native / native.norm()
            for method in methods:
                started = time.perf_counter()
                fitted = fit_map(source_z[fit_idx], z_anchor[fit_idx], method, direction=pack.directions[0])
                read_info = attach_read(fitted, source_z[fit_idx], z_anchor[fit_idx], pack.directions[0])
                aligned = transport_pack(pack, fitted, z_anchor[fit_idx], mean, std)
                shrinkage = fitted.read_shrinkage
                unit = aligned.unit[0]
                entry = {
                    "target_layer": layer,
                    "map_info": fitted.info,
                    "seconds": round(time.perf_counter() - started, 1),
                }
                for name in ("heldout", "paraphrased"):
                    t, n = separation_auroc(unit, *z[name]), separation_auroc(native, *z[name])
                    entry[name] = {
                        "auroc_transported": round(t, 4),
                        "auroc_native": round(n, 4),
                        "ratio": round(t / n, 4),
                    }
                native_read = native if shrinkage is None else whiten(native, z_anchor[fit_idx], shrinkage)
                entry["read"] = {"chosen": read_info.get("read_selected", fitted.info.get("read_selected"))}
                for name in ("heldout", "paraphrased"):  # where the product measures (gate, meter)
                    t = separation_auroc(aligned.read[0], *z[name])
                    n, nw = separation_auroc(native, *z[name]), separation_auroc(native_read, *z[name])
                    entry["read"][name] = {
                        "auroc_transported": round(t, 4),
                        "ratio_to_native": round(t / n, 4),
                        "auroc_native_whitened_alike": round(nw, 4),
                        "ratio_to_native_whitened_alike": round(t / nw, 4),
                    }
                results[f"{source}->{target_name} ({label}):{method}"] = entry
                say(f"  {source}->{target_name} {label} [{layer}] {method}: {entry['heldout']} {entry['paraphrased']}")
    (out_dir / "transport_layers.json").write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    sys.exit(main())
