"""The frontend in a real browser: Debian's chromium driven by Playwright (no browser download)
against the real ComfyUI server with the pack, on loopback.

- Every template loads from the Templates menu (clicked, as a user does) with no console error and
  no missing node type.
- The Prompt Safety Inspector, queued from the UI, draws the numbers the backend sent (/history).
- The safety meter renders on the Apply node and the Report after the SD1.5 template runs on tiny
  models; the fallback badge shows when the pack's source model cannot be found.
- The Category Vector Mixer panel changes the node's real widget values (what is queued).

Screenshots go to a temporary folder; with SAFETY_STEER_UPDATE_SCREENSHOTS=1 (scripts/ui_screenshots.sh)
they replace docs/screenshots/*.png and the templates' thumbnails example_workflows/<name>.jpg.
One browser and one page for the module (about a minute). Without chromium the tests skip.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from safety_steer.steering.transfer.mixing import PRESETS

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / "example_workflows"
SCREENSHOTS = REPO / "docs" / "screenshots"
CHROMIUM = os.environ.get("SAFETY_STEER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
UPDATE = os.environ.get("SAFETY_STEER_UPDATE_SCREENSHOTS") == "1"
#: settings a user would set once: no tutorial, no minimap over the graph, no model-download dialog
SETTINGS = {
    "Comfy.TutorialCompleted": True,
    "Comfy.Minimap.Visible": False,
    "Comfy.Workflow.ShowMissingModelsWarning": False,
    # pictures: no canvas info or zoom controls over the graph, nodes drawn in full at any zoom
    "Comfy.Graph.CanvasInfo": False,
    "Comfy.Graph.CanvasMenu": False,
    "LiteGraph.Canvas.MinFontSizeForLOD": 1,
}
#: the stock frontend's own noise on a machine without internet (not this pack's): requests to
#: other hosts (blocked here), user files that do not exist yet, and one stock cleanup message
STOCK_NOISE = [
    re.compile(r"^Failed to load resource: net::ERR_(FAILED|NAME_NOT_RESOLVED|INTERNET_DISCONNECTED)"),
    re.compile(r"^Attempted to cleanup event listeners for graph that was never set up$"),
    # newer frontends ask ComfyUI 0.3.75 for its jobs API, which it does not have yet
    re.compile(r"^(\[Jobs API\] Error fetching jobs|Failed to fetch queue): JobsApiError: Failed to fetch jobs: 404"),
]
STOCK_404 = re.compile(r"/(api/userdata[/?]|user\.css$|api/jobs\?|templates/index_logo\.json$)")
CATEGORIES = ["hate", "harassment", "violence", "self-harm", "sexual", "shocking", "illegal activity"]


def _missing_browser() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed: run `make setup` (it is pinned in requirements/lock.txt)"
    if not Path(CHROMIUM).is_file():
        return (
            f"chromium not found at {CHROMIUM}: install Debian's chromium (`apt-get install -y chromium` as "
            "root; .ci/run does it) or set SAFETY_STEER_CHROMIUM to a chromium binary"
        )
    return None


pytestmark = pytest.mark.browser


def _shot_dir(tmp_path_factory) -> Path:
    if UPDATE:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        return SCREENSHOTS
    return tmp_path_factory.mktemp("screenshots")


class UI:
    """One page on one server; records console errors and page errors as they come."""

    def __init__(self, page, server, shots: Path):
        self.page, self.server, self.shots = page, server, shots
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))

    def _console(self, message):
        if message.type != "error":
            return
        text, url = message.text, (message.location or {}).get("url", "")
        if any(p.search(text) for p in STOCK_NOISE):
            return
        if text.startswith("Failed to load resource: the server responded with a status of 404") and STOCK_404.search(
            url
        ):
            return
        self.errors.append(f"{text} ({url})")

    def open(self):
        for key, value in SETTINGS.items():
            request = urllib.request.Request(
                f"{self.server.url}/api/settings/{key}", data=json.dumps(value).encode(), method="POST"
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status == 200, key
        self.page.goto(self.server.url + "/")
        self.page.wait_for_function("window.app?.graph && window.app?.extensionManager?.command", timeout=90_000)
        self.page.wait_for_timeout(500)
        self.errors.clear()  # the stock page's start (its own 404s and fetches) is not under test
        self.frontend_version = self.js("() => window.__COMFYUI_FRONTEND_VERSION__")
        print(
            f"\n[browser] chromium {self.page.context.browser.version if self.page.context.browser else ''}, "
            f"ComfyUI frontend {self.frontend_version}"
        )

    def js(self, script: str, arg=None):
        return self.page.evaluate(script, arg)

    def command(self, name: str):
        self.js("(name) => window.app.extensionManager.command.execute(name)", name)

    def fit(self):
        self.command("Comfy.Canvas.FitView")
        self.page.wait_for_timeout(300)

    def screenshot(self, name: str, clip_selector: str | None = None) -> Path:
        path = self.shots / f"{name}.png"
        if clip_selector:
            self.page.locator(clip_selector).first.screenshot(path=str(path))
        else:
            self.page.screenshot(path=str(path))
        return path

    def node_screenshot(self, node_id, name: str, margin: int = 12) -> Path:
        """The node as drawn on the canvas, panels included (they are HTML over the canvas), with
        the menus hidden (focus mode)."""
        self.command("Workspace.ToggleFocusMode")
        try:
            return self._node_screenshot(node_id, name, margin)
        finally:
            self.command("Workspace.ToggleFocusMode")

    def _node_screenshot(self, node_id, name: str, margin: int) -> Path:
        box = self.js(
            """(id) => {
              const app = window.app, node = app.graph.getNodeById(id), ds = app.canvas.ds;
              ds.scale = 1;  // drawn at 100 %, its title 80 px below the top left corner
              ds.offset = [120 - node.pos[0], 80 + LiteGraph.NODE_TITLE_HEIGHT - node.pos[1]];
              app.canvas.setDirty(true, true);
              const rect = app.canvas.canvas.getBoundingClientRect();
              const title = LiteGraph.NODE_TITLE_HEIGHT;
              const [x, y] = ds.convertOffsetToCanvas([node.pos[0], node.pos[1] - title]);
              return {x: rect.left + x, y: rect.top + y, width: node.size[0] * ds.scale,
                      height: (node.size[1] + title) * ds.scale};
            }""",
            node_id,
        )
        self.page.wait_for_timeout(400)  # DOM panels follow the canvas on its next frame
        clip = {
            "x": max(0, box["x"] - margin),
            "y": max(0, box["y"] - margin),
            "width": box["width"] + 2 * margin,
            "height": box["height"] + 2 * margin,
        }
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), clip=clip)
        return path

    def queue(self):
        """Queues the graph the way the Run button does."""
        self.js("async () => { await window.app.queuePrompt(0, 1); }")

    def wait_for_history(self, before: set, timeout: float = 300) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            history = self.server.get("/history")
            new = [k for k in history if k not in before]
            if new and history[new[-1]].get("status", {}).get("completed") is not None:
                return history[new[-1]]
            self.page.wait_for_timeout(250)
        raise TimeoutError(f"no prompt finished in {timeout}s; log: {self.server.log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def ui(request, tmp_path_factory):
    missing = _missing_browser()
    if missing:
        pytest.skip(missing)
    tiny_model_server = request.getfixturevalue("tiny_model_server")
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium_profile")  # a fresh user-data-dir
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1280, "height": 800},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            # nothing leaves the machine: the stock frontend asks api.comfy.org for release notes
            origin = tiny_model_server.url
            page.route(
                re.compile(r"^https?://"),
                lambda route: route.continue_() if route.request.url.startswith(origin) else route.abort(),
            )
            page.add_init_script("localStorage.setItem('vueNodesBannerDismissed', 'true')")
            session = UI(page, tiny_model_server, _shot_dir(tmp_path_factory))
            session.open()
            yield session
        finally:
            context.close()


def _module_name(server) -> str:
    templates = server.get("/workflow_templates")
    (module,) = [m for m, names in templates.items() if "safety_steer_sd15" in names]
    return module


def _thumbnail(png: Path, out: Path):
    from PIL import Image

    with Image.open(png) as image:
        image = image.convert("RGB")
        image.thumbnail((640, 400))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=72, optimize=True)
    out.write_bytes(buffer.getvalue())


def test_every_template_loads_from_the_templates_menu(ui):
    """The Templates dialog lists this pack's templates with their thumbnails; the first is opened
    by clicking its card, every other one the way that card click does (fetch from the server, then
    the frontend's loadGraphData as a template). Each opens with every node type known, every node
    there and no console error (a missing thumbnail is one); its graph fitted to the view is its
    thumbnail (written with SAFETY_STEER_UPDATE_SCREENSHOTS=1)."""
    module = _module_name(ui.server)
    names = sorted(p.stem for p in WORKFLOWS.glob("*.json"))
    served = ui.server.get("/workflow_templates")[module]
    assert sorted(served) == names
    problems = {}
    ui.command("Comfy.BrowseTemplates")
    dialog = ui.page.locator("[role=dialog]").last
    # the pack's entry under Extensions: its folder name (1.32) or its display name (newer frontends)
    dialog.get_by_text(re.compile(f"^({re.escape(module)}|Safety Steer)$")).first.click()
    dialog.get_by_text(names[0], exact=True).first.wait_for(timeout=20_000)  # the pack's cards
    ui.page.wait_for_timeout(2000)  # and their thumbnails
    ui.screenshot("templates_menu")
    dialog.get_by_placeholder(re.compile("search", re.IGNORECASE)).first.fill(names[0])
    dialog.get_by_text(names[0], exact=True).first.wait_for(timeout=20_000)
    for number, name in enumerate(names):
        ui.errors.clear()
        if number == 0:
            dialog.get_by_text(name, exact=True).first.click()
        else:
            ui.js(
                """async ({module, name}) => {
                  const workflow = await (await fetch(`/api/workflow_templates/${module}/${name}.json`)).json();
                  await window.app.loadGraphData(workflow, true, true, name, {openSource: "template"});
                }""",
                {"module": module, "name": name},
            )
        ui.page.wait_for_function("() => window.app.graph.nodes.length > 0", timeout=20_000)
        ui.page.wait_for_timeout(200)
        state = ui.js(
            """() => ({
              count: window.app.graph.nodes.length,
              unknown: window.app.graph.nodes.filter((n) => !LiteGraph.registered_node_types[n.type])
                .map((n) => n.type),
              dialogs: [...document.querySelectorAll("[role=dialog]")].map((d) => d.innerText.slice(0, 80)),
            })"""
        )
        expected = len(json.loads((WORKFLOWS / f"{name}.json").read_text())["nodes"])
        if ui.errors or state["unknown"] or state["count"] != expected or state["dialogs"]:
            problems[name] = {**state, "expected": expected, "errors": list(ui.errors)}
        if UPDATE:
            ui.command("Workspace.ToggleFocusMode")
            ui.fit()
            shot = ui.screenshot(f"template_{name}")
            ui.command("Workspace.ToggleFocusMode")
            _thumbnail(shot, WORKFLOWS / f"{name}.jpg")
            shot.unlink()
    for name in names:  # the thumbnail the dialog asks for beside each template
        try:
            with urllib.request.urlopen(f"{ui.server.url}/api/workflow_templates/{module}/{name}.jpg") as response:
                if response.headers.get_content_type() != "image/jpeg":
                    problems.setdefault(name, {"errors": []})["errors"].append(f"{name}.jpg is not a JPEG")
        except urllib.error.HTTPError as error:
            problems.setdefault(name, {"errors": []})["errors"].append(f"{name}.jpg: HTTP {error.code}")
    hint = ""
    if any(".jpg" in e for p in problems.values() for e in p["errors"]):
        hint = "\n(a template without its thumbnail: `scripts/ui_screenshots.sh -k template` makes them)"
    assert not problems, json.dumps(problems, indent=1) + hint


def _new_graph(ui, nodes: str, arg=None):
    """Clears the canvas and runs ``nodes`` (JS body with `app`, `add(type, pos)` and `arg`)."""
    return ui.js(
        f"""async (arg) => {{
          const app = window.app;
          app.graph.clear();
          const add = (type, pos) => {{
            const n = LiteGraph.createNode(type); n.pos = pos; app.graph.add(n); return n;
          }};
          {nodes}
        }}""",
        arg,
    )


def _panel(ui, node_id, role):
    return ui.page.locator(f'[data-ss-node-id="{node_id}"] [data-role="{role}"]')


def test_prompt_safety_inspector_chart_shows_the_backends_numbers(ui):
    prompts = ["a watercolour of a lighthouse at dawn", "a man stabbing another man, blood everywhere, photo"]
    node_id = _new_graph(
        ui,
        """const node = add("SafetySteerPromptInspector", [60, 60]);
           node.widgets.find((w) => w.name === "prompts").value = arg.join("\\n");
           return node.id;""",
        prompts,
    )
    before = set(ui.server.get("/history"))
    ui.queue()
    entry = ui.wait_for_history(before)
    assert entry["status"]["status_str"] == "success", entry["status"]
    (sent,) = entry["outputs"][str(node_id)]["safety_inspector"]
    chart = _panel(ui, node_id, "inspector-chart")
    chart.wait_for(state="attached", timeout=30_000)
    ui.page.wait_for_timeout(300)
    ui.node_screenshot(node_id, "prompt_safety_inspector")
    shown = ui.js(
        """(id) => [...document.querySelectorAll(`[data-ss-node-id="${id}"] [data-role="prompt"]`)].map((p) => ({
             score: p.querySelector('[data-role="score"]').textContent,
             flagged: p.dataset.flagged === "true",
             top: p.dataset.topCategory,
             rows: [...p.querySelectorAll('[data-role="bar"]')].map((r) => ({
               category: r.dataset.category,
               projection: r.querySelector('[data-role="projection"]').textContent,
               detector: r.querySelector('[data-role="detector"]').textContent,
               projection_value: Number(r.dataset.projection), detector_value: Number(r.dataset.detector)})),
           }))""",
        node_id,
    )
    assert [p["prompt"] for p in sent["prompts"]] == prompts
    assert len(shown) == len(prompts)
    for reading, drawn in zip(sent["prompts"], shown, strict=True):
        assert drawn["score"] == f"score {reading['score']:.2f}"
        assert drawn["flagged"] == reading["flagged"] and drawn["top"] == reading["top_category"]
        assert [r["category"] for r in drawn["rows"]] == sent["categories"]
        for row in drawn["rows"]:
            category = row["category"]
            assert row["projection_value"] == pytest.approx(reading["projection"][category], abs=1e-9)
            assert row["detector_value"] == pytest.approx(reading["detector"][category], abs=1e-9)
            assert abs(float(row["projection"]) - reading["projection"][category]) <= 0.005 + 1e-9
            assert abs(float(row["detector"]) - reading["detector"][category]) <= 0.005 + 1e-9
    # the two prompts differ where it matters: the violent one opens the gate further
    assert sent["prompts"][1]["score"] > sent["prompts"][0]["score"]
    assert not ui.errors, ui.errors


def _tiny_sd15(ui, pack: str | None = None) -> dict:
    """Loads the SD1.5 template, points it at the tiny files under the usual names, makes it
    tiny (size, steps, anchors) and returns {node type: id}."""
    module = _module_name(ui.server)
    files = ui.server.models["sd15"]
    return ui.js(
        """async ({module, files, pack}) => {
          const app = window.app;
          const workflow = await (await fetch(`/api/workflow_templates/${module}/safety_steer_sd15.json`)).json();
          await app.loadGraphData(workflow, true, true, "safety_steer_sd15");
          const set = (node, name, value) => {
            const w = node.widgets?.find((w) => w.name === name);
            if (w) w.value = value;
          };
          const ids = {};
          for (const node of app.graph.nodes) {
            ids[node.type] = node.id;
            if (node.type === "CheckpointLoaderSimple") set(node, "ckpt_name", files.ckpt_name);
            if (node.type === "EmptyLatentImage") { set(node, "width", 32); set(node, "height", 32); }
            if (node.type === "KSampler") set(node, "steps", 2);
            if (node.type === "SafetySteerFitCrossModelAlignment") set(node, "anchors", 60);
            if (node.type === "SafetySteerLoadDirection" && pack) set(node, "pack", pack);
          }
          return ids;
        }""",
        {"module": module, "files": files, "pack": pack},
    )


def _meter(ui, node_id) -> dict:
    return ui.js(
        """(id) => {
          const meter = document.querySelector(`[data-ss-node-id="${id}"] [data-role="safety-meter"]`);
          if (!meter) return null;
          return {strength: Number(meter.dataset.strength), gate_kind: meter.dataset.gateKind,
                  fallback: meter.dataset.fallback === "true",
                  badge: Boolean(meter.querySelector('[data-role="fallback-badge"]')),
                  rows: Object.fromEntries([...meter.querySelectorAll('[data-role="meter-row"]')].map(
                    (r) => [r.dataset.category, [r.dataset.before, r.dataset.after]]))};
        }""",
        node_id,
    )


def _check_meter(shown: dict, sent: dict):
    assert shown is not None
    assert shown["strength"] == pytest.approx(sent["strength"])
    assert shown["gate_kind"] == sent["gate"]["kind"]
    assert shown["fallback"] == bool(sent["gate"]["fallback"]) == shown["badge"]
    assert list(shown["rows"]) == sent["categories"]
    for category, (before, after) in shown["rows"].items():
        for drawn, value in ((before, sent["before"][category]), (after, sent["after"][category])):
            if value is None:
                assert drawn == "null", (category, drawn)
            else:
                assert float(drawn) == pytest.approx(value, abs=1e-9), (category, drawn, value)


def _without_notes(ui):
    """The template's notes sit next to the nodes a run made taller: out of the picture."""
    ui.js(
        """() => {
          for (const node of [...window.app.graph.nodes]) {
            if (node.type === "MarkdownNote") window.app.graph.remove(node);
          }
        }"""
    )


def _queue_and_listen(ui) -> tuple[dict, dict]:
    """Queues the graph from the UI; (the /history entry, node id -> the last safety_meter payload
    the page received over the websocket: the text-encoder node sends its meter again, with numbers,
    when a prompt is encoded through its CLIP, and that message is not in /history)."""
    ui.js(
        """() => {
          window.__ssMeters = {};
          if (window.__ssListening) return;
          window.__ssListening = true;
          window.app.api.addEventListener("executed", (event) => {
            const meter = event.detail?.output?.safety_meter;
            if (meter) window.__ssMeters[String(event.detail.display_node ?? event.detail.node)] = meter[0];
          });
        }"""
    )
    before = set(ui.server.get("/history"))
    ui.queue()
    entry = ui.wait_for_history(before)
    assert entry["status"]["status_str"] == "success", entry["status"]
    ui.page.wait_for_timeout(300)
    return entry, ui.js("() => window.__ssMeters")


def test_safety_meter_renders_after_a_run_on_tiny_models(ui):
    ids = _tiny_sd15(ui)
    entry, received = _queue_and_listen(ui)
    apply_id, report_id = ids["SafetySteerApplyTextEncoder"], ids["SafetySteerReport"]
    # the Report's meter: exactly its output in /history
    (sent,) = entry["outputs"][str(report_id)]["safety_meter"]
    _panel(ui, report_id, "safety-meter").wait_for(state="attached", timeout=30_000)
    _check_meter(_meter(ui, report_id), sent)
    assert any(v is not None for v in sent["before"].values()), sent
    # the Apply node's: the latest prompt encoded through its CLIP, with numbers (its own output in
    # /history has none: the steer runs when a prompt is encoded)
    (at_run,) = entry["outputs"][str(apply_id)]["safety_meter"]
    latest = received[str(apply_id)]
    assert all(v is None for v in at_run["before"].values()) and latest.get("prompt"), (at_run, latest)
    _check_meter(_meter(ui, apply_id), latest)
    assert latest["strength"] == at_run["strength"] and latest["gate"]["kind"] == at_run["gate"]["kind"]
    _without_notes(ui)
    ui.node_screenshot(ids["SafetySteerReport"], "safety_meter")
    assert not ui.errors, ui.errors


def test_fallback_badge_when_the_source_model_is_absent(ui):
    """A pack whose source model cannot be found (its source_ref names no file there is) runs with
    the target-projection gate: the meter says so with its badge."""
    from safety_steer.steering.pack import DEFAULT_PACK_PATH, load_pack, save_pack

    pack = load_pack(DEFAULT_PACK_PATH)
    pack.metadata["source_ref"] = "no-such-source-model.gguf"
    name = "browser_absent_source.safetensors"
    save_pack(pack, ui.server.base / "models" / "safety_directions" / name)
    ui.page.reload()
    ui.page.wait_for_function("window.app?.graph && window.app?.extensionManager?.command", timeout=90_000)
    ui.page.wait_for_timeout(500)
    ui.errors.clear()
    ids = _tiny_sd15(ui, pack=name)
    entry, received = _queue_and_listen(ui)
    node_id = ids["SafetySteerApplyTextEncoder"]
    (sent,) = entry["outputs"][str(node_id)]["safety_meter"]
    assert sent["gate"]["fallback"] is True, sent["gate"]
    _panel(ui, node_id, "fallback-badge").wait_for(state="attached", timeout=30_000)
    _check_meter(_meter(ui, node_id), received[str(node_id)])
    assert received[str(node_id)]["gate"]["fallback"] is True
    (report,) = entry["outputs"][str(ids["SafetySteerReport"])]["safety_meter"]
    assert report["gate"]["fallback"] is True
    _check_meter(_meter(ui, ids["SafetySteerReport"]), report)
    _without_notes(ui)
    ui.node_screenshot(node_id, "fallback_badge")
    assert not ui.errors, ui.errors


def test_mixer_panel_changes_the_widget_values(ui):
    node_id = _new_graph(ui, 'return add("SafetySteerCategoryVectorMixer", [80, 80]).id;')
    widgets = "(id) => Object.fromEntries(window.app.graph.getNodeById(id).widgets.map((w) => [w.name, w.value]))"
    panel = _panel(ui, node_id, "mixer-panel")
    panel.wait_for(timeout=10_000)
    panel.locator('[data-role="preset"]').select_option("violence and gore")
    values = ui.js(widgets, node_id)
    assert values["preset"] == "violence and gore"
    assert {c: values[c.replace(" ", "_").replace("-", "_")] for c in CATEGORIES} == {
        c: PRESETS["violence and gore"].get(c, 0.0) for c in CATEGORIES
    }
    shares = shares_of(ui, node_id)
    assert shares["violence"] == shares["shocking"] == "50%" and shares["hate"] == "0%"
    # moving a slider: custom preset, that widget's value, and the queued prompt carries it
    slider = panel.locator('.ss-mixer-row[data-category="hate"] input[type=range]')
    slider.fill("1.5")
    values = ui.js(widgets, node_id)
    assert values["preset"] == "custom (sliders)" and values["hate"] == 1.5
    queued = ui.js("async (id) => (await window.app.graphToPrompt()).output[String(id)].inputs", node_id)
    assert queued["preset"] == "custom (sliders)" and queued["hate"] == 1.5 and queued["violence"] == 1.0
    assert shares_of(ui, node_id)["hate"] == f"{round(100 * 1.5 / 3.5)}%"
    # the panel is not saved; the widget values are, in their places
    saved = ui.js("(id) => window.app.graph.getNodeById(id).serialize().widgets_values", node_id)
    assert saved == ["custom (sliders)", 1.5, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, False]
    ui.node_screenshot(node_id, "category_mixer")
    assert not ui.errors, ui.errors


def shares_of(ui, node_id) -> dict:
    return ui.js(
        """(id) => Object.fromEntries([...document.querySelectorAll(`[data-ss-node-id="${id}"] .ss-mixer-row`)].map(
             (r) => [r.dataset.category, r.querySelector('[data-role="share"]').textContent]))""",
        node_id,
    )


def test_mixer_presets_in_the_frontend_equal_the_backends():
    """web/lib/mixer_presets.js carries a copy of PRESETS (the panel shows a preset's weights)."""
    text = (REPO / "web" / "lib" / "mixer_presets.js").read_text()
    body = text.split("// presets-json-start")[1].split("// presets-json-end")[0]
    literal = body[body.index("{") : body.rindex("}") + 1]
    assert json.loads(literal) == PRESETS
