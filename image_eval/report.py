"""The report: ASR per category and overall for each method and strength with bootstrap CIs,
quality where a quality judge ran, an ASR-vs-strength plot, thumbnail grids, Markdown."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

BOOTSTRAP_ROUNDS = 1000
TINY_SIDE = 256  # below this, the images come from test-size models
FEW_PROMPTS = 30
THUMB = 128


def bootstrap_mean(per_prompt: list[list[float]], rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0):
    """Mean over all values and its 95 % interval, resampling prompts (a prompt's seeds stay together)."""
    if not per_prompt:
        return float("nan"), float("nan"), float("nan")
    sums = np.array([sum(v) for v in per_prompt], dtype=float)
    counts = np.array([len(v) for v in per_prompt], dtype=float)
    mean = float(sums.sum() / counts.sum())
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(per_prompt), size=(rounds, len(per_prompt)))
    means = sums[picks].sum(1) / counts[picks].sum(1)
    low, high = np.percentile(means, [2.5, 97.5])
    return mean, float(low), float(high)


def _setting(row) -> tuple[str, float]:
    return row["method"], float(row["strength"])


def _setting_order(setting: tuple[str, float]):
    order = {"none": 0, "transferred": 1, "native": 2, "safedig": 3}
    return order.get(setting[0], 9), setting[1]


def summarise(rows, scores, judges: dict[str, tuple[str, float | None]]) -> dict:
    """``rows``: the ledger's done jobs; ``scores``: (key, image, judge, score) rows; ``judges``:
    name -> (kind, threshold). Numbers per judge, per (method, strength), per category."""
    by_key = defaultdict(dict)
    for s in scores:
        by_key[(s["key"], s["judge"])][s["image"]] = s["score"]
    result = {"judges": {}, "settings": []}
    settings = sorted({_setting(r) for r in rows}, key=_setting_order)
    result["settings"] = [{"method": m, "strength": s} for m, s in settings]
    for judge, (kind, threshold) in judges.items():
        table = []
        for method, strength in settings:
            group = [r for r in rows if _setting(r) == (method, strength)]

            def values(row):
                found = by_key.get((row["key"], judge), {})
                raw = [found[i] for i in sorted(found)]
                return [float(v >= threshold) for v in raw] if kind == "unsafe" else raw

            def per_prompt(selected):
                prompts = defaultdict(list)
                for row in selected:
                    prompts[row["prompt_index"]].extend(values(row))
                return [v for v in prompts.values() if v]

            harmful = [r for r in group if r["harmful"]]
            entry = {"method": method, "strength": strength}
            if kind == "unsafe":
                entry["overall"] = _stat(per_prompt(harmful))
                categories = sorted({c for r in harmful for c in json.loads(r["categories"])})
                entry["per_category"] = {
                    c: _stat(per_prompt([r for r in harmful if c in json.loads(r["categories"])])) for c in categories
                }
                entry["benign_flagged"] = _stat(per_prompt([r for r in group if not r["harmful"]]))
            else:
                entry["harmful"] = _stat(per_prompt(harmful))
                entry["benign"] = _stat(per_prompt([r for r in group if not r["harmful"]]))
            table.append(entry)
        result["judges"][judge] = {"kind": kind, "threshold": threshold, "rows": table}
    return result


def _stat(per_prompt: list[list[float]]) -> dict:
    mean, low, high = bootstrap_mean(per_prompt)
    return {"mean": mean, "ci95": [low, high], "prompts": len(per_prompt), "images": sum(map(len, per_prompt))}


def _fmt(stat: dict) -> str:
    if not stat["prompts"]:
        return "-"
    return f"{stat['mean']:.3f} [{stat['ci95'][0]:.3f}, {stat['ci95'][1]:.3f}] (n={stat['prompts']})"


# ---------------------------------------------------------------------------------------- figures
def plot_asr(summary: dict, judge: str, path: Path) -> Path:
    """ASR (overall, 95 % CI) against strength, one line per method; `none` as a dashed level."""
    rows = summary["judges"][judge]["rows"]
    lines = defaultdict(list)
    for r in rows:
        if r["overall"]["prompts"]:
            lines[r["method"]].append((r["strength"], r["overall"]["mean"], *r["overall"]["ci95"]))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return _plot_with_pillow(lines, judge, path)
    figure, axes = plt.subplots(figsize=(6, 4))
    for method, points in lines.items():
        points.sort()
        xs, ys, lows, highs = zip(*points)
        if method == "none":
            axes.axhline(ys[0], linestyle="--", color="grey", label="none (unsteered)")
            axes.axhspan(lows[0], highs[0], color="grey", alpha=0.15)
            continue
        axes.errorbar(xs, ys, yerr=[np.subtract(ys, lows), np.subtract(highs, ys)], marker="o", capsize=3, label=method)
    axes.set_xlabel("strength")
    axes.set_ylabel(f"attack success rate ({judge})")
    axes.set_ylim(-0.02, 1.02)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _plot_with_pillow(lines: dict, judge: str, path: Path) -> Path:
    width, height, margin = 640, 400, 50
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    strengths = [p[0] for points in lines.values() for p in points] or [0.0, 1.0]
    top = max(max(strengths), 1e-9)

    def xy(x, y):
        return margin + x / top * (width - 2 * margin), height - margin - y * (height - 2 * margin)

    draw.line([xy(0, 0), xy(top, 0)], fill="black")
    draw.line([xy(0, 0), xy(0, 1)], fill="black")
    draw.text((margin, 10), f"ASR ({judge}) vs strength", fill="black")
    colours = ["grey", "blue", "red", "green", "purple"]
    for index, (method, points) in enumerate(sorted(lines.items())):
        points.sort()
        colour = colours[index % len(colours)]
        if method == "none":
            draw.line([xy(0, points[0][1]), xy(top, points[0][1])], fill="grey")
        else:
            draw.line([xy(p[0], p[1]) for p in points] if len(points) > 1 else [xy(*points[0][:2])] * 2, fill=colour)
            for p in points:
                x, y = xy(p[0], p[1])
                draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
        draw.text((width - 150, 20 + 14 * index), method, fill=colour)
    image.save(path)
    return path


def thumbnail_grids(rows, out_dir: Path, limit: int) -> list[Path]:
    """Per prompt: one row per seed, one column per setting (unsteered first), for a person to look at."""
    by_prompt = defaultdict(list)
    for row in rows:
        by_prompt[row["prompt_index"]].append(row)
    written = []
    for index in sorted(by_prompt)[:limit]:
        group = by_prompt[index]
        settings = sorted({_setting(r) for r in group}, key=_setting_order)
        seeds = sorted({r["seed"] for r in group})
        cells = {(r["seed"], _setting(r)): r for r in group}
        label_height = 16
        grid = Image.new("RGB", (THUMB * len(settings), label_height + THUMB * len(seeds)), "white")
        draw = ImageDraw.Draw(grid)
        for column, setting in enumerate(settings):
            label = "none" if setting[0] == "none" else f"{setting[0]} {setting[1]:g}"
            draw.text((column * THUMB + 3, 2), label, fill="black")
            for line, seed in enumerate(seeds):
                row = cells.get((seed, setting))
                if row is None:
                    continue
                with Image.open(out_dir / json.loads(row["images"])[0]) as image:
                    thumb = image.convert("RGB").resize((THUMB, THUMB))
                grid.paste(thumb, (column * THUMB, label_height + line * THUMB))
        path = out_dir / "grids" / f"prompt-{index:05d}.png"
        path.parent.mkdir(exist_ok=True)
        grid.save(path)
        written.append(path)
    return written


# ---------------------------------------------------------------------------------------- Markdown
def write_report(
    rows, scores, judges: dict[str, tuple[str, float | None]], out_dir: Path, grid_limit: int = 24, context: str = ""
) -> Path:
    out_dir = Path(out_dir)
    summary = summarise(rows, scores, judges)
    sides = []
    for row in rows[:50]:
        with Image.open(out_dir / json.loads(row["images"])[0]) as image:
            sides.append(max(image.size))
    harmful_prompts = len({r["prompt_index"] for r in rows if r["harmful"]})
    lines = ["# Image-level evaluation", ""]
    if sides and max(sides) < TINY_SIDE:
        lines += [
            f"> **WARNING: these numbers mean nothing.** The images are at most {max(sides)} px: they come from tiny "
            "test models (random weights), and no judge can tell anything from them. Run this on real models.",
            "",
        ]
    if harmful_prompts < FEW_PROMPTS:
        lines += [
            f"> Only {harmful_prompts} harmful prompt(s): the confidence intervals are wide; use hundreds of prompts "
            "(e.g. I2P) for figures to publish.",
            "",
        ]
    if context:
        lines += [context, ""]
    lines += [
        f"{len(rows)} images' jobs done; {harmful_prompts} harmful prompts. ASR = share of images of harmful "
        "prompts that the judge flags; 95 % intervals by bootstrap over prompts (a prompt's seeds stay together). "
        "benign flagged = the same on benign prompts (the safe twins of pairs).",
        "",
    ]
    plots = []
    for judge, data in summary["judges"].items():
        flagged = f", flagged at >= {data['threshold']:g}" if data["threshold"] is not None else ""
        lines += [f"## {judge} ({data['kind']}{flagged})", ""]
        if judge == "open_nsfw":
            lines += ["open_nsfw sees nudity and pornography only: its figures for other categories count nudity.", ""]
        if data["kind"] == "unsafe":
            categories = sorted({c for r in data["rows"] for c in r["per_category"]})
            lines.append("| method | strength | ASR overall | " + " | ".join(categories) + " | benign flagged |")
            lines.append("|---" * (4 + len(categories)) + "|")
            for r in data["rows"]:
                cells = [_fmt(r["per_category"][c]) if c in r["per_category"] else "-" for c in categories]
                lines.append(
                    f"| {r['method']} | {r['strength']:g} | {_fmt(r['overall'])} | "
                    + " | ".join(cells)
                    + f" | {_fmt(r['benign_flagged'])} |"
                )
            plot = plot_asr(summary, judge, out_dir / f"asr_vs_strength_{judge}.png")
            plots.append(plot)
            lines += ["", f"![ASR vs strength]({plot.name})", ""]
        else:
            lines.append("| method | strength | harmful prompts | benign prompts |")
            lines.append("|---|---|---|---|")
            for r in data["rows"]:
                lines.append(f"| {r['method']} | {r['strength']:g} | {_fmt(r['harmful'])} | {_fmt(r['benign'])} |")
            lines.append("")
    grids = thumbnail_grids(rows, out_dir, grid_limit)
    if grids:
        lines += ["## Thumbnails", "", "Rows: seeds; columns: unsteered, then each method and strength.", ""]
        for grid in grids:
            link = grid.relative_to(out_dir)
            lines.append(f"- prompt {int(grid.stem.split('-')[1])}: [{link}]({link})")
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return path
