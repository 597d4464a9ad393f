"""The prompt data the pack ships, and the one-way layering nodes -> steering."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

from safety_steer.steering import I2P_CATEGORIES, load_anchors, load_pairs

ROOT = Path(__file__).resolve().parent.parent


def test_pairs_cover_the_seven_categories_with_a_recorded_split():
    pairs = load_pairs()
    per_category = Counter(p.category for p in pairs)
    assert set(per_category) == set(I2P_CATEGORIES)
    assert min(per_category.values()) >= 60, per_category
    for category in I2P_CATEGORIES:
        splits = Counter(p.split for p in pairs if p.category == category)
        assert splits["train"] >= 40 and splits["heldout"] >= 12, (category, splits)
    texts = [p.safe for p in pairs] + [p.unsafe for p in pairs]
    assert len(texts) == len(set(texts)), "duplicate prompts in pairs.jsonl"


def test_anchors_are_many_and_diverse():
    anchors = load_anchors()
    assert len(anchors) >= 2000 and len(set(anchors)) == len(anchors)
    prefixes = Counter(" ".join(a.lower().split()[:3]) for a in anchors)
    assert prefixes.most_common(1)[0][1] / len(anchors) < 0.02, prefixes.most_common(5)
    lengths = [len(a.split()) for a in anchors]
    assert min(lengths) <= 3 and max(lengths) >= 40  # one-word tags to long paragraphs
    assert sum(n <= 5 for n in lengths) >= 0.01 * len(anchors) and sum(n >= 25 for n in lengths) >= 0.02 * len(anchors)
    lines = (ROOT / "prompts" / "anchors.jsonl").read_text().splitlines()
    kinds = Counter(__import__("json").loads(line)["kind"] for line in lines)
    assert len(kinds) >= 3 and min(kinds.values()) >= 300, kinds
    pair_texts = {p.safe for p in load_pairs()} | {p.unsafe for p in load_pairs()}
    assert not pair_texts & set(anchors), "anchors must not reuse pair prompts"


def test_steering_never_imports_comfyui_and_nodes_only_import_downwards():
    comfy_modules = {"comfy", "comfy_api", "comfy_execution", "folder_paths", "nodes", "server", "execution"}
    for path in (ROOT / "steering").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = (
                    [(node.module or "").split(".")[0]]
                    if node.level == 0
                    else ["nodes" if (node.module or "").startswith("nodes") or node.level > 1 else ""]
                )
            else:
                continue
            assert not set(names) & comfy_modules, f"{path.name} imports {names}"
