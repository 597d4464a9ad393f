"""The README's example of the public API (both methods) runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_example_runs():
    text = README.read_text()
    code = re.search(r"<!-- readme-example -->\n```python\n(.*?)```", text, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "README.md example", "exec"), scope)
    steered, hidden = scope["steered"], scope["hidden"]
    assert steered.shape == hidden.shape and not torch.equal(steered, hidden)
    assert scope["cleaned"].shape == scope["unsafe"][0].shape and torch.isfinite(scope["cleaned"]).all()
    assert len(scope["harmful"]) == 8
