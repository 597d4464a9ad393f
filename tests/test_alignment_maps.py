"""Alignment maps on synthetic spaces with a known answer, and their bad-input errors."""

from __future__ import annotations

import pytest
import torch

from safety_steer.steering.metrics import auroc
from safety_steer.steering.transfer.alignment import AlignmentError, fit_map, fit_ridge


def _linear_pair(n=600, ds=48, dt=40, noise=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, ds, generator=g)
    w = torch.randn(ds, dt, generator=g) / ds**0.5
    return x, x @ w + noise * torch.randn(n, dt, generator=g), w


@pytest.mark.parametrize("method", ["ridge", "cca", "mlp"])
def test_maps_recover_a_known_linear_relation(method):
    x, y, w = _linear_pair()
    fitted = fit_map(x, y, method, **({"epochs": 60} if method == "mlp" else {}))
    v = torch.randn(5, x.shape[1], generator=torch.Generator().manual_seed(1))
    cos = torch.nn.functional.cosine_similarity(fitted.transport(v), v @ w, dim=1)
    assert cos.min() > 0.9, (method, cos)
    assert fitted.info["train_r2"] > 0.9


def test_procrustes_recovers_a_rotation_exactly():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 16, generator=g)
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=g))
    fitted = fit_map(x, x @ q, "procrustes")
    assert torch.allclose(fitted.weight, q, atol=1e-3)


def test_ridge_picks_regularisation_by_leave_one_out_and_primal_equals_dual():
    x, y, _ = _linear_pair(n=300, ds=48, dt=8, noise=1.0)
    fitted = fit_ridge(x.double(), y.double())
    losses = {float(k): v for k, v in fitted.info["loo_mse"].items()}
    assert fitted.info["lambda"] == min(losses, key=losses.get)
    # dual (n < d) and primal (n > d) solves agree with the textbook normal equations
    for n in (30, 300):
        xs, ys = x[:n].double(), y[:n].double()
        lam = 3.0
        w = fit_ridge(xs, ys, ridge_lambda=lam).weight
        expected = torch.linalg.solve(xs.T @ xs + lam * torch.eye(xs.shape[1], dtype=xs.dtype), xs.T @ ys)
        assert torch.allclose(w, expected, atol=1e-6)


def test_a_transported_direction_separates_what_the_source_separates():
    """Benign-only fit: the unsafe/safe contrast lives in the source; the map never sees it."""
    g = torch.Generator().manual_seed(0)
    ds, dt = 32, 24
    w = torch.randn(ds, dt, generator=g) / ds**0.5
    anchors = torch.randn(800, ds, generator=g)
    fitted = fit_map(anchors, anchors @ w, "ridge")
    concept = torch.randn(ds, generator=g)
    safe = torch.randn(100, ds, generator=g) + concept
    unsafe = torch.randn(100, ds, generator=g) - concept
    direction = fitted.transport(concept)
    assert auroc((safe @ w) @ direction, (unsafe @ w) @ direction) > 0.95


def test_bad_anchor_features_get_clear_errors():
    x, y, _ = _linear_pair(n=100)
    with pytest.raises(AlignmentError, match="source has 100 anchor features but the target 99"):
        fit_map(x, y[:99])
    bad = y.clone()
    bad[3, 2] = float("nan")
    with pytest.raises(AlignmentError, match="1 target anchor feature rows contain NaN"):
        fit_map(x, bad)
    with pytest.raises(AlignmentError, match="at least 20 benign anchors"):
        fit_map(x[:10], y[:10])
    with pytest.raises(ValueError, match="Unknown alignment method 'svd'"):
        fit_map(x, y, "svd")
    with pytest.warns(UserWarning, match="30 anchors for 48 -> 40 dimensions"):
        fitted = fit_map(x[:30], y[:30])
    with pytest.raises(AlignmentError, match="12 dimensions cannot go through a map fitted from 48"):
        fitted.transport(torch.randn(12))


def test_auto_chooses_the_map_whose_transported_direction_separates_best_on_benign_halves():
    """'auto' scores every candidate by the cross-fitted target d-prime of the carried direction (benign
    anchors only) and refits the best. Here the safety contrast lies along a direction that ordinary
    anchors barely vary on, which heavy shrinkage loses: auto must not pick it, and its direction must
    separate the target's pairs."""
    from safety_steer.steering.transfer.selection import CANDIDATES, candidate_label

    g = torch.Generator().manual_seed(0)
    ds, dt, n = 64, 48, 1200
    concept = torch.nn.functional.normalize(torch.randn(ds, generator=g), dim=0)
    anchors = torch.randn(n, ds, generator=g)
    anchors -= 0.9 * (anchors @ concept)[:, None] * concept  # anchors vary little along the concept
    w = torch.randn(ds, dt, generator=g) / ds**0.5
    target = anchors @ w + 0.1 * torch.randn(n, dt, generator=g)
    fitted = fit_map(anchors, target, "auto", direction=concept)
    scores = fitted.info["selection_scores"]
    assert set(scores) == {candidate_label(c) for c in CANDIDATES}
    assert scores[fitted.info["selected"]] == max(scores.values())
    assert fitted.info["selected"] != "ridge ridge_lambda=1000"
    safe = torch.randn(200, ds, generator=g) + concept
    unsafe = torch.randn(200, ds, generator=g) - concept
    direction, truth = fitted.transport(concept), concept @ w
    best = auroc((safe @ w) @ truth, (unsafe @ w) @ truth)
    assert auroc((safe @ w) @ direction, (unsafe @ w) @ direction) > best - 0.03
    heavy = fit_map(anchors, target, "ridge", ridge_lambda=1000.0).transport(concept)
    cos = torch.nn.functional.cosine_similarity
    assert cos(direction, truth, dim=0) > cos(heavy, truth, dim=0)
    with pytest.raises(ValueError, match="needs the pack's global direction"):
        fit_map(anchors, target, "auto")
