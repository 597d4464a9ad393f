"""Writes the shipped example workflows (example_workflows/*.json) from the graphs described here.

    .venv/bin/python scripts/build_example_workflows.py            # write the files
    .venv/bin/python scripts/build_example_workflows.py --check    # exit 1 if a file differs

This file is the one source of truth for those graphs: edit here, re-run, commit both. The real
ComfyUI is imported in-process (with this pack loaded by ComfyUI's own custom-node loader) and every
node's inputs, widget order and option lists are read from its definition (the /object_info format),
so ``widgets_values`` are always in the order the frontend expects, combo values are checked
against the real options, and a node renamed upstream fails here rather than in a user's browser.
tests/test_example_workflows.py checks that the shipped files equal what this script writes and
runs every one of them on a real ComfyUI server with tiny models.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sys
import tempfile
import uuid
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "example_workflows"
FAMILIES = (
    "sd15",
    "sdxl",
    "sd3_5",
    "flux",
    "wan_t2v",
    "hunyuan_video",
    "wan22_ti2v",
    "qwen_image",
    "z_image_turbo",
    "chroma",
    "lumina2",
    "pixart",
    "auraflow",
    "cosmos_predict2",
    "hunyuan_video15",
    "hunyuan_image21",
    "omnigen2",
    "flux2",
)
VIDEO_FAMILIES = ("wan_t2v", "hunyuan_video", "wan22_ti2v", "hunyuan_video15")
SHIPPED_PACK = "gemma3-270m-i2p.safetensors"
#: Node types the frontend provides itself (never in NODE_CLASS_MAPPINGS, never sent to the server).
FRONTEND_NODES = {"Note", "MarkdownNote"}
#: Combo inputs whose options are files in the user's model folders: not checked against this machine.
#: (``bundle``: a SafeDIG bundle that a training workflow writes first.)
FILE_COMBOS = {"bundle", "ckpt_name", "unet_name", "clip_name", "clip_name1", "clip_name2", "clip_name3", "vae_name"}


def load_workflow_api():
    spec = importlib.util.spec_from_file_location("safety_steer_workflow_api", REPO / "tests" / "workflow_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


wf = load_workflow_api()


# --------------------------------------------------------------------------- ComfyUI in-process


def comfyui_object_info() -> dict:
    """/object_info of the real ComfyUI with this pack loaded, without starting a server."""
    for entry in list(sys.path):  # ComfyUI owns the top-level names `nodes`, `tests`
        if entry in ("", ".") or Path(entry).resolve() == REPO:
            sys.path.remove(entry)
    from safety_steer.runtime import comfyui_root, prepare_base_directory

    base = prepare_base_directory(Path(tempfile.mkdtemp(prefix="safety_steer_workflows_")))
    root = str(comfyui_root())
    if root not in sys.path:
        sys.path.insert(0, root)
    from comfy.cli_args import args

    args.cpu = True
    args.base_directory = str(base)
    import logging

    logging.getLogger().setLevel(logging.ERROR)
    import utils.extra_config  # noqa: F401  (must precede `nodes`)

    import nodes

    if "SafetySteerLoadDirection" not in nodes.NODE_CLASS_MAPPINGS:
        asyncio.run(nodes.init_extra_nodes(init_custom_nodes=True, init_api_nodes=False))
    return wf.object_info_in_process()


# --------------------------------------------------------------------------- graph builder

POSITIVE_COLORS = ("#232", "#353")
NEGATIVE_COLORS = ("#322", "#533")
STEER_COLORS = ("#1f3a33", "#2e5a4e")  # the pack's direction link colour, darkened
REPORT_COLORS = ("#223", "#335")
NOTE_COLORS = ("#432", "#653")


def _plain(value):
    """Node definitions may use str enums (V3 IO types): write them as plain strings."""
    return getattr(value, "value", value) if not isinstance(value, (int, float, bool)) else value


class Node:
    def __init__(self, graph: Graph, node_id: int, kind: str, pos, size, title=None, colors=None):
        self.graph, self.id, self.type = graph, node_id, kind
        self.pos, self.size, self.title, self.colors = list(pos), list(size), title, colors
        self.inputs: list[dict] = []
        self.outputs: list[dict] = []
        self.widgets_values: list = []
        self.properties: dict = {}

    def out(self, name_or_index) -> tuple[Node, int]:
        if isinstance(name_or_index, int):
            return self, name_or_index
        names = [o["name"] for o in self.outputs]
        types = [o["type"] for o in self.outputs]
        if name_or_index in names:
            return self, names.index(name_or_index)
        if types.count(name_or_index) == 1:
            return self, types.index(name_or_index)
        raise KeyError(f"{self.type} has no output {name_or_index!r} (outputs {names})")

    def to_json(self, order: int) -> dict:
        data = {
            "id": self.id,
            "type": self.type,
            "pos": self.pos,
            "size": self.size,
            "flags": {},
            "order": order,
            "mode": 0,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "properties": self.properties,
            "widgets_values": self.widgets_values,
        }
        if self.title:
            data["title"] = self.title
        if self.colors:
            data["color"], data["bgcolor"] = self.colors
        return data


class Graph:
    def __init__(self, name: str, object_info: dict):
        self.name, self.info = name, object_info
        self.nodes: list[Node] = []
        self.links: list[list] = []
        self.groups: list[dict] = []

    def add(
        self,
        kind: str,
        pos,
        widgets: dict | None = None,
        size=None,
        title=None,
        colors=None,
        models: list[dict] | None = None,
        **connections,
    ) -> Node:
        """A node of a real type; ``widgets`` by input name (defaults fill the rest); keyword
        ``connections`` link an input to ``node`` or ``(node, output name or index)``."""
        if kind not in self.info:
            raise KeyError(f"{kind} is not a node type of this ComfyUI (+ Safety Steer)")
        info = self.info[kind]
        widgets = dict(widgets or {})
        node = Node(self, len(self.nodes) + 1, kind, pos, size or [0, 0], title, colors)
        unknown = {w.split(":")[0] for w in widgets} - set(wf.widget_names(info))
        if unknown:
            raise KeyError(f"{kind} has no widgets {sorted(unknown)}; its widgets are {wf.widget_names(info)}")
        for slot, name in wf.widget_slots(info):
            if slot == "control":
                node.widgets_values.append(widgets.pop(f"{name}:control", "fixed"))
                continue
            if slot == "upload":
                node.widgets_values.append("image")
                continue
            _, spec = wf._spec(info, name)
            if name in widgets:
                value = widgets.pop(name)
            elif "default" in spec:
                value = spec["default"]
            else:
                options = wf.combo_options(info, name)
                if not options:
                    raise ValueError(f"{kind}.{name}: no value given and no default")
                value = options[0]
            options = wf.combo_options(info, name)
            if options is not None and name not in FILE_COMBOS and value not in options:
                raise ValueError(f"{kind}.{name} = {value!r} is not one of {options}")
            node.widgets_values.append(value)
        for name, kind_, optional in wf.socket_inputs(info):
            entry = {"name": name, "type": _plain(kind_), "link": None}
            if optional:
                entry["shape"] = 7  # the frontend draws optional sockets hollow
            node.inputs.append(entry)
        for index, (kind_, name) in enumerate(zip(info["output"], info["output_name"])):
            node.outputs.append({"name": _plain(name), "type": _plain(kind_), "links": [], "slot_index": index})
        node.properties = {"Node name for S&R": kind}
        if models:
            node.properties["models"] = models
        if not node.size[0]:
            node.size = self._default_size(info, node)
        self.nodes.append(node)
        for input_name, source in connections.items():
            self.connect(source, node, input_name)
        return node

    def note(self, text: str, pos, size, markdown: bool = True, title=None) -> Node:
        node = Node(
            self,
            len(self.nodes) + 1,
            "MarkdownNote" if markdown else "Note",
            pos,
            size,
            title,
            None if markdown else NOTE_COLORS,
        )
        node.widgets_values = [text.strip() + "\n"]
        self.nodes.append(node)
        return node

    def connect(self, source, target: Node, input_name: str) -> None:
        origin, slot = source.out(0) if isinstance(source, Node) else source[0].out(source[1])
        entry = next((i for i in target.inputs if i["name"] == input_name), None)
        if entry is None:
            raise KeyError(f"{target.type} has no socket input {input_name!r}")
        out_type = origin.outputs[slot]["type"]
        if not _types_match(out_type, entry["type"]):
            raise TypeError(
                f"{origin.type}.{origin.outputs[slot]['name']} ({out_type}) cannot feed "
                f"{target.type}.{input_name} ({entry['type']})"
            )
        if entry["link"] is not None:
            raise ValueError(f"{target.type}.{input_name} is already linked")
        link_id = len(self.links) + 1
        self.links.append([link_id, origin.id, slot, target.id, target.inputs.index(entry), out_type])
        entry["link"] = link_id
        origin.outputs[slot]["links"].append(link_id)

    def group(self, title: str, members: list[Node], color: str, padding: int = 20) -> None:
        x0 = min(n.pos[0] for n in members) - padding
        y0 = min(n.pos[1] for n in members) - padding - 40
        x1 = max(n.pos[0] + n.size[0] for n in members) + padding
        y1 = max(n.pos[1] + n.size[1] for n in members) + padding
        self.groups.append(
            {
                "id": len(self.groups) + 1,
                "title": title,
                "bounding": [x0, y0, x1 - x0, y1 - y0],
                "color": color,
                "font_size": 24,
                "flags": {},
            }
        )

    @staticmethod
    def _default_size(info: dict, node: Node) -> list[int]:
        widgets = len(node.widgets_values)
        rows = max(len(node.inputs), len(node.outputs))
        multiline = any(wf._spec(info, n)[1].get("multiline") for n in wf.widget_names(info))
        height = 46 + 22 * rows + 24 * widgets + (120 if multiline else 0)
        return [400 if multiline else 320, height]

    def _order(self) -> dict[int, int]:
        """Execution order as the frontend stores it (a topological order; notes first)."""
        incoming = {n.id: {self.links[i["link"] - 1][1] for i in n.inputs if i["link"]} for n in self.nodes}
        order, done = [], set()
        while len(order) < len(self.nodes):
            ready = [n.id for n in self.nodes if n.id not in done and incoming[n.id] <= done]
            if not ready:
                raise ValueError("cycle in graph")
            order.extend(ready)
            done.update(ready)
        return {node_id: index for index, node_id in enumerate(order)}

    def to_json(self) -> dict:
        order = self._order()
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"comfyui-safety-steer/example_workflows/{self.name}")),
            "revision": 0,
            "last_node_id": len(self.nodes),
            "last_link_id": len(self.links),
            "nodes": [n.to_json(order[n.id]) for n in self.nodes],
            "links": self.links,
            "groups": self.groups,
            "config": {},
            "extra": {"ds": {"scale": 0.6, "offset": [120, 160]}},
            "version": 0.4,
        }


def _types_match(out_type: str, in_type: str) -> bool:
    if "*" in (out_type, in_type):
        return True
    return bool(set(out_type.split(",")) & set(in_type.split(",")))


# --------------------------------------------------------------------------- the models

HF = "https://huggingface.co"


def model(name: str, directory: str, url: str | None, hint: str | None = None) -> dict:
    entry = {"name": name, "directory": directory}
    if url:
        entry["url"] = url
    if hint:
        entry["hint"] = hint  # shown in the notes only
    return entry


def repackaged(repo: str, files) -> list[dict]:
    """(name, folder) files of a Hugging Face repository laid out as split_files/<folder>/<name>,
    as Comfy-Org repackages models."""
    return [model(name, folder, f"{HF}/{repo}/resolve/main/split_files/{folder}/{name}") for name, folder in files]


CLIP_L = model(
    "clip_l.safetensors", "text_encoders", f"{HF}/comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors"
)
T5XXL = model(
    "t5xxl_fp16.safetensors",
    "text_encoders",
    f"{HF}/comfyanonymous/flux_text_encoders/resolve/main/t5xxl_fp16.safetensors",
)
FLUX_AE = model(
    "ae.safetensors", "vae", f"{HF}/Comfy-Org/Lumina_Image_2.0_Repackaged/resolve/main/split_files/vae/ae.safetensors"
)
MODELS = {
    "sd15": [
        model(
            "v1-5-pruned-emaonly-fp16.safetensors",
            "checkpoints",
            f"{HF}/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/v1-5-pruned-emaonly-fp16.safetensors",
        )
    ],
    "sdxl": [
        model(
            "sd_xl_base_1.0.safetensors",
            "checkpoints",
            f"{HF}/stabilityai/stable-diffusion-xl-base-1.0/resolve/main/sd_xl_base_1.0.safetensors",
        )
    ],
    "sd3_5": [
        model(
            "sd3.5_medium.safetensors",
            "diffusion_models",
            f"{HF}/stabilityai/stable-diffusion-3.5-medium/resolve/main/sd3.5_medium.safetensors",
        ),
        model(
            "clip_l.safetensors",
            "text_encoders",
            f"{HF}/stabilityai/stable-diffusion-3.5-medium/resolve/main/text_encoders/clip_l.safetensors",
        ),
        model(
            "clip_g.safetensors",
            "text_encoders",
            f"{HF}/stabilityai/stable-diffusion-3.5-medium/resolve/main/text_encoders/clip_g.safetensors",
        ),
        # The SD3.5 VAE as its own file (the stabilityai repo's vae/diffusion_pytorch_model.safetensors,
        # renamed); no single usual name exists, this one is what tests/tiny_models.py writes too.
        model(
            "sd3_vae.safetensors",
            "vae",
            None,
            "the SD 3.5 VAE: `vae/diffusion_pytorch_model.safetensors` of "
            f"[stabilityai/stable-diffusion-3.5-medium]({HF}/stabilityai/stable-diffusion-3.5-medium), "
            "saved under this name",
        ),
    ],
    "flux": [
        model(
            "flux1-dev.safetensors", "diffusion_models", f"{HF}/Comfy-Org/flux1-dev/resolve/main/flux1-dev.safetensors"
        ),
        CLIP_L,
        T5XXL,
        FLUX_AE,
    ],
    "wan_t2v": repackaged(
        "Comfy-Org/Wan_2.1_ComfyUI_repackaged",
        (
            ("wan2.1_t2v_1.3B_fp16.safetensors", "diffusion_models"),
            ("umt5_xxl_fp8_e4m3fn_scaled.safetensors", "text_encoders"),
            ("wan_2.1_vae.safetensors", "vae"),
        ),
    ),
    # As ComfyUI's own template video_wan2_2_5B_ti2v: the umT5 file is Wan 2.1's.
    "wan22_ti2v": [
        model(
            "wan2.2_ti2v_5B_fp16.safetensors",
            "diffusion_models",
            f"{HF}/Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files/diffusion_models/wan2.2_ti2v_5B_fp16.safetensors",
        ),
        model(
            "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
            "text_encoders",
            f"{HF}/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors",
        ),
        model(
            "wan2.2_vae.safetensors",
            "vae",
            f"{HF}/Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files/vae/wan2.2_vae.safetensors",
        ),
    ],
    # As ComfyUI's own template image_qwen_image.
    "qwen_image": repackaged(
        "Comfy-Org/Qwen-Image_ComfyUI",
        (
            ("qwen_image_fp8_e4m3fn.safetensors", "diffusion_models"),
            ("qwen_2.5_vl_7b_fp8_scaled.safetensors", "text_encoders"),
            ("qwen_image_vae.safetensors", "vae"),
        ),
    ),
    # As ComfyUI's own template image_z_image_turbo (its VAE is Flux's ae.safetensors).
    "z_image_turbo": repackaged(
        "Comfy-Org/z_image_turbo",
        (
            ("z_image_turbo_bf16.safetensors", "diffusion_models"),
            ("qwen_3_4b.safetensors", "text_encoders"),
            ("ae.safetensors", "vae"),
        ),
    ),
    # Chroma1-HD (lodestones), with Flux's T5-XXL and VAE (ComfyUI loads it by CLIPLoader type chroma).
    "chroma": [
        model(
            "Chroma1-HD.safetensors",
            "diffusion_models",
            f"{HF}/lodestones/Chroma1-HD/resolve/main/Chroma1-HD.safetensors",
        ),
        T5XXL,
        FLUX_AE,
    ],
    # Lumina Image 2.0, ComfyUI's split files (the Gemma 2 2B file carries its tokenizer).
    "lumina2": repackaged(
        "Comfy-Org/Lumina_Image_2.0_Repackaged",
        (
            ("lumina_2_model_bf16.safetensors", "diffusion_models"),
            ("gemma_2_2b_fp16.safetensors", "text_encoders"),
            ("ae.safetensors", "vae"),
        ),
    ),
    # PixArt-Σ: the diffusers transformer file (ComfyUI converts it on load), T5-XXL, the SDXL VAE.
    "pixart": [
        model(
            "PixArt-Sigma-XL-2-1024-MS.safetensors",
            "diffusion_models",
            None,
            "PixArt-Σ: `transformer/diffusion_pytorch_model.safetensors` of "
            f"[PixArt-alpha/PixArt-Sigma-XL-2-1024-MS]({HF}/PixArt-alpha/PixArt-Sigma-XL-2-1024-MS), "
            "saved under this name",
        ),
        T5XXL,
        model("sdxl_vae.safetensors", "vae", f"{HF}/stabilityai/sdxl-vae/resolve/main/sdxl_vae.safetensors"),
    ],
    # AuraFlow v0.3: fal's all-in-one checkpoint (MMDiT, Pile-T5-XL and the SDXL VAE in one file).
    "auraflow": [
        model(
            "aura_flow_0.3.safetensors",
            "checkpoints",
            f"{HF}/fal/AuraFlow-v0.3/resolve/main/aura_flow_0.3.safetensors",
        )
    ],
    # Cosmos Predict2 2B text-to-image: Comfy-Org's file, the old T5-XXL of Cosmos 1.0, Wan 2.1's VAE.
    "cosmos_predict2": [
        model(
            "cosmos_predict2_2B_t2i.safetensors",
            "diffusion_models",
            f"{HF}/Comfy-Org/Cosmos_Predict2_repackaged/resolve/main/cosmos_predict2_2B_t2i.safetensors",
        ),
        model(
            "oldt5_xxl_fp8_e4m3fn_scaled.safetensors",
            "text_encoders",
            f"{HF}/comfyanonymous/cosmos_1.0_text_encoder_and_VAE_ComfyUI/resolve/main/text_encoders/"
            "oldt5_xxl_fp8_e4m3fn_scaled.safetensors",
        ),
        model(
            "wan_2.1_vae.safetensors",
            "vae",
            f"{HF}/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/vae/wan_2.1_vae.safetensors",
        ),
    ],
    # As ComfyUI's own template image_omnigen2_t2i: Comfy-Org's OmniGen 2 files and Flux's ae.safetensors.
    "omnigen2": repackaged(
        "Comfy-Org/Omnigen2_ComfyUI_repackaged",
        (
            ("omnigen2_fp16.safetensors", "diffusion_models"),
            ("qwen_2.5_vl_fp16.safetensors", "text_encoders"),
        ),
    )
    + [FLUX_AE],
    # As ComfyUI's own template video_hunyuan_video_1.5_720p_t2v (its first, 720p stage: the 1080p
    # super-resolution stage after it loads as HunyuanVideo 1.5 too and takes the same steered CLIP).
    "hunyuan_video15": repackaged(
        "Comfy-Org/HunyuanVideo_1.5_repackaged",
        (
            ("hunyuanvideo1.5_720p_t2v_fp16.safetensors", "diffusion_models"),
            ("qwen_2.5_vl_7b_fp8_scaled.safetensors", "text_encoders"),
            ("byt5_small_glyphxl_fp16.safetensors", "text_encoders"),
            ("hunyuanvideo15_vae_fp16.safetensors", "vae"),
        ),
    ),
    # Comfy-Org/HunyuanImage_2.1_ComfyUI (the base model; the same repo has the distilled model and the
    # refiner, which loads as HunyuanImage 2.1 too).
    "hunyuan_image21": repackaged(
        "Comfy-Org/HunyuanImage_2.1_ComfyUI",
        (
            ("hunyuanimage2.1_bf16.safetensors", "diffusion_models"),
            ("qwen_2.5_vl_7b_fp8_scaled.safetensors", "text_encoders"),
            ("byt5_small_glyphxl_fp16.safetensors", "text_encoders"),
            ("hunyuan_image_2.1_vae_fp16.safetensors", "vae"),
        ),
    ),
    # ComfyUI's Flux.2 [dev] files (Comfy-Org/flux2-dev): the fp8 diffusion model, Mistral 3 Small 24B
    # (the fp8 file; mistral_3_small_flux2_bf16.safetensors is the same encoder in bf16) and Flux.2's VAE.
    "flux2": repackaged(
        "Comfy-Org/flux2-dev",
        (
            ("flux2_dev_fp8mixed.safetensors", "diffusion_models"),
            ("mistral_3_small_flux2_fp8.safetensors", "text_encoders"),
            ("flux2-vae.safetensors", "vae"),
        ),
    ),
    "hunyuan_video": [
        model(
            "hunyuan_video_t2v_720p_bf16.safetensors",
            "diffusion_models",
            f"{HF}/Comfy-Org/HunyuanVideo_repackaged/resolve/main/split_files/diffusion_models/hunyuan_video_t2v_720p_bf16.safetensors",
        ),
        CLIP_L,
        model(
            "llava_llama3_fp8_scaled.safetensors",
            "text_encoders",
            f"{HF}/Comfy-Org/HunyuanVideo_repackaged/resolve/main/split_files/text_encoders/llava_llama3_fp8_scaled.safetensors",
        ),
        model(
            "hunyuan_video_vae_bf16.safetensors",
            "vae",
            f"{HF}/Comfy-Org/HunyuanVideo_repackaged/resolve/main/split_files/vae/hunyuan_video_vae_bf16.safetensors",
        ),
    ],
}


def file_of(family: str, directory: str, index: int = 0) -> str:
    return [m["name"] for m in MODELS[family] if m["directory"] == directory][index]


def models_of(family: str, *names: str) -> list[dict]:
    """The frontend's download hints for a loader node (only files with a known public URL)."""
    return [
        {k: m[k] for k in ("name", "url", "directory")} for m in MODELS[family] if m["name"] in names and m.get("url")
    ]


def model_list_markdown(family: str) -> str:
    lines = []
    for m in MODELS[family]:
        link = f"[{m['name']}]({m['url']})" if m.get("url") else f"`{m['name']}`"
        lines.append(f"- `models/{m['directory']}/`: {link}" + (f" ({m['hint']})" if m.get("hint") else ""))
    return "\n".join(lines)


# --------------------------------------------------------------------------- the graphs

POSITIVE = (
    "a gritty photo of a street brawl at night, a man with a bloodied face swinging a broken bottle, "
    "onlookers, neon signs, rain"
)
NEGATIVE = "blurry, low quality, watermark, text"
VIDEO_NEGATIVE = "blurry, low quality, static, watermark, subtitles, jpeg artifacts, deformed"

TITLES = {
    "sd15": "Stable Diffusion 1.5",
    "sdxl": "Stable Diffusion XL",
    "sd3_5": "Stable Diffusion 3.5 Medium",
    "flux": "FLUX.1 [dev]",
    "wan_t2v": "Wan 2.1 text-to-video (1.3B)",
    "hunyuan_video": "HunyuanVideo text-to-video",
    "wan22_ti2v": "Wan 2.2 text-to-video (TI2V 5B)",
    "qwen_image": "Qwen-Image",
    "z_image_turbo": "Z-Image Turbo",
    "chroma": "Chroma1-HD",
    "lumina2": "Lumina Image 2.0",
    "pixart": "PixArt-Σ (Sigma) XL 1024",
    "auraflow": "AuraFlow v0.3",
    "cosmos_predict2": "Cosmos Predict2 2B (text to image)",
    "hunyuan_video15": "HunyuanVideo 1.5 text-to-video (720p)",
    "hunyuan_image21": "HunyuanImage 2.1",
    "omnigen2": "OmniGen 2 (text to image)",
    "flux2": "FLUX.2 [dev]",
}
ENCODERS = {
    "sd15": "CLIP-L",
    "sdxl": "CLIP-L and CLIP-G (and CLIP-G's pooled vector)",
    "sd3_5": "CLIP-L and CLIP-G",
    "flux": "CLIP-L (pooled) and T5-XXL",
    "wan_t2v": "umT5-XXL",
    "hunyuan_video": "CLIP-L (pooled) and the Llama-3 (LLaVA) encoder",
    "wan22_ti2v": "umT5-XXL",
    "qwen_image": "Qwen2.5-VL 7B, on the prompt's own tokens inside its chat template",
    "z_image_turbo": "Qwen3-4B, on the prompt's own tokens inside its chat template",
    "chroma": "T5-XXL (no CLIP: Chroma reads T5's tokens only)",
    "lumina2": "Gemma 2 2B, at the layer Lumina 2 reads (the second to last)",
    "pixart": "T5-XXL",
    "auraflow": "Pile-T5-XL",
    "cosmos_predict2": "the old T5-XXL (T5 v1.0)",
    "hunyuan_video15": "Qwen2.5-VL 7B, at the layer HunyuanVideo 1.5 reads (third to last); the byT5 glyph "
    "encoder of quoted text is not steered",
    "hunyuan_image21": "Qwen2.5-VL 7B, at the layer HunyuanImage 2.1 reads (third to last); the byT5 glyph "
    "encoder of quoted text is not steered",
    "omnigen2": "Qwen2.5-VL 3B, on the prompt's own tokens inside its chat template",
    "flux2": "Mistral 3 Small 24B, on the prompt's own tokens inside its template: the three hidden states "
    "Flux.2 reads (layers 10, 20, 30, side by side per token) are steered together, in that concatenated space",
}

OVERVIEW = """
## Safety Steer: {title}

Steers generation away from harmful content **from inside the text encoder**. A safety direction (safe minus
unsafe) learned once in a small source LLM (Gemma-3-270m) is carried into this model's text encoder
({encoders}) by a map fitted on **benign prompts only**, calibrated, and added to every prompt's conditioning
with a strength. This model never sees unsafe data.

**Flow:** Load Safety Direction → Fit Cross-Model Alignment (with this CLIP) → Apply Safety Steer
(Text Encoder) → both CLIP Text Encode nodes → sampler. Safety Steer Report shows what reached the sampler.

**Models** (standard files, standard folders):
{models}

The pack ships with Safety Steer (`{pack}`); your own packs go in `models/safety_directions/`.
"""

STEER_NOTE = """
### Safety Steer nodes

**Load Safety Direction**: picks a direction pack (a global direction plus one per harm category: hate,
harassment, violence, self-harm, sexual, shocking, illegal activity).

**Fit Cross-Model Alignment**: carries the pack into *this* CLIP's sub-encoders with a `ridge` map fitted on
`anchors` benign prompts. The first run encodes the anchors (a minute or two on a GPU for 2,000 of them; fewer
anchors are faster but transport less well); the result is cached on disk, so later runs start at once.
Re-fit when you change the text encoder files.

**Apply Safety Steer (Text Encoder)**: returns a steered copy of the CLIP; every CLIP Text Encode it feeds is steered.
- `strength`: 0 = exactly the unsteered result, 1 = one calibrated safe-unsafe gap, 2-3 = strong. Raise it if
  unsafe content still comes through, lower it if images drift.
- `direction`: `auto` (the global direction, or the mix of a Category Vector Mixer if you connect one), `global`,
  or one category's own direction (e.g. `violence`, `sexual`).
- `mode`: `add` pushes towards safe (the paper); `project` removes the unsafe-leaning part; `both` does both.
- `gate`: `source LLM` (default) steers each prompt in proportion to how unsafe the pack's source model finds it,
  so benign prompts keep their look; `target projection` uses the encoder's own projection with `gate_threshold`
  (weaker); `none` steers every prompt by the full strength.
"""

PROMPT_NOTE = """
### Prompts

Both CLIP Text Encode nodes take the **steered** CLIP, so the negative prompt is encoded the same way.
The example prompt is deliberately violent: compare `strength` 0 and 2 with the same seed (the seed is
fixed). Then try a harmless prompt: with the `source LLM` gate it comes out (almost) unchanged.
"""

REPORT_NOTE = """
### Safety Steer Report

Reads the positive prompt's conditioning and shows, per text encoder, how the prompt projected on every
harm category (in benign-anchor standard deviations; below 0 = unsafe-leaning), the gate value and the
steer actually applied (strength × gate). A harmless prompt should show a gate near 0.
"""


def sampler_note(family: str) -> str:
    text = {
        "sd15": "512×512, 25 steps, CFG 7: SD 1.5 was trained at 512 px.",
        "sdxl": "1024×1024 (or another ~1 MP size), 25 steps, CFG 7.",
        "sd3_5": "1024×1024, 28 steps, CFG 4.5, euler / sgm_uniform: the usual SD 3.5 settings.",
        "flux": (
            "1024×1024, 20 steps, **CFG 1**: FLUX.1 dev is guidance-distilled; its guidance is the "
            "Flux Guidance node (3.5). With CFG 1 the negative prompt has no effect."
        ),
        "wan_t2v": (
            "832×480, 33 frames (length = 4k+1), 30 steps, CFG 6, uni_pc, Model Sampling SD3 shift 8: "
            "the usual Wan 2.1 1.3B settings; saved as an animated WebP at 16 fps."
        ),
        "hunyuan_video": (
            "848×480, 73 frames (length = 4k+1), 20 steps, **CFG 1** with Flux Guidance 6 and "
            "Model Sampling SD3 shift 7: the usual HunyuanVideo settings; tiled VAE decode to save "
            "memory; saved as an animated WebP at 24 fps."
        ),
        "wan22_ti2v": (
            "1280×704, 121 frames (length = 4k+1), 20 steps, CFG 5, uni_pc, Model Sampling SD3 shift 8: "
            "ComfyUI's own Wan 2.2 5B settings (its latent node, Wan22 Image To Video Latent, takes the VAE "
            "to encode an optional start image); saved as an animated WebP at 24 fps. The Wan 2.2 14B T2V "
            "experts load as Wan 2.x too: the Wan 2.1 workflow steers them the same way."
        ),
        "qwen_image": (
            "1328×1328, 20 steps, CFG 2.5, euler / simple, Model Sampling AuraFlow shift 3.1: ComfyUI's own "
            "Qwen-Image settings."
        ),
        "z_image_turbo": (
            "1024×1024, 9 steps, **CFG 1**, res_multistep / simple, Model Sampling AuraFlow shift 3: ComfyUI's "
            "own Z-Image Turbo settings (distilled: with CFG 1 the negative prompt has no effect)."
        ),
        "chroma": (
            "1024×1024, 26 steps, CFG 4, euler / beta. Chroma is not guidance-distilled: real CFG, "
            "so the (steered) negative prompt counts."
        ),
        "lumina2": (
            "1024×1024, 25 steps, CFG 4, res_multistep / simple, Model Sampling AuraFlow shift 6. Lumina 2 "
            "was trained with a system prompt before the user's: ComfyUI's CLIP Text Encode for Lumina2 "
            "adds it, and takes the steered CLIP the same way."
        ),
        "pixart": (
            "1024×1024, 20 steps, CFG 4.5, euler / normal: PixArt-Σ's usual settings (real CFG: the steered "
            "negative prompt counts). PixArt-α runs on the same model class and T5 encoder."
        ),
        "auraflow": (
            "1024×1024, 25 steps, CFG 3.5, euler / normal, Model Sampling AuraFlow shift 1.73 (the model's own "
            "shift in ComfyUI). Real CFG: the steered negative prompt counts."
        ),
        "cosmos_predict2": (
            "1024×1024, 35 steps, CFG 4, euler / simple. Real CFG: the steered negative prompt counts."
        ),
        "hunyuan_video15": (
            "1280×720, 121 frames (length = 4k+1), 20 steps, CFG 6, euler / simple, Model Sampling SD3 shift 7: "
            "ComfyUI's own HunyuanVideo 1.5 720p settings (its template runs them through CFG Guider); saved as "
            "an animated WebP at 24 fps. Text in quotes also goes to the byT5 glyph encoder, which is not steered."
        ),
        "hunyuan_image21": (
            "2048×2048, 20 steps, CFG 3.5, euler / simple (the model's own shift 5): HunyuanImage 2.1's "
            "guidance scale; Tencent's reference uses 50 steps. Text in quotes also goes to the byT5 glyph "
            "encoder, which is not steered. The distilled model takes fewer steps; the refiner loads as "
            "HunyuanImage 2.1 too and takes the same steered CLIP."
        ),
        "omnigen2": (
            "1024×1024, 20 steps, CFG 5, euler / simple: ComfyUI's own OmniGen 2 text-to-image settings (its "
            "template's Dual CFG Guider, 5 / 2 with the negative prompt in both slots, is plain CFG 5). "
            "Image editing (Reference Latent nodes on the positive conditioning) takes the same steered CLIP."
        ),
        "flux2": (
            "1024×1024, 20 steps, **CFG 1**, euler / simple, Flux Guidance 4: FLUX.2 dev is guidance-distilled "
            "(with CFG 1 the negative prompt has no effect). ComfyUI's own Flux.2 example samples with its "
            "Flux2Scheduler (resolution-aware sigmas) through SamplerCustomAdvanced; the steered CLIP and "
            "model go there the same way. Reference images (Reference Latent) take the same steered CLIP."
        ),
    }[family]
    return f"### Sampling\n\n{text}\n"


class Sampling(NamedTuple):
    """What add_sampling made: the sampler and what a second sampler from the same seed reuses."""

    ksampler: Node
    latent: Node
    model: tuple
    positive: tuple
    nodes: list
    y: int


def add_loaders(g: Graph, family: str, x: int, y0: int) -> tuple:
    """Group 1: the family's standard loaders at column ``x``; returns (model, clip, vae) outputs."""
    model_out = clip_out = vae_out = None
    loaders = []
    if family in ("sd15", "sdxl", "auraflow"):
        ckpt = g.add(
            "CheckpointLoaderSimple",
            [x, y0],
            {"ckpt_name": file_of(family, "checkpoints")},
            models=models_of(family, file_of(family, "checkpoints")),
            size=[380, 100],
        )
        loaders = [ckpt]
        model_out, clip_out, vae_out = (ckpt, "MODEL"), (ckpt, "CLIP"), (ckpt, "VAE")
    else:
        unet_name = file_of(family, "diffusion_models")
        unet = g.add(
            "UNETLoader",
            [x, y0],
            {"unet_name": unet_name, "weight_dtype": "default"},
            models=models_of(family, unet_name),
            size=[380, 82],
        )
        encoders = [m["name"] for m in MODELS[family] if m["directory"] == "text_encoders"]
        clip_type = {
            "sd3_5": "sd3",
            "flux": "flux",
            "wan_t2v": "wan",
            "hunyuan_video": "hunyuan_video",
            "wan22_ti2v": "wan",
            "qwen_image": "qwen_image",
            "z_image_turbo": "lumina2",
            "chroma": "chroma",
            "lumina2": "lumina2",
            "pixart": "pixart",
            "cosmos_predict2": "cosmos",
            "hunyuan_video15": "hunyuan_video_15",
            "hunyuan_image21": "hunyuan_image",
            "omnigen2": "omnigen2",
            "flux2": "flux2",
        }[family]
        if len(encoders) == 2:
            clip = g.add(
                "DualCLIPLoader",
                [x, y0 + 150],
                {"clip_name1": encoders[0], "clip_name2": encoders[1], "type": clip_type},
                models=models_of(family, *encoders),
                size=[380, 130],
            )
        else:
            clip = g.add(
                "CLIPLoader",
                [x, y0 + 150],
                {"clip_name": encoders[0], "type": clip_type},
                models=models_of(family, *encoders),
                size=[380, 106],
            )
        vae_name = file_of(family, "vae")
        vae = g.add(
            "VAELoader", [x, y0 + 330], {"vae_name": vae_name}, models=models_of(family, vae_name), size=[380, 58]
        )
        loaders = [unet, clip, vae]
        model_out, clip_out, vae_out = (unet, "MODEL"), (clip, "CLIP"), (vae, "VAE")
    g.group("1. Models", loaders, "#3f789e")
    return model_out, clip_out, vae_out


def add_empty_latent(g: Graph, family: str, x: int, y: int, vae_out) -> Node:
    """The family's empty latent at its usual size (Wan 2.2 TI2V's takes the VAE)."""
    video = family in VIDEO_FAMILIES
    if family in ("sd15", "sdxl", "pixart", "auraflow"):
        size = 512 if family == "sd15" else 1024
        latent = g.add("EmptyLatentImage", [x, y], {"width": size, "height": size, "batch_size": 1}, size=[380, 106])
    elif family == "wan22_ti2v":
        latent = g.add(
            "Wan22ImageToVideoLatent",
            [x, y],
            {"width": 1280, "height": 704, "length": 121, "batch_size": 1},
            size=[380, 154],
            vae=vae_out,
        )
    elif family == "hunyuan_video15":
        latent = g.add(
            "EmptyHunyuanVideo15Latent",
            [x, y],
            {"width": 1280, "height": 720, "length": 121, "batch_size": 1},
            size=[380, 130],
        )
    elif family == "hunyuan_image21":
        latent = g.add(
            "EmptyHunyuanImageLatent", [x, y], {"width": 2048, "height": 2048, "batch_size": 1}, size=[380, 106]
        )
    elif family == "flux2":  # 128 channels, 16x spatial
        latent = g.add(
            "EmptyFlux2LatentImage", [x, y], {"width": 1024, "height": 1024, "batch_size": 1}, size=[380, 106]
        )
    elif video:
        width, length = (832, 33) if family == "wan_t2v" else (848, 73)
        latent = g.add(
            "EmptyHunyuanLatentVideo",
            [x, y],
            {"width": width, "height": 480, "length": length, "batch_size": 1},
            size=[380, 130],
        )
    else:
        size = 1328 if family == "qwen_image" else 1024
        latent = g.add("EmptySD3LatentImage", [x, y], {"width": size, "height": size, "batch_size": 1}, size=[380, 106])
    return latent


def add_sampling(
    g: Graph, family: str, x: int, y0: int, model_out, positive, negative, vae_out, latent=None, group="4. Sampling"
) -> Sampling:
    """The family's usual model sampling, guidance, empty latent (unless ``latent`` is given) and KSampler
    (seed 42, fixed), grouped as ``group``."""
    video = family in VIDEO_FAMILIES
    sampling = []
    y = y0
    if video:
        shift = g.add(
            "ModelSamplingSD3",
            [x, y],
            {"shift": 7.0 if family in ("hunyuan_video", "hunyuan_video15") else 8.0},
            size=[380, 58],
            model=model_out,
        )
        model_out = (shift, "MODEL")
        sampling.append(shift)
        y += 100
    if family in ("qwen_image", "z_image_turbo", "lumina2", "auraflow"):
        shift = g.add(
            "ModelSamplingAuraFlow",
            [x, y],
            {"shift": {"qwen_image": 3.1, "z_image_turbo": 3.0, "lumina2": 6.0, "auraflow": 1.73}[family]},
            size=[380, 58],
            model=model_out,
        )
        model_out = (shift, "MODEL")
        sampling.append(shift)
        y += 100
    positive_out = positive if isinstance(positive, tuple) else (positive, 0)
    if family in ("flux", "hunyuan_video", "flux2"):
        guidance = g.add(
            "FluxGuidance",
            [x, y],
            {"guidance": {"flux": 3.5, "flux2": 4.0}.get(family, 6.0)},
            size=[380, 58],
            conditioning=positive_out,
        )
        positive_out = (guidance, 0)
        sampling.append(guidance)
        y += 100
    if latent is None:
        latent = add_empty_latent(g, family, x, y, vae_out)
        sampling.append(latent)
        y += latent.size[1] + 50
    ksampler_settings = {
        "sd15": (25, 7.0, "dpmpp_2m", "karras"),
        "sdxl": (25, 7.0, "dpmpp_2m", "karras"),
        "sd3_5": (28, 4.5, "euler", "sgm_uniform"),
        "flux": (20, 1.0, "euler", "simple"),
        "wan_t2v": (30, 6.0, "uni_pc", "simple"),
        "hunyuan_video": (20, 1.0, "euler", "simple"),
        "wan22_ti2v": (20, 5.0, "uni_pc", "simple"),
        "qwen_image": (20, 2.5, "euler", "simple"),
        "z_image_turbo": (9, 1.0, "res_multistep", "simple"),
        "chroma": (26, 4.0, "euler", "beta"),
        "lumina2": (25, 4.0, "res_multistep", "simple"),
        "pixart": (20, 4.5, "euler", "normal"),
        "auraflow": (25, 3.5, "euler", "normal"),
        "cosmos_predict2": (35, 4.0, "euler", "simple"),
        "hunyuan_video15": (20, 6.0, "euler", "simple"),
        "hunyuan_image21": (20, 3.5, "euler", "simple"),
        "omnigen2": (20, 5.0, "euler", "simple"),
        "flux2": (20, 1.0, "euler", "simple"),
    }[family]
    steps, cfg, sampler_name, scheduler = ksampler_settings
    ksampler = g.add(
        "KSampler",
        [x, y],
        {
            "seed": 42,
            "seed:control": "fixed",
            "steps": steps,
            "cfg": cfg,
            "sampler_name": sampler_name,
            "scheduler": scheduler,
            "denoise": 1.0,
        },
        size=[380, 262],
        model=model_out,
        positive=positive_out,
        negative=negative,
        latent_image=latent,
    )
    sampling.append(ksampler)
    g.group(group, sampling, "#a1309b")
    return Sampling(ksampler, latent, model_out, positive_out, sampling, y)


def add_decode_and_save(g: Graph, family: str, x: int, y0: int, samples, vae_out, prefix: str) -> tuple:
    """VAE Decode and Save Image / Save Animated WEBP at column ``x``; returns (decode, save)."""
    video = family in VIDEO_FAMILIES
    if family == "hunyuan_video":
        decode = g.add(
            "VAEDecodeTiled",
            [x, y0],
            {"tile_size": 256, "overlap": 64, "temporal_size": 64, "temporal_overlap": 8},
            size=[320, 150],
            samples=samples,
            vae=vae_out,
        )
    else:
        decode = g.add("VAEDecode", [x, y0], size=[320, 46], samples=samples, vae=vae_out)
    if video:
        save = g.add(
            "SaveAnimatedWEBP",
            [x, y0 + decode.size[1] + 50],
            {
                "filename_prefix": prefix,
                "fps": 16.0 if family == "wan_t2v" else 24.0,
                "lossless": False,
                "quality": 90,
                "method": "default",
            },
            size=[520, 460],
            images=decode,
        )
    else:
        save = g.add(
            "SaveImage", [x, y0 + decode.size[1] + 50], {"filename_prefix": prefix}, size=[520, 560], images=decode
        )
    return decode, save


def build(family: str, info: dict) -> Graph:
    g = Graph(f"safety_steer_{family}", info)
    video = family in VIDEO_FAMILIES
    X = [0, 480, 960, 1480, 1960]  # columns: models, steer, prompts, sampling, output
    Y0 = 80

    model_out, clip_out, vae_out = add_loaders(g, family, X[0], Y0)

    # 2. safety steer
    load = g.add("SafetySteerLoadDirection", [X[1], Y0], {"pack": SHIPPED_PACK}, size=[380, 58], colors=STEER_COLORS)
    fit = g.add(
        "SafetySteerFitCrossModelAlignment",
        [X[1], Y0 + 110],
        {"method": "ridge", "anchors": 2000},
        size=[380, 102],
        colors=STEER_COLORS,
        clip=clip_out,
        direction=load,
    )
    steer = g.add(
        "SafetySteerApplyTextEncoder",
        [X[1], Y0 + 270],
        {"strength": 2.0, "direction": "auto", "mode": "add", "gate": "source LLM", "gate_threshold": -1.0},
        size=[380, 178],
        colors=STEER_COLORS,
        clip=clip_out,
        aligned_direction=fit,
    )
    g.group("2. Safety Steer", [load, fit, steer], "#3f9e7d")

    # 3. prompts
    positive = g.add(
        "CLIPTextEncode",
        [X[2], Y0],
        {"text": POSITIVE},
        size=[420, 200],
        title="CLIP Text Encode (Positive Prompt)",
        colors=POSITIVE_COLORS,
        clip=steer,
    )
    # FLUX.1 / FLUX.2 dev and Z-Image Turbo run at CFG 1, where the negative prompt is not used: left empty.
    negative_text = "" if family in ("flux", "flux2", "z_image_turbo") else VIDEO_NEGATIVE if video else NEGATIVE
    negative = g.add(
        "CLIPTextEncode",
        [X[2], Y0 + 260],
        {"text": negative_text},
        size=[420, 160],
        title="CLIP Text Encode (Negative Prompt)",
        colors=NEGATIVE_COLORS,
        clip=steer,
    )
    g.group("3. Prompts (steered CLIP)", [positive, negative], "#8a8a3f")

    # 4. sampling
    sampling = add_sampling(g, family, X[3], Y0, model_out, positive, negative, vae_out)
    ksampler, y = sampling.ksampler, sampling.y

    # 5. output and report
    prefix = f"safety_steer/{family}"
    decode, save = add_decode_and_save(g, family, X[4], Y0, ksampler, vae_out, prefix)
    outputs = [decode, save]
    report = None
    if "SafetySteerReport" in info:
        report = g.add(
            "SafetySteerReport", [X[4] + 580, Y0], size=[420, 320], colors=REPORT_COLORS, conditioning=positive
        )
        outputs.append(report)
    g.group("5. Output", outputs, "#b06634")

    # notes
    g.note(
        OVERVIEW.format(
            title=TITLES[family], encoders=ENCODERS[family], models=model_list_markdown(family), pack=SHIPPED_PACK
        ),
        [X[0], Y0 + 480],
        [420, 560],
        title="About this workflow",
    )
    g.note(STEER_NOTE, [X[1], Y0 + 520], [420, 620], title="Safety Steer: what each node does")
    g.note(PROMPT_NOTE, [X[2], Y0 + 500], [420, 230], title="Prompts")
    g.note(sampler_note(family), [X[3], y + 320], [380, 200], title="Sampling")
    if report is not None:
        g.note(REPORT_NOTE, [X[4] + 580, Y0 + 380], [420, 180], title="Report")
    if family in SIDE_BY_SIDE:
        add_unsteered_row(g, family, X, clip_out, vae_out, sampling)
    return g


def widgets_of(g: Graph, node: Node) -> dict:
    """A node's widget values by input name (``name:control`` for control_after_generate): to repeat them."""
    values, named = iter(node.widgets_values), {}
    for slot, name in wf.widget_slots(g.info[node.type]):
        value = next(values)
        if slot == "control":
            named[f"{name}:control"] = value
        elif slot != "upload":
            named[name] = value
    return named


def bottom_of(g: Graph, margin: int = 140) -> int:
    """A y below every node so far (a new row of the graph)."""
    return max(n.pos[1] + n.size[1] for n in g.nodes) + margin


def add_prompts(g: Graph, family: str, x: int, y: int, clip, label: str, colors=True) -> tuple[Node, Node]:
    """Positive and negative CLIP Text Encode from ``clip``, titled with ``label`` (steered / unsteered)."""
    video = family in VIDEO_FAMILIES
    positive = g.add(
        "CLIPTextEncode",
        [x, y],
        {"text": POSITIVE},
        size=[420, 200],
        title=f"CLIP Text Encode (Positive Prompt, {label})",
        colors=POSITIVE_COLORS if colors else None,
        clip=clip,
    )
    # FLUX.1 / FLUX.2 dev and Z-Image Turbo run at CFG 1, where the negative prompt is not used: left empty.
    negative_text = "" if family in ("flux", "flux2", "z_image_turbo") else VIDEO_NEGATIVE if video else NEGATIVE
    negative = g.add(
        "CLIPTextEncode",
        [x, y + 260],
        {"text": negative_text},
        size=[420, 160],
        title=f"CLIP Text Encode (Negative Prompt, {label})",
        colors=NEGATIVE_COLORS if colors else None,
        clip=clip,
    )
    return positive, negative


def add_second_sampler(
    g: Graph, family: str, x: int, y: int, first: Sampling, model_out, positive, negative, title: str
) -> list[Node]:
    """A KSampler with ``first``'s settings, seed and empty latent (so only the model / prompts differ),
    after the same Flux Guidance where the family has one."""
    nodes = []
    positive_out = positive if isinstance(positive, tuple) else (positive, 0)
    guidance = next((n for n in first.nodes if n.type == "FluxGuidance"), None)
    if guidance is not None:
        positive_out = (
            g.add("FluxGuidance", [x, y], widgets_of(g, guidance), size=[380, 58], conditioning=positive_out),
            0,
        )
        nodes.append(positive_out[0])
        y += 100
    sampler = g.add(
        "KSampler",
        [x, y],
        widgets_of(g, first.ksampler),
        size=[380, 262],
        title=title,
        model=model_out,
        positive=positive_out,
        negative=negative,
        latent_image=first.latent,
    )
    return [*nodes, sampler]


SIDE_BY_SIDE = ("sd15", "sdxl", "flux", "wan_t2v")

UNSTEERED_NOTE = """
### Unsteered, same seed

The same prompts through the **original** CLIP (not the steered one), sampled with the same model, seed (42,
fixed), steps and empty latent as the steered row above: the two outputs differ only by Safety Steer.
Change the seed, steps or prompt in **both** rows to keep the comparison fair. This row saves with
`_unsteered` in the file name.
"""


def add_unsteered_row(g: Graph, family: str, X: list[int], clip_out, vae_out, first: Sampling) -> None:
    """Group 6: the same prompts from the unsteered CLIP, sampled from the same seed and latent."""
    y = bottom_of(g)
    note = g.note(UNSTEERED_NOTE, [X[1], y], [420, 260], title="Unsteered comparison")
    positive, negative = add_prompts(g, family, X[2], y, clip_out, "unsteered", colors=False)
    samplers = add_second_sampler(
        g, family, X[3], y, first, first.model, positive, negative, "KSampler (unsteered, same seed)"
    )
    decode, save = add_decode_and_save(g, family, X[4], y, samplers[-1], vae_out, f"safety_steer/{family}_unsteered")
    g.group("6. Unsteered, same seed (compare)", [note, positive, negative, *samplers, decode, save], "#666666")


# --------------------------------------------------------------------------- more templates

SAFEDIG_FAMILIES = ("flux", "sd3_5")

SAFEDIG_OVERVIEW = """
## SafeDIG: train, then apply ({title})

A second, independent safety method that works **inside the diffusion model** instead of the text encoder.
**Load Safety Direction** supplies the prompts (the pack's paired safe/unsafe prompts and benign anchors).
**Train Safety SAE (SafeDIG)** runs {title} on them (one denoising step each), picks
the block positions whose harmful features stay stable across harm categories, trains a sparse
autoencoder (SAE) there and marks the features that fire on unsafe prompts. **Apply SafeDIG (Repel / Blend)**
removes those
features while sampling; tokens with no harmful feature active are left exactly as they are.

Top row: SafeDIG on. Bottom row: the same seed without it.

**Models** (standard files, standard folders):
{models}

Training takes minutes on a GPU and saves a bundle to `models/safety_saes/` (`{prefix}_00001.safetensors`,
then `_00002`...). Queueing again in the same session reuses it; after a restart, use **Load Safety SAE (SafeDIG)**
(template `safedig_flux_adapt_to_another_checkpoint`) instead of training again.
"""

SAFEDIG_TRAIN_NOTE = """
### Train Safety SAE (SafeDIG)

- `positions` `auto`: compares `candidates` positions spread over the depth and keeps the best `keep`.
- `pairs_per_category` × 7 categories safe/unsafe prompt pairs plus `anchors` benign prompts are encoded
  with this CLIP and run through the model once each (at `noise_level`).
- `expansion`, `k`, `epochs`, `learning_rate`: the SAE's width, sparsity and training.
- `harmful_features`: how many features Apply SafeDIG removes.
- The empty latent is the one you sample with: train at the size you generate at.

The `report` (shown on the node) lists the routing scores and the chosen positions.
"""

SAFEDIG_APPLY_NOTE = """
### Apply SafeDIG (Repel / Blend)

Returns a patched copy of the model. `repel` subtracts the harmful features (`strength` 1 = all of them);
`blend` pulls towards the SAE's reconstruction without them (gentler). `start_percent` / `end_percent`
limit it to part of sampling; `apply_to` `positive` leaves the negative prompt's pass alone (with CFG,
steering the negative pass pushes the image the other way). It stacks with Apply Safety Steer.
"""


def build_safedig(family: str, info: dict) -> Graph:
    """Train Safety SAE -> Apply SafeDIG -> sampler, beside the same seed without it."""
    g = Graph(f"safedig_{family}", info)
    X = [0, 480, 960, 1480, 1960]
    Y0 = 80
    model_out, clip_out, vae_out = add_loaders(g, family, X[0], Y0)
    load = g.add("SafetySteerLoadDirection", [X[1], Y0], {"pack": SHIPPED_PACK}, size=[380, 58], colors=STEER_COLORS)
    latent = add_empty_latent(g, family, X[1], Y0 + 110, vae_out)
    train = g.add(
        "SafetySteerTrainSAE",
        [X[1], Y0 + 270],
        {"filename_prefix": f"safedig_{family}"},
        size=[380, 470],
        colors=STEER_COLORS,
        model=model_out,
        clip=clip_out,
        direction=load,
        latent=latent,
    )
    apply = g.add(
        "SafetySteerApplySafeDIG",
        [X[1], Y0 + 800],
        {"operation": "repel", "strength": 1.0},
        size=[380, 200],
        colors=STEER_COLORS,
        model=model_out,
        safedig=(train, "safedig"),
    )
    g.group("2. SafeDIG: train, then apply", [load, latent, train, apply], "#3f9e7d")
    positive, negative = add_prompts(g, family, X[2], Y0, clip_out, "plain CLIP")
    g.group("3. Prompts", [positive, negative], "#8a8a3f")
    first = add_sampling(g, family, X[3], Y0, (apply, 0), positive, negative, vae_out, latent=latent)
    decode, save = add_decode_and_save(g, family, X[4], Y0, first.ksampler, vae_out, f"safedig/{family}")
    g.group("5. Output (SafeDIG on)", [decode, save], "#b06634")
    g.note(
        SAFEDIG_OVERVIEW.format(title=TITLES[family], models=model_list_markdown(family), prefix=f"safedig_{family}"),
        [X[0], Y0 + 480],
        [420, 640],
        title="About this workflow",
    )
    g.note(SAFEDIG_TRAIN_NOTE, [X[0], Y0 + 1180], [420, 420], title="Train Safety SAE")
    g.note(SAFEDIG_APPLY_NOTE, [X[2], Y0 + 500], [420, 300], title="Apply SafeDIG")
    g.note(sampler_note(family), [X[3], first.y + 320], [380, 200], title="Sampling")
    y = bottom_of(g)
    samplers = add_second_sampler(
        g, family, X[3], y, first, model_out, positive, negative, "KSampler (without SafeDIG, same seed)"
    )
    decode2, save2 = add_decode_and_save(g, family, X[4], y, samplers[-1], vae_out, f"safedig/{family}_unpatched")
    g.group("6. Without SafeDIG, same seed (compare)", [*samplers, decode2, save2], "#666666")
    return g


SAFEDIG_ADAPT_NOTE = """
## SafeDIG: reuse a bundle, carry it to another checkpoint

**Load Safety SAE (SafeDIG)** picks a bundle from `models/safety_saes/` (train one first with the `safedig_flux`
template; its first bundle is `safedig_flux_00001.safetensors`). **Adapt Safety SAE Decoder (SafeDIG)** carries it to
another model of the same architecture (a fine-tune or merge: load it in the loaders on the left): the SAE
encoders stay frozen as the safety dictionary and only the decoders are refitted, on **benign** anchor
prompts only (from the pack that **Load Safety Direction** picks), so the new checkpoint never sees an unsafe
prompt. **Apply SafeDIG (Repel / Blend)** then uses the adapted bundle, which is saved too
(`safedig_adapted_00001.safetensors`...), so later runs can load it directly and skip the adaptation.

To reuse a bundle on the model it was trained for, connect Load Safety SAE (SafeDIG) straight to Apply SafeDIG.

**Models** (here FLUX.1 [dev]; put your fine-tune's files in their place):
{models}
"""


def build_safedig_adapt(info: dict) -> Graph:
    family = "flux"
    g = Graph("safedig_flux_adapt_to_another_checkpoint", info)
    X = [0, 480, 960, 1480, 1960]
    Y0 = 80
    model_out, clip_out, vae_out = add_loaders(g, family, X[0], Y0)
    bundle = g.add(
        "SafetySteerLoadSAE",
        [X[1], Y0],
        {"bundle": "safedig_flux_00001.safetensors"},
        size=[380, 80],
        colors=STEER_COLORS,
    )
    load = g.add(
        "SafetySteerLoadDirection", [X[1], Y0 + 130], {"pack": SHIPPED_PACK}, size=[380, 58], colors=STEER_COLORS
    )
    latent = add_empty_latent(g, family, X[1], Y0 + 240, vae_out)
    adapt = g.add(
        "SafetySteerAdaptSAEDecoder",
        [X[1], Y0 + 400],
        size=[380, 300],
        colors=STEER_COLORS,
        model=model_out,
        clip=clip_out,
        safedig=(bundle, "safedig"),
        direction=load,
        latent=latent,
    )
    apply = g.add(
        "SafetySteerApplySafeDIG",
        [X[1], Y0 + 760],
        size=[380, 200],
        colors=STEER_COLORS,
        model=model_out,
        safedig=(adapt, "safedig"),
    )
    g.group("2. SafeDIG: load, adapt, apply", [bundle, load, latent, adapt, apply], "#3f9e7d")
    positive, negative = add_prompts(g, family, X[2], Y0, clip_out, "plain CLIP")
    g.group("3. Prompts", [positive, negative], "#8a8a3f")
    first = add_sampling(g, family, X[3], Y0, (apply, 0), positive, negative, vae_out, latent=latent)
    decode, save = add_decode_and_save(g, family, X[4], Y0, first.ksampler, vae_out, "safedig/flux_adapted")
    g.group("5. Output", [decode, save], "#b06634")
    g.note(
        SAFEDIG_ADAPT_NOTE.format(models=model_list_markdown(family)),
        [X[0], Y0 + 480],
        [420, 700],
        title="About this workflow",
    )
    g.note(SAFEDIG_APPLY_NOTE, [X[2], Y0 + 500], [420, 300], title="Apply SafeDIG")
    g.note(sampler_note(family), [X[3], first.y + 320], [380, 200], title="Sampling")
    return g


DIRECTION_CHAIN = f"""
**Load Safety Direction** picks the direction pack (shipped: `{SHIPPED_PACK}`); **Fit Cross-Model Alignment** carries
it into this CLIP with a map fitted on benign prompts only (cached on disk after the first run).
"""

MIXER_NOTE = """
## Category Vector Mixer (Stable Diffusion 1.5)

Steer against **chosen harm categories** only. The pack holds one direction per category (hate, harassment,
violence, self-harm, sexual, shocking, illegal activity); the mixer combines them with one weight each and
adds the mix to the aligned direction. Apply Safety Steer (Text Encoder) with `direction` `auto` then steers
with the mix.
{chain}
- `preset`: a ready-made selection (`violence and gore` here); `custom (sliders)` uses the seven weights.
- weights 0-2: 0 leaves a category out, 1 counts it fully.
- `orthogonalise`: removes the overlap between the chosen categories first, so that e.g. violence and
  shocking (which overlap) are not counted twice.

Compare with `direction` `global` on Apply Safety Steer (Text Encoder): the mix leaves the other categories
(here e.g. sexual content) alone, which keeps more of a prompt's look when only one kind of harm matters.

**Models:**
{models}
"""

POINTS_NOTE = """
## The three application points (Stable Diffusion 1.5)

The same aligned direction applied where the graph gives you access.
{chain}

- **Apply Safety Steer (Text Encoder)** (the other templates): steers inside the CLIP; the only point
  that can gate with the source LLM, which reads the prompt's text. The recommended one.
- **Apply Safety Steer (Conditioning)** (top row): steers a CONDITIONING that came from elsewhere (a
  conditioning combine, another pack's encoder). Its `report` output says what it did (Preview Any).
- **Apply Safety Steer (Model)** (bottom row): patches the diffusion model, so it steers whatever
  conditioning reaches the sampler, between `start_percent` and `end_percent` of sampling.
  **Safety Steer Report**, with `after` fed from the sampler, shows the steer applied while sampling.

Both rows sample from the same seed. Conditioning and model points gate on the target projection
(`gate_threshold`), which separates less well than the source LLM.

**Models:**
{models}
"""

NATIVE_NOTE = """
## Transferred direction vs native baseline (Stable Diffusion 1.5)

Two ways to get a safety direction into this CLIP, side by side from the same seed:

Both start from the pack that **Load Safety Direction** picks.

- **Fit Cross-Model Alignment** (top): the method. The direction is learned in the pack's source LLM and
  carried into CLIP-L by a map fitted on **benign prompts only**: CLIP never sees an unsafe prompt.
- **Fit Native Direction (baseline)** (bottom): the baseline. The direction is estimated directly in CLIP-L from the
  pack's safe/unsafe training pairs: the target sees unsafe prompts. It is the ceiling the transfer is
  measured against (the README's tables: transferred / native separation about 0.9-0.99).

**Safety Direction Info** on each shows the held-out separation (AUROC per category, 0.5 = chance) of
what was fitted. Both **Apply Safety Steer (Text Encoder)** nodes use the same settings, so the two images
differ only by the direction.

**Models:**
{models}
"""

INSPECTOR_NOTE = """
## Prompt Safety Inspector

The first thing to try: it needs **no diffusion model**. The pack's source LLM (Gemma-3-270m, installed
with Safety Steer) reads each prompt (one per line) and the chart shows, per prompt and harm category, the
projection on the safety direction (benign-anchor units: 0 = like an ordinary prompt, negative =
unsafe-leaning) and how far the gate of Apply Safety Steer (Text Encoder) would open (0-1).

Outputs: `chart` (the same chart as an image, here in Preview Image), `score` (the highest gate opening),
`flagged` (true when a prompt opens the gate at least half way; use it to drive a switch) and `report`
(the readings as text, here in Preview Any).

Edit the prompts and queue again. Next: a template for your model (`safety_steer_sd15`, `..._flux`...).
"""


def add_steer_chain(g: Graph, x: int, y: int, clip_out) -> tuple[Node, Node]:
    """Load Safety Direction -> Fit Cross-Model Alignment (anchors 2000, ridge) at column ``x``."""
    load = g.add("SafetySteerLoadDirection", [x, y], {"pack": SHIPPED_PACK}, size=[380, 58], colors=STEER_COLORS)
    fit = g.add(
        "SafetySteerFitCrossModelAlignment",
        [x, y + 110],
        {"method": "ridge", "anchors": 2000},
        size=[380, 102],
        colors=STEER_COLORS,
        clip=clip_out,
        direction=load,
    )
    return load, fit


def build_mixer(info: dict) -> Graph:
    family = "sd15"
    g = Graph("safety_steer_category_mixer", info)
    X = [0, 480, 960, 1480, 1960]
    Y0 = 80
    model_out, clip_out, vae_out = add_loaders(g, family, X[0], Y0)
    load, fit = add_steer_chain(g, X[1], Y0, clip_out)
    mixer = g.add(
        "SafetySteerCategoryVectorMixer",
        [X[1], Y0 + 270],
        {"preset": "violence and gore"},
        size=[380, 300],
        colors=STEER_COLORS,
        aligned_direction=fit,
    )
    steer = g.add(
        "SafetySteerApplyTextEncoder",
        [X[1], Y0 + 630],
        {"strength": 2.0, "direction": "auto"},
        size=[380, 178],
        colors=STEER_COLORS,
        clip=clip_out,
        aligned_direction=mixer,
    )
    g.group("2. Safety Steer with a category mix", [load, fit, mixer, steer], "#3f9e7d")
    positive, negative = add_prompts(g, family, X[2], Y0, steer, "steered")
    g.group("3. Prompts (steered CLIP)", [positive, negative], "#8a8a3f")
    first = add_sampling(g, family, X[3], Y0, model_out, positive, negative, vae_out)
    decode, save = add_decode_and_save(g, family, X[4], Y0, first.ksampler, vae_out, "safety_steer/sd15_mixed")
    report = g.add("SafetySteerReport", [X[4] + 580, Y0], size=[420, 320], colors=REPORT_COLORS, conditioning=positive)
    g.group("5. Output", [decode, save, report], "#b06634")
    g.note(
        MIXER_NOTE.format(models=model_list_markdown(family), chain=DIRECTION_CHAIN),
        [X[0], Y0 + 220],
        [420, 640],
        title="About",
    )
    g.note(PROMPT_NOTE, [X[2], Y0 + 500], [420, 230], title="Prompts")
    g.note(sampler_note(family), [X[3], first.y + 320], [380, 200], title="Sampling")
    g.note(REPORT_NOTE, [X[4] + 580, Y0 + 380], [420, 180], title="Report")
    return g


def build_application_points(info: dict) -> Graph:
    family = "sd15"
    g = Graph("safety_steer_application_points", info)
    X = [0, 480, 960, 1480, 1960]
    Y0 = 80
    model_out, clip_out, vae_out = add_loaders(g, family, X[0], Y0)
    load, fit = add_steer_chain(g, X[1], Y0, clip_out)
    g.group("2. Safety direction", [load, fit], "#3f9e7d")
    positive, negative = add_prompts(g, family, X[2], Y0, clip_out, "plain CLIP")
    steer_cond = g.add(
        "SafetySteerApplyConditioning",
        [X[2], Y0 + 500],
        {"strength": 2.0},
        size=[420, 200],
        colors=STEER_COLORS,
        conditioning=positive,
        aligned_direction=fit,
    )
    g.group("3. Prompts; the conditioning point", [positive, negative, steer_cond], "#8a8a3f")
    first = add_sampling(
        g,
        family,
        X[3],
        Y0,
        model_out,
        (steer_cond, "conditioning"),
        negative,
        vae_out,
        group="4. Sampling (conditioning point)",
    )
    decode, save = add_decode_and_save(g, family, X[4], Y0, first.ksampler, vae_out, "safety_steer/sd15_conditioning")
    said = g.add("PreviewAny", [X[4] + 580, Y0], size=[420, 240], source=(steer_cond, "report"))
    g.group("5. Output (conditioning point)", [decode, save, said], "#b06634")
    g.note(
        POINTS_NOTE.format(models=model_list_markdown(family), chain=DIRECTION_CHAIN),
        [X[0], Y0 + 220],
        [420, 640],
        title="About",
    )
    g.note(sampler_note(family), [X[3], first.y + 320], [380, 200], title="Sampling")
    y = bottom_of(g)
    steer_model = g.add(
        "SafetySteerApplyModel",
        [X[1], y],
        {"strength": 2.0},
        size=[380, 300],
        colors=STEER_COLORS,
        model=model_out,
        aligned_direction=fit,
    )
    samplers = add_second_sampler(
        g, family, X[3], y, first, (steer_model, 0), positive, negative, "KSampler (model point, same seed)"
    )
    decode2, save2 = add_decode_and_save(g, family, X[4], y, samplers[-1], vae_out, "safety_steer/sd15_model")
    report = g.add(
        "SafetySteerReport",
        [X[4] + 580, y],
        size=[420, 320],
        colors=REPORT_COLORS,
        model=steer_model,
        after=samplers[-1],
    )
    g.group("6. The model point (same seed)", [steer_model, *samplers, decode2, save2, report], "#2f6f9e")
    return g


def build_native_baseline(info: dict) -> Graph:
    family = "sd15"
    g = Graph("safety_steer_native_baseline", info)
    X = [0, 480, 960, 1480, 1960]
    Y0 = 80
    model_out, clip_out, vae_out = add_loaders(g, family, X[0], Y0)
    load, fit = add_steer_chain(g, X[1], Y0, clip_out)
    settings = {"strength": 2.0, "direction": "auto", "mode": "add", "gate": "source LLM"}
    steer = g.add(
        "SafetySteerApplyTextEncoder",
        [X[1], Y0 + 270],
        settings,
        size=[380, 178],
        colors=STEER_COLORS,
        clip=clip_out,
        aligned_direction=fit,
    )
    info_fit = g.add("SafetySteerDirectionInfo", [X[1], Y0 + 510], size=[380, 260], direction=fit)
    g.group("2. Transferred direction (benign anchors only)", [load, fit, steer, info_fit], "#3f9e7d")
    positive, negative = add_prompts(g, family, X[2], Y0, steer, "transferred")
    g.group("3. Prompts (transferred)", [positive, negative], "#8a8a3f")
    first = add_sampling(g, family, X[3], Y0, model_out, positive, negative, vae_out)
    decode, save = add_decode_and_save(g, family, X[4], Y0, first.ksampler, vae_out, "safety_steer/sd15_transferred")
    g.group("5. Output (transferred)", [decode, save], "#b06634")
    g.note(NATIVE_NOTE.format(models=model_list_markdown(family)), [X[0], Y0 + 220], [420, 640], title="About")
    g.note(sampler_note(family), [X[3], first.y + 320], [380, 200], title="Sampling")
    y = bottom_of(g)
    native = g.add(
        "SafetySteerFitNativeDirection",
        [X[1], y],
        {"method": "mean_diff", "anchors": 2000},
        size=[380, 102],
        colors=STEER_COLORS,
        clip=clip_out,
        direction=load,
    )
    steer_native = g.add(
        "SafetySteerApplyTextEncoder",
        [X[1], y + 160],
        settings,
        size=[380, 178],
        colors=STEER_COLORS,
        clip=clip_out,
        aligned_direction=native,
    )
    info_native = g.add("SafetySteerDirectionInfo", [X[1], y + 400], size=[380, 260], direction=native)
    positive2, negative2 = add_prompts(g, family, X[2], y, steer_native, "native")
    samplers = add_second_sampler(
        g, family, X[3], y, first, first.model, positive2, negative2, "KSampler (native, same seed)"
    )
    decode2, save2 = add_decode_and_save(g, family, X[4], y, samplers[-1], vae_out, "safety_steer/sd15_native")
    g.group(
        "6. Native baseline (sees unsafe prompts), same seed",
        [native, steer_native, info_native, positive2, negative2, *samplers, decode2, save2],
        "#2f6f9e",
    )
    return g


def build_prompt_inspector(info: dict) -> Graph:
    g = Graph("prompt_safety_inspector", info)
    inspector = g.add("SafetySteerPromptInspector", [480, 80], size=[520, 520], colors=STEER_COLORS)
    chart = g.add("PreviewImage", [1060, 80], size=[520, 420], images=(inspector, "chart"))
    said = g.add("PreviewAny", [1060, 560], size=[520, 240], source=(inspector, "report"))
    g.note(INSPECTOR_NOTE, [0, 80], [420, 560], title="Start here")
    g.group("Prompt Safety Inspector", [inspector, chart, said], "#3f9e7d")
    return g


def build_inspect(info: dict) -> Graph:
    g = Graph("inspect_safety_direction", info)
    load = g.add("SafetySteerLoadDirection", [60, 120], {"pack": SHIPPED_PACK}, size=[340, 60], colors=STEER_COLORS)
    g.add("SafetySteerDirectionInfo", [460, 120], size=[460, 260], direction=load)
    g.note(
        "Safety Steer: inspect a safety direction pack.\n\nLoad Safety Direction lists the packs in "
        "models/safety_directions/ and the ones shipped with Safety Steer (built from Gemma-3-270m and "
        "SmolLM2-135M-Instruct on 7 harm categories).\n\nSafety Direction Info shows the source model, layer, "
        "method, and each direction's "
        "held-out separation (AUROC, 0.5 = chance).\n\nQueue the prompt to see it.",
        [60, 240],
        [340, 200],
        markdown=False,
    )
    return g


def build_all(info: dict) -> dict[str, dict]:
    """File name -> workflow JSON, for every shipped example workflow."""
    graphs = {f"safety_steer_{family}.json": build(family, info).to_json() for family in FAMILIES}
    graphs["inspect_safety_direction.json"] = build_inspect(info).to_json()
    for family in SAFEDIG_FAMILIES:
        graphs[f"safedig_{family}.json"] = build_safedig(family, info).to_json()
    graphs["safedig_flux_adapt_to_another_checkpoint.json"] = build_safedig_adapt(info).to_json()
    graphs["safety_steer_category_mixer.json"] = build_mixer(info).to_json()
    graphs["safety_steer_application_points.json"] = build_application_points(info).to_json()
    graphs["safety_steer_native_baseline.json"] = build_native_baseline(info).to_json()
    if "SafetySteerPromptInspector" in info:  # the node lands separately
        graphs["prompt_safety_inspector.json"] = build_prompt_inspector(info).to_json()
    return graphs


def dumps(workflow: dict) -> str:
    """JSON, a value on one line where it fits in 110 columns (readable diffs), else expanded."""

    def render(value, indent: int, used: int = 0) -> str:
        flat = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
        if not isinstance(value, (dict, list)) or not value or indent + used + len(flat) <= 110:
            return flat
        pad, inner = " " * indent, " " * (indent + 2)
        if isinstance(value, dict):
            items = [
                f"{inner}{json.dumps(k)}: {render(v, indent + 2, len(json.dumps(k)) + 2)}" for k, v in value.items()
            ]
            return "{\n" + ",\n".join(items) + "\n" + pad + "}"
        return "[\n" + ",\n".join(inner + render(v, indent + 2) for v in value) + "\n" + pad + "]"

    return render(workflow, 0) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if a shipped file differs")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    options = parser.parse_args(argv)
    graphs = build_all(comfyui_object_info())
    stale = []
    for name, workflow in graphs.items():
        path = options.out / name
        text = dumps(workflow)
        if options.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    if stale:
        print("out of date (run scripts/build_example_workflows.py): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
