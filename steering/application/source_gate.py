"""The source-detector gate: the source LLM reads each prompt and says how unsafe it projects.

Transported directions steer well, but their projection in the target separates unsafe prompts
from ordinary ones poorly (measured: see the README), so gating on it cannot spare benign
prompts. The source LLM's own projection separates them well (held-out AUROC ~0.95) and only ever
saw source-side data, so the target still never sees unsafe prompts. Costs one 135M-parameter
forward pass per prompt, once per prompt (not per sampling step).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import SourceModelError
from ..extraction.features import extract_features
from ..extraction.source_models import load_source
from ..pack import DirectionPack
from .gating import Gate, choose_gate

#: Prompts longer than this many source tokens are read in overlapping windows of this size, and
#: the most unsafe-leaning window decides: a mean over a long prompt lets benign padding text dilute
#: an unsafe request below the gate. Measured on the shipped SmolLM2 pack, ~190 benign tokens then
#: an unsafe prompt: gate 0.17 reading the first 128 tokens, 0.62 with 48-token windows, 0.995 with
#: 24 (1.0 for the unsafe prompt alone); the cost, on the 67 benign anchors longer than 200
#: characters: mean gate 0.49 -> 0.54 (short prompts are read whole, as before).
WINDOW_TOKENS = 24
WINDOW_STRIDE = 8


@dataclass
class SourceGate:
    source_ref: str
    layer: int
    pooling: str
    directions: torch.Tensor  # [K, d] the pack's unit directions (standardised source space)
    anchor_mean: torch.Tensor  # [d]
    anchor_std: torch.Tensor  # [d]
    projection_stats: torch.Tensor  # [K, 4]
    threshold: float
    temperature: float
    weights_sha256: str | None = None  # the source weights the pack was built from

    @classmethod
    def from_pack(cls, pack: DirectionPack) -> SourceGate:
        """Thresholds chosen on the pack's training projections and benign anchors (row 0)."""
        stats = pack.projection_stats[0]
        anchors = (pack.standardise(pack.anchor_features) @ pack.directions[0] - stats[0]) / stats[1]
        unsafe = (pack.train_projections[0, :, 1] - stats[0]) / stats[1]
        gate = choose_gate(unsafe, anchors)
        return cls(
            pack.metadata["source_ref"],
            int(pack.metadata["layer"]),
            pack.metadata["pooling"],
            pack.directions.clone(),
            pack.anchor_mean.clone(),
            pack.anchor_std.clone(),
            pack.projection_stats.clone(),
            gate.threshold,
            gate.temperature,
            pack.metadata.get("source_weights_sha256"),
        )

    def projections(self, prompts: list[str], row: int | list[int] = 0) -> torch.Tensor:
        """Standardised source projections (anchor units; negative = unsafe-leaning): [n] for one
        row, [n, len(rows)] for several (one forward pass either way). A long prompt is read whole,
        window by window, and gets its most unsafe-leaning window's projection (per row)."""
        model = load_source(self.source_ref, self.weights_sha256)
        windows, owner = [], []
        for number, prompt in enumerate(prompts):
            for window in prompt_windows(model.tokenizer, prompt):
                windows.append(window)
                owner.append(number)
        raw = extract_features(
            model.model,
            model.tokenizer,
            windows,
            [self.layer],
            pooling=self.pooling,
            skip_first_token=model.is_decoder,
            max_length=WINDOW_TOKENS * 4,
        )[self.layer]
        z = (raw - self.anchor_mean) / self.anchor_std
        rows = [row] if isinstance(row, int) else list(row)
        stats = self.projection_stats[rows]
        per_window = (z @ self.directions[rows].T - stats[:, 0]) / stats[:, 1]  # [windows, rows]
        owner_index = torch.tensor(owner)
        worst = torch.stack([per_window[owner_index == n].min(dim=0).values for n in range(len(prompts))])
        return worst[:, 0] if isinstance(row, int) else worst

    def unavailable_reason(self) -> str | None:
        """None when the source model can be loaded here, else why not (loads it once)."""
        try:
            load_source(self.source_ref, self.weights_sha256)
        except SourceModelError as exc:
            return str(exc)
        return None

    def gate_values(self, prompts: list[str], row: int | list[int] = 0) -> torch.Tensor:
        """Per prompt gate in [0, 1]; for several rows (a category mix) the most open one: a
        prompt is steered when any of the selected harms shows."""
        values = Gate(self.threshold, self.temperature)(self.projections(prompts, row))
        return values if values.dim() == 1 else values.max(dim=1).values

    def tensors(self) -> dict[str, torch.Tensor]:
        return {
            "source_gate/directions": self.directions,
            "source_gate/anchor_mean": self.anchor_mean,
            "source_gate/anchor_std": self.anchor_std,
            "source_gate/projection_stats": self.projection_stats,
        }

    def settings(self) -> dict:
        return {
            "source_ref": self.source_ref,
            "layer": self.layer,
            "pooling": self.pooling,
            "threshold": self.threshold,
            "temperature": self.temperature,
            "weights_sha256": self.weights_sha256,
        }

    @classmethod
    def from_parts(cls, settings: dict, tensors: dict[str, torch.Tensor]) -> SourceGate:
        return cls(
            settings["source_ref"],
            int(settings["layer"]),
            settings["pooling"],
            tensors["source_gate/directions"],
            tensors["source_gate/anchor_mean"],
            tensors["source_gate/anchor_std"],
            tensors["source_gate/projection_stats"],
            float(settings["threshold"]),
            float(settings["temperature"]),
            settings.get("weights_sha256"),
        )


def prompt_windows(tokenizer, prompt: str) -> list[str]:
    """The prompt itself when it is short; else overlapping windows of WINDOW_TOKENS tokens that
    together cover every token (the last one ends at the prompt's end)."""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if len(ids) <= WINDOW_TOKENS:
        return [prompt]
    starts = list(range(0, len(ids) - WINDOW_TOKENS, WINDOW_STRIDE)) + [len(ids) - WINDOW_TOKENS]
    texts = [tokenizer.decode(ids[start : start + WINDOW_TOKENS]).strip() for start in starts]
    return [t for t in texts if t] or [prompt]
