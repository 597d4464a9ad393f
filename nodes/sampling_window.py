"""What a sampling-time patch needs to know about the call it is in: whether this step lies in the
node's start / end window, and which batch rows hold the positive prompt. One rule for the model
point and SafeDIG alike."""

from __future__ import annotations

import functools

import torch


class SigmaWindow:
    """The sigmas between ``start_percent`` and ``end_percent`` of this model's sampling."""

    def __init__(self, model, start_percent: float, end_percent: float):
        sampling = model.get_model_object("model_sampling")
        self.start = float(sampling.percent_to_sigma(start_percent))
        self.end = float(sampling.percent_to_sigma(end_percent))

    def contains(self, sigmas) -> bool:
        """True inside the window, and when the call carries no sigma (nothing to decide on)."""
        if sigmas is None:
            return True
        sigma = float(sigmas.max()) if torch.is_tensor(sigmas) else float(sigmas)
        return self.end <= sigma <= self.start


@functools.lru_cache(maxsize=64)
def positive_rows(cond_or_uncond: tuple, batch: int, include_negative: bool, device) -> torch.Tensor:
    """[batch] bool: the rows of the positive prompt (cond), and of the negative one (uncond) only
    when included. ComfyUI stacks the batch as equal chunks, one per entry of ``cond_or_uncond``;
    when the batch does not split that way (or nothing says), every row counts."""
    chunks = cond_or_uncond or (0,)
    if include_negative or batch % len(chunks):
        return torch.ones(batch, dtype=torch.bool, device=device)
    return torch.tensor([c == 0 for c in chunks], device=device).repeat_interleave(batch // len(chunks))
