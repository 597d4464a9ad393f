"""Thin ComfyUI node classes over safety_steer.steering (V3 schema)."""
from comfy_api.latest import ComfyExtension, io

from .apply_conditioning import ApplySafetySteerConditioning
from .apply_model import ApplySafetySteerModel
from .apply_steer import ApplySafetySteerCLIP
from .fit_alignment import FitCrossModelAlignment
from .fit_native import FitNativeDirection
from .load_direction import LoadSafetyDirection, SafetyDirectionInfo
from .mixer import CategoryVectorMixer
from .report import SafetySteerReport
from .safedig_nodes import SAFEDIG_NODES

NODES: list[type[io.ComfyNode]] = [LoadSafetyDirection, SafetyDirectionInfo, FitCrossModelAlignment, FitNativeDirection,
                                     CategoryVectorMixer, ApplySafetySteerCLIP, ApplySafetySteerConditioning,
                                     ApplySafetySteerModel, SafetySteerReport, *SAFEDIG_NODES]


class SafetySteerExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES
