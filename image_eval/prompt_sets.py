"""Evaluation prompts from our JSONL files or the I2P CSV layout, one shape for both."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from ..steering.errors import PromptDataError
from ..steering.prompts import read_jsonl

#: I2P's column names, with the short names our JSONL uses as aliases.
SEED_COLUMNS = ("seed", "sd_seed")
GUIDANCE_COLUMNS = ("guidance", "sd_guidance_scale")


@dataclass(frozen=True)
class EvalPrompt:
    """One prompt to generate from. ``harmful`` prompts count towards the attack success rate;
    benign ones (the safe twin of a pair) measure how often the judge flags harmless images."""

    text: str
    categories: tuple[str, ...]
    harmful: bool
    seed: int | None = None
    guidance: float | None = None


def _categories(value, where: str) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = value
    else:
        raise PromptDataError(f"{where}: categories must be a list of names or a comma-separated string.")
    return tuple(dict.fromkeys(c.strip().lower() for c in items if c.strip()))


def _number(value, kind, where: str, name: str):
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PromptDataError(f"{where}: {name} must be a number, got {value!r}.") from None
    if not math.isfinite(number):
        raise PromptDataError(f"{where}: {name} must be finite, got {value!r}.")
    if kind is int:
        if number != int(number) or number < 0:
            raise PromptDataError(f"{where}: {name} must be a non-negative integer, got {value!r}.")
        return int(number)
    return number


def _first(record: dict, names: tuple[str, ...]):
    for name in names:
        if name in record:
            return record[name]
    return None


def _prompt(record: dict, where: str, harmful_default: bool) -> EvalPrompt:
    text = record.get("prompt")
    if not isinstance(text, str) or not text.strip():
        raise PromptDataError(f"{where}: 'prompt' must be a non-empty string.")
    categories = _categories(_first(record, ("categories", "category")), where)
    harmful = record.get("harmful", harmful_default and bool(categories))
    if not isinstance(harmful, bool):
        raise PromptDataError(f"{where}: 'harmful' must be true or false.")
    return EvalPrompt(
        text.strip(),
        categories,
        harmful,
        _number(_first(record, SEED_COLUMNS), int, where, "seed"),
        _number(_first(record, GUIDANCE_COLUMNS), float, where, "guidance"),
    )


def read_jsonl_prompts(path: Path) -> list[EvalPrompt]:
    """Lines are either prompts ({"prompt", "categories" or "category", "seed", "guidance",
    "harmful"}; harmful by default when a category is given) or our pairs ({"category", "safe",
    "unsafe"}): a pair gives its unsafe prompt (harmful) and its safe twin (benign)."""
    prompts = []
    for number, record in enumerate(read_jsonl(path), start=1):
        where = f"{path}, line {number}"
        if "unsafe" in record and "safe" in record:
            categories = _categories(record.get("category"), where)
            for key, harmful in (("unsafe", True), ("safe", False)):
                prompts.append(_prompt({**record, "prompt": record[key], "harmful": harmful}, where, harmful))
            if not categories:
                raise PromptDataError(f"{where}: a pair needs a 'category'.")
        else:
            prompts.append(_prompt(record, where, True))
    return prompts


def read_i2p_csv(path: Path) -> list[EvalPrompt]:
    """The I2P layout: columns prompt, categories (comma-separated), sd_seed (or seed),
    sd_guidance_scale (or guidance); other columns are ignored. Every I2P prompt is harmful."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except UnicodeDecodeError:
        raise PromptDataError(f"{path}: not UTF-8 text. Save the CSV as UTF-8.") from None
    except OSError as exc:
        raise PromptDataError(f"Cannot read {path} ({exc.strerror or exc}).") from None
    if not rows or "prompt" not in rows[0]:
        raise PromptDataError(f"{path}: expected a CSV with a header row naming a 'prompt' column (the I2P layout).")
    prompts = []
    for number, row in enumerate(rows, start=2):
        if not (row.get("prompt") or "").strip():
            continue  # I2P has a few empty prompts
        prompts.append(_prompt(row, f"{path}, row {number}", True))
    if not prompts:
        raise PromptDataError(f"{path} holds no prompts.")
    return prompts


def read_prompts(path: str | Path, categories: list[str] | None = None, limit: int | None = None) -> list[EvalPrompt]:
    """Prompts from a .jsonl or .csv file, only those in ``categories`` (harmful prompts having one
    of them; benign twins of pairs in them) if given, the first ``limit`` if given."""
    path = Path(path)
    if not path.is_file():
        raise PromptDataError(f"Prompt file not found: {path}. Give a .jsonl (our format) or .csv (I2P) file.")
    prompts = read_i2p_csv(path) if path.suffix.lower() == ".csv" else read_jsonl_prompts(path)
    if categories:
        wanted = {c.strip().lower() for c in categories}
        prompts = [p for p in prompts if wanted & set(p.categories)]
        if not prompts:
            raise PromptDataError(f"{path} has no prompt in the categories {sorted(wanted)}.")
    return prompts[:limit] if limit else prompts
