"""Training that works wherever it is called from, including inside a ComfyUI prompt.

ComfyUI runs every prompt under ``torch.inference_mode()``: there, autograd records nothing and
every tensor created is an inference tensor, which cannot enter autograd or be updated in place
later. ComfyUI's own training nodes leave inference mode for the training step only and clone
their inputs first; ``trainable`` and ``normal_tensor`` are that pattern, used by every fit in
this package (SAE training and decoder adaptation, the MLP alignment map, the logistic probe).
"""

from __future__ import annotations

import contextlib
import functools

import torch


@contextlib.contextmanager
def trainable():
    """Autograd on and inference mode off for the enclosed block (and nothing else)."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def normal_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` itself when it is an ordinary tensor, else a copy that autograd and in-place
    updates accept (an inference tensor is cloned outside inference mode)."""
    if not tensor.is_inference():
        return tensor
    with torch.inference_mode(False):
        return tensor.clone()


def trains(function):
    """Decorator: run ``function`` under ``trainable()`` with its tensor arguments made normal."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with trainable():
            args = [normal_tensor(a) if torch.is_tensor(a) else a for a in args]
            kwargs = {k: normal_tensor(v) if torch.is_tensor(v) else v for k, v in kwargs.items()}
            return function(*args, **kwargs)

    return wrapper
