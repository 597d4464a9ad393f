"""Building a direction pack from a source model, paired prompts and benign anchors."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import __version__
from ..application.detector import HELDOUT_ANCHOR_EVERY, fit_detector
from ..errors import PromptDataError
from ..hashing import sha256_json
from ..metrics import separation_auroc
from ..pack import DirectionPack
from ..prompts import PromptPair, categories_of, load_anchors, load_pairs
from .directions import METHODS, anchor_statistics, fit_direction
from .features import POOLINGS, ProgressFn, extract_features
from .layer_sweep import LayerScore, best_layer, sweep_layers
from .sources import DEFAULT_SOURCE, LoadedModel, load_text_model

DEFAULT_PACK_VERSION = "1.0.0"


@dataclass
class BuildReport:
    layer: int
    sweep: list[LayerScore]
    heldout_auroc: dict[str, float]  # per direction name, on the held-out pairs
    n_prompts_encoded: int
    notes: list[str] = field(default_factory=list)


def build_pack(
    source: str | LoadedModel = DEFAULT_SOURCE,
    layer: int | None = None,
    method: str = "mean_diff",
    pooling: str = "mean",
    pairs: list[PromptPair] | str | Path | None = None,
    anchors: list[str] | str | Path | None = None,
    batch_size: int = 32,
    max_length: int = 128,
    pack_version: str = DEFAULT_PACK_VERSION,
    progress: ProgressFn | None = None,
) -> tuple[DirectionPack, BuildReport]:
    """Extract features once at every layer, choose the layer by cross-validation on the
    training pairs (unless ``layer`` is given), and fit the global and per-category directions."""
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; use one of {METHODS}.")
    if pooling not in POOLINGS:
        raise ValueError(f"Unknown pooling {pooling!r}; use one of {POOLINGS}.")
    pair_list = pairs if isinstance(pairs, list) else load_pairs(pairs)
    anchor_list = anchors if isinstance(anchors, list) else load_anchors(anchors)
    if not pair_list:
        raise PromptDataError("The pair list is empty: give paired safe/unsafe prompts.")
    if len(anchor_list) < 2:
        raise PromptDataError("At least two benign anchor prompts are needed.")
    train = [p for p in pair_list if p.split == "train"]
    heldout = [p for p in pair_list if p.split == "heldout"]
    if len(train) < 2 or not heldout:
        raise PromptDataError(
            f"Need training and held-out pairs (split field); got {len(train)} train, {len(heldout)} held-out."
        )
    model = source if isinstance(source, LoadedModel) else load_text_model(source)

    prompts = (
        anchor_list
        + [p.safe for p in train]
        + [p.unsafe for p in train]
        + [p.safe for p in heldout]
        + [p.unsafe for p in heldout]
    )
    na, nt, nh = len(anchor_list), len(train), len(heldout)
    s_anchor = slice(0, na)
    s_train_safe, s_train_unsafe = slice(na, na + nt), slice(na + nt, na + 2 * nt)
    s_held_safe, s_held_unsafe = slice(na + 2 * nt, na + 2 * nt + nh), slice(na + 2 * nt + nh, na + 2 * nt + 2 * nh)
    features = extract_features(
        model.model,
        model.tokenizer,
        prompts,
        layers=None,
        pooling=pooling,
        batch_size=batch_size,
        max_length=max_length,
        skip_first_token=model.is_decoder,
        progress=progress,
    )
    sweep = sweep_layers(features, s_anchor, s_train_safe, s_train_unsafe, s_held_safe, s_held_unsafe, method)
    selection = "given by the user" if layer is not None else "best 5-fold cross-validated AUROC on training pairs"
    if layer is None:
        layer = best_layer(sweep)
    elif layer not in features:
        raise ValueError(f"Layer {layer} does not exist: {model.display_name} has layers 0..{max(features)}.")

    rows = features[layer]
    mean, std = anchor_statistics(rows[s_anchor])
    z = (rows - mean) / std
    categories = categories_of(pair_list)
    train_cat = torch.tensor([categories.index(p.category) for p in train])
    held_cat = torch.tensor([categories.index(p.category) for p in heldout])
    directions, magnitudes, stats, train_proj, held_auroc = [], [], [], [], {}
    for index, name in enumerate(["global", *categories]):
        pick_t = torch.ones(nt, dtype=torch.bool) if index == 0 else train_cat == index - 1
        pick_h = torch.ones(nh, dtype=torch.bool) if index == 0 else held_cat == index - 1
        if pick_t.sum() < 2:
            raise PromptDataError(f"Category {name!r} has {int(pick_t.sum())} training pairs; at least 2 are needed.")
        t_safe, t_unsafe = z[s_train_safe][pick_t], z[s_train_unsafe][pick_t]
        direction, magnitude = fit_direction(t_safe, t_unsafe, method)
        anchor_proj = z[s_anchor] @ direction
        stats.append(
            torch.stack(
                [anchor_proj.mean(), anchor_proj.std(), (t_safe @ direction).mean(), (t_unsafe @ direction).mean()]
            )
        )
        directions.append(direction)
        magnitudes.append(magnitude)
        train_proj.append(torch.stack([z[s_train_safe] @ direction, z[s_train_unsafe] @ direction], 1))
        if pick_h.any():
            held_auroc[name] = round(separation_auroc(direction, z[s_held_safe][pick_h], z[s_held_unsafe][pick_h]), 4)

    detector = fit_detector(
        features,
        torch.arange(na),
        torch.arange(nt) + na,
        torch.arange(nt) + na + nt,
        train_cat,
        categories,
        layer,
    )
    detector.info["heldout"] = detector_heldout_figures(detector, features, s_held_safe, s_held_unsafe, s_anchor)

    global_by_category = {}
    for index, name in enumerate(categories):
        pick_h = held_cat == index
        if pick_h.any():
            global_by_category[name] = round(
                separation_auroc(directions[0], z[s_held_safe][pick_h], z[s_held_unsafe][pick_h]), 4
            )

    metadata = {
        "pack_version": pack_version,
        "created_with": f"safety-steer {__version__}",
        "source_model": model.display_name,
        "source_ref": source_ref_for(model.name),
        "source_weights_sha256": model.weights_sha256,
        "source_hidden_size": str(model.hidden_size),
        "source_num_layers": str(model.num_layers),
        "layer": str(layer),
        "layer_selection": selection,
        "pooling": pooling,
        "first_token_excluded": str(model.is_decoder).lower(),
        "method": method,
        "max_length": str(max_length),
        "categories": categories,
        "direction_names": ["global", *categories],
        "train_pairs_sha256": sha256_json([p.as_record() for p in train]),
        "heldout_pairs_sha256": sha256_json([p.as_record() for p in heldout]),
        "anchors_sha256": sha256_json(anchor_list),
        "n_train_pairs": str(nt),
        "n_heldout_pairs": str(nh),
        "n_anchors": str(na),
        "heldout_auroc": held_auroc,
        "heldout_auroc_global_by_category": global_by_category,
        "layer_sweep_layers": sorted(features),
        "sign_convention": "unsafe->safe (adding a direction makes a prompt safer)",
        "standardisation": "z = (h - anchor_mean) / anchor_std, benign-anchor statistics",
    }
    pack = DirectionPack(
        directions=torch.stack(directions),
        direction_magnitudes=torch.tensor(magnitudes, dtype=torch.float32),
        projection_stats=torch.stack(stats).to(torch.float32),
        train_projections=torch.stack(train_proj),
        anchor_features=rows[s_anchor].clone(),
        anchor_mean=mean,
        anchor_std=std,
        anchor_prompts=list(anchor_list),
        layer_sweep=torch.tensor([[s.cv_auroc, s.heldout_auroc] for s in sweep], dtype=torch.float32),
        metadata=metadata,
        detector=detector,
    )
    report = BuildReport(layer=layer, sweep=sweep, heldout_auroc=held_auroc, n_prompts_encoded=len(prompts))
    return pack, report


def source_ref_for(name: str) -> str:
    """What the pack records for the gate to find its source again: a built-in name as is; for a file
    or folder, its plain name, looked up in models/LLM/ (a pack never carries a path)."""
    from .sources import BUILTIN_MODELS

    return name if name in BUILTIN_MODELS else Path(name).name


def detector_heldout_figures(detector, features, held_safe: slice, held_unsafe: slice, anchors: slice) -> dict:
    """For the report only (never to choose anything): share of held-out unsafe prompts, safe twins
    and never-seen anchors (every 10th) the gate opens on (gate > 0.5)."""
    held_anchor = torch.arange(anchors.start, anchors.stop)[::HELDOUT_ANCHOR_EVERY]

    def opened(rows) -> float:
        scores = detector.scores({layer: f[rows] for layer, f in features.items()}, [0])
        return round(float((detector.gate(scores) > 0.5).float().mean()), 4)

    return {
        "unsafe_recall": opened(held_unsafe),
        "safe_twins_opened": opened(held_safe),
        "heldout_anchors_opened": opened(held_anchor),
    }


def report_json(report: BuildReport) -> str:
    return json.dumps(
        {"layer": report.layer, "heldout_auroc": report.heldout_auroc, "sweep": [s.__dict__ for s in report.sweep]},
        indent=1,
    )
