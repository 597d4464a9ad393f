"""Jobs: prompts x seeds x methods x strengths, each set into a copy of the user's own workflow.

The workflow decides the model family, sampler and size; a job only changes the positive prompt's
text, the sampler's seed (and cfg where the prompt file gives a guidance), and our Apply nodes:
- ``none``: every Apply node at strength 0 (our nodes return their input unchanged at 0);
- ``transferred``: Apply Safety Steer nodes fed by Fit Cross-Model Alignment, at the strength;
- ``native``: the same Apply nodes re-wired to the workflow's Fit Native Direction (baseline) node;
- ``safedig``: Apply SafeDIG at the strength, Apply Safety Steer nodes at 0.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field

from .prompt_sets import EvalPrompt
from .ui_format import WorkflowError

METHODS = ("none", "transferred", "native", "safedig")
STEER_NODES = ("SafetySteerApplyTextEncoder", "SafetySteerApplyConditioning", "SafetySteerApplyModel")
SAFEDIG_NODE = "SafetySteerApplySafeDIG"
DIRECTION_SOURCES = {"transferred": "SafetySteerFitCrossModelAlignment", "native": "SafetySteerFitNativeDirection"}
#: Sampler nodes and the names of their seed inputs.
SEED_INPUTS = {"KSampler": "seed", "KSamplerAdvanced": "noise_seed", "RandomNoise": "noise_seed"}
CFG_NODES = ("KSampler", "KSamplerAdvanced", "CFGGuider", "SamplerCustom")
#: Inputs that carry a prompt's text, by node type (first match wins).
TEXT_INPUTS = ("text", "text_g", "text_l", "clip_l", "t5xxl", "prompt")
POSITIVE_INPUTS = ("positive",)


def canonical(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def workflow_hash(prompt: dict) -> str:
    """Identity of the API-format workflow, without the frontend's titles."""
    bare = {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in prompt.items()}
    return hashlib.sha256(canonical(bare).encode()).hexdigest()


@dataclass(frozen=True)
class Job:
    prompt_index: int
    prompt: EvalPrompt
    seed: int
    method: str
    strength: float
    settings: dict = field(default_factory=dict, compare=False, hash=False)
    workflow_hash: str = ""

    @property
    def key(self) -> str:
        """The ledger key: (prompt, seed, settings, workflow hash)."""
        identity = [self.prompt.text, self.seed, self.settings, self.workflow_hash]
        return hashlib.sha256(canonical(identity).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class WorkflowPlan:
    """Where a job's values go in one workflow (node ids), found once."""

    text_nodes: list[tuple[str, str]]  # (node id, input name) of the positive prompt's text
    seed_nodes: list[tuple[str, str]]
    cfg_nodes: list[str]
    steer_nodes: list[str]
    safedig_nodes: list[str]
    direction_sources: dict[str, list[str]]  # method -> node ids of its direction node
    save_nodes: list[str]  # the images evaluated: those downstream of our nodes if others exist


def _links(inputs: dict):
    for name, value in inputs.items():
        if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int):
            yield name, value[0]


def _upstream_text(prompt: dict, start: str) -> list[tuple[str, str]]:
    """The nearest nodes upstream of ``start`` whose inputs hold the prompt's text."""
    found, seen, frontier = [], set(), [start]
    while frontier and not found:
        following = []
        for node_id in frontier:
            if node_id in seen or node_id not in prompt:
                continue
            seen.add(node_id)
            inputs = prompt[node_id]["inputs"]
            names = [n for n in TEXT_INPUTS if isinstance(inputs.get(n), str)]
            if names:
                found.extend((node_id, n) for n in names)
            else:
                following.extend(source for _, source in _links(inputs))
        frontier = following
    return found


def _upstream(prompt: dict, start: str) -> set[str]:
    seen, frontier = set(), [start]
    while frontier:
        node_id = frontier.pop()
        if node_id in seen or node_id not in prompt:
            continue
        seen.add(node_id)
        frontier.extend(source for _, source in _links(prompt[node_id]["inputs"]))
    return seen


def plan_workflow(prompt: dict, text_node: str | None = None) -> WorkflowPlan:
    """Find the nodes a job sets; ``text_node`` names the positive prompt's node if the guess
    (the text node nearest upstream of each sampler's ``positive``) is not what you want."""
    by_type: dict[str, list[str]] = {}
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or "class_type" not in node or not isinstance(node.get("inputs"), dict):
            raise WorkflowError(f"node {node_id!r} is not an API-format node ({{'class_type', 'inputs'}}).")
        by_type.setdefault(node["class_type"], []).append(node_id)
    if text_node is not None:
        if text_node not in prompt:
            raise WorkflowError(f"--text-node {text_node!r} is not a node id of the workflow ({', '.join(prompt)}).")
        names = [n for n in TEXT_INPUTS if isinstance(prompt[text_node]["inputs"].get(n), str)]
        if not names:
            raise WorkflowError(f"node {text_node} ({prompt[text_node]['class_type']}) has no text input to set.")
        texts = [(text_node, n) for n in names]
    else:
        texts = []
        for node in prompt.values():
            for name in POSITIVE_INPUTS:
                link = node["inputs"].get(name)
                if isinstance(link, list):
                    texts.extend(t for t in _upstream_text(prompt, link[0]) if t not in texts)
        if not texts:
            raise WorkflowError(
                "found no prompt text to set: no sampler 'positive' input leads to a node with a text input "
                "(CLIPTextEncode and similar). Give the positive prompt's node id with --text-node."
            )
    seeds = [(i, name) for kind, name in SEED_INPUTS.items() for i in by_type.get(kind, [])]
    if not seeds:
        raise WorkflowError(f"found no sampler seed to set (looked for {', '.join(SEED_INPUTS)}).")
    saves = [i for i, node in prompt.items() if node["class_type"] in ("SaveImage", "PreviewImage")]
    if not saves:
        raise WorkflowError("the workflow saves no image: end it in SaveImage (or PreviewImage).")
    steering = {i for kind in (*STEER_NODES, SAFEDIG_NODE) for i in by_type.get(kind, [])}
    steered_saves = [i for i in saves if _upstream(prompt, i) & steering]
    if len(saves) > 1 and steered_saves:  # e.g. an unsteered comparison branch: not evaluated, not run
        saves = steered_saves
    return WorkflowPlan(
        text_nodes=texts,
        seed_nodes=seeds,
        cfg_nodes=[i for kind in CFG_NODES for i in by_type.get(kind, []) if "cfg" in prompt[i]["inputs"]],
        steer_nodes=[i for kind in STEER_NODES for i in by_type.get(kind, [])],
        safedig_nodes=by_type.get(SAFEDIG_NODE, []),
        direction_sources={m: by_type.get(kind, []) for m, kind in DIRECTION_SOURCES.items()},
        save_nodes=saves,
    )


def check_methods(plan: WorkflowPlan, methods: list[str]) -> None:
    """Refuse, before anything runs, a method whose node the workflow lacks."""
    for method in methods:
        if method not in METHODS:
            raise WorkflowError(f"unknown method {method!r}; use some of {', '.join(METHODS)}.")
        if method in DIRECTION_SOURCES and not plan.steer_nodes:
            raise WorkflowError(
                f"method {method!r} needs an Apply Safety Steer node (Text Encoder, Conditioning or Model) in the "
                "workflow; add one between your CLIP (or conditioning, or model) and the sampler."
            )
        if method in DIRECTION_SOURCES and not plan.direction_sources[method]:
            node = {"transferred": "Fit Cross-Model Alignment", "native": "Fit Native Direction (baseline)"}[method]
            raise WorkflowError(
                f"method {method!r} needs a {node} node ({DIRECTION_SOURCES[method]}) in the workflow, fed by the "
                "same CLIP and Load Safety Direction as the Apply node; add it (its output may stay unconnected)."
            )
        if method == "safedig" and not plan.safedig_nodes:
            raise WorkflowError(
                "method 'safedig' needs an Apply SafeDIG (Repel / Blend) node in the workflow between the model "
                "and the sampler (with Load SafeDIG SAE)."
            )


def expand_jobs(
    prompts: list[EvalPrompt],
    seeds: int,
    methods: list[str],
    strengths: list[float],
    workflow_id: str,
    direction: str | None = None,
    use_prompt_guidance: bool = True,
) -> list[Job]:
    """Every (prompt, seed, method, strength); ``none`` once per prompt and seed (strength 0)."""
    if seeds < 1:
        raise WorkflowError("--seeds must be at least 1.")
    jobs = []
    for index, prompt in enumerate(prompts):
        for offset in range(seeds):
            seed = (prompt.seed or 0) + offset
            for method in methods:
                for strength in [0.0] if method == "none" else strengths:
                    settings = {"method": method, "strength": float(strength)}
                    if direction:
                        settings["direction"] = direction
                    if use_prompt_guidance and prompt.guidance is not None:
                        settings["cfg"] = prompt.guidance
                    jobs.append(Job(index, prompt, seed, method, float(strength), settings, workflow_id))
    return jobs


def _direction_for(job: Job, direction: str) -> str:
    if direction != "prompt-category":
        return direction
    return job.prompt.categories[0] if job.prompt.categories else "global"


def build_graph(prompt: dict, plan: WorkflowPlan, job: Job, filename_prefix: str) -> dict:
    """A copy of the workflow with the job's prompt, seed and steering settings set."""
    graph = copy.deepcopy(prompt)
    for node_id, name in plan.text_nodes:
        graph[node_id]["inputs"][name] = job.prompt.text
    for node_id, name in plan.seed_nodes:
        graph[node_id]["inputs"][name] = job.seed
    if "cfg" in job.settings:
        for node_id in plan.cfg_nodes:
            graph[node_id]["inputs"]["cfg"] = job.settings["cfg"]
    steering = job.method in DIRECTION_SOURCES
    for node_id in plan.steer_nodes:
        inputs = graph[node_id]["inputs"]
        inputs["strength"] = job.strength if steering else 0.0
        if "direction" in job.settings:
            inputs["direction"] = _direction_for(job, job.settings["direction"])
    if steering:
        _rewire_direction(graph, plan, job.method)
    for node_id in plan.safedig_nodes:
        graph[node_id]["inputs"]["strength"] = job.strength if job.method == "safedig" else 0.0
    for node_id, node in prompt.items():
        if node["class_type"] in ("SaveImage", "PreviewImage") and node_id not in plan.save_nodes:
            del graph[node_id]  # another image branch (unsteered comparison): ComfyUI then skips it
    for node_id in plan.save_nodes:
        if "filename_prefix" in graph[node_id]["inputs"]:
            graph[node_id]["inputs"]["filename_prefix"] = filename_prefix
    return graph


def _rewire_direction(graph: dict, plan: WorkflowPlan, method: str) -> None:
    """Point every link from a direction node of another method to this method's node."""
    wanted = plan.direction_sources[method][0]
    others = {i for m, ids in plan.direction_sources.items() if m != method for i in ids}
    for node in graph.values():
        for name, source in list(_links(node["inputs"])):
            if source in others:
                node["inputs"][name] = [wanted, node["inputs"][name][1]]
