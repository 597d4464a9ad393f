"""Thin ComfyUI node classes over safety_steer.steering (V3 schema), grouped like the method:
directions/ (load, inspect, fit, mix), apply/ (the three application points and the report),
safedig/ (train, load, adapt, apply). Shared here: socket types, input checks, progress, model
folders, the sampling window, and stubs for the node ids used before the rename."""

from comfy_api.latest import ComfyExtension, io

from .apply.conditioning import SafetySteerApplyConditioning
from .apply.model import SafetySteerApplyModel
from .apply.report import SafetySteerReport
from .apply.text_encoder import SafetySteerApplyTextEncoder
from .directions.fit_alignment import SafetySteerFitCrossModelAlignment
from .directions.fit_native import SafetySteerFitNativeDirection
from .directions.load import SafetySteerDirectionInfo, SafetySteerLoadDirection
from .directions.mixer import SafetySteerCategoryVectorMixer
from .inspector.node import SafetySteerPromptInspector
from .renamed import renamed_stubs
from .safedig.nodes import SAFEDIG_NODES

NODES: list[type[io.ComfyNode]] = [
    SafetySteerPromptInspector,
    SafetySteerLoadDirection,
    SafetySteerDirectionInfo,
    SafetySteerFitCrossModelAlignment,
    SafetySteerFitNativeDirection,
    SafetySteerCategoryVectorMixer,
    SafetySteerApplyTextEncoder,
    SafetySteerApplyConditioning,
    SafetySteerApplyModel,
    SafetySteerReport,
    *SAFEDIG_NODES,
]


class SafetySteerExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        # plus deprecated stubs under the old ids (built here: schemas list the model folders,
        # which exist only once the entry point has registered them)
        return [*NODES, *renamed_stubs(NODES)]
