"""SafetySteerPromptInspector: what the source-LLM gate sees in each prompt, with no diffusion model.

The first thing a newcomer can run: the shipped pack's source model (Gemma-3-270m) comes with the
install, so the node reads prompts and shows, per category, the projection and how far the gate
would open, as a chart on the node (the frontend draws the ``safety_inspector`` payload), as an
IMAGE, and as score / flagged outputs that can drive switches downstream.
"""

from __future__ import annotations

from comfy_api.latest import io, ui

from ...steering.application.inspection import format_inspection, inspect_prompts, select_categories, split_prompts
from ...steering.application.source_gate import SourceGate
from ...steering.errors import SourceModelError
from ...steering.pack import DEFAULT_PACK_PATH, DirectionPack
from ...steering.transfer.aligned import AlignedSafetyDirection
from ..directions.load import _load_cached
from ..model_folders import direction_pack_path, list_direction_packs
from ..progress import download_progress
from ..search_aliases import search_aliases
from ..types import AlignedDirectionType, DirectionPackType
from .chart import chart_tensor, draw_chart

UI_KEY = "safety_inspector"
SEARCH_ALIASES = ["nsfw", "safety filter", "prompt checker"]
DEFAULT_PROMPTS = "a watercolor painting of a lighthouse at dawn\na man stabbing another man, blood everywhere"


def schema_extras() -> dict:
    """Search aliases where this ComfyUI's schema takes them: the pack's, and this node's own."""
    extras = search_aliases("SafetySteerPromptInspector")
    if extras:
        extras["search_aliases"] = list(dict.fromkeys([*SEARCH_ALIASES, *extras["search_aliases"]]))
    return extras


def default_pack() -> str | None:
    packs = list_direction_packs()
    return DEFAULT_PACK_PATH.name if DEFAULT_PACK_PATH.name in packs else (packs[0] if packs else None)


def _first(value):
    """With ``is_input_list`` every input arrives as a list; widgets hold one value."""
    return value[0] if isinstance(value, list) and value else (None if isinstance(value, list) else value)


def gate_and_names(direction, pack_name: str) -> tuple[SourceGate, list[str]]:
    """The source gate and direction names of the connected direction, else of the chosen pack."""
    if direction is None:
        if pack_name not in list_direction_packs():
            raise ValueError(
                f"Direction pack {pack_name!r} is not in models/safety_directions/ nor in the shipped vectors/. "
                f"Available: {', '.join(list_direction_packs()) or 'none'}."
            )
        direction = _load_cached(direction_pack_path(pack_name))
    if isinstance(direction, DirectionPack):
        return SourceGate.from_pack(direction), direction.names
    if isinstance(direction, AlignedSafetyDirection):
        if direction.source_gate is None:
            raise ValueError(
                "This aligned direction carries no source model to read prompts with; connect Load Safety "
                "Direction (the pack) instead, or leave `direction` unconnected and choose a pack."
            )
        gate = direction.source_gate
        return gate, direction.names[: gate.directions.shape[0]]
    raise ValueError(f"`direction` must come from Load Safety Direction; got {type(direction).__name__}.")


class SafetySteerPromptInspector(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SafetySteerPromptInspector",
            display_name="Prompt Safety Inspector",
            category="safety_steer",
            description=(
                "Reads prompts with the pack's source LLM (the same gate Apply Safety Steer (Text Encoder) "
                "runs) and shows, per prompt and harm category, the projection on the safety direction and "
                "how far the gate would open, as a chart. Needs no diffusion model: the shipped pack's "
                "source model comes with the install."
            ),
            inputs=[
                io.Combo.Input(
                    "pack",
                    options=list_direction_packs(),
                    default=default_pack(),
                    tooltip="The direction pack whose source model reads the prompts (ignored when "
                    "`direction` is connected).",
                ),
                io.String.Input(
                    "prompts",
                    multiline=True,
                    default=DEFAULT_PROMPTS,
                    tooltip="One prompt per line (or connect a list of strings).",
                ),
                io.String.Input(
                    "categories",
                    default="",
                    optional=True,
                    tooltip="Harm categories to score, separated by commas (e.g. violence, sexual); "
                    "empty = all of them.",
                ),
                io.MultiType.Input(
                    "direction",
                    types=[DirectionPackType, AlignedDirectionType],
                    optional=True,
                    tooltip="Optional: a pack from Load Safety Direction (or an aligned direction) "
                    "instead of the `pack` choice.",
                ),
            ],
            outputs=[
                io.Image.Output(display_name="chart", tooltip="The chart drawn on the node, as an image."),
                io.Float.Output(
                    display_name="score",
                    tooltip="The highest gate opening over the prompts (0..1): what the steer would apply.",
                ),
                io.Boolean.Output(
                    display_name="flagged", tooltip="True when any prompt opens the gate at least half way."
                ),
                io.String.Output(display_name="report", tooltip="The same readings as text."),
            ],
            is_input_list=True,
            is_output_node=True,
            **schema_extras(),
        )

    @classmethod
    def execute(cls, pack, prompts, categories=None, direction=None) -> io.NodeOutput:
        gate, names = gate_and_names(_first(direction), _first(pack))
        texts = split_prompts(prompts)
        chosen = select_categories(names[1:], _first(categories) or "")
        reason = gate.unavailable_reason(progress=download_progress())
        if reason is not None:
            raise ValueError(f"The Prompt Safety Inspector needs the pack's source model to read prompts: {reason}")
        try:
            inspection = inspect_prompts(gate, names, texts, chosen)
        except SourceModelError as exc:
            raise ValueError(f"The Prompt Safety Inspector could not run the source model: {exc}") from exc
        payload = inspection.as_dict()
        text = format_inspection(inspection)
        return io.NodeOutput(
            chart_tensor(draw_chart(payload)),
            inspection.score,
            inspection.flagged,
            text,
            ui={UI_KEY: [payload], **ui.PreviewText(text).as_dict()},
        )
