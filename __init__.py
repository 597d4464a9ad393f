"""Safety Steer: a ComfyUI node pack that steers generators away from harmful content.

ComfyUI loads this file as the pack's entry point (V3 `comfy_entrypoint`). Importing it outside
ComfyUI (as `safety_steer`) imports nothing from ComfyUI, so `safety_steer.steering` works alone.
"""

__version__ = "0.1.0"

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from .nodes import SafetySteerExtension
    from .nodes.model_folders import register_model_folders

    register_model_folders()  # before node schemas list the folders
    return SafetySteerExtension()
