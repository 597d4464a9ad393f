"""eval-images throughput against the number of ComfyUI servers (1, 2, 3 on loopback).

Three real ComfyUI servers (`safety-steer serve`, one torch thread each) load the test kit's tiny
SD1.5 checkpoint (tests/tiny_models.py); the workflow is the tiny SD1.5 graph with Fit Cross-Model
Alignment and Apply Safety Steer (Text Encoder). Each server is warmed up first (alignment fitted
and cached, model loaded). Then the harness's own Dispatcher runs the same number of fresh jobs on
the first 1, 2 and 3 servers, the three counts interleaved round by round so that a change in the
machine's load hits each alike; jobs per second (median over rounds) and the ratio to one server
are reported. Tiny models make a job cost almost nothing on the server, so this measures the
harness and ComfyUI's per-prompt overhead (one server also waits on the client's round trips:
queue, websocket, history, download, ledger write), and how far the machine's cores let servers
run side by side.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from ..image_eval.dispatch import Dispatcher
from ..image_eval.jobs import build_graph, expand_jobs, plan_workflow, workflow_hash
from ..image_eval.ledger import Ledger
from ..image_eval.prompt_sets import EvalPrompt
from ..runtime import PACK_ROOT, load_module_from, prepare_base_directory, start_comfyui_in_process
from ..steering.pack import DEFAULT_PACK_PATH

SERVER_COUNTS = (1, 2, 3)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tiny_workflow(files: dict) -> dict:
    tiny = load_module_from(PACK_ROOT / "tests" / "tiny_models.py", "safety_steer_tiny_models")
    prompt = tiny.api_prompt("sd15", files, steps=2, text="placeholder")
    prompt["direction"] = {"class_type": "SafetySteerLoadDirection", "inputs": {"pack": DEFAULT_PACK_PATH.name}}
    prompt["align"] = {
        "class_type": "SafetySteerFitCrossModelAlignment",
        "inputs": {"clip": ["model", 1], "direction": ["direction", 0], "method": "ridge", "anchors": 40},
    }
    prompt["steer"] = {
        "class_type": "SafetySteerApplyTextEncoder",
        "inputs": {
            "clip": ["model", 1],
            "aligned_direction": ["align", 0],
            "strength": 1.0,
            "direction": "auto",
            "mode": "add",
            "gate": "none",
            "gate_threshold": -1.0,
        },
    }
    for node in ("positive", "negative"):
        prompt[node]["inputs"]["clip"] = ["steer", 0]
    return prompt


def start_servers(root: Path, count: int, log) -> tuple[list[tuple[str, subprocess.Popen]], dict]:
    """``count`` servers on the tiny SD1.5 checkpoint (written once into root/models)."""
    start_comfyui_in_process(root / "in_process")
    tiny = load_module_from(PACK_ROOT / "tests" / "tiny_models.py", "safety_steer_tiny_models")
    files = tiny.write_model_files(root / "models", "sd15")
    servers = []
    for index in range(count):
        base = prepare_base_directory(root / f"server{index}")
        (base / "models" / "checkpoints").symlink_to(root / "models" / "checkpoints", target_is_directory=True)
        (base / "custom_nodes" / "tiny_loader_extension").symlink_to(
            PACK_ROOT / "tests" / "tiny_loader_extension", target_is_directory=True
        )
        port = _free_port()
        command = [sys.executable, "-m", "safety_steer.cli", "serve", "--port", str(port)]
        command += ["--base-directory", str(base)]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "SAFETY_STEER_CACHE": str(root / "cache")}
        with open(base / "server.log", "w") as handle:
            process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=base)
        servers.append((f"http://127.0.0.1:{port}", process))
    for url, process in servers:
        deadline = time.time() + 300
        while True:
            try:
                urllib.request.urlopen(url + "/system_stats", timeout=5).read()
                break
            except OSError:
                if process.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"server {url} did not start") from None
                time.sleep(0.5)
        log(f"server {url} up")
    return servers, files


def timed_run(root: Path, urls: list[str], prompt: dict, jobs) -> dict:
    out = Path(tempfile.mkdtemp(dir=root))
    ledger = Ledger(out / "ledger.sqlite")
    ledger.add_jobs(jobs)
    plan = plan_workflow(prompt)
    dispatcher = Dispatcher(
        ledger, out, urls, lambda job: build_graph(prompt, plan, job, f"bench/{job.key[:16]}"), max_in_flight=2
    )
    start, cpu = time.perf_counter(), time.process_time()
    dispatcher.run(jobs)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    rows = ledger.states([j.key for j in jobs]).values()
    assert all(r["state"] == "done" for r in rows), "a benchmark job failed"
    per_server = {u: sum(r["server"] == u for r in rows) for u in urls}
    ledger.close()
    shutil.rmtree(out)
    return {
        "seconds": seconds,
        "jobs_per_second": len(jobs) / seconds,
        "client_cpu_seconds_per_job": cpu / len(jobs),
        "per_server": list(per_server.values()),
    }


def run(jobs_per_run: int = 48, rounds: int = 5, out: Path | None = None, log=print) -> dict:
    root = Path(tempfile.mkdtemp(prefix="eval_images_bench_"))
    servers = []
    try:
        servers, files = start_servers(root, max(SERVER_COUNTS), log)
        urls = [url for url, _ in servers]
        prompt = tiny_workflow(files)
        identity = workflow_hash(prompt)
        counter = iter(range(10**9))

        def fresh_jobs(n: int):
            prompts = [EvalPrompt(f"a photo of a cat, number {next(counter)}", ("violence",), True) for _ in range(n)]
            return expand_jobs(prompts, 1, ["transferred"], [1.0], identity)

        for url in urls:  # warm-up: the alignment fit (cached on disk after the first) and model load
            timed_run(root, [url], prompt, fresh_jobs(3))
        load_before = os.getloadavg()
        runs = {n: [] for n in SERVER_COUNTS}
        for round_index in range(rounds):
            for n in SERVER_COUNTS if round_index % 2 == 0 else reversed(SERVER_COUNTS):
                result = timed_run(root, urls[:n], prompt, fresh_jobs(jobs_per_run))
                runs[n].append(result)
                rate = result["jobs_per_second"]
                log(f"round {round_index + 1}: {n} server(s) {rate:.2f} jobs/s, per server {result['per_server']}")
        median = {n: statistics.median(r["jobs_per_second"] for r in runs[n]) for n in SERVER_COUNTS}
        # within a round the three counts run minutes apart at most: their ratio is less hit by load swings
        per_round = {
            n: [runs[n][i]["jobs_per_second"] / runs[1][i]["jobs_per_second"] for i in range(rounds)]
            for n in SERVER_COUNTS
        }
        results = {
            "what": "eval-images jobs per second on 1, 2, 3 ComfyUI servers on loopback (tiny SD1.5, 2 steps, "
            "one torch thread per server, 2 jobs in flight per server)",
            "jobs_per_run": jobs_per_run,
            "rounds": rounds,
            "cpu_count": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "machine": platform.machine(),
            "python": platform.python_version(),
            "jobs_per_second_median": {str(n): round(v, 3) for n, v in median.items()},
            "client_cpu_seconds_per_job_median": round(
                statistics.median(r["client_cpu_seconds_per_job"] for n in SERVER_COUNTS for r in runs[n]), 4
            ),
            "ratio_to_one_server": {str(n): round(median[n] / median[1], 3) for n in SERVER_COUNTS},
            "ratio_to_one_server_per_round": {str(n): [round(r, 3) for r in per_round[n]] for n in SERVER_COUNTS},
            "ratio_to_one_server_median_of_rounds": {
                str(n): round(statistics.median(per_round[n]), 3) for n in SERVER_COUNTS
            },
            "runs": {str(n): runs[n] for n in SERVER_COUNTS},
        }
    finally:
        for _, process in servers:
            process.terminate()
        for _, process in servers:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(root, ignore_errors=True)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))
    return results


def format_result(results: dict) -> str:
    lines = [f"{results['what']}; {results['jobs_per_run']} jobs per run, median of {results['rounds']} rounds"]
    lines.append(
        f"cores {results['cpu_count']}, load average before {results['load_average_before']}, "
        f"client CPU per job {results['client_cpu_seconds_per_job_median'] * 1000:.0f} ms"
    )
    lines.append("servers  jobs/s (median)  ratio to 1 (of medians)  ratio to 1 per round")
    for n, value in results["jobs_per_second_median"].items():
        rounds = " ".join(f"{r:.2f}" for r in results["ratio_to_one_server_per_round"][n])
        lines.append(f"{n:>7}  {value:15.2f}  {results['ratio_to_one_server'][n]:23.2f}  {rounds}")
    return "\n".join(lines)
