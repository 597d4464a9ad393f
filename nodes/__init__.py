"""Thin ComfyUI node classes over safety_steer.steering (V3 schema)."""
from comfy_api.latest import ComfyExtension, io

from .apply_steer import ApplySafetySteerCLIP
from .fit_alignment import FitCrossModelAlignment
from .load_direction import LoadSafetyDirection, SafetyDirectionInfo

NODES: list[type[io.ComfyNode]] = [LoadSafetyDirection, SafetyDirectionInfo, FitCrossModelAlignment,
                                     ApplySafetySteerCLIP]


class SafetySteerExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES
