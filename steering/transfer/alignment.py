"""Maps between two models' standardised feature spaces, fitted on benign anchors only.

Each map sends standardised source features z_s (rows) to standardised target features z_t and can
carry a direction across (``transport``): exactly for the linear maps (ridge, Procrustes, CCA),
through the Jacobian averaged over the anchors for the MLP. Nothing here ever sees unsafe data.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..autograd import trains
from ..errors import SafetySteerError

MAP_METHODS = ("auto", "ridge", "procrustes", "cca", "mlp")
#: "auto": the map and its regularisation chosen per target layer by cross-validation on benign
#: anchors (steering.transfer.selection); it needs the source direction it will carry.
MLP_EPOCHS = 200  # at most (early stopping); also the length of a node's progress bar
MIN_ANCHORS = 20  # fewer cannot fit a map
RIDGE_LAMBDAS = tuple(10.0**p for p in range(-1, 6))


class AlignmentError(SafetySteerError):
    """Anchor features that cannot be aligned (mismatched counts, NaNs, too few anchors)."""


@dataclass
class FittedMap:
    method: str
    source_dim: int
    target_dim: int
    weight: torch.Tensor | None = None  # [ds, dt] for linear maps: z_t ~= z_s @ weight
    mlp: torch.nn.Module | None = None
    mean_jacobian: torch.Tensor | None = None  # [ds, dt] for the MLP, averaged over the anchors
    info: dict = field(default_factory=dict)  # chosen hyper-parameters, fit R^2, timings
    # where a prompt is measured (steering.transfer.reading): the map carrying the read rows (None:
    # this one) and the benign-covariance shrinkage (None: read along the pushed rows themselves)
    read_map: FittedMap | None = None
    read_shrinkage: float | None = None

    def predict(self, z_source: torch.Tensor) -> torch.Tensor:
        if self.mlp is not None:
            with torch.no_grad():
                return self.mlp(z_source)
        return z_source @ self.weight

    def transport(self, direction: torch.Tensor) -> torch.Tensor:
        """Carry a source-space direction (or rows of directions) into the target space."""
        if direction.shape[-1] != self.source_dim:
            raise AlignmentError(
                f"A direction of {direction.shape[-1]} dimensions cannot go through a map fitted "
                f"from {self.source_dim} source dimensions: the pack and the alignment come from "
                "different source models or layers."
            )
        matrix = self.mean_jacobian if self.mlp is not None else self.weight
        return direction.to(matrix.dtype) @ matrix


def check_anchor_features(source: torch.Tensor, target: torch.Tensor) -> None:
    """The two sides must be the same anchors, finite, and enough of them."""
    if source.ndim != 2 or target.ndim != 2:
        raise AlignmentError(
            f"Anchor features must be 2-D [anchors, dims]; got {list(source.shape)} and {list(target.shape)}."
        )
    if source.shape[0] != target.shape[0]:
        raise AlignmentError(
            f"The source has {source.shape[0]} anchor features but the target {target.shape[0]}: "
            "both sides must encode the same anchor prompts, in the same order."
        )
    for side, tensor in (("source", source), ("target", target)):
        if not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).any(1).sum())
            raise AlignmentError(
                f"{bad} {side} anchor feature rows contain NaN/Inf; check that model's dtype "
                "(float16 overflows) and re-encode the anchors."
            )
    if source.shape[0] < MIN_ANCHORS:
        raise AlignmentError(
            f"Only {source.shape[0]} anchors: at least {MIN_ANCHORS} benign anchors are needed to fit a map "
            "(2,000 diverse ones work well)."
        )
    if source.shape[0] < max(source.shape[1], target.shape[1]):
        warnings.warn(
            f"{source.shape[0]} anchors for {source.shape[1]} -> {target.shape[1]} dimensions: the fit is "
            "under-determined and relies on regularisation; more diverse anchors transport better.",
            stacklevel=3,
        )


def fit_map(
    z_source: torch.Tensor,
    z_target: torch.Tensor,
    method: str = "ridge",
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    direction: torch.Tensor | None = None,
    **options,
) -> FittedMap:
    """Fit ``method`` on standardised anchor features (rows paired: the same anchor prompt).
    ``progress(done, total)``: called every epoch of the iterative fit (mlp); closed forms are quick.
    ``direction`` (the source direction to carry) is read by ``auto`` only."""
    check_anchor_features(z_source, z_target)
    # float64 keeps small fits exact; wide ones (e.g. 4,096 -> 4,096) solve in float32 for speed.
    dtype = torch.float64 if max(z_source.shape[1], z_target.shape[1]) <= 1024 else torch.float32
    z_source, z_target = z_source.to(dtype), z_target.to(dtype)
    if method == "auto":
        from .selection import fit_selected

        fitted = fit_selected(z_source, z_target, None if direction is None else direction.to(dtype), **options)
    elif method == "ridge":
        fitted = fit_ridge(z_source, z_target, **options)
    elif method == "procrustes":
        fitted = fit_procrustes(z_source, z_target, **options)
    elif method == "cca":
        fitted = fit_cca(z_source, z_target, **options)
    elif method == "mlp":
        fitted = fit_mlp(z_source, z_target, seed=seed, progress=progress, **options)
    else:
        raise ValueError(f"Unknown alignment method {method!r}; use one of {MAP_METHODS}.")
    if fitted.weight is not None:
        fitted.weight = fitted.weight.to(torch.float32)
    fitted.info["train_r2"] = round(
        r_squared(fitted.predict(z_source.to(torch.float32)), z_target.to(torch.float32)), 4
    )
    return fitted


def r_squared(predicted: torch.Tensor, target: torch.Tensor) -> float:
    residual = ((target - predicted) ** 2).sum()
    total = ((target - target.mean(0)) ** 2).sum()
    return float(1 - residual / total)


def _spectral(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD of x via the smaller Gram matrix (primal or dual, whichever is cheaper)."""
    n, d = x.shape
    if n <= d:
        eigval, u = torch.linalg.eigh(x @ x.T)
        s = eigval.clamp_min(0).sqrt()
        keep = s > s.max() * 1e-10
        u, s = u[:, keep], s[keep]
        v = (x.T @ u) / s
    else:
        eigval, v = torch.linalg.eigh(x.T @ x)
        s = eigval.clamp_min(0).sqrt()
        keep = s > s.max() * 1e-10
        v, s = v[:, keep], s[keep]
        u = (x @ v) / s
    return u, s, v


def fit_ridge(
    x: torch.Tensor, y: torch.Tensor, lambdas: tuple[float, ...] = RIDGE_LAMBDAS, ridge_lambda: float | None = None
) -> FittedMap:
    """Closed-form ridge. The regularisation is chosen by exact leave-one-out error on the anchors
    (one spectral decomposition serves every lambda); the solve is primal or dual by shape."""
    u, s, v = _spectral(x)
    uty = u.T @ y  # [r, dt]
    scores = {}
    candidates = (ridge_lambda,) if ridge_lambda is not None else lambdas
    if ridge_lambda is None:
        for lam in candidates:
            shrink = s**2 / (s**2 + lam)
            fitted = u @ (shrink[:, None] * uty)
            leverage = (u**2) @ shrink
            loo = (y - fitted) / (1 - leverage)[:, None]
            scores[lam] = float((loo**2).mean())
        ridge_lambda = min(scores, key=scores.get)
    weight = v @ ((s / (s**2 + ridge_lambda))[:, None] * uty)
    return FittedMap(
        "ridge",
        x.shape[1],
        y.shape[1],
        weight=weight,
        info={"lambda": ridge_lambda, "loo_mse": {f"{k:g}": round(v_, 4) for k, v_ in scores.items()}},
    )


def _top_axes(x: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k principal axes [d, k] of the centred rows."""
    _, s, v = _spectral(x - x.mean(0))
    order = torch.argsort(s, descending=True)[:k]
    return v[:, order]


def fit_procrustes(x: torch.Tensor, y: torch.Tensor, components: int | None = None) -> FittedMap:
    """Orthogonal Procrustes between the top principal subspaces of both sides (the paper's "SVD")."""
    k = components or min(x.shape[1], y.shape[1], x.shape[0] - 1, 256)
    px, py = _top_axes(x, k), _top_axes(y, k)
    k = min(px.shape[1], py.shape[1])
    px, py = px[:, :k], py[:, :k]
    a, b = x @ px, y @ py
    u, _, vh = torch.linalg.svd(a.T @ b, full_matrices=False)
    rotation = u @ vh
    scale = float((a @ rotation * b).sum() / (a * a).sum())  # one isotropic scale, least squares
    return FittedMap(
        "procrustes",
        x.shape[1],
        y.shape[1],
        weight=scale * px @ rotation @ py.T,
        info={"components": k, "scale": round(scale, 4)},
    )


def fit_cca(
    x: torch.Tensor, y: torch.Tensor, components: int | None = None, reg: float = 1e-1, canonical: int | None = None
) -> FittedMap:
    """Regularised CCA in PCA-reduced spaces (each side keeps up to ``components`` axes); the map
    predicts the target's canonical variates from the source's, weighted by their correlations."""
    cap = components or min(x.shape[0] // 4, 256)
    px, py = _top_axes(x, min(x.shape[1], cap)), _top_axes(y, min(y.shape[1], cap))
    k = (px.shape[1], py.shape[1])
    a, b = x @ px, y @ py
    n = a.shape[0]
    cov_a = a.T @ a / n + reg * torch.eye(a.shape[1], dtype=a.dtype)
    cov_b = b.T @ b / n + reg * torch.eye(b.shape[1], dtype=b.dtype)
    wa, wb = _inverse_sqrt(cov_a), _inverse_sqrt(cov_b)
    u, rho, vh = torch.linalg.svd(wa @ (a.T @ b / n) @ wb, full_matrices=False)
    m = canonical or u.shape[1]
    sqrt_b = torch.linalg.inv(wb)
    weight = px @ wa @ u[:, :m] @ torch.diag(rho[:m]) @ vh[:m] @ sqrt_b @ py.T
    return FittedMap(
        "cca",
        x.shape[1],
        y.shape[1],
        weight=weight,
        info={"components": k, "canonical": m, "reg": reg, "top_correlations": [round(float(r), 3) for r in rho[:5]]},
    )


def _inverse_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    eigval, eigvec = torch.linalg.eigh(matrix)
    return eigvec @ torch.diag(eigval.clamp_min(1e-12).rsqrt()) @ eigvec.T


@trains
def fit_mlp(
    x: torch.Tensor,
    y: torch.Tensor,
    hidden: int = 512,
    epochs: int = MLP_EPOCHS,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    patience: int = 15,
    holdout: float = 0.1,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> FittedMap:
    """A one-hidden-layer MLP with a linear skip, early-stopped on held-out anchors (deterministic);
    ``progress(epoch, epochs)`` after every epoch (a caller's Cancel raises from it)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x, y = x.to(torch.float32), y.to(torch.float32)
    order = torch.randperm(x.shape[0], generator=generator)
    n_val = max(1, int(holdout * x.shape[0]))
    val, train = order[:n_val], order[n_val:]
    model = _SkipMLP(x.shape[1], y.shape[1], hidden)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    best, best_state, waited, batch = math.inf, None, 0, 128
    for epoch in range(epochs):  # noqa: B007  (read after the loop: epochs run before early stopping)
        model.train()
        perm = train[torch.randperm(len(train), generator=generator)]
        for start in range(0, len(perm), batch):
            idx = perm[start : start + batch]
            optimiser.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
            loss.backward()
            optimiser.step()
        model.eval()
        with torch.no_grad():
            val_loss = float(torch.nn.functional.mse_loss(model(x[val]), y[val]))
        if progress is not None:
            progress(epoch + 1, epochs)
        if val_loss < best - 1e-5:
            best, waited = val_loss, 0
            best_state = {k: t.clone() for k, t in model.state_dict().items()}
        else:
            waited += 1
            if waited >= patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    jacobian = mean_jacobian(model, x)
    return FittedMap(
        "mlp",
        x.shape[1],
        y.shape[1],
        mlp=model,
        mean_jacobian=jacobian,
        info={"hidden": hidden, "epochs_run": epoch + 1, "val_mse": round(best, 4)},
    )


class _SkipMLP(torch.nn.Module):
    def __init__(self, d_in: int, d_out: int, hidden: int):
        super().__init__()
        self.linear = torch.nn.Linear(d_in, d_out)
        self.hidden = torch.nn.Sequential(
            torch.nn.Linear(d_in, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, d_out)
        )

    def forward(self, x):
        return self.linear(x) + self.hidden(x)


@trains
def mean_jacobian(model: torch.nn.Module, anchors: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """d f / d z averaged over the anchors, as a [d_in, d_out] matrix (rows: input dims)."""
    total = None
    for start in range(0, anchors.shape[0], chunk):
        rows = anchors[start : start + chunk]
        jac = torch.func.vmap(torch.func.jacrev(model))(rows)  # [b, d_out, d_in]
        part = jac.sum(0)
        total = part if total is None else total + part
    return (total / anchors.shape[0]).T.detach()
