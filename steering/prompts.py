"""Prompt data: paired safe/unsafe prompts per harm category, and benign anchor prompts.

Files are JSONL. Pairs: {"category", "safe", "unsafe", "split"} ("split" is "train" or
"heldout"; optional in user files, where every pair then counts as evaluation data).
Anchors: {"prompt", "kind"} ("kind" is informational).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import locations
from .errors import PromptDataError
from .fileformat import parse_json, short

#: The seven I2P harm categories, in the order packs store them.
I2P_CATEGORIES = ("hate", "harassment", "violence", "self-harm", "sexual", "shocking", "illegal activity")
SPLITS = ("train", "heldout")

PROMPTS_DIR = locations.PROMPTS_DIR


def shipped_pairs_path() -> Path:
    return PROMPTS_DIR / "pairs.jsonl"


def shipped_anchors_path() -> Path:
    return PROMPTS_DIR / "anchors.jsonl"


@dataclass(frozen=True)
class PromptPair:
    category: str
    safe: str
    unsafe: str
    split: str = "heldout"

    def as_record(self) -> dict:
        return {"category": self.category, "safe": self.safe, "unsafe": self.unsafe, "split": self.split}


def read_jsonl(path: str | Path) -> list[dict]:
    """Parse a JSONL file; errors name the file and line so the user can fix it. Any garbage (not
    UTF-8, not JSON, nested too deeply, a directory) is a PromptDataError, never another exception."""
    path = Path(path)
    if not path.is_file():
        raise PromptDataError(f"Prompt file not found: {path}. Give the path of a .jsonl file.")
    records = []
    try:
        with open(path, "rb") as handle:
            lines = list(enumerate(handle, start=1))
    except OSError as exc:
        raise PromptDataError(f"Cannot read the prompt file {path} ({exc.strerror or exc}).") from None
    for number, raw in lines:
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            raise PromptDataError(f"{path}, line {number}: not UTF-8 text. Save the file as UTF-8.") from None
        if not line.strip():
            continue
        try:
            record = parse_json(line)
        except ValueError as exc:
            raise PromptDataError(
                f"{path}, line {number}: not valid JSON ({exc}). Each line must be one JSON object."
            ) from None
        if not isinstance(record, dict):
            raise PromptDataError(f"{path}, line {number}: expected a JSON object, got {type(record).__name__}.")
        records.append(record)
    if not records:
        raise PromptDataError(f"{path} holds no prompts. Add one JSON object per line.")
    return records


def _text(record: dict, key: str, where: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise PromptDataError(f"{where}: '{key}' must be a non-empty string (got {short(value)}).")
    return value.strip()


def parse_pairs(records: list[dict], source: str = "pairs") -> list[PromptPair]:
    """Validate pair records: non-empty texts, a category, a known split."""
    if not records:
        raise PromptDataError(
            f'{source} holds no pairs. Each line must be {{"category": ..., "safe": ..., "unsafe": ...}}.'
        )
    pairs = []
    for index, record in enumerate(records, start=1):
        where = f"{source}, pair {index}"
        category = _text(record, "category", where).lower()
        split = record.get("split", "heldout")
        if split not in SPLITS:
            raise PromptDataError(f"{where}: split must be one of {SPLITS}, got {short(split)}.")
        pair = PromptPair(category, _text(record, "safe", where), _text(record, "unsafe", where), split)
        if pair.safe == pair.unsafe:
            raise PromptDataError(
                f"{where}: the safe and unsafe prompts are identical; a pair must differ in its harmful element."
            )
        pairs.append(pair)
    return pairs


def load_pairs(path: str | Path | None = None, split: str | None = None) -> list[PromptPair]:
    """Load pairs from a JSONL file (default: the shipped pairs), optionally one split only."""
    path = Path(path) if path is not None else shipped_pairs_path()
    pairs = parse_pairs(read_jsonl(path), source=str(path))
    if split is not None:
        if split not in SPLITS:
            raise PromptDataError(f"Unknown split {split!r}; use one of {SPLITS}.")
        pairs = [pair for pair in pairs if pair.split == split]
        if not pairs:
            raise PromptDataError(f"{path} has no pairs in split {split!r}.")
    return pairs


def load_anchors(path: str | Path | None = None) -> list[str]:
    """Load benign anchor prompts (default: the shipped anchors), in file order."""
    path = Path(path) if path is not None else shipped_anchors_path()
    records = read_jsonl(path)
    return [_text(record, "prompt", f"{path}, anchor {index}") for index, record in enumerate(records, start=1)]


def categories_of(pairs: list[PromptPair]) -> list[str]:
    """Categories present, I2P ones first in their canonical order, then others alphabetically."""
    present = {pair.category for pair in pairs}
    known = [c for c in I2P_CATEGORIES if c in present]
    return known + sorted(present - set(known))
