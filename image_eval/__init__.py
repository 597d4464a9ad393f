"""Image-level evaluation: the user's own workflow, run over any number of ComfyUI servers, judged.

`safety-steer eval-images` drives ComfyUI through its HTTP and websocket API only (nothing here
imports ComfyUI), so the harness runs on any machine that reaches the servers.
Modules: prompt_sets (JSONL / I2P CSV), workflow (UI -> API, finding the nodes to set), jobs
(prompts x seeds x methods x strengths, set into the workflow), ledger (SQLite, resumable),
dispatch (async fan-out over servers), judges (open_nsfw and plug-ins), report (ASR, CIs, plots,
grids, Markdown), run (the command).
"""
