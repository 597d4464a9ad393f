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
from ..extraction.source_models import DownloadProgress, load_source, locate_source
from ..pack import DETECTOR_TENSORS, DirectionPack
from .detector import SafetyDetector
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
    detector: SafetyDetector | None = None  # the pack's trained detector; None: gate on the projection

    @classmethod
    def from_pack(cls, pack: DirectionPack) -> SourceGate:
        """Thresholds chosen on the pack's training projections and benign anchors (row 0); the
        pack's detector, when it has one, decides the gate instead."""
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
            pack.detector,
        )

    @property
    def kind(self) -> str:
        """What decides the gate, for the report and the node."""
        return "source LLM detector" if self.detector is not None else "source LLM projection"

    def _read(self, prompts: list[str], layers: list[int]) -> tuple[dict[int, torch.Tensor], list[torch.Tensor]]:
        """Pooled features of every window of every prompt at ``layers`` (one forward pass), and for
        each prompt the indices of its windows."""
        model = load_source(self.source_ref, self.weights_sha256)
        windows, owner = [], []
        for number, prompt in enumerate(prompts):
            for window in prompt_windows(model.tokenizer, prompt):
                windows.append(window)
                owner.append(number)
        features = extract_features(
            model.model,
            model.tokenizer,
            windows,
            sorted(set(layers)),
            pooling=self.pooling,
            skip_first_token=model.is_decoder,
            max_length=WINDOW_TOKENS * 4,
        )
        owner_index = torch.tensor(owner)
        return features, [torch.nonzero(owner_index == n).flatten() for n in range(len(prompts))]

    def _projections(self, raw: torch.Tensor, rows: list[int]) -> torch.Tensor:
        z = (raw - self.anchor_mean) / self.anchor_std
        stats = self.projection_stats[rows]
        return (z @ self.directions[rows].T - stats[:, 0]) / stats[:, 1]  # [windows, rows]

    def projections(self, prompts: list[str], row: int | list[int] = 0) -> torch.Tensor:
        """Standardised source projections (anchor units; negative = unsafe-leaning): [n] for one
        row, [n, len(rows)] for several (one forward pass either way). A long prompt is read whole,
        window by window, and gets its most unsafe-leaning window's projection (per row)."""
        rows = [row] if isinstance(row, int) else list(row)
        features, owners = self._read(prompts, [self.layer])
        per_window = self._projections(features[self.layer], rows)
        worst = torch.stack([per_window[windows].min(dim=0).values for windows in owners])
        return worst[:, 0] if isinstance(row, int) else worst

    def unavailable_reason(self, progress: DownloadProgress | None = None) -> str | None:
        """None when the source model can be loaded here, else why not (loads it once; a built-in
        model may be downloaded into models/LLM/ first, reporting bytes to ``progress``)."""
        try:
            load_source(self.source_ref, self.weights_sha256, progress=progress)
        except SourceModelError as exc:
            return str(exc)
        return None

    def describe(self) -> str:
        """Which model and detector this gate runs, and where the weights were found."""
        where = locate_source(self.source_ref, self.weights_sha256, download=False)
        how = (
            f"trained detector over layers {', '.join(map(str, self.detector.layers))}"
            if self.detector is not None
            else f"direction projection at layer {self.layer}"
        )
        return f"{self.source_ref}, {how}; weights from {where.origin}, sha256 verified"

    def gate_values(self, prompts: list[str], row: int | list[int] = 0) -> torch.Tensor:
        """Per prompt gate in [0, 1]. With a detector: its calibrated gate on the log-odds of the
        selected harms (most unsafe window of a long prompt). Without: the projection gate, and for
        several rows (a category mix) the most open one."""
        rows = [row] if isinstance(row, int) else list(row)
        if self.detector is None:
            values = Gate(self.threshold, self.temperature)(self.projections(prompts, rows))
            return values.max(dim=1).values
        features, owners = self._read(prompts, self.detector.layers)
        scores = self.detector.scores(features, rows)
        return self.detector.gate(torch.stack([scores[windows].max() for windows in owners]))

    def tensors(self) -> dict[str, torch.Tensor]:
        detector = self.detector.tensors() if self.detector is not None else {}
        return {
            "source_gate/directions": self.directions,
            "source_gate/anchor_mean": self.anchor_mean,
            "source_gate/anchor_std": self.anchor_std,
            "source_gate/projection_stats": self.projection_stats,
            **{f"source_gate/{name}": tensor for name, tensor in detector.items()},
        }

    def settings(self) -> dict:
        return {
            "source_ref": self.source_ref,
            "layer": self.layer,
            "pooling": self.pooling,
            "threshold": self.threshold,
            "temperature": self.temperature,
            "weights_sha256": self.weights_sha256,
            "detector": self.detector.settings() if self.detector is not None else None,
        }

    @classmethod
    def from_parts(cls, settings: dict, tensors: dict[str, torch.Tensor]) -> SourceGate:
        detector = None
        if settings.get("detector"):
            detector = SafetyDetector.from_parts(
                settings["detector"], {name: tensors[f"source_gate/{name}"] for name in DETECTOR_TENSORS}
            )
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
            detector,
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
