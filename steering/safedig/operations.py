"""SafeDIG inference on one position's activations: pick the harmful SAE features, then Repel or Blend.

SafeDIG (arXiv 2605.30049) describes Repel ("push activations away from harmful sparse directions")
and Blend ("pull unsafe activations toward the transferred safe manifold") without code or formulas;
the definitions below are ours:

- Harmful features: latents whose mean code is higher on the unsafe prompt than on its paired safe
  prompt, scored by ``mean(unsafe - safe) / pooled std`` (an effect size). Dividing by the spread
  that the feature shows anyway across prompts ranks a feature that separates reliably above one
  that is merely large; the pooled std (of the safe and the unsafe codes), rather than the std of the
  paired differences, keeps a rare feature that fires on a single unsafe prompt from scoring high by
  having almost no variance. Only positive scores qualify: fewer than ``n_features`` (possibly none)
  are returned when fewer features lean unsafe.
- Repel: ``x - strength * sum_{f in H} a_f(x) d_f`` with ``a_f`` the token's top-k code and ``d_f``
  the decoder column in input units (unit column times ``input_scale``). At strength 1 it removes
  exactly what the harmful features contribute to the SAE's reconstruction; the SAE's error term
  (what it does not explain) is left alone.
- Blend: ``x + weight * g(x) * (x_safe - x)``, ``x_safe`` the SAE reconstruction with the harmful codes
  zeroed (the safe manifold) and ``g(x)`` the token's share of code mass on harmful features (in
  [0, 1]; codes are comparable because decoder columns have unit norm). A token that is mostly
  harmful goes most of the way; a benign token with one weak harmful feature barely moves.
  Unlike Repel, Blend also replaces the SAE's residual by its reconstruction, in proportion g.

Both ops: any leading dims, any float dtype (computed in float32, returned in the input's dtype), on
the input's device (the SAE weights are copied there once and cached). Tokens with no harmful
feature among their top-k codes are returned unchanged bit for bit, and strength/weight 0 or an
empty feature set returns ``x`` itself: a patch at strength 0 is exactly no patch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .sae import CHUNK_ELEMENTS, SAEError, SparseAutoencoder, check_last_dim

SCORE_DEFINITION = "mean paired difference (unsafe - safe prompt codes) / pooled std; positive only"


@dataclass
class HarmfulFeatures:
    """SAE latents chosen as harmful, best first, with their scores (see module docstring)."""

    indices: torch.Tensor  # LongTensor [n]
    scores: torch.Tensor  # float32 [n], positive, descending

    def __post_init__(self):
        self.indices = torch.as_tensor(self.indices, dtype=torch.long).reshape(-1)
        self.scores = torch.as_tensor(self.scores, dtype=torch.float32).reshape(-1)
        if self.indices.shape != self.scores.shape:
            raise SAEError(f"HarmfulFeatures: {self.indices.numel()} indices but {self.scores.numel()} scores.")
        if self.indices.numel() and int(self.indices.min()) < 0:
            raise SAEError("HarmfulFeatures: feature indices must be non-negative.")
        if self.indices.unique().numel() != self.indices.numel():
            raise SAEError("HarmfulFeatures: feature indices must be distinct.")

    def __len__(self) -> int:
        return int(self.indices.numel())

    def to_dict(self) -> dict:
        return {
            "indices": self.indices.tolist(),
            "scores": [round(float(s), 6) for s in self.scores],
            "score": SCORE_DEFINITION,
        }

    @classmethod
    def from_dict(cls, data: dict) -> HarmfulFeatures:
        if not isinstance(data, dict) or "indices" not in data or "scores" not in data:
            raise SAEError(
                "Harmful features metadata must be a dict with 'indices' and 'scores'; the file is "
                "corrupt or was edited. Retrain it."
            )
        return cls(indices=data["indices"], scores=data["scores"])


def select_harmful_features(safe_codes: torch.Tensor, unsafe_codes: torch.Tensor, n_features: int) -> HarmfulFeatures:
    """Up to ``n_features`` latents most more active on unsafe than on safe prompts. Row i of both
    matrices is one pair (``prompt_codes`` of the safe and the unsafe prompt)."""
    if (
        not (torch.is_tensor(safe_codes) and torch.is_tensor(unsafe_codes))
        or safe_codes.ndim != 2
        or safe_codes.shape != unsafe_codes.shape
    ):
        shapes = [list(t.shape) if torch.is_tensor(t) else type(t).__name__ for t in (safe_codes, unsafe_codes)]
        raise SAEError(
            f"select_harmful_features needs two [pairs, width] code matrices of the same shape (row i of "
            f"each = pair i); got {shapes[0]} and {shapes[1]}."
        )
    if safe_codes.shape[0] < 2:
        raise SAEError(f"select_harmful_features needs at least 2 safe/unsafe pairs; got {safe_codes.shape[0]}.")
    if not isinstance(n_features, int) or isinstance(n_features, bool) or n_features < 1:
        raise SAEError(f"n_features must be a positive integer; got {n_features!r}.")
    safe, unsafe = safe_codes.detach().double().cpu(), unsafe_codes.detach().double().cpu()
    if not (torch.isfinite(safe).all() and torch.isfinite(unsafe).all()):
        raise SAEError("select_harmful_features: the codes contain NaN or Inf; check the activations they came from.")
    mean_diff = (unsafe - safe).mean(0)
    pooled_var = (safe.var(0) + unsafe.var(0)) / 2
    floor = (1e-3 * torch.cat([safe, unsafe]).pow(2).mean().sqrt()) ** 2 + 1e-30  # no division by ~0
    score = mean_diff / (pooled_var + floor).sqrt()
    positive = (mean_diff > 0).nonzero().flatten()
    order = torch.sort(score[positive], descending=True, stable=True).indices[:n_features]
    chosen = positive[order]
    return HarmfulFeatures(indices=chosen, scores=score[chosen].float())


def _check_features(sae: SparseAutoencoder, features: HarmfulFeatures) -> None:
    if not isinstance(features, HarmfulFeatures):
        raise SAEError(f"expected HarmfulFeatures; got {type(features).__name__}.")
    if len(features) and int(features.indices.max()) >= sae.width:
        raise SAEError(
            f"Harmful feature {int(features.indices.max())} does not exist in an SAE of width {sae.width}: "
            "the features were selected with another SAE."
        )


@torch.no_grad()
def _steer(
    x: torch.Tensor, sae: SparseAutoencoder, features: HarmfulFeatures, amount: float, mode: str
) -> torch.Tensor:
    _check_features(sae, features)
    check_last_dim(x, sae.d_in, mode)
    if not x.is_floating_point():
        raise SAEError(f"{mode}: activations must be a floating-point tensor; got {x.dtype}.")
    amount = float(amount)
    if not math.isfinite(amount) or amount < 0:
        raise SAEError(
            f"{mode}: strength must be a finite number >= 0; got {amount!r} (a negative one would "
            "add harmful features instead of removing them)."
        )
    if amount == 0 or len(features) == 0 or x.numel() == 0:
        return x
    w = sae.weights_on(x.device)
    harmful = torch.zeros(sae.width, dtype=torch.bool, device=x.device)
    harmful[features.indices.to(x.device)] = True
    scale, mean = w["input_scale"], w["input_mean"]
    flat = x.reshape(-1, sae.d_in)
    out = out_flat = None
    chunk = max(1, CHUNK_ELEMENTS // sae.width)
    for start in range(0, flat.shape[0], chunk):
        xc = flat[start : start + chunk].to(torch.float32)
        values, index = torch.addmm(w["b_enc"], (xc - mean) / scale, w["W_enc"].t()).topk(sae.k, dim=-1)
        values = values.clamp_min(0)
        is_harmful = harmful[index]
        harm = values * is_harmful
        rows = (harm > 0).any(1).nonzero().flatten()
        if rows.numel() == 0:
            continue
        if out is None:
            out = x.clone(memory_format=torch.contiguous_format)
            out_flat = out.view(-1, sae.d_in)
        x_rows, index, values, harm = xc[rows], index[rows], values[rows], harm[rows]
        if mode == "repel":
            removed = F.embedding_bag(index, w["W_dec_t"], per_sample_weights=harm, mode="sum") * scale
            new = x_rows - amount * removed
        else:
            kept = values * ~is_harmful[rows]
            x_safe = (
                F.embedding_bag(index, w["W_dec_t"], per_sample_weights=kept, mode="sum") + w["b_dec"]
            ) * scale + mean
            share = harm.sum(1, keepdim=True) / values.sum(1, keepdim=True)
            new = x_rows + amount * share * (x_safe - x_rows)
        out_flat[start + rows] = new.to(x.dtype)
    return x if out is None else out


def repel(x: torch.Tensor, sae: SparseAutoencoder, features: HarmfulFeatures, strength: float) -> torch.Tensor:
    """``x - strength * sum_{f in H} a_f(x) d_f``: subtract the harmful features' components
    (strength 1 = all of what the SAE attributes to them). See the module docstring."""
    return _steer(x, sae, features, strength, "repel")


def blend(x: torch.Tensor, sae: SparseAutoencoder, features: HarmfulFeatures, weight: float) -> torch.Tensor:
    """``x + weight * g(x) * (x_safe - x)``: pull tokens carrying harmful features toward the SAE's
    reconstruction without them, in proportion to their harmful share g. See the module docstring."""
    return _steer(x, sae, features, weight, "blend")
