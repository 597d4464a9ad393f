"""Collecting a DiT's activations at intervention positions, through the real sampling path.

One denoising step per prompt (a real `comfy.sample.sample_custom` call at CFG 1, so only the
positive prompt runs) from the same seeded noise at a fixed noise level: the image stream then
reflects that prompt at that stage of sampling, and the text stream is the model's own. Only the
positive rows are kept, as float32 on the CPU, one [tokens, width] tensor per prompt.
"""

from __future__ import annotations

from collections.abc import Callable

import comfy.sample
import comfy.samplers
import torch

from ..sampling_window import positive_rows
from .positions import patch_positions


@torch.no_grad()
def collect_activations(
    model,
    conditionings: list,
    latent: dict,
    positions: list[str],
    noise_level: float = 0.5,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, list[torch.Tensor]]:
    seen: dict[str, torch.Tensor] = {}

    def recorder(position: str):
        def hook(tensor: torch.Tensor, options: dict) -> torch.Tensor:
            seen[position] = (
                tensor[
                    positive_rows(tuple(options.get("cond_or_uncond") or ()), tensor.shape[0], False, tensor.device)
                ][0]
                .detach()
                .to("cpu", torch.float32)
            )
            return tensor

        return hook

    patched = patch_positions(model, {p: recorder(p) for p in positions})
    sampling = model.get_model_object("model_sampling")
    sigmas = torch.tensor([float(sampling.percent_to_sigma(noise_level)), 0.0])
    sampler = comfy.samplers.sampler_object("euler")
    samples = comfy.sample.fix_empty_latent_channels(patched, latent["samples"][:1])
    noise = comfy.sample.prepare_noise(samples, seed)
    records: dict[str, list[torch.Tensor]] = {p: [] for p in positions}
    for number, conditioning in enumerate(conditionings, start=1):
        seen.clear()
        comfy.sample.sample_custom(
            patched, noise, 1.0, sampler, sigmas, conditioning, conditioning, samples, disable_pbar=True, seed=seed
        )
        missing = [p for p in positions if p not in seen]
        if missing:
            raise RuntimeError(
                f"The model never reached the positions {missing}: another node may replace those "
                "blocks without calling them."
            )
        for position in positions:
            records[position].append(seen[position])
        if progress is not None:
            progress(number, len(conditionings))
    return records
