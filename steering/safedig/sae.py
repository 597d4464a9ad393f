"""Top-k sparse autoencoders (SAEs) over one position's activations: SafeDIG's sparse safety dictionary.

SafeDIG (arXiv 2605.30049) has no public code; every choice below is ours and stated here.

Model (``SparseAutoencoder``), one position, ``d_in`` features, ``width`` latents, ``k`` active:

- Input normalisation ``x_n = (x - input_mean) / input_scale`` with statistics of the training data
  (``input_scale`` is one scalar: the RMS per coordinate of the centred data). DiT activations range
  from ~1 to ~1e3 between positions; one set of hyper-parameters (lr, init) must work for all of them,
  and a scalar keeps the geometry (directions, cosines) of the activation space intact.
- Encoder ``codes = TopK(ReLU(W_enc x_n + b_enc))``: the ``k`` largest pre-activations are kept (negative
  ones clipped to 0), all other latents are exactly 0. Top-k (Gao et al. 2024) fixes the sparsity
  without an L1 coefficient to tune per position and does not shrink the active codes. The encoder
  does NOT subtract ``b_dec`` (unlike Gao et al.): the data are already centred by ``input_mean``, and
  this keeps the encoder independent of every decoder tensor, so ``adapt_decoder`` can retrain
  ``W_dec``/``b_dec`` while the codes stay bit-identical.
- Decoder ``x_n_hat = W_dec codes + b_dec`` with unit-norm columns (renormalised after every optimiser
  step), mapped back to the input space with ``input_scale``/``input_mean``. Unit columns make a
  code's value the length of its component, so codes of different latents are comparable (SafeDIG's
  Blend weighs tokens by their share of code mass) and the scale cannot drift between W_enc and W_dec.

Training (``train_sae``), CPU, deterministic for a seed and a torch thread count:

- Decoder initialised with random unit columns (Gaussian, seeded), encoder as its transpose, biases 0.
  Random rather than data rows: it needs no minimum number of rows per latent and is independent of
  row order; the tied start is what Gao et al. found to avoid most dead latents.
- Adam on the mean squared error in the normalised space, mini-batches in a seeded random order.
- The top-k indices are chosen without gradient, then only the chosen pre-activations are recomputed
  with gradient and decoded with ``embedding_bag``: the backward pass costs O(batch * k * d) instead of
  three dense [batch, width] x [width, d] products (forward + backward ~2x faster on CPU at
  width 4 x 3072). Adam is the fused CPU kernel (~8x faster than the default at that size).
- Dead latents are resampled: at the end of every epoch but the last, each latent that fired on no
  training row in that epoch gets a new decoder column (and encoder row) pointing along the residual
  of a training row drawn with probability proportional to its squared reconstruction error; its Adam
  state is reset. Simpler than an auxiliary loss, and on the few thousand tokens a ComfyUI graph
  yields it revives latents that an AuxK loss would need many more steps to move.

Files: one ``.safetensors`` (never pickle) with ``format = safety-steer-sae`` and ``schema_version``;
``load_sae`` validates everything and raises ``SAEError`` naming the problem and the fix.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from ..autograd import trains
from ..errors import SafetySteerError
from ..fileformat import CheckedFile, FileKind, as_count, open_checked, parse_json, short, write_atomic

SAE_FORMAT = "safety-steer-sae"
SAE_SCHEMA_VERSION = 1
SAE_EXTENSION = ".safetensors"
#: Fewest rows (tokens) train_sae / adapt_decoder accept: fewer give meaningless statistics.
MIN_TRAIN_ROWS = 16
#: Tolerance on decoder column norms when validating a file or an SAE.
UNIT_NORM_ATOL = 1e-3
TENSOR_NAMES = ("W_enc", "b_enc", "W_dec", "b_dec", "input_mean", "input_scale")
CHUNK_ELEMENTS = 1 << 24  # rows per encode chunk = this / width (64 MiB of float32 pre-activations)

Progress = Callable[[int, int], None]


class SAEError(SafetySteerError):
    """A sparse autoencoder, its file or its training data that cannot be used as given."""


class SparseAutoencoder(torch.nn.Module):
    """Top-k SAE; see the module docstring. A bare instance holds zeros: train it or load it.
    ``train_sae``, ``adapt_decoder`` and ``load_sae`` return it frozen (eval, no gradients): an inference object."""

    def __init__(self, d_in: int, width: int, k: int, metadata: dict | None = None):
        super().__init__()
        d_in, width, k = int(d_in), int(width), int(k)
        if d_in < 1 or width < 1:
            raise SAEError(f"An SAE needs d_in >= 1 and width >= 1; got d_in={d_in}, width={width}.")
        if not 1 <= k <= width:
            raise SAEError(f"k (active latents per token) must be between 1 and the width {width}; got {k}.")
        self.d_in, self.width, self.k = d_in, width, k
        self.W_enc = torch.nn.Parameter(torch.zeros(width, d_in))
        self.b_enc = torch.nn.Parameter(torch.zeros(width))
        self.W_dec = torch.nn.Parameter(torch.zeros(d_in, width))
        self.b_dec = torch.nn.Parameter(torch.zeros(d_in))
        self.register_buffer("input_mean", torch.zeros(d_in))
        self.register_buffer("input_scale", torch.tensor(1.0))
        self.metadata: dict = dict(metadata or {})
        self._device_cache: dict = {}

    @property
    def expansion(self) -> float:
        ratio = self.width / self.d_in
        return int(ratio) if ratio == int(ratio) else ratio

    def extra_repr(self) -> str:
        return f"d_in={self.d_in}, width={self.width}, k={self.k}"

    # -- the model -------------------------------------------------------------------------------
    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x.to(self.W_enc.dtype) - self.input_mean) / self.input_scale

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., d_in] -> [..., width]``: the top-k ReLU codes, every other latent exactly 0."""
        check_last_dim(x, self.d_in, "encode")
        flat = self.normalise(x.reshape(-1, self.d_in))
        pre = torch.addmm(self.b_enc, flat, self.W_enc.t())
        values, index = pre.topk(self.k, dim=-1)
        codes = torch.zeros_like(pre).scatter(-1, index, values.clamp_min(0))
        return codes.reshape(*x.shape[:-1], self.width)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``[..., width] -> [..., d_in]``, in the input space (normalisation undone)."""
        check_last_dim(codes, self.width, "decode")
        flat = codes.reshape(-1, self.width).to(self.W_dec.dtype)
        x_n = torch.addmm(self.b_dec, flat, self.W_dec.t())
        return (x_n * self.input_scale + self.input_mean).reshape(*codes.shape[:-1], self.d_in)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        codes = self.encode(x)
        return self.decode(codes), codes

    def weights_on(self, device) -> dict[str, torch.Tensor]:
        """Detached float32 copies of the weights on ``device`` (plus ``W_dec_t``, the decoder as
        contiguous rows), cached per device until a weight changes: a sampler hook calls this every
        step, and copying a width-12288 SAE to the GPU each time would cost more than the steer."""
        device = torch.device(device)
        tensors = [getattr(self, name) for name in TENSOR_NAMES]
        # inference tensors (built under ComfyUI's inference mode) have no version counter; they cannot
        # be changed outside inference mode either, so their address is their identity
        key = tuple((t.device, t.data_ptr(), -1 if t.is_inference() else t._version) for t in tensors)
        hit = self._device_cache.get(device)
        if hit is not None and hit[0] == key:
            return hit[1]
        with torch.no_grad():
            weights = {
                name: t.detach().to(device=device, dtype=torch.float32) for name, t in zip(TENSOR_NAMES, tensors)
            }
            weights["W_dec_t"] = weights["W_dec"].t().contiguous()
        self._device_cache[device] = (key, weights)
        return weights

    def _apply(self, fn, *args, **kwargs):  # .to()/.cuda(): drop cached copies of the old weights
        self._device_cache = {}
        return super()._apply(fn, *args, **kwargs)


def sample_rows(rows: torch.Tensor, limit: int, seed: int) -> torch.Tensor:
    """At most ``limit`` rows, drawn without replacement (deterministic for ``seed``): training on
    every token of thousands of prompts costs far more than it adds."""
    if rows.shape[0] <= limit:
        return rows
    return rows[torch.randperm(rows.shape[0], generator=torch.Generator().manual_seed(seed))[:limit]]


# -- validation helpers ---------------------------------------------------------------------------
def check_last_dim(x, d: int, where: str) -> None:
    if not torch.is_tensor(x) or x.ndim < 1 or x.shape[-1] != d:
        shape = list(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise SAEError(
            f"{where}: expected a tensor [..., {d}]; got {shape}. The SAE was trained for {d} features "
            "per token: use activations from the same model position."
        )


def _check_rows(activations, where: str, d: int | None = None) -> torch.Tensor:
    """2-D, finite, enough rows; returns a contiguous float32 CPU copy."""
    if not torch.is_tensor(activations):
        raise SAEError(f"{where}: activations must be a torch tensor [N, d]; got {type(activations).__name__}.")
    if activations.ndim != 2:
        raise SAEError(
            f"{where}: activations must be 2-D [tokens, features]; got shape {list(activations.shape)}. "
            "Flatten the batch and sequence dimensions first: x.reshape(-1, x.shape[-1])."
        )
    if not (activations.is_floating_point() or activations.dtype in (torch.int32, torch.int64)):
        raise SAEError(f"{where}: activations must be a real-valued tensor; got {activations.dtype}.")
    n, width = activations.shape
    if d is not None and width != d:
        raise SAEError(
            f"{where}: activations have {width} features per row but the SAE reads {d}. Collect them at "
            "the position (and from the model) the SAE was trained for."
        )
    if n < MIN_TRAIN_ROWS:
        raise SAEError(
            f"{where}: {n} rows of activations; at least {MIN_TRAIN_ROWS} are needed. Collect activations "
            "from more prompts (every token of every prompt is one row)."
        )
    x = activations.detach().to("cpu", torch.float32).contiguous()
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).any(1).sum())
        raise SAEError(
            f"{where}: {bad} of {n} rows contain NaN or Inf (or overflow float32). Drop those rows, or "
            "collect the activations in float32 rather than float16."
        )
    return x


def activations_sha256(x: torch.Tensor) -> str:
    """Hash of an activation matrix as trained on (float32 bytes and shape): the data's identity."""
    x = x.detach().to("cpu", torch.float32).contiguous()
    digest = hashlib.sha256(json.dumps(list(x.shape)).encode())
    digest.update(x.numpy().tobytes())
    return digest.hexdigest()


def sae_sha256(sae: SparseAutoencoder) -> str:
    """Content hash of an SAE's weights (names, shapes, float32 bytes) and k; independent of the
    file and of the metadata, so an SAE reloaded from disk keeps its hash."""
    digest = hashlib.sha256(f"{SAE_FORMAT}:k={sae.k}".encode())
    for name in TENSOR_NAMES:
        t = getattr(sae, name).detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{name}{list(t.shape)}".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def validate_sae(sae: SparseAutoencoder, where: str = "SAE") -> None:
    """Shapes, dtypes, finite values, positive scale, unit decoder columns; SAEError otherwise."""
    expected = {
        "W_enc": (sae.width, sae.d_in),
        "b_enc": (sae.width,),
        "W_dec": (sae.d_in, sae.width),
        "b_dec": (sae.d_in,),
        "input_mean": (sae.d_in,),
        "input_scale": (),
    }
    for name, shape in expected.items():
        t = getattr(sae, name)
        if tuple(t.shape) != shape:
            raise SAEError(
                f"{where}: tensor {name} has shape {list(t.shape)}, expected {list(shape)} (d_in {sae.d_in}, "
                f"width {sae.width}). The file is corrupt or was edited; retrain or re-download it."
            )
        if t.dtype != torch.float32:
            raise SAEError(f"{where}: tensor {name} is {t.dtype}, expected float32.")
        if not torch.isfinite(t).all():
            raise SAEError(
                f"{where}: tensor {name} contains NaN or Inf values. Retrain the SAE (training diverged: "
                "lower the learning rate)."
            )
    if not float(sae.input_scale) > 0:
        raise SAEError(f"{where}: input_scale must be positive; got {float(sae.input_scale)}.")
    norms = sae.W_dec.detach().norm(dim=0)
    off = (norms - 1).abs() > UNIT_NORM_ATOL
    if off.any():
        first = int(off.nonzero()[0])
        raise SAEError(
            f"{where}: decoder columns must have unit norm; {int(off.sum())} of {sae.width} do not (column "
            f"{first} has norm {float(norms[first]):.4g}). The file was edited or written by another tool; "
            "retrain it with Safety Steer."
        )


# -- training -------------------------------------------------------------------------------------
def _progress_calls(progress: Progress | None, total: int):
    done = 0

    def tick():
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    return tick


@torch.no_grad()
def _sparse_codes(x_n: torch.Tensor, W_enc: torch.Tensor, b_enc: torch.Tensor, k: int):
    """Top-k (values, indices) of the ReLU pre-activations, in row chunks (no dense [N, width] codes)."""
    chunk = max(1, CHUNK_ELEMENTS // W_enc.shape[0])
    values, index = [], []
    for start in range(0, x_n.shape[0], chunk):
        v, i = torch.addmm(b_enc, x_n[start : start + chunk], W_enc.t()).topk(k, dim=-1)
        values.append(v.clamp_min(0))
        index.append(i)
    return torch.cat(values), torch.cat(index)


@torch.no_grad()
def _fvu(x_n, values, index, W_dec_t, b_dec) -> tuple[float, float]:
    """(normalised MSE per coordinate, fraction of variance unexplained) over all rows."""
    sq_err, chunk = 0.0, max(1, CHUNK_ELEMENTS // x_n.shape[1])
    for start in range(0, x_n.shape[0], chunk):
        recon = (
            F.embedding_bag(
                index[start : start + chunk], W_dec_t, per_sample_weights=values[start : start + chunk], mode="sum"
            )
            + b_dec
        )
        sq_err += float(((recon - x_n[start : start + chunk]) ** 2).double().sum())
    centred = x_n - x_n.mean(0)
    total = float((centred.double() ** 2).sum())
    return sq_err / x_n.numel(), sq_err / total if total > 0 else float("nan")


def _adam(params, lr: float) -> torch.optim.Adam:
    """Fused Adam where this torch has it on CPU (2.4+); the plain one otherwise."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr)


def _check_settings(**settings) -> None:
    for name, value in settings.items():
        if name == "lr":
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise SAEError(f"lr must be a positive number; got {value!r}.")
        elif not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise SAEError(f"{name} must be a positive integer; got {value!r}.")


@trains
def train_sae(
    activations: torch.Tensor,
    expansion: int = 4,
    k: int = 16,
    epochs: int = 20,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    metadata: dict | None = None,
    progress: Progress | None = None,
) -> SparseAutoencoder:
    """Train a top-k SAE of width ``expansion * d`` on ``activations [N, d]`` (one row per token).

    CPU, float32, deterministic for ``seed`` (same bytes twice with the same torch thread count).
    ``metadata`` (position, model_type, ...) is kept and completed with the settings, the data hash
    and the final fit; ``progress(done, total)`` is called after every mini-batch.
    """
    _check_settings(expansion=expansion, k=k, epochs=epochs, batch_size=batch_size, lr=lr)
    x = _check_rows(activations, "train_sae")
    n, d = x.shape
    width = expansion * d
    if k > width:
        raise SAEError(
            f"train_sae: k={k} exceeds the width {width} (= expansion {expansion} x {d} features). "
            "Lower k or raise the expansion."
        )
    mean = x.mean(0)
    centred = x - mean
    scale = float(((centred.double() ** 2).sum(1).mean() / d).sqrt())
    if not scale > 1e-12 * max(1.0, float(x.abs().max())):
        raise SAEError(
            f"train_sae: all {n} rows are identical (no variance to encode). Collect activations from "
            "different prompts."
        )
    x_n = centred / scale
    generator = torch.Generator().manual_seed(int(seed))

    W_dec_t = torch.randn(width, d, generator=generator)
    W_dec_t /= W_dec_t.norm(dim=1, keepdim=True)
    W_enc = torch.nn.Parameter(W_dec_t.clone())
    W_dec_t = torch.nn.Parameter(W_dec_t)
    b_enc, b_dec = torch.nn.Parameter(torch.zeros(width)), torch.nn.Parameter(torch.zeros(d))
    optimiser = _adam([W_enc, b_enc, W_dec_t, b_dec], lr)
    steps_per_epoch = math.ceil(n / batch_size)
    tick = _progress_calls(progress, epochs * steps_per_epoch)
    resampled = 0
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator)
        fired = torch.zeros(width, dtype=torch.long)
        for start in range(0, n, batch_size):
            batch = x_n[order[start : start + batch_size]]
            with torch.no_grad():
                index = torch.addmm(b_enc, batch, W_enc.t()).topk(k, dim=-1).indices
            # F.embedding, not W_enc[index]: its backward is deterministic on CPU with several threads
            pre = torch.bmm(F.embedding(index, W_enc), batch.unsqueeze(-1)).squeeze(-1) + F.embedding(
                index, b_enc.unsqueeze(1)
            ).squeeze(-1)
            values = pre.clamp_min(0)
            recon = F.embedding_bag(index, W_dec_t, per_sample_weights=values, mode="sum") + b_dec
            loss = (recon - batch).pow(2).mean()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                W_dec_t /= W_dec_t.norm(dim=1, keepdim=True).clamp_min(1e-12)
                fired += torch.bincount(index[values.detach() > 0], minlength=width)
            tick()
        if epoch < epochs - 1:
            resampled += _resample_dead(fired == 0, x_n, W_enc, b_enc, W_dec_t, b_dec, k, optimiser, generator)

    values, index = _sparse_codes(x_n, W_enc.detach(), b_enc.detach(), k)
    mse, fvu = _fvu(x_n, values, index, W_dec_t.detach(), b_dec.detach())
    alive = torch.bincount(index[values > 0], minlength=width) > 0
    sae = SparseAutoencoder(d, width, k)
    with torch.no_grad():
        sae.W_enc.copy_(W_enc)
        sae.b_enc.copy_(b_enc)
        sae.W_dec.copy_(W_dec_t.t())
        sae.b_dec.copy_(b_dec)
        sae.input_mean.copy_(mean)
        sae.input_scale.fill_(scale)
    sae.metadata = {
        **dict(metadata or {}),
        "d_in": d,
        "width": width,
        "expansion": expansion,
        "k": k,
        "seed": int(seed),
        "train_sha256": activations_sha256(x),
        "n_train": n,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "final_mse": round(mse, 6),
        "final_fvu": round(fvu, 6),
        "dead_features": int((~alive).sum()),
        "resampled_features": resampled,
        "input_scale": scale,
        "init": "random unit decoder columns, encoder = decoder transposed",
        "dead_feature_handling": "resample unfired latents along high-error residuals after each epoch but the last",
    }
    return sae.eval().requires_grad_(False)


@torch.no_grad()
def _resample_dead(dead, x_n, W_enc, b_enc, W_dec_t, b_dec, k, optimiser, generator) -> int:
    """Point each dead latent at the residual of a high-error training row; reset its Adam state."""
    dead_index = dead.nonzero().flatten()
    if dead_index.numel() == 0:
        return 0
    n = x_n.shape[0]
    rows = torch.randperm(n, generator=generator)[: min(n, 8192)]
    sample = x_n[rows]
    values, index = _sparse_codes(sample, W_enc, b_enc, k)
    residual = sample - (F.embedding_bag(index, W_dec_t, per_sample_weights=values, mode="sum") + b_dec)
    error = residual.pow(2).sum(1).double()
    if not float(error.sum()) > 0:
        return 0
    many = dead_index.numel() > int((error > 0).sum())
    picked = torch.multinomial(error, dead_index.numel(), replacement=many, generator=generator)
    directions = residual[picked] / residual[picked].norm(dim=1, keepdim=True).clamp_min(1e-12)
    alive_norm = W_enc[~dead].norm(dim=1).mean() if bool((~dead).any()) else torch.tensor(1.0)
    W_dec_t[dead_index] = directions
    W_enc[dead_index] = directions * alive_norm
    b_enc[dead_index] = 0
    for param in (W_enc, b_enc, W_dec_t):
        state = optimiser.state.get(param, {})
        for name in ("exp_avg", "exp_avg_sq"):
            if name in state:
                state[name][dead_index] = 0
    return int(dead_index.numel())


@trains
def adapt_decoder(
    sae: SparseAutoencoder,
    activations: torch.Tensor,
    epochs: int = 10,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    progress: Progress | None = None,
) -> SparseAutoencoder:
    """A new SAE for a target domain: the encoder (``W_enc``, ``b_enc``, input normalisation) is the
    given SAE's, bit for bit (SafeDIG's frozen sparse safety dictionary: the harmful features keep
    their indices and meaning); only ``W_dec`` (unit columns) and ``b_dec`` are trained on the target
    activations. Starts from the source decoder with ``b_dec`` set to the target's mean residual (the
    exact optimum for ``b_dec`` at the start), then Adam with renormalised columns. The codes are
    computed once, since the encoder does not change. Metadata records ``adapted_from`` (the source
    SAE's hash), the target data hash and the fit before and after.
    """
    if not isinstance(sae, SparseAutoencoder):
        raise SAEError(f"adapt_decoder needs a SparseAutoencoder; got {type(sae).__name__}.")
    _check_settings(epochs=epochs, batch_size=batch_size, lr=lr)
    x = _check_rows(activations, "adapt_decoder", d=sae.d_in)
    n = x.shape[0]
    source = {name: getattr(sae, name).detach().to("cpu", torch.float32) for name in TENSOR_NAMES}
    x_n = (x - source["input_mean"]) / source["input_scale"]
    values, index = _sparse_codes(x_n, source["W_enc"], source["b_enc"], sae.k)
    W_dec_t = source["W_dec"].t().contiguous()
    _, fvu_before = _fvu(x_n, values, index, W_dec_t, source["b_dec"])
    with torch.no_grad():
        b_start = (x_n - F.embedding_bag(index, W_dec_t, per_sample_weights=values, mode="sum")).mean(0)
    W_dec_t, b_dec = torch.nn.Parameter(W_dec_t), torch.nn.Parameter(b_start)
    optimiser = _adam([W_dec_t, b_dec], lr)
    generator = torch.Generator().manual_seed(int(seed))
    tick = _progress_calls(progress, epochs * math.ceil(n / batch_size))
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            recon = F.embedding_bag(index[rows], W_dec_t, per_sample_weights=values[rows], mode="sum") + b_dec
            loss = (recon - x_n[rows]).pow(2).mean()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                W_dec_t /= W_dec_t.norm(dim=1, keepdim=True).clamp_min(1e-12)
            tick()
    mse, fvu_after = _fvu(x_n, values, index, W_dec_t.detach(), b_dec.detach())
    adapted = SparseAutoencoder(sae.d_in, sae.width, sae.k)
    with torch.no_grad():
        for name in ("W_enc", "b_enc", "input_mean", "input_scale"):
            getattr(adapted, name).copy_(getattr(sae, name).detach())
        adapted.W_dec.copy_(W_dec_t.t())
        adapted.b_dec.copy_(b_dec)
    adapted.metadata = {
        **sae.metadata,
        "adapted_from": sae_sha256(sae),
        "target_sha256": activations_sha256(x),
        "n_target": n,
        "adapt_epochs": epochs,
        "adapt_batch_size": batch_size,
        "adapt_lr": lr,
        "adapt_seed": int(seed),
        "target_mse": round(mse, 6),
        "target_fvu": round(fvu_after, 6),
        "target_fvu_before": round(fvu_before, 6),
    }
    return adapted.eval().requires_grad_(False)


# -- files ----------------------------------------------------------------------------------------
SAE_KIND = FileKind(
    name="Safety Steer SAE",
    marker=SAE_FORMAT,
    schema_version=SAE_SCHEMA_VERSION,
    oldest_version=1,
    error=SAEError,
    fix="Retrain it with Safety Steer, or re-download it.",
    obtain="Choose an SAE file written by Safety Steer (not a model checkpoint or a direction pack).",
)


def sae_tensor_shapes(d_in: int, width: int) -> dict[str, tuple[int, ...]]:
    """The shape of every SAE tensor for these sizes (what a file's header must show)."""
    return {
        "W_enc": (width, d_in),
        "b_enc": (width,),
        "W_dec": (d_in, width),
        "b_dec": (d_in,),
        "input_mean": (d_in,),
        "input_scale": (),
    }


def check_sae_header(checked: CheckedFile, prefix: str, sizes: dict, owner: str = "") -> tuple[int, int, int]:
    """(d_in, width, k) declared in ``sizes``, believed only once the header's shapes of the tensors
    ``prefix + name`` match them: a file cannot make a reader allocate more than its own bytes.
    ``owner`` starts the messages ("the double.4 SAE's " in a bundle)."""
    counts = {name: as_count(sizes.get(name), low=1) for name in ("d_in", "width", "k")}
    if None in counts.values():
        raise checked.refuse(
            f"{owner}d_in, width and k must be positive integers; got "
            f"{', '.join(f'{n}={short(sizes.get(n), 20)}' for n in counts)}"
        )
    d_in, width, k = counts["d_in"], counts["width"], counts["k"]
    if k > width:
        raise checked.refuse(f"{owner}k={k} exceeds the width {width}")
    for name, shape in sae_tensor_shapes(d_in, width).items():
        checked.expect(prefix + name, shape)
    return d_in, width, k


def sae_from_tensors(
    tensors: dict[str, torch.Tensor], prefix: str, d_in: int, width: int, k: int, metadata: dict, where: str
) -> SparseAutoencoder:
    """A validated, frozen SAE holding ``tensors[prefix + name]`` themselves (no copy). The module is
    made on the meta device (its zeros would double the memory) and outside inference mode (ComfyUI
    runs loaders inside it; a sampler hook later reads the tensors' version counters)."""
    with torch.inference_mode(False):
        with torch.device("meta"):
            sae = SparseAutoencoder(d_in, width, k, metadata=metadata)
        for name in TENSOR_NAMES:  # assign (not copy_): validate_sae reports wrong shapes by name
            if name in sae._parameters:
                sae._parameters[name] = torch.nn.Parameter(tensors[prefix + name], requires_grad=False)
            else:
                sae._buffers[name] = tensors[prefix + name]
        validate_sae(sae, where)
    return sae.eval().requires_grad_(False)


def save_sae(sae: SparseAutoencoder, path: str | Path) -> Path:
    """Validate, then write one ``.safetensors`` file (atomic, with a content checksum)."""
    path = Path(path)
    if path.suffix != SAE_EXTENSION:
        raise SAEError(f"SAE files must end in {SAE_EXTENSION}; got {path.name}.")
    validate_sae(sae, path.name)
    try:
        meta_json = json.dumps(sae.metadata, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise SAEError(f"{path.name}: the SAE's metadata must be JSON-serialisable ({exc}).") from None
    header = {
        "format": SAE_FORMAT,
        "schema_version": str(SAE_SCHEMA_VERSION),
        "d_in": str(sae.d_in),
        "width": str(sae.width),
        "k": str(sae.k),
        "metadata": meta_json,
    }
    tensors = {name: getattr(sae, name).detach().to("cpu", torch.float32).contiguous() for name in TENSOR_NAMES}
    return write_atomic(tensors, path, header, checksum=True)


def load_sae(path: str | Path) -> SparseAutoencoder:
    """Load and validate an SAE file. Only safetensors is read: pickles are refused unopened."""
    path = Path(path)
    if not path.is_file():
        raise SAEError(f"SAE file not found: {path}.")
    if path.suffix != SAE_EXTENSION:
        raise SAEError(
            f"{path.name} is not a .safetensors file. Safety Steer only loads SAEs in safetensors format "
            "(pickled .pt/.ckpt/.bin files are refused unopened: they can run code). Train one with "
            "Safety Steer's SAE training, which writes safetensors."
        )
    checked = open_checked(path, SAE_KIND)
    header = checked.metadata
    missing = [name for name in TENSOR_NAMES if checked.info(name) is None]
    missing_meta = [key for key in ("d_in", "width", "k", "metadata") if key not in header]
    if missing or missing_meta:
        raise SAEError(
            f"{path.name} is an incomplete SAE file: missing tensors {missing}, missing metadata "
            f"{missing_meta}. Retrain it."
        )
    try:
        metadata = parse_json(header["metadata"])
    except ValueError as exc:
        raise SAEError(f"{path.name}: the 'metadata' entry is not valid JSON ({exc}). {SAE_KIND.fix}") from None
    if not isinstance(metadata, dict):
        raise SAEError(f"{path.name}: the 'metadata' entry must be a JSON object. {SAE_KIND.fix}")
    d_in, width, k = check_sae_header(checked, "", header)
    return sae_from_tensors(checked.load(TENSOR_NAMES), "", d_in, width, k, metadata, path.name)


# -- use ------------------------------------------------------------------------------------------
def check_compatible(sae: SparseAutoencoder, position: str, model_type: str, d_in: int) -> None:
    """Refuse an SAE trained for another position, model type or activation width, naming both
    sides. Position and model type are compared only when the SAE's metadata records them."""
    problems = []
    trained_position, trained_type = sae.metadata.get("position"), sae.metadata.get("model_type")
    if trained_position is not None and str(trained_position) != str(position):
        problems.append(f"it was trained at position {trained_position!r}, not {position!r}")
    if trained_type is not None and str(trained_type).lower() != str(model_type).lower():
        problems.append(f"it was trained on a {trained_type} model, not {model_type}")
    if int(d_in) != sae.d_in:
        problems.append(f"it reads {sae.d_in} features per token but {model_type} gives {int(d_in)} at {position!r}")
    if problems:
        raise SAEError(
            f"This SAE does not fit here: {'; '.join(problems)}. Train an SAE (or a SafeDIG bundle) for "
            f"{model_type} at {position!r}, or use the model and position it was trained for."
        )


@torch.no_grad()
def prompt_codes(sae: SparseAutoencoder, token_activations: list[torch.Tensor]) -> torch.Tensor:
    """Mean code per prompt: ``[T_i, d]`` per prompt -> ``[N, width]`` (what harmful features are
    selected on: a prompt, not a token, is safe or unsafe)."""
    if not isinstance(token_activations, (list, tuple)) or not token_activations:
        raise SAEError("prompt_codes needs a non-empty list of [tokens, features] tensors, one per prompt.")
    lengths = []
    for i, t in enumerate(token_activations):
        if not torch.is_tensor(t) or t.ndim != 2 or t.shape[0] < 1 or t.shape[1] != sae.d_in:
            shape = list(t.shape) if torch.is_tensor(t) else type(t).__name__
            raise SAEError(f"prompt_codes: prompt {i} has activations {shape}; expected [tokens >= 1, {sae.d_in}].")
        lengths.append(t.shape[0])
    weights = sae.weights_on("cpu")
    rows = torch.cat([t.detach().to("cpu", torch.float32) for t in token_activations])
    x_n = (rows - weights["input_mean"]) / weights["input_scale"]
    values, index = _sparse_codes(x_n, weights["W_enc"], weights["b_enc"], sae.k)
    owner = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    sums = torch.zeros(len(lengths), sae.width)
    chunk = max(1, CHUNK_ELEMENTS // sae.width)
    for start in range(0, rows.shape[0], chunk):  # dense rows + index_add_: deterministic with threads
        part = slice(start, start + chunk)
        codes = torch.zeros(index[part].shape[0], sae.width).scatter_(1, index[part], values[part])
        sums.index_add_(0, owner[part], codes)
    return sums / torch.tensor(lengths, dtype=torch.float32).unsqueeze(1)
