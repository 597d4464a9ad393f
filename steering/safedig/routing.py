"""Robustness-aware routing of SafeDIG intervention positions, before the final SAEs are trained.

A position is worth intervening at when the harmful features an SAE finds there on some harm
categories (the source risk domain) keep separating unsafe from safe prompts on a category they
were never selected on (the target risk domain). For one position:

1. A small *probe* SAE (``train_sae``, few epochs) is trained on the position's token activations
   (safe and unsafe prompts of every category, plus benign anchors when given), each dimension
   standardised first (benign-anchor token statistics when anchors are given, else all tokens), so
   that positions of very different scales are probed alike. Codes are averaged per prompt.
2. Leave one category out: for every category ``c``, harmful features are selected
   (``select_harmful_features``) on the pairs of the *other* categories only; each of ``c``'s
   prompts is scored by the summed code of those features, and ``AUROC_c`` is the probability that
   an unsafe prompt of ``c`` scores above a safe one (never folded: a sign flip shows as < 0.5).
3. Consistency: the top ``n_features`` harmful features selected on each category alone, and the
   mean Jaccard overlap of these sets over all pairs of categories.

Robustness score (higher = more stable), with ``G_c = 2 * AUROC_c - 1`` (0 = chance, 1 = perfect,
negative = the features point the wrong way on the held-out category):

    score = 0.5 * mean_c G_c  +  0.25 * min_c G_c  +  0.25 * consistency

The mean rewards transfer on average, the minimum the worst domain shift, the consistency a shared
dictionary of harm. Range [-0.75, 1]. With a single category the pairs are split into two
alternating halves that play the categories (``pseudo_categories`` is then true).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import combinations

import torch

from ..metrics import auroc
from .operations import select_harmful_features
from .sae import SAEError, prompt_codes, train_sae

W_TRANSFER, W_WORST, W_CONSISTENCY = 0.5, 0.25, 0.25
SCORE_FORMULA = (
    "score = 0.5 * mean_c(2 AUROC_c - 1) + 0.25 * min_c(2 AUROC_c - 1) + 0.25 * consistency; "
    "AUROC_c: unsafe vs safe on held-out category c of the summed codes of the harmful features "
    "selected on the other categories; consistency: mean pairwise Jaccard of per-category top-n sets"
)


@dataclass(frozen=True)
class RoutingSettings:
    """How a position is probed. Small and fast on purpose: routing ranks, it does not steer."""

    expansion: int = 4
    k: int = 16
    epochs: int = 3
    n_features: int = 16
    max_tokens: int = 20_000  # probe SAE trained on at most this many tokens (random, seeded)
    batch_size: int = 256
    lr: float = 3e-3
    standardise: bool = True
    seed: int = 0


@dataclass
class PositionScore:
    """The robustness of one position; ``score`` is what positions are ranked by."""

    score: float
    transfer: float  # mean_c (2 AUROC_c - 1)
    worst: float  # min_c (2 AUROC_c - 1)
    consistency: float  # mean pairwise Jaccard of per-category top-n feature sets
    heldout_auroc: dict[str, float]  # per target category
    categories: list[str]
    n_pairs: int
    n_tokens: int  # tokens the probe SAE was trained on
    pseudo_categories: bool = False
    settings: dict = field(default_factory=dict)

    @property
    def mean_heldout_auroc(self) -> float:
        return sum(self.heldout_auroc.values()) / len(self.heldout_auroc)

    def as_dict(self) -> dict:
        out = asdict(self)
        out["mean_heldout_auroc"] = round(self.mean_heldout_auroc, 4)
        out["formula"] = SCORE_FORMULA
        return out

    def __float__(self) -> float:
        return float(self.score)


def _as_prompt_list(tokens, what: str) -> list[torch.Tensor]:
    """A list of [T_i, d] tensors; a [N, d] tensor is N one-token prompts, a [N, T, d] one N prompts."""
    if isinstance(tokens, torch.Tensor):
        if tokens.dim() == 2:
            tokens = list(tokens.unsqueeze(1))
        elif tokens.dim() == 3:
            tokens = list(tokens)
        else:
            raise SAEError(f"{what}: expected [N, d] or [N, T, d] activations, got shape {list(tokens.shape)}.")
    prompts = []
    for index, item in enumerate(tokens):
        item = torch.as_tensor(item).detach().to(torch.float32)
        if item.dim() == 1:
            item = item.unsqueeze(0)
        if item.dim() != 2 or item.shape[0] == 0:
            raise SAEError(
                f"{what}, prompt {index}: expected [tokens, d] activations with at least one token, "
                f"got shape {list(item.shape)}."
            )
        if not torch.isfinite(item).all():
            raise SAEError(f"{what}, prompt {index}: activations contain NaN or Inf.")
        prompts.append(item)
    return prompts


def _jaccard(a: set, b: set) -> float:
    union = a | b
    return len(a & b) / len(union) if union else 1.0


def score_position(
    safe_tokens,
    unsafe_tokens,
    categories: Sequence[str],
    anchors=None,
    *,
    settings: RoutingSettings | None = None,
    seed: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    **overrides,
) -> PositionScore:
    """Robustness score of one position from paired safe/unsafe prompts' token activations.

    ``safe_tokens[i]`` and ``unsafe_tokens[i]`` are pair i's activations ([T, d] each; the two may
    differ in length), ``categories[i]`` its harm category; ``anchors`` optional benign prompts'
    activations (probe-SAE training data and standardisation statistics only). ``settings`` or
    keyword overrides of its fields (``epochs=``, ``n_features=`` ...); ``seed`` overrides its seed.
    """
    settings = settings or RoutingSettings()
    if overrides or seed is not None:
        settings = RoutingSettings(**{**asdict(settings), **overrides, **({"seed": seed} if seed is not None else {})})
    safe = _as_prompt_list(safe_tokens, "safe prompts")
    unsafe = _as_prompt_list(unsafe_tokens, "unsafe prompts")
    categories = [str(c) for c in categories]
    if not (len(safe) == len(unsafe) == len(categories)) or not safe:
        raise SAEError(
            f"Routing needs one category per pair and as many safe as unsafe prompts (got {len(safe)} safe, "
            f"{len(unsafe)} unsafe, {len(categories)} categories), and at least one pair."
        )
    bench = _as_prompt_list(anchors, "anchors") if anchors is not None and len(anchors) else []
    width = safe[0].shape[1]
    if any(t.shape[1] != width for t in safe + unsafe + bench):
        raise SAEError(f"All activations at one position must have the same width; the first prompt has {width}.")

    pseudo = len(set(categories)) < 2
    if pseudo:  # one category: two alternating halves stand in for categories
        categories = [f"half-{i % 2}" for i in range(len(categories))]
        if len(categories) < 4:
            raise SAEError("With a single category routing needs at least four pairs (two halves of two).")
    names = sorted(set(categories))

    stats_rows = torch.cat(bench) if bench else torch.cat(safe + unsafe)
    if settings.standardise and stats_rows.shape[0] > 1:
        mean, std = stats_rows.mean(0), stats_rows.std(0).clamp_min(1e-4)
    else:
        mean, std = torch.zeros(width), torch.ones(width)

    def norm(prompts):
        return [(t - mean) / std for t in prompts]

    safe, unsafe, bench = norm(safe), norm(unsafe), norm(bench)
    rows = torch.cat(safe + unsafe + bench)
    generator = torch.Generator().manual_seed(settings.seed)
    if rows.shape[0] > settings.max_tokens:
        rows = rows[torch.randperm(rows.shape[0], generator=generator)[: settings.max_tokens]]
    sae = train_sae(
        rows,
        expansion=settings.expansion,
        k=settings.k,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        lr=settings.lr,
        seed=settings.seed,
        metadata={"purpose": "routing probe"},
        progress=progress,
    )
    with torch.no_grad():
        safe_codes, unsafe_codes = prompt_codes(sae, safe), prompt_codes(sae, unsafe)

    label = torch.tensor([names.index(c) for c in categories])
    n = min(settings.n_features, safe_codes.shape[1])
    heldout, top_sets = {}, {}
    for index, name in enumerate(names):
        target, source = label == index, label != index
        if int(source.sum()) >= 2:  # select_harmful_features needs two pairs
            features = select_harmful_features(safe_codes[source], unsafe_codes[source], n)
            chosen = features.indices
            heldout[name] = round(
                auroc(unsafe_codes[target][:, chosen].sum(1), safe_codes[target][:, chosen].sum(1)), 4
            )
        if int(target.sum()) >= 2:
            top_sets[name] = set(select_harmful_features(safe_codes[target], unsafe_codes[target], n).indices.tolist())
    if not heldout:
        raise SAEError(
            f"Routing needs at least two pairs outside each held-out category; got {len(safe)} pairs in "
            f"{len(names)} categories. Give more pairs per category."
        )
    gains = [2 * a - 1 for a in heldout.values()]
    transfer, worst = sum(gains) / len(gains), min(gains)
    # Categories with a single pair have no top-n set of their own; with fewer than two sets the
    # consistency term is 0 (nothing shows the features are shared).
    overlaps = [_jaccard(top_sets[a], top_sets[b]) for a, b in combinations(sorted(top_sets), 2)]
    consistency = sum(overlaps) / len(overlaps) if overlaps else 0.0
    score = W_TRANSFER * transfer + W_WORST * worst + W_CONSISTENCY * consistency
    return PositionScore(
        score=round(score, 4),
        transfer=round(transfer, 4),
        worst=round(worst, 4),
        consistency=round(consistency, 4),
        heldout_auroc=heldout,
        categories=names,
        n_pairs=len(safe),
        n_tokens=int(rows.shape[0]),
        pseudo_categories=pseudo,
        settings=asdict(settings),
    )


def _score_of(value) -> float:
    if isinstance(value, Mapping):
        return float(value["score"])
    return float(value)


def rank_positions(scores: Mapping[str, object]) -> list[tuple[str, object]]:
    """``[(position, score), ...]`` best first; values are PositionScore, plain numbers or dicts with
    a "score" key. Ties go to the position name (deterministic)."""
    for position, value in scores.items():
        score = _score_of(value)
        if score != score:
            raise SAEError(f"Position {position!r} has no valid routing score (NaN).")
    return sorted(scores.items(), key=lambda item: (-_score_of(item[1]), str(item[0])))


def top_positions(scores: Mapping[str, object], m: int) -> list[str]:
    """The ``m`` best positions by routing score."""
    if m < 1:
        raise SAEError(f"Pick at least one position (got m={m}).")
    return [position for position, _ in rank_positions(scores)[:m]]
