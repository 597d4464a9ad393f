"""Socket types Safety Steer adds to ComfyUI."""
from comfy_api.latest import io

#: A loaded safety direction pack (steering.DirectionPack) travelling between nodes.
SafetyDirection = io.Custom("SAFETY_DIRECTION")
