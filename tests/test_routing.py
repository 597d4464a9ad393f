"""Robustness-aware routing (steering/routing.py) on synthetic token activations.

Two planted positions share the same benign content: at "stable" every category's unsafe prompts
carry the same harmful atom; at "specific" each category carries its own. Features selected on the
other categories keep separating unsafe from safe on a held-out category only at "stable", so it
must rank first.
"""

from __future__ import annotations

import pytest
import torch

from safety_steer.steering.safedig.routing import (
    PositionScore,
    RoutingSettings,
    rank_positions,
    score_position,
    top_positions,
)
from safety_steer.steering.safedig.sae import SAEError

D, ATOMS, CATEGORIES, PAIRS, TOKENS = 24, 32, ("a", "b", "c", "d"), 12, 6
FAST = dict(epochs=4, expansion=4, k=6, n_features=4)


def _position(stable: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    content = torch.nn.functional.normalize(torch.randn(ATOMS, D, generator=g), dim=1)
    harm = torch.nn.functional.normalize(torch.randn(len(CATEGORIES), D, generator=g), dim=1)
    safe, unsafe, categories, anchors = [], [], [], []

    def tokens():
        pick = torch.randint(0, ATOMS, (TOKENS, 3), generator=g)
        weights = 0.5 + torch.rand(TOKENS, 3, generator=g)
        return (content[pick] * weights.unsqueeze(-1)).sum(1) + 0.02 * torch.randn(TOKENS, D, generator=g)

    for ci, category in enumerate(CATEGORIES):
        atom = harm[0] if stable else harm[ci]
        for _ in range(PAIRS):
            base = tokens()
            marked = base.clone()
            rows = torch.randperm(TOKENS, generator=g)[:3]
            marked[rows] += 2.5 * atom
            safe.append(base)
            unsafe.append(marked)
            categories.append(category)
    for _ in range(30):
        anchors.append(tokens())
    return safe, unsafe, categories, anchors


def test_stable_position_ranks_first():
    scores = {}
    for name, stable in (("specific", False), ("stable", True)):
        safe, unsafe, categories, anchors = _position(stable)
        scores[name] = score_position(safe, unsafe, categories, anchors=anchors, seed=0, **FAST)
    stable, specific = scores["stable"], scores["specific"]
    assert isinstance(stable, PositionScore)
    assert set(stable.heldout_auroc) == set(CATEGORIES)
    assert stable.mean_heldout_auroc > 0.9, stable.as_dict()
    assert specific.mean_heldout_auroc < 0.75, specific.as_dict()
    assert stable.consistency > specific.consistency
    assert stable.score > specific.score
    assert [p for p, _ in rank_positions(scores)] == ["stable", "specific"]
    assert top_positions(scores, 1) == ["stable"]
    d = stable.as_dict()
    assert d["score"] == stable.score and "formula" in d and d["settings"]["epochs"] == FAST["epochs"]
    expected = 0.5 * stable.transfer + 0.25 * stable.worst + 0.25 * stable.consistency
    assert abs(stable.score - expected) < 1e-3


def test_deterministic_for_a_seed():
    safe, unsafe, categories, anchors = _position(True, seed=3)
    first = score_position(safe, unsafe, categories, anchors=anchors, seed=1, **FAST)
    second = score_position(safe, unsafe, categories, anchors=anchors, seed=1, **FAST)
    assert first.as_dict() == second.as_dict()


def test_single_category_uses_two_halves_and_tensor_inputs():
    safe, unsafe, _, _ = _position(True, seed=1)
    safe, unsafe = torch.stack(safe[:PAIRS]), torch.stack(unsafe[:PAIRS])  # [N, T, d]
    result = score_position(safe, unsafe, ["a"] * PAIRS, settings=RoutingSettings(**FAST))
    assert result.pseudo_categories and result.categories == ["half-0", "half-1"]


def test_rank_positions_accepts_numbers_and_dicts_and_breaks_ties_by_name():
    ranked = rank_positions({"single.3": 0.2, "double.1": {"score": 0.5}, "text_in": 0.2})
    assert [p for p, _ in ranked] == ["double.1", "single.3", "text_in"]
    assert top_positions({"x": 0.1, "y": 0.3, "z": 0.2}, 2) == ["y", "z"]
    with pytest.raises(SAEError):
        top_positions({"x": 0.1}, 0)
    with pytest.raises(SAEError):
        rank_positions({"x": float("nan")})


def test_bad_inputs_are_refused_with_a_message():
    safe, unsafe, categories, _ = _position(True)
    with pytest.raises(SAEError, match="one category per pair"):
        score_position(safe, unsafe[:-1], categories, **FAST)
    wrong = [t[:, :-1] for t in safe]
    with pytest.raises(SAEError, match="same width"):
        score_position(wrong, unsafe, categories, **FAST)
    bad = [t.clone() for t in safe]
    bad[0][0, 0] = float("nan")
    with pytest.raises(SAEError, match="NaN"):
        score_position(bad, unsafe, categories, **FAST)
