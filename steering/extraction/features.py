"""Pooled hidden states of a text model, at chosen layers, batched and deterministic.

Layer index convention (as transformers' ``hidden_states``): 0 is the embedding output, i is
the output of block i, so a model with L blocks has layers 0..L.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..errors import PromptDataError

POOLINGS = ("mean", "last")

#: progress(done, total) is called after each batch (a tqdm bar, ComfyUI's ProgressBar, ...).
ProgressFn = Callable[[int, int], None]


@torch.inference_mode()
def extract_features(
    model: torch.nn.Module,
    tokenizer,
    prompts: Sequence[str],
    layers: Sequence[int] | None = None,
    pooling: str = "mean",
    batch_size: int = 32,
    max_length: int = 128,
    skip_first_token: bool = False,
    progress: ProgressFn | None = None,
) -> dict[int, torch.Tensor]:
    """Return {layer: [len(prompts), hidden] float32} pooled over each prompt's real tokens.

    Prompts are sorted by length into batches (less padding, same result), and the output is
    returned in the input order. Padding never leaks into a pooled vector: the attention mask
    selects real tokens for "mean"; "last" takes the last real token.

    ``skip_first_token`` leaves position 0 out of the mean (for prompts longer than one token).
    Decoder LLMs turn their first token into an attention sink with massive activations; averaged
    in, it swamps the prompt's content (on SmolLM2 it cut the held-out separation of layers 12-29
    from ~0.91 to ~0.71 AUROC).
    """
    prompts = list(prompts)
    if not prompts:
        raise PromptDataError("No prompts to encode: the prompt list is empty.")
    if any(not isinstance(p, str) or not p.strip() for p in prompts):
        raise PromptDataError("Every prompt must be a non-empty string.")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}.")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    lengths = [len(tokenizer(p, truncation=True, max_length=max_length)["input_ids"]) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: (lengths[i], i))
    outputs: dict[int, torch.Tensor] = {}
    device = next(model.parameters()).device
    done = 0
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        batch = tokenizer(
            [prompts[i] for i in index], return_tensors="pt", padding=True, truncation=True, max_length=max_length
        ).to(device)
        hidden = model(**batch, output_hidden_states=True).hidden_states
        wanted = range(len(hidden)) if layers is None else layers
        mask = batch["attention_mask"].unsqueeze(-1).to(torch.float32)
        if skip_first_token:
            mask[:, 0] = (batch["attention_mask"].sum(1, keepdim=True) == 1).to(torch.float32)
        for layer in wanted:
            if not -len(hidden) <= layer < len(hidden):
                raise ValueError(f"Layer {layer} does not exist: this model has layers 0..{len(hidden) - 1}.")
            states = hidden[layer].to(torch.float32)
            if pooling == "mean":
                pooled = (states * mask).sum(1) / mask.sum(1)
            else:
                last = batch["attention_mask"].sum(1) - 1
                pooled = states[torch.arange(states.shape[0], device=device), last]
            if layer not in outputs:
                outputs[layer] = torch.empty(len(prompts), states.shape[-1])
            outputs[layer][torch.tensor(index)] = pooled.cpu()
        done += len(index)
        if progress is not None:
            progress(done, len(prompts))
    for layer, tensor in outputs.items():
        if not torch.isfinite(tensor).all():
            raise FloatingPointError(f"Layer {layer} produced NaN/Inf features; load the model in float32.")
    return outputs
