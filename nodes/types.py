"""Socket types Safety Steer adds to ComfyUI: a raw pack and an aligned direction are different
things, so the canvas refuses a wrong link before anything runs."""

from comfy_api.latest import io

#: A direction pack in its source model's space (steering.DirectionPack), from Load Safety Direction.
DirectionPackType = io.Custom("SAFETY_DIRECTION_PACK")
#: Directions aligned to one graph's text encoders (AlignedSafetyDirection): from Fit Cross-Model
#: Alignment, Fit Native Direction or Category Vector Mixer; what every Apply node takes.
AlignedDirectionType = io.Custom("ALIGNED_SAFETY_DIRECTION")
