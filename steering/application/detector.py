"""The source-side safety detector: a calibrated multinomial logistic probe over several source layers.

The direction's own projection separates each unsafe prompt from its safe twin, but its recall
against *ordinary* prompts is the floor of the source gate (held-out repASR stayed near 0.2 at any
strength). The source side may see unsafe data, so the pack also carries a detector trained there:
classes "benign" (safe twins and benign anchors) and one per harm category, on anchor-standardised
pooled features of a few layers, concatenated. Its score for a set of categories is the log-odds of
"one of these harms" against everything else, so a category mix gates only on the harms it steers.

Every setting (the layer set, the L2 penalty, the threshold) is chosen by 5-fold cross-validation on
the training pairs and the anchors the pack may train on; every 10th anchor is never seen, so the
evaluation's held-out anchors stay held out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..autograd import trainable

#: Share of benign anchors (out of fold) the gate may open on: steering ~2 % of ordinary prompts at
#: the usual strengths keeps centred benign preservation near 0.99 (the measured budget in the README).
BENIGN_OPEN_BUDGET = 0.02
#: Softness of the gate in logit units (g = sigmoid((score - threshold) / temperature)).
TEMPERATURE = 0.5
PENALTIES = (1e-3, 1e-2)
HELDOUT_ANCHOR_EVERY = 10  # the same anchors evaluate() holds out for benign preservation


@dataclass
class SafetyDetector:
    layers: list[int]
    classes: list[str]  # "benign", then the pack's categories in order
    weight: torch.Tensor  # [len(layers) * d, C]
    bias: torch.Tensor  # [C]
    feature_mean: torch.Tensor  # [len(layers) * d]
    feature_std: torch.Tensor  # [len(layers) * d]
    threshold: float
    temperature: float = TEMPERATURE
    info: dict = field(default_factory=dict)

    def features(self, per_layer: dict[int, torch.Tensor]) -> torch.Tensor:
        """Raw pooled features {layer: [n, d]} -> the detector's standardised input [n, D]."""
        raw = torch.cat([per_layer[layer] for layer in self.layers], dim=1)
        return (raw - self.feature_mean) / self.feature_std / len(self.layers) ** 0.5

    def scores(self, per_layer: dict[int, torch.Tensor], rows: list[int]) -> torch.Tensor:
        """Log-odds of the harms of direction rows ``rows`` (0 = global: every harm) against the
        rest, [n]."""
        logits = self.features(per_layer) @ self.weight + self.bias
        harms = harm_classes(rows, len(self.classes) - 1)
        others = [c for c in range(len(self.classes)) if c not in harms]
        return torch.logsumexp(logits[:, harms], 1) - torch.logsumexp(logits[:, others], 1)

    def gate(self, scores: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid((scores - self.threshold) / self.temperature)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {
            "detector_weight": self.weight,
            "detector_bias": self.bias,
            "detector_feature_mean": self.feature_mean,
            "detector_feature_std": self.feature_std,
        }

    def settings(self) -> dict:
        return {
            "layers": self.layers,
            "classes": self.classes,
            "threshold": self.threshold,
            "temperature": self.temperature,
            "info": self.info,
        }

    @classmethod
    def from_parts(cls, settings: dict, tensors: dict[str, torch.Tensor]) -> SafetyDetector:
        return cls(
            [int(x) for x in settings["layers"]],
            list(settings["classes"]),
            tensors["detector_weight"],
            tensors["detector_bias"],
            tensors["detector_feature_mean"],
            tensors["detector_feature_std"],
            float(settings["threshold"]),
            float(settings["temperature"]),
            dict(settings.get("info", {})),
        )


def harm_classes(rows: list[int], n_categories: int) -> list[int]:
    """Classes (1-based categories) a set of direction rows stands for: row 0 is every harm."""
    if 0 in rows:
        return list(range(1, n_categories + 1))
    return sorted({int(r) for r in rows})


def candidate_layer_sets(layers: list[int], pack_layer: int) -> list[list[int]]:
    """A few layer sets from shallow-middle to deep: the pack's layer, three spread over the middle
    of the model, four up to the second to last, and six evenly spaced."""
    n = len(layers)
    spread = lambda fractions: sorted({layers[min(n - 1, int(f * n))] for f in fractions})  # noqa: E731
    sets = [[pack_layer], spread((1 / 3, 1 / 2, 2 / 3)), spread((1 / 4, 1 / 2, 3 / 4, (n - 2) / n))]
    sets.append(layers[1 :: max(1, n // 6)][:6])
    unique = []
    for s in sets:
        if s not in unique:
            unique.append(s)
    return unique


def fit_detector(
    features: dict[int, torch.Tensor],
    anchors: torch.Tensor,
    train_safe: torch.Tensor,
    train_unsafe: torch.Tensor,
    train_category: torch.Tensor,
    categories: list[str],
    pack_layer: int,
    folds: int = 5,
) -> SafetyDetector:
    """Fit on the given rows of ``features`` (index tensors): anchors, safe and unsafe training prompts
    (pairs share an index position); ``train_category`` holds each pair's category index."""
    anchors = anchors[torch.arange(len(anchors)) % HELDOUT_ANCHOR_EVERY != 0]
    candidates = []
    for layer_set in candidate_layer_sets(sorted(features), pack_layer):
        mean, std = _statistics(features, layer_set, anchors)
        x = torch.cat([features[layer] for layer in layer_set], 1)
        x = (x - mean) / std / len(layer_set) ** 0.5
        for penalty in PENALTIES:
            oof_unsafe, oof_anchor = _out_of_fold(
                x, anchors, train_safe, train_unsafe, train_category, len(categories), penalty, folds
            )
            threshold = float(torch.quantile(oof_anchor, 1 - BENIGN_OPEN_BUDGET))
            recall = float((oof_unsafe > threshold).float().mean())
            candidates.append((recall, -len(layer_set), -penalty, layer_set, penalty, threshold, mean, std, x))
    recall, _, _, layer_set, penalty, threshold, mean, std, x = max(candidates, key=lambda c: c[:3])
    weight, bias = _fit(x, anchors, train_safe, train_unsafe, train_category, len(categories), penalty)
    info = {
        "cv_recall_at_budget": round(recall, 4),
        "benign_open_budget": BENIGN_OPEN_BUDGET,
        "penalty": penalty,
        "n_anchors": len(anchors),
        "n_train_pairs": len(train_unsafe),
        "candidates": [{"layers": c[3], "penalty": c[4], "cv_recall": round(c[0], 4)} for c in candidates],
        "selection": "5-fold CV on training pairs and anchors (every 10th anchor never used)",
    }
    return SafetyDetector(layer_set, ["benign", *categories], weight, bias, mean, std, threshold, TEMPERATURE, info)


def _statistics(features, layer_set, anchors) -> tuple[torch.Tensor, torch.Tensor]:
    rows = torch.cat([features[layer][anchors] for layer in layer_set], 1)
    return rows.mean(0), rows.std(0).clamp_min(1e-6)


def _training_set(x, anchors, safe, unsafe, category, n_categories):
    """Rows, labels and weights: unsafe prompts weigh as much as all benign rows together, half of
    that from the safe twins and half from the anchors."""
    rows = torch.cat([x[anchors], x[safe], x[unsafe]])
    labels = torch.cat([torch.zeros(len(anchors) + len(safe), dtype=torch.long), 1 + category])
    n = len(unsafe)
    anchor_weight = torch.full((len(anchors),), 0.5 * n / len(anchors))
    weights = torch.cat([anchor_weight, torch.full((len(safe),), 0.5), torch.ones(n)])
    return rows, labels, weights


def _fit(x, anchors, safe, unsafe, category, n_categories, penalty) -> tuple[torch.Tensor, torch.Tensor]:
    rows, labels, weights = _training_set(x, anchors, safe, unsafe, category, n_categories)
    with trainable():
        rows, labels, weights = rows.clone(), labels.clone(), weights.clone()
        weight = torch.zeros(rows.shape[1], n_categories + 1, requires_grad=True)
        bias = torch.zeros(n_categories + 1, requires_grad=True)
        optimiser = torch.optim.LBFGS([weight, bias], max_iter=200, line_search_fn="strong_wolfe")

        def closure():
            optimiser.zero_grad()
            loss = torch.nn.functional.cross_entropy(rows @ weight + bias, labels, reduction="none")
            loss = (loss * weights).sum() / weights.sum() + penalty * (weight**2).sum()
            loss.backward()
            return loss

        optimiser.step(closure)
    return weight.detach().clone(), bias.detach().clone()


def _out_of_fold(x, anchors, safe, unsafe, category, n_categories, penalty, folds):
    """Global harm scores of each training unsafe prompt and anchor from the fold that left it out
    (pairs stay together in a fold)."""
    fold_of_pair = torch.arange(len(unsafe)) % folds
    fold_of_anchor = torch.arange(len(anchors)) % folds
    oof_unsafe, oof_anchor = torch.zeros(len(unsafe)), torch.zeros(len(anchors))
    everything = list(range(1, n_categories + 1))
    for fold in range(folds):
        keep_p, keep_a = fold_of_pair != fold, fold_of_anchor != fold
        weight, bias = _fit(x, anchors[keep_a], safe[keep_p], unsafe[keep_p], category[keep_p], n_categories, penalty)
        for target, rows, keep in ((oof_unsafe, unsafe, keep_p), (oof_anchor, anchors, keep_a)):
            logits = x[rows[~keep]] @ weight + bias
            target[~keep] = torch.logsumexp(logits[:, everything], 1) - logits[:, 0]
    return oof_unsafe, oof_anchor
