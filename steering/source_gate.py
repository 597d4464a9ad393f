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

from .features import extract_features
from .gating import Gate, choose_gate
from .pack import DirectionPack
from .sources import LoadedModel, load_text_model

_models: dict[str, LoadedModel] = {}


@dataclass
class SourceGate:
    source_ref: str
    layer: int
    pooling: str
    directions: torch.Tensor        # [K, d] the pack's unit directions (standardised source space)
    anchor_mean: torch.Tensor       # [d]
    anchor_std: torch.Tensor        # [d]
    projection_stats: torch.Tensor  # [K, 4]
    threshold: float
    temperature: float

    @classmethod
    def from_pack(cls, pack: DirectionPack) -> "SourceGate":
        """Thresholds chosen on the pack's training projections and benign anchors (row 0)."""
        stats = pack.projection_stats[0]
        anchors = (pack.standardise(pack.anchor_features) @ pack.directions[0] - stats[0]) / stats[1]
        unsafe = (pack.train_projections[0, :, 1] - stats[0]) / stats[1]
        gate = choose_gate(unsafe, anchors)
        return cls(pack.metadata["source_ref"], int(pack.metadata["layer"]), pack.metadata["pooling"],
                   pack.directions.clone(), pack.anchor_mean.clone(), pack.anchor_std.clone(),
                   pack.projection_stats.clone(), gate.threshold, gate.temperature)

    def projections(self, prompts: list[str], row: int | list[int] = 0) -> torch.Tensor:
        """Standardised source projections (anchor units; negative = unsafe-leaning): [n] for one
        row, [n, len(rows)] for several (one forward pass either way)."""
        model = _models.get(self.source_ref)
        if model is None:
            model = _models[self.source_ref] = load_text_model(self.source_ref, allow_hub=False)
        raw = extract_features(model.model, model.tokenizer, prompts, [self.layer], pooling=self.pooling,
                               skip_first_token=model.is_decoder)[self.layer]
        z = (raw - self.anchor_mean) / self.anchor_std
        stats = self.projection_stats[row]
        return (z @ self.directions[row].T - stats[..., 0]) / stats[..., 1]

    def gate_values(self, prompts: list[str], row: int | list[int] = 0) -> torch.Tensor:
        """Per prompt gate in [0, 1]; for several rows (a category mix) the most open one: a
        prompt is steered when any of the selected harms shows."""
        values = Gate(self.threshold, self.temperature)(self.projections(prompts, row))
        return values if values.dim() == 1 else values.max(dim=1).values

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"source_gate/directions": self.directions, "source_gate/anchor_mean": self.anchor_mean,
                "source_gate/anchor_std": self.anchor_std, "source_gate/projection_stats": self.projection_stats}

    def settings(self) -> dict:
        return {"source_ref": self.source_ref, "layer": self.layer, "pooling": self.pooling,
                "threshold": self.threshold, "temperature": self.temperature}

    @classmethod
    def from_parts(cls, settings: dict, tensors: dict[str, torch.Tensor]) -> "SourceGate":
        return cls(settings["source_ref"], int(settings["layer"]), settings["pooling"],
                   tensors["source_gate/directions"], tensors["source_gate/anchor_mean"],
                   tensors["source_gate/anchor_std"], tensors["source_gate/projection_stats"],
                   float(settings["threshold"]), float(settings["temperature"]))
