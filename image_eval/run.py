"""`safety-steer eval-images`: expand the jobs, run what the ledger lacks, judge, report."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

from ..steering.errors import SafetySteerError
from .jobs import METHODS, build_graph, check_methods, expand_jobs, plan_workflow, workflow_hash
from .ledger import DONE, FAILED, PENDING, RUNNING, Ledger
from .prompt_sets import read_prompts
from .ui_format import WorkflowError, is_ui_format, ui_to_api

JUDGE_BATCH = 16


def say(message: str) -> None:
    print(f"[eval-images] {message}", file=sys.stderr, flush=True)


def fetch_object_info(urls: list[str]) -> dict:
    """GET /object_info from the first server that answers (to convert a UI-format workflow)."""
    errors = []
    for url in urls:
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/object_info", timeout=60) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            errors.append(f"{url}: {exc}")
    raise SafetySteerError(
        "the workflow is in UI format and no server answered /object_info to convert it ("
        + "; ".join(errors)
        + "). Start a server, or export the workflow with 'Export (API)'."
    )


def load_workflow(path: Path, urls: list[str]) -> dict:
    try:
        workflow = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise WorkflowError(f"workflow file not found: {path}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise WorkflowError(f"{path} is not a JSON workflow ({exc}).") from None
    if not isinstance(workflow, dict):
        raise WorkflowError(f"{path}: expected a JSON object (a ComfyUI workflow).")
    return ui_to_api(workflow, fetch_object_info(urls)) if is_ui_format(workflow) else workflow


def parse_list(text: str | None, kind=str) -> list:
    if not text:
        return []
    try:
        return [kind(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SafetySteerError(f"cannot read {text!r} as a comma-separated list of {kind.__name__}.") from None


def run_eval(args) -> int:
    out = Path(args.out)
    urls = parse_list(args.servers)
    if not urls:
        raise SafetySteerError("--servers needs at least one URL, e.g. http://127.0.0.1:8188")
    methods = parse_list(args.methods)
    strengths = parse_list(args.strengths, float)
    if any(m != "none" for m in methods) and not strengths:
        raise SafetySteerError("--strengths needs at least one value for the steering methods.")
    if any(s < 0 for s in strengths):
        raise SafetySteerError("--strengths must be >= 0.")
    prompt_graph = load_workflow(Path(args.workflow), urls)
    plan = plan_workflow(prompt_graph, args.text_node)
    check_methods(plan, methods)
    prompts = read_prompts(args.prompts, parse_list(args.categories), args.limit)
    identity = workflow_hash(prompt_graph)
    jobs = expand_jobs(
        prompts, args.seeds, methods, strengths, identity, args.direction, not args.ignore_prompt_guidance
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "workflow_api.json").write_text(json.dumps(prompt_graph, indent=1))
    ledger = Ledger(out / "ledger.sqlite")
    try:
        ledger.add_jobs(jobs)
        states = ledger.states([j.key for j in jobs])
        todo, adopt = [], []
        for job in jobs:
            row = states[job.key]
            if row["state"] == RUNNING and row["prompt_id"]:
                adopt.append((job, row["server"], row["prompt_id"]))
            elif row["state"] in (PENDING, RUNNING) or (row["state"] == FAILED and args.retry_failed):
                todo.append(job)
        done = sum(1 for r in states.values() if r["state"] == DONE)
        say(
            f"{len(jobs)} jobs ({len(prompts)} prompts x {args.seeds} seed(s) x settings); {done} already done, "
            f"{len(todo) + len(adopt)} to run on {len(urls)} server(s)"
        )
        if todo or adopt:
            _dispatch(ledger, out, urls, prompt_graph, plan, todo, adopt, args)
        judges = [] if args.no_judge else _judge(ledger, out, jobs, args.judge or ["open_nsfw"])
        states = ledger.states([j.key for j in jobs])
        rows = [r for r in states.values() if r["state"] == DONE]
        failed = [r for r in states.values() if r["state"] == FAILED]
        per_server = Counter(r["server"] for r in rows)
        context = "Jobs per server: " + ", ".join(f"{s} {n}" for s, n in sorted(per_server.items()))
        if failed:
            context += f"\n\n{len(failed)} job(s) failed (rerun with --retry-failed); first error: {failed[0]['error']}"
        if rows:
            keys = {r["key"] for r in rows}
            scores = [s for s in ledger.scores() if s["key"] in keys]
            meta = {j.name: (j.kind, getattr(j, "threshold", None)) for j in judges}
            from .report import write_report

            path = write_report(rows, scores, meta, out, grid_limit=args.grid_prompts, context=context)
            say(f"report: {path}")
        say(f"{len(rows)} done, {len(failed)} failed; {context.splitlines()[0]}")
        return 1 if failed else 0
    finally:
        ledger.close()


def _dispatch(ledger, out, urls, prompt_graph, plan, todo, adopt, args) -> None:
    from tqdm import tqdm

    from .dispatch import Dispatcher

    bar = tqdm(total=len(todo) + len(adopt), unit="job", desc="generating", dynamic_ncols=True)
    dispatcher = None
    last_refresh = [0.0]

    def show_servers(refresh: bool) -> None:
        parts = []
        for s in dispatcher.servers:
            step = f" step {s.step[0]}/{s.step[1]}" if s.step else ""
            parts.append(f"{s.name} {s.done} ({s.rate():.2f}/s{step})" if s.up.is_set() else f"{s.name} down")
        bar.set_postfix_str("  ".join(parts), refresh=False)
        if refresh and time.monotonic() - last_refresh[0] > 0.5:
            last_refresh[0] = time.monotonic()
            bar.refresh()

    def on_result(server, job, state) -> None:
        server.step = None
        bar.update(1)
        show_servers(False)

    dispatcher = Dispatcher(
        ledger,
        out,
        urls,
        lambda job: build_graph(prompt_graph, plan, job, f"safety_steer_eval/{job.key[:16]}"),
        max_in_flight=args.max_in_flight,
        job_timeout=args.job_timeout,
        give_up_after=args.give_up_after,
        on_result=on_result,
        on_progress=lambda server: show_servers(True),
        log=lambda message: bar.write(f"[eval-images] {message}", file=sys.stderr),
    )
    try:
        dispatcher.run(todo, adopt)
    except Exception as exc:  # WorkflowRefused, ServerGone after give_up_after: resumable
        raise SafetySteerError(f"{exc} (finished jobs are kept in {out / 'ledger.sqlite'})") from None
    finally:
        bar.close()


def _judge(ledger: Ledger, out: Path, jobs, specs: list[str]) -> list:
    from PIL import Image
    from tqdm import tqdm

    from .judges import load_judge

    judges = [load_judge(spec) for spec in specs]
    states = ledger.states([j.key for j in jobs])
    rows = [r for r in states.values() if r["state"] == DONE]
    for judge in judges:
        seen = ledger.scored(judge.name)
        todo = [(r, i, p) for r in rows for i, p in enumerate(json.loads(r["images"])) if (r["key"], i) not in seen]
        for start in tqdm(range(0, len(todo), JUDGE_BATCH), desc=f"judging ({judge.name})", unit="batch"):
            batch = todo[start : start + JUDGE_BATCH]
            images = []
            for _, _, path in batch:
                with Image.open(out / path) as image:
                    images.append(image.convert("RGB"))
            values = judge.score(images, [r["prompt"] for r, _, _ in batch])
            ledger.add_scores([(r["key"], i, judge.name, float(v)) for (r, i, _), v in zip(batch, values)])
    return judges


def add_arguments(parser) -> None:
    parser.add_argument("--workflow", required=True, help="your workflow, API format or UI format (.json)")
    parser.add_argument("--prompts", required=True, help="prompts: our JSONL (prompts or pairs) or an I2P-layout CSV")
    parser.add_argument("--servers", required=True, help="comma-separated ComfyUI URLs, e.g. http://gpu1:8188,...")
    parser.add_argument("--out", required=True, help="output folder: ledger.sqlite, images/, report.md")
    parser.add_argument("--methods", default="none,transferred", help=f"comma-separated, of {', '.join(METHODS)}")
    parser.add_argument("--strengths", default="1,2", help="comma-separated Apply node strengths (not for 'none')")
    parser.add_argument("--categories", default=None, help="only prompts in these comma-separated categories")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per prompt (the prompt's own seed, +1, ...)")
    parser.add_argument(
        "--direction",
        default=None,
        help="set the Apply nodes' direction (auto, global, a category, or prompt-category: each prompt's first)",
    )
    parser.add_argument("--text-node", default=None, help="node id of the positive prompt (default: found)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N prompts")
    parser.add_argument("--judge", action="append", help="judge (repeatable; default open_nsfw); see judges.py")
    parser.add_argument("--no-judge", action="store_true", help="generate only")
    parser.add_argument("--max-in-flight", type=int, default=2, help="jobs queued at once on each server")
    parser.add_argument("--job-timeout", type=float, default=1800.0, help="seconds before a job is sent elsewhere")
    parser.add_argument("--give-up-after", type=float, default=600.0, help="seconds with no server up before stopping")
    parser.add_argument("--retry-failed", action="store_true", help="run again the jobs that failed before")
    parser.add_argument("--ignore-prompt-guidance", action="store_true", help="keep the workflow's cfg")
    parser.add_argument("--grid-prompts", type=int, default=24, help="thumbnail grids for the first N prompts")
