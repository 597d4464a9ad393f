"""Test-only ComfyUI extension: the stock loaders learn to read this repository's tiny model files.

Never shipped, never part of the pack. conftest's ``tiny_model_server`` symlinks this folder into
the test server's custom_nodes. It registers no nodes; on import it patches the running ComfyUI
(see ``patches.py``) so that CheckpointLoaderSimple, UNETLoader, CLIPLoader, DualCLIPLoader and
VAELoader load the files ``tests/tiny_models.py`` writes. Every patch acts only on tiny widths
(those of tiny_models); full-size files take ComfyUI's own code paths unchanged.
"""

from .patches import install

install()

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
