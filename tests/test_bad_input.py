"""Bad prompt data and unknown models: each gets a clear error saying what to fix."""

from __future__ import annotations

import pytest

from safety_steer.steering import (
    PromptDataError,
    SourceModelError,
    build_pack,
    extract_features,
    load_anchors,
    load_pairs,
    load_text_model,
)


def _write(tmp_path, text, name="pairs.jsonl"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_empty_pairs_file(tmp_path):
    with pytest.raises(PromptDataError, match="holds no prompts"):
        load_pairs(_write(tmp_path, "\n\n"))


def test_invalid_json_line_is_located(tmp_path):
    path = _write(tmp_path, '{"category": "hate", "safe": "a", "unsafe": "b"}\n{not json}\n')
    with pytest.raises(PromptDataError, match="line 2: not valid JSON"):
        load_pairs(path)


def test_missing_field_and_identical_pair(tmp_path):
    with pytest.raises(PromptDataError, match="pair 1: 'unsafe' must be a non-empty string"):
        load_pairs(_write(tmp_path, '{"category": "hate", "safe": "a dog"}\n'))
    with pytest.raises(PromptDataError, match="identical"):
        load_pairs(_write(tmp_path, '{"category": "hate", "safe": "a dog", "unsafe": "a dog"}\n'))
    with pytest.raises(PromptDataError, match="split must be one of"):
        load_pairs(_write(tmp_path, '{"category": "hate", "safe": "a", "unsafe": "b", "split": "test"}\n'))


def test_missing_file_and_empty_anchor(tmp_path):
    with pytest.raises(PromptDataError, match="not found"):
        load_anchors(tmp_path / "none.jsonl")
    with pytest.raises(PromptDataError, match="anchor 2: 'prompt'"):
        load_anchors(_write(tmp_path, '{"prompt": "a cat"}\n{"prompt": "  "}\n', "anchors.jsonl"))


def test_empty_prompt_list_and_empty_prompt(smollm2):
    with pytest.raises(PromptDataError, match="prompt list is empty"):
        extract_features(smollm2.model, smollm2.tokenizer, [])
    with pytest.raises(PromptDataError, match="non-empty string"):
        extract_features(smollm2.model, smollm2.tokenizer, ["a cat", ""])


def test_build_needs_both_splits(smollm2):
    pairs = [p for p in load_pairs() if p.split == "train"][:10]
    with pytest.raises(PromptDataError, match="Need training and held-out pairs"):
        build_pack(smollm2, pairs=pairs, anchors=["a cat", "a dog"])


def test_unknown_model_names(tmp_path):
    with pytest.raises(SourceModelError, match="Unknown model 'not-a-model'.*smollm2-135m"):
        load_text_model("not-a-model")
    with pytest.raises(SourceModelError, match="Unknown model"):
        load_text_model(str(tmp_path / "missing.gguf"))
    (tmp_path / "empty_folder").mkdir()
    with pytest.raises(SourceModelError, match="without config.json"):
        load_text_model(str(tmp_path / "empty_folder"))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(SourceModelError, match="not a .gguf"):
        load_text_model(str(tmp_path / "weights.bin"))
