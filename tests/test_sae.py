"""SafeDIG's torch core: top-k SAE training, decoder adaptation, the SAE file format, Repel and Blend.

Synthetic data with a known sparse dictionary (64 unit atoms in 32 dimensions, 3 active per row,
an offset, a little noise), so that what the SAE should learn is known exactly. CPU, one thread.
"""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from safety_steer.steering.errors import SafetySteerError
from safety_steer.steering.safedig.operations import HarmfulFeatures, blend, repel, select_harmful_features
from safety_steer.steering.safedig.sae import (
    MIN_TRAIN_ROWS,
    SAE_FORMAT,
    SAE_SCHEMA_VERSION,
    TENSOR_NAMES,
    SAEError,
    SparseAutoencoder,
    activations_sha256,
    adapt_decoder,
    check_compatible,
    load_sae,
    prompt_codes,
    sae_sha256,
    save_sae,
    train_sae,
)

D_IN, ATOMS, ACTIVE = 32, 64, 3
TRAIN = dict(expansion=4, k=3, epochs=20, lr=3e-3, seed=0)


def planted(dictionary: torch.Tensor, n: int, offset, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    index = torch.rand(n, ATOMS, generator=g).argsort(1)[:, :ACTIVE]
    codes = torch.zeros(n, ATOMS).scatter(1, index, 1 + torch.rand(n, ACTIVE, generator=g))
    return codes @ dictionary.T * 5 + offset + 0.01 * torch.randn(n, D_IN, generator=g)


def unit_columns(matrix: torch.Tensor) -> torch.Tensor:
    return matrix / matrix.norm(dim=0, keepdim=True)


@pytest.fixture(scope="module")
def atoms():
    return unit_columns(torch.randn(D_IN, ATOMS, generator=torch.Generator().manual_seed(1)))


@pytest.fixture(scope="module")
def data(atoms):
    return planted(atoms, 4096, 3.0, seed=2)


@pytest.fixture(scope="module")
def sae(data):
    return train_sae(data, **TRAIN, metadata={"position": "double_block_4.txt", "model_type": "flux"})


def fvu(model: SparseAutoencoder, x: torch.Tensor) -> float:
    with torch.no_grad():
        recon, _ = model(x)
    return float(((recon - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())


def state_bytes(model: SparseAutoencoder) -> dict[str, bytes]:
    return {name: getattr(model, name).detach().numpy().tobytes() for name in TENSOR_NAMES}


# -- training ---------------------------------------------------------------------------------------
def test_training_is_deterministic_for_a_seed(data, sae):
    again = train_sae(data, **TRAIN, metadata={"position": "double_block_4.txt", "model_type": "flux"})
    assert state_bytes(again) == state_bytes(sae) and again.metadata == sae.metadata
    other = train_sae(data, **{**TRAIN, "seed": 1})
    assert sae_sha256(other) != sae_sha256(sae)


def test_deterministic_with_two_threads_too(data):
    """The encoder's gathers use F.embedding: an indexed gather's backward accumulates in a
    thread-dependent order on CPU and gave different bytes run to run with two threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        runs = [train_sae(data[:512], expansion=2, k=8, epochs=2, seed=3) for _ in range(2)]
        codes = [prompt_codes(runs[0], [data[i : i + 16] for i in range(0, 512, 16)]) for _ in range(2)]
    finally:
        torch.set_num_threads(threads)
    assert sae_sha256(runs[0]) == sae_sha256(runs[1]) and torch.equal(codes[0], codes[1])


def test_shapes_unit_columns_and_metadata(data, sae):
    assert (sae.d_in, sae.width, sae.k) == (D_IN, 4 * D_IN, 3)
    assert sae.W_enc.shape == (128, 32) and sae.W_dec.shape == (32, 128) and sae.input_scale.shape == ()
    assert torch.allclose(sae.W_dec.norm(dim=0), torch.ones(128), atol=1e-5)
    meta = sae.metadata
    assert meta["position"] == "double_block_4.txt" and meta["model_type"] == "flux"
    assert (meta["d_in"], meta["width"], meta["expansion"], meta["k"], meta["seed"]) == (32, 128, 4, 3, 0)
    assert meta["train_sha256"] == activations_sha256(data) and meta["n_train"] == 4096 and meta["epochs"] == 20
    assert meta["final_fvu"] == pytest.approx(fvu(sae, data), abs=1e-3)
    assert torch.allclose(sae.input_mean, data.mean(0))


def test_exactly_k_codes_any_leading_dims(data, sae):
    codes = sae.encode(data).detach()
    assert ((codes != 0).sum(-1) == sae.k).all() and (codes >= 0).all()
    batched = sae.encode(data[:60].reshape(3, 4, 5, D_IN)).detach()
    assert batched.shape == (3, 4, 5, sae.width) and torch.equal(batched.reshape(60, -1), codes[:60])
    assert sae.decode(batched).shape == (3, 4, 5, D_IN)


def test_reconstructs_and_recovers_the_planted_atoms(atoms, data, sae):
    assert fvu(sae, data) < 0.15  # predicting the mean gives 1
    held_out = planted(atoms, 1024, 3.0, seed=9)
    assert fvu(sae, held_out) < 0.15
    best_cosine = (atoms.T @ sae.W_dec.detach()).max(1).values
    assert (best_cosine > 0.9).float().mean() >= 0.95


def test_bad_training_input_says_what_to_fix(data):
    cases = [(data[0], "2-D"), (data[: MIN_TRAIN_ROWS - 1], "at least"), (torch.ones(64, D_IN), "identical")]
    nan = data[:64].clone()
    nan[3, 1] = float("nan")
    cases.append((nan, "NaN"))
    for bad, words in cases:
        with pytest.raises(SAEError, match=words):
            train_sae(bad, epochs=1)
    with pytest.raises(SAEError, match="exceeds the width"):
        train_sae(data[:64], expansion=1, k=33, epochs=1)
    with pytest.raises(SAEError, match="positive integer"):
        train_sae(data[:64], epochs=0)
    assert issubclass(SAEError, SafetySteerError)


# -- decoder adaptation -----------------------------------------------------------------------------
def test_adapt_decoder_freezes_the_encoder_and_fits_the_shifted_domain(atoms, sae):
    shifted = unit_columns(atoms + 0.06 * torch.randn(D_IN, ATOMS, generator=torch.Generator().manual_seed(5)))
    offset = 3.0 + 0.5 * torch.randn(D_IN, generator=torch.Generator().manual_seed(6))
    target = planted(shifted, 2048, offset, seed=7)
    adapted = adapt_decoder(sae, target)
    for name in ("W_enc", "b_enc", "input_mean", "input_scale"):
        assert getattr(adapted, name).numpy().tobytes() == getattr(sae, name).detach().numpy().tobytes(), name
    assert torch.equal(adapted.encode(target), sae.encode(target))
    assert not torch.equal(adapted.W_dec, sae.W_dec)
    assert torch.allclose(adapted.W_dec.norm(dim=0), torch.ones(sae.width), atol=1e-5)
    before, after = fvu(sae, target), fvu(adapted, target)
    assert after < 0.75 * before
    test_rows = planted(shifted, 1024, offset, seed=8)  # not only on the rows it was fitted on
    assert fvu(adapted, test_rows) < 0.8 * fvu(sae, test_rows)
    meta = adapted.metadata
    assert meta["adapted_from"] == sae_sha256(sae) and meta["target_sha256"] == activations_sha256(target)
    assert meta["target_fvu_before"] == pytest.approx(before, abs=1e-3)
    assert meta["target_fvu"] == pytest.approx(after, abs=1e-3)
    assert meta["position"] == "double_block_4.txt" and sae.metadata.get("adapted_from") is None
    assert sae_sha256(adapt_decoder(sae, target)) == sae_sha256(adapted)  # deterministic too
    with pytest.raises(SAEError, match="reads 32"):
        adapt_decoder(sae, torch.randn(64, 16))


# -- files --------------------------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path, data, sae):
    path = save_sae(sae, tmp_path / "flux_db4.safetensors")
    loaded = load_sae(path)
    assert state_bytes(loaded) == state_bytes(sae) and loaded.metadata == sae.metadata
    assert sae_sha256(loaded) == sae_sha256(sae) and (loaded.d_in, loaded.width, loaded.k) == (32, 128, 3)
    assert torch.equal(loaded.encode(data[:50]), sae.encode(data[:50]))
    assert not list(tmp_path.glob("*.partial"))


def _raw(sae) -> tuple[dict, dict]:
    tensors = {name: getattr(sae, name).detach().clone().contiguous() for name in TENSOR_NAMES}
    header = {
        "format": SAE_FORMAT,
        "schema_version": str(SAE_SCHEMA_VERSION),
        "d_in": str(sae.d_in),
        "width": str(sae.width),
        "k": str(sae.k),
        "metadata": json.dumps(sae.metadata),
    }
    return tensors, header


class _Boom:
    def __reduce__(self):
        import pathlib

        return (pathlib.Path.mkdir, (pathlib.Path(self.marker),))


def test_pickles_are_never_unpickled(tmp_path):
    boom = _Boom()
    boom.marker = str(tmp_path / "unpickled")
    for name in ("sae.pt", "sae.ckpt", "sae.safetensors"):
        path = tmp_path / name
        path.write_bytes(pickle.dumps({"W_enc": boom}))
        with pytest.raises(SAEError, match="safetensors") as info:
            load_sae(path)
        assert "pickle" in str(info.value) or "readable" in str(info.value)
    assert not (tmp_path / "unpickled").exists()


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda t, h: h.update(format="safety-steer-direction-pack"), "not a Safety Steer SAE"),
        (lambda t, h: h.pop("format"), "not a Safety Steer SAE"),
        (lambda t, h: h.update(schema_version=str(SAE_SCHEMA_VERSION + 1)), "newer.*Update"),
        (lambda t, h: t.pop("b_dec"), r"missing tensors \['b_dec'\]"),
        (lambda t, h: h.pop("k"), "missing metadata"),
        (lambda t, h: t.update(W_enc=t["W_enc"][:, :16].contiguous()), "W_enc has shape"),
        (lambda t, h: t["W_enc"].__setitem__((0, 0), float("nan")), "NaN"),
        (lambda t, h: t["b_dec"].__setitem__(0, float("inf")), "NaN or Inf"),
        (lambda t, h: t["W_dec"].mul_(1.5), "unit norm"),
        (lambda t, h: t.update(W_dec=t["W_dec"].half()), "float32"),
        (lambda t, h: t["input_scale"].fill_(0), "input_scale must be positive"),
        (lambda t, h: h.update(metadata="{not json"), "valid JSON"),
    ],
)
def test_bad_files_name_the_problem(tmp_path, sae, edit, words):
    tensors, header = _raw(sae)
    edit(tensors, header)
    path = tmp_path / "bad.safetensors"
    save_file(tensors, str(path), metadata=header)
    with pytest.raises(SAEError, match=words):
        load_sae(path)


def test_unreadable_and_missing_files(tmp_path, sae):
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 40)
    with pytest.raises(SAEError, match="not a readable safetensors"):
        load_sae(tmp_path / "junk.safetensors")
    with pytest.raises(SAEError, match="not found"):
        load_sae(tmp_path / "nothing.safetensors")
    with pytest.raises(SAEError, match="must end in"):
        save_sae(sae, tmp_path / "sae.pt")
    broken = SparseAutoencoder(4, 8, 2)  # zeros: decoder columns are not unit
    with pytest.raises(SAEError, match="unit norm"):
        save_sae(broken, tmp_path / "broken.safetensors")


# -- compatibility, prompt codes ---------------------------------------------------------------------
def test_check_compatible_names_both_sides(sae):
    check_compatible(sae, "double_block_4.txt", "Flux", 32)
    for args, words in [
        (("single_block_10", "flux", 32), ["double_block_4.txt", "single_block_10"]),
        (("double_block_4.txt", "sd3", 32), ["flux", "sd3"]),
        (("double_block_4.txt", "flux", 3072), ["32", "3072"]),
    ]:
        with pytest.raises(SAEError) as info:
            check_compatible(sae, *args)
        assert all(word in str(info.value) for word in words), str(info.value)


def test_prompt_codes_are_mean_codes_per_prompt(data, sae):
    prompts = [data[:5], data[5:6], data[6:20]]
    codes = prompt_codes(sae, prompts)
    expected = torch.stack([sae.encode(p).detach().mean(0) for p in prompts])
    assert codes.shape == (3, sae.width) and torch.allclose(codes, expected, atol=1e-6)
    with pytest.raises(SAEError, match="prompt 1"):
        prompt_codes(sae, [data[:5], data[:0]])


# -- harmful features -------------------------------------------------------------------------------
def test_select_harmful_features_ranks_paired_effect_size():
    g = torch.Generator().manual_seed(0)
    safe = torch.rand(40, 10, generator=g)
    unsafe = safe + 0.05 * torch.randn(40, 10, generator=g)
    unsafe[:, 7] += 1.0  # strong, reliable
    unsafe[:, 2] += 0.3  # weaker
    unsafe[:, 4] -= 1.0  # more active on SAFE prompts: never harmful
    found = select_harmful_features(safe, unsafe, 3)
    assert found.indices[:2].tolist() == [7, 2] and len(found) <= 3
    assert (found.scores > 0).all() and torch.all(found.scores[:-1] >= found.scores[1:]) and 4 not in found.indices
    only_down = select_harmful_features(safe, safe - 0.1, 5)
    assert len(only_down) == 0
    again = HarmfulFeatures.from_dict(json.loads(json.dumps(found.to_dict())))
    assert torch.equal(again.indices, found.indices) and torch.allclose(again.scores, found.scores, atol=1e-5)
    with pytest.raises(SAEError, match="same shape"):
        select_harmful_features(safe, unsafe[:5], 3)


# -- Repel and Blend ---------------------------------------------------------------------------------
def orthonormal_sae(d=8, width=6, k=6, mean=0.5, scale=2.0) -> SparseAutoencoder:
    """Tied orthonormal dictionary: codes are exactly the positive projections, so what Repel
    and Blend must do can be written down."""
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(3)))
    sae = SparseAutoencoder(d, width, k)
    with torch.no_grad():
        sae.W_dec.copy_(q[:, :width])
        sae.W_enc.copy_(q[:, :width].T)
        sae.input_mean.fill_(mean)
        sae.input_scale.fill_(scale)
    return sae


def test_repel_removes_the_harmful_components():
    sae = orthonormal_sae()
    harmful = HarmfulFeatures(indices=[1, 4], scores=[2.0, 1.0])
    d_h = sae.W_dec[:, [1, 4]].detach() * sae.input_scale
    x = torch.randn(3, 7, 8, generator=torch.Generator().manual_seed(4)) * 3
    x[0, 0] = sae.input_mean - d_h.sum(1)  # both harmful projections negative: untouched
    out = repel(x, sae, harmful, 1.0)
    codes = sae.encode(x).detach()
    touched = (codes[..., [1, 4]] > 0).any(-1)
    assert touched.any() and not touched.all() and not touched[0, 0]
    assert out[~touched].numpy().tobytes() == x[~touched].numpy().tobytes()
    assert torch.all(sae.encode(out)[..., [1, 4]].detach()[touched] == 0) or torch.allclose(
        sae.encode(out)[..., [1, 4]].detach()[touched], torch.zeros(1), atol=1e-5
    )
    projection = ((out - sae.input_mean) @ sae.W_dec[:, [1, 4]].detach())[touched]
    assert (projection <= 1e-4).all()  # nothing left along an active harmful direction
    other = [0, 2, 3, 5]  # the other components are not moved
    moved = (out - x) @ sae.W_dec[:, other].detach()
    assert torch.allclose(moved, torch.zeros_like(moved), atol=1e-5)
    assert repel(x, sae, harmful, 0.0) is x and repel(x, sae, HarmfulFeatures([], []), 1.0) is x
    assert torch.allclose(repel(x, sae, harmful, 2.0) - x, 2 * (out - x), atol=1e-5)


def test_repel_on_a_trained_sae_subtracts_the_decoded_harmful_codes(data, sae):
    codes = sae.encode(data[:200]).detach()
    harmful = HarmfulFeatures(indices=codes.sum(0).argsort(descending=True)[:5], scores=torch.ones(5))
    only = torch.zeros_like(codes)
    only[:, harmful.indices] = codes[:, harmful.indices]
    contribution = sae.decode(only).detach() - sae.decode(torch.zeros_like(codes)).detach()
    out = repel(data[:200], sae, harmful, 0.7)
    assert torch.allclose(out, data[:200] - 0.7 * contribution, atol=1e-4)
    untouched = (only == 0).all(-1)
    assert untouched.any() and torch.equal(out[untouched], data[:200][untouched])


def test_blend_moves_towards_the_safe_reconstruction(data, sae):
    x = data[:300]
    codes = sae.encode(x).detach()
    harmful = HarmfulFeatures(indices=codes.sum(0).argsort(descending=True)[:4], scores=torch.ones(4))
    safe_codes = codes.clone()
    safe_codes[:, harmful.indices] = 0
    x_safe = sae.decode(safe_codes).detach()
    share = codes[:, harmful.indices].sum(1, keepdim=True) / codes.sum(1, keepdim=True)
    out = blend(x, sae, harmful, 0.6)
    assert torch.allclose(out, x + 0.6 * share * (x_safe - x), atol=1e-4)
    touched = share.squeeze(1) > 0
    assert touched.any() and not touched.all()
    assert out[~touched].numpy().tobytes() == x[~touched].numpy().tobytes()
    assert ((out - x_safe).norm(dim=1)[touched] < (x - x_safe).norm(dim=1)[touched]).all()
    assert blend(x, sae, harmful, 0.0) is x
    pure = orthonormal_sae()  # a token made only of harmful features goes all the way
    token = pure.input_mean + pure.W_dec[:, 2].detach() * pure.input_scale * 3
    only_harmful = blend(token.reshape(1, 8), pure, HarmfulFeatures([2], [1.0]), 1.0)
    assert torch.allclose(only_harmful[0], pure.decode(torch.zeros(6)).detach(), atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_ops_keep_dtype_and_shape(data, sae, dtype):
    codes = sae.encode(data[:64]).detach()
    harmful = HarmfulFeatures(indices=codes.sum(0).argsort(descending=True)[:4], scores=torch.ones(4))
    x = data[:64].reshape(2, 32, D_IN).to(dtype)
    for op in (repel, blend):
        out = op(x, sae, harmful, 1.0)
        assert out.dtype == dtype and out.shape == x.shape and not torch.equal(out, x)
        reference = op(x.float(), sae, harmful, 1.0).to(dtype)
        assert torch.allclose(out.float(), reference.float(), atol=1e-2, rtol=1e-2)
    with pytest.raises(SAEError, match="width 128"):
        repel(x, sae, HarmfulFeatures([500], [1.0]), 1.0)
    with pytest.raises(SAEError, match=r"\[\.\.\., 32\]"):
        blend(torch.randn(4, 16), sae, harmful, 1.0)
