"""Category mixing (exact anchor statistics), conditioning layouts of every family, and the
native baseline, on the shipped pack with random or tiny-model targets."""

from __future__ import annotations

import pytest
import torch

from safety_steer.steering import load_pack
from safety_steer.steering.application.layout import LayoutError, pooled_segments, token_segments
from safety_steer.steering.pack import DEFAULT_PACK_PATH
from safety_steer.steering.transfer.aligned import align_pack
from safety_steer.steering.transfer.mixing import MixError


@pytest.fixture(scope="module")
def aligned_and_anchors():
    pack = load_pack(DEFAULT_PACK_PATH)
    generator = torch.Generator().manual_seed(0)
    mixing = torch.randn(pack.hidden_size, 48, generator=generator) / pack.hidden_size**0.5
    target = pack.standardise(pack.anchor_features) @ mixing + 0.1 * torch.randn(
        len(pack.anchor_features), 48, generator=generator
    )
    aligned = align_pack(pack, {"l": target})
    enc = aligned.encoders["l"]
    return aligned, (target - enc.target_mean) / enc.target_std


@pytest.mark.parametrize(
    "weights,orthogonalise",
    [
        ({"violence": 1.0, "shocking": 1.0}, False),
        ({"violence": 1.0, "shocking": 0.5, "hate": 2.0}, True),
        (
            {c: 1.0 for c in ("hate", "harassment", "violence", "self-harm", "sexual", "shocking", "illegal activity")},
            True,
        ),
    ],
)
def test_mixed_row_statistics_are_exact(aligned_and_anchors, weights, orthogonalise):
    aligned, z_anchor = aligned_and_anchors
    mixed = aligned.with_mix(weights, orthogonalise)
    enc = mixed.encoders["l"]
    row, source_rows = mixed.resolve("auto")
    assert mixed.names[row] == "mixed" and source_rows == [mixed.names.index(c) for c in weights]
    assert torch.allclose(enc.unit[row].norm(), torch.tensor(1.0), atol=1e-5)
    projections = z_anchor @ enc.unit[row]
    assert torch.allclose(enc.anchor_projection[row], torch.stack([projections.mean(), projections.std()]), atol=1e-3)
    every = z_anchor @ enc.unit.T
    assert torch.allclose(enc.anchor_covariance, torch.cov(every.T), atol=1e-3)
    assert (enc.calibrated[row] @ enc.unit[row]) > 0


def test_single_category_mix_is_that_category_and_orthogonalising_changes_overlap(aligned_and_anchors):
    aligned, _ = aligned_and_anchors
    enc = aligned.with_mix({"sexual": 1.0}, False).encoders["l"]
    k = enc.names.index("sexual")
    assert torch.allclose(enc.unit[-1], enc.unit[k], atol=1e-5)
    assert torch.allclose(enc.calibrated[-1], enc.calibrated[k], atol=1e-4)
    # (with equal weights the symmetric orthogonalisation keeps the direction: unequal ones show it)
    plain = aligned.with_mix({"violence": 1.0, "shocking": 0.3}, False).encoders["l"].unit[-1]
    orth = aligned.with_mix({"violence": 1.0, "shocking": 0.3}, True).encoders["l"].unit[-1]
    assert not torch.allclose(plain, orth, atol=1e-4)
    remixed = aligned.with_mix({"violence": 1.0}, False).with_mix({"hate": 1.0}, False)
    assert remixed.names.count("mixed") == 1 and remixed.metadata["mix"]["weights"] == {"hate": 1.0}


def test_mix_errors_are_clear(aligned_and_anchors):
    aligned, _ = aligned_and_anchors
    with pytest.raises(MixError, match="Every category weight is 0"):
        aligned.with_mix({"hate": 0.0}, False)
    with pytest.raises(MixError, match="must be 0 or more"):
        aligned.with_mix({"hate": -1.0}, False)
    with pytest.raises(MixError, match="Unknown categories"):
        aligned.with_mix({"gore": 1.0}, False)
    with pytest.raises(ValueError, match="no 'mixed' row.*Category Vector Mixer"):
        aligned.resolve("mixed")


def test_layouts_of_every_family():
    sd3_rows = token_segments({"l": 768, "g": 1280, "t5xxl": 4096, "l.pooled": 768}, 4096)[0]
    assert [(s.key, s.features, s.rows) for s in sd3_rows] == [
        ("l", slice(0, 768), "clip"),
        ("g", slice(768, 2048), "clip"),
        ("t5xxl", slice(0, 4096), "t5"),
    ]
    assert [s.key for s in token_segments({"l": 768, "g": 1280}, 2048)[0]] == ["l", "g"]  # SDXL
    assert [s.key for s in token_segments({"l": 768, "g": 1280}, 4096)[0]] == ["l", "g"]  # SD3, no T5
    assert [s.key for s in token_segments({"l": 768, "t5xxl": 4096}, 4096)[0]] == ["t5xxl"]  # Flux
    assert [s.key for s in token_segments({"l": 768, "llama": 4096}, 4096)[0]] == ["llama"]  # Hunyuan
    assert [s.key for s in token_segments({"umt5xxl": 4096}, 4096)[0]] == ["umt5xxl"]  # Wan
    assert [s.key for s in token_segments({"qwen25_7b": 3584}, 3584)[0]] == ["qwen25_7b"]  # Qwen-Image
    assert [s.key for s in token_segments({"qwen3_4b": 2560}, 2560)[0]] == ["qwen3_4b"]  # Z-Image
    assert [s.key for s in token_segments({"qwen25_3b": 2048}, 2048)[0]] == ["qwen25_3b"]  # OmniGen 2
    assert [s.key for s in pooled_segments({"l.pooled": 768, "g.pooled": 1280}, 1280)] == ["g.pooled"]  # SDXL
    assert [s.key for s in pooled_segments({"l.pooled": 768, "g.pooled": 1280}, 2048)] == ["l.pooled", "g.pooled"]
    with pytest.raises(LayoutError, match="4096 features per token.*l \\(768\\).*another text encoder"):
        token_segments({"l": 768}, 4096)
    # SD3 rows: CLIP rows are the ones whose padding columns are zero
    hidden = torch.zeros(1, 5, 16)
    hidden[0, :2, :6] = 1.0
    hidden[0, 2:] = 2.0
    segments, clip_width = token_segments({"l": 2, "g": 4, "t5xxl": 16}, 16)
    assert segments[0].row_mask(hidden, clip_width).tolist() == [[True, True, False, False, False]]
    assert segments[2].row_mask(hidden, clip_width).tolist() == [[False, False, True, True, True]]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_native_direction_node_and_mixer_in_a_real_graph(comfy, tiny_clip_node, tmp_path, monkeypatch):
    monkeypatch.setenv("SAFETY_STEER_CACHE", str(tmp_path))
    graph = {
        "1": {"class_type": "SafetySteerLoadDirection", "inputs": {"pack": DEFAULT_PACK_PATH.name}},
        "2": {"class_type": "TinyTestCLIP", "inputs": {"family": "sd15", "seed": 0}},
        "3": {
            "class_type": "SafetySteerFitNativeDirection",
            "inputs": {"clip": ["2", 0], "direction": ["1", 0], "method": "mean_diff", "anchors": 40},
        },
        "4": {
            "class_type": "SafetySteerCategoryVectorMixer",
            "inputs": {
                "aligned_direction": ["3", 0],
                "preset": "violence and gore",
                "hate": 1.0,
                "harassment": 1.0,
                "violence": 1.0,
                "self_harm": 1.0,
                "sexual": 1.0,
                "shocking": 1.0,
                "illegal_activity": 1.0,
                "orthogonalise": True,
            },
        },
        "5": {"class_type": "SafetySteerDirectionInfo", "inputs": {"direction": ["4", 0]}},
        "6": {
            "class_type": "SafetySteerApplyTextEncoder",
            "inputs": {
                "clip": ["2", 0],
                "aligned_direction": ["4", 0],
                "strength": 1.5,
                "direction": "auto",
                "mode": "both",
                "gate": "target projection",
                "gate_threshold": 0.5,
            },
        },
        "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["6", 0], "text": "a bloody knife fight, photo"}},
        "8": {"class_type": "SafetySteerReport", "inputs": {"conditioning": ["7", 0]}},
    }
    out = comfy.run(graph)
    info = "".join(out["5"]["text"])
    assert "native* baseline" in info and "mixed: violence 1, shocking 1 (orthogonalised)" in info
    report = "".join(out["8"]["text"])
    assert "[text encoder | l | mixed] 'a bloody knife fight, photo'" in report and "shocking" in report


def test_additive_fast_path_equals_the_general_steer(aligned_and_anchors):
    """The model point's per-step fast path (add, no gate) is the same steer as steer_tokens."""
    from safety_steer.steering.application.assembled import additive_steer, steer_tokens

    aligned, _ = aligned_and_anchors
    hidden = torch.randn(3, 7, 48, generator=torch.Generator().manual_seed(1))
    weights = torch.tensor([1.0, 0.0, 0.5])
    general, _ = steer_tokens(hidden, aligned, 2, 1.7, "add", None, weights, report=False)
    additive = additive_steer(aligned, 2, 1.7, 48)
    assert not additive.by_rows  # one segment on every row: a single vector
    fast = torch.addcmul(hidden, weights[:, None, None], additive.offset(hidden))
    assert torch.allclose(general, fast, atol=1e-5) and torch.equal(fast[1], hidden[1])


def test_additive_fast_path_on_sd3_rows_equals_the_general_steer():
    """SD3's conditioning: CLIP-L+G rows (zero-padded past their width) and T5 rows, each steered with
    its own encoder's vector; the fast path tells the rows apart per call, as steer_tokens does."""
    from safety_steer.steering.application.assembled import additive_steer, steer_tokens
    from safety_steer.steering.transfer.aligned import AlignedSafetyDirection
    from safety_steer.steering.transfer.transport import with_read_rows

    g = torch.Generator().manual_seed(3)

    def encoder(dim):
        unit = torch.nn.functional.normalize(torch.randn(2, dim, generator=g), dim=1)
        anchors = torch.randn(50, dim, generator=g)
        return with_read_rows(
            ["global", "violence"],
            unit,
            unit.clone(),
            anchors,
            calibrated=unit * 2.0,
            target_mean=torch.zeros(dim),
            target_std=torch.rand(dim, generator=g) + 0.5,
        )

    aligned = AlignedSafetyDirection(encoders={"l": encoder(8), "g": encoder(12), "t5xxl": encoder(32)})
    clip_rows = torch.randn(2, 5, 20, generator=g)
    hidden = torch.cat([torch.nn.functional.pad(clip_rows, (0, 12)), torch.randn(2, 6, 32, generator=g)], 1)
    weights = torch.tensor([1.0, 0.0])
    general, _ = steer_tokens(hidden, aligned, 1, 1.3, "add", None, weights, report=False)
    additive = additive_steer(aligned, 1, 1.3, 32)
    assert {segment.key for segment, _ in additive.by_rows} == {"l", "g", "t5xxl"}
    fast = torch.addcmul(hidden, weights[:, None, None], additive.offset(hidden))
    assert torch.allclose(general, fast, atol=1e-5) and torch.equal(fast[1], hidden[1])
    assert not torch.allclose(fast[0, :5], hidden[0, :5]) and not torch.allclose(fast[0, 5:], hidden[0, 5:])
