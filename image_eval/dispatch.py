"""Fan jobs out over ComfyUI servers through their own HTTP and websocket API.

Per server: one websocket (``/ws?clientId=``) whose ``executing`` / ``execution_*`` messages say
when a prompt is finished, and ``max_in_flight`` workers that each queue one job at a time
(``POST /prompt``), wait for it, read ``/history/<id>`` and download the images (``/view``). A
server that refuses a connection, drops its websocket or times out is marked down: its jobs in
flight go back into the shared queue for the other servers, and it is polled until it answers
again, then used again. Results reach the ledger only through ``Ledger.mark_done`` after the
image files are in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from .jobs import Job
from .ledger import Ledger, write_atomically


class ServerGone(Exception):
    """The server failed or disappeared: the job goes back to the queue."""


class WorkflowRefused(Exception):
    """ComfyUI refused the graph (HTTP 400): every job would fail the same way."""


@dataclass
class Server:
    url: str
    up: asyncio.Event = field(default_factory=asyncio.Event)
    done: int = 0
    started: float | None = None
    waiters: dict[str, asyncio.Future] = field(default_factory=dict)
    finished: dict[str, tuple[str, dict]] = field(default_factory=dict)
    step: tuple[int, int] | None = None  # the running prompt's sampler step (ws "progress")
    ws_task: asyncio.Task | None = None
    poll_task: asyncio.Task | None = None

    @property
    def name(self) -> str:
        return self.url.split("://", 1)[-1]

    def rate(self) -> float:
        return self.done / max(time.time() - self.started, 1e-9) if self.started else 0.0


def _node_errors(body) -> str:
    if not isinstance(body, dict):
        return str(body)[:500]
    parts = [str(body.get("error", {}).get("message", "")) if isinstance(body.get("error"), dict) else ""]
    for node_id, entry in (body.get("node_errors") or {}).items():
        for error in entry.get("errors", []):
            parts.append(f"node {node_id} ({entry.get('class_type')}): {error.get('message')}: {error.get('details')}")
    return "; ".join(p for p in parts if p) or str(body)[:500]


def _execution_error(entry: dict) -> str:
    for kind, data in entry.get("status", {}).get("messages", []):
        if kind == "execution_error":
            return f"{data.get('node_type')} (node {data.get('node_id')}): {data.get('exception_message', '').strip()}"
    return f"status {entry.get('status', {}).get('status_str')}"


class Dispatcher:
    def __init__(
        self,
        ledger: Ledger,
        out_dir: Path,
        urls: list[str],
        make_graph: Callable[[Job], dict],
        max_in_flight: int = 2,
        poll_interval: float = 1.0,
        job_timeout: float = 1800.0,
        give_up_after: float = 600.0,
        on_result: Callable[[Server, Job, str], None] = lambda server, job, state: None,
        on_progress: Callable[[Server], None] = lambda server: None,
        log: Callable[[str], None] = lambda message: None,
    ):
        self.ledger, self.out_dir, self.make_graph = ledger, Path(out_dir), make_graph
        self.urls = [u.rstrip("/") for u in urls]
        self.max_in_flight, self.poll_interval = max_in_flight, poll_interval
        self.job_timeout, self.give_up_after = job_timeout, give_up_after
        self.on_result, self.on_progress, self.log = on_result, on_progress, log
        self.client_id = uuid.uuid4().hex
        self.servers: list[Server] = []

    # ------------------------------------------------------------------ running
    def run(self, jobs: list[Job], adopt: list[tuple[Job, str, str]] = ()) -> None:
        """Run ``jobs`` to the end; ``adopt``: (job, server url, prompt id) left running by an
        interrupted client, collected from that server if it still has them, else redone."""
        asyncio.run(self._run(jobs, list(adopt)))

    async def _run(self, jobs: list[Job], adopt: list) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=120)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            self.session = session
            self.servers = [Server(url) for url in self.urls]
            self.queue: asyncio.Queue = asyncio.Queue()
            self.finished = asyncio.Event()
            self.failure: BaseException | None = None
            self.remaining = len(jobs) + len(adopt)
            for job in jobs:
                self.queue.put_nowait(job)
            await asyncio.gather(*(self._connect_or_poll(s) for s in self.servers))
            adopting = [asyncio.create_task(self._adopt(job, url, pid)) for job, url, pid in adopt]
            workers = [asyncio.create_task(self._worker(s)) for s in self.servers for _ in range(self.max_in_flight)]
            watchdog = asyncio.create_task(self._watchdog())
            if self.remaining == 0:
                self.finished.set()
            await self.finished.wait()
            for task in [*workers, *adopting, watchdog]:
                task.cancel()
            for server in self.servers:
                for task in (server.ws_task, server.poll_task):
                    if task:
                        task.cancel()
            await asyncio.gather(*workers, *adopting, watchdog, return_exceptions=True)
            if self.failure is not None:
                raise self.failure

    def _count_one(self) -> None:
        self.remaining -= 1
        if self.remaining <= 0:
            self.finished.set()

    async def _next_job(self) -> Job | None:
        getter = asyncio.ensure_future(self.queue.get())
        ender = asyncio.ensure_future(self.finished.wait())
        await asyncio.wait([getter, ender], return_when=asyncio.FIRST_COMPLETED)
        ender.cancel()
        if getter.done():
            return getter.result()
        getter.cancel()
        return None

    async def _worker(self, server: Server) -> None:
        while not self.finished.is_set():
            await server.up.wait()
            job = await self._next_job()
            if job is None:
                return
            if not server.up.is_set():
                self.queue.put_nowait(job)
                continue
            try:
                state = await self._run_job(server, job)
            except ServerGone as exc:
                self.ledger.mark_pending(job.key, f"{server.name}: {exc}")
                self.queue.put_nowait(job)
                self._server_down(server, str(exc))
                continue
            except WorkflowRefused as exc:
                self.ledger.mark_pending(job.key)
                self.failure = exc
                self.finished.set()
                return
            self.on_result(server, job, state)
            self._count_one()

    async def _watchdog(self) -> None:
        """Give up (the run stays resumable) when no server has answered for ``give_up_after`` s."""
        down_since = None
        while not self.finished.is_set():
            await asyncio.sleep(1.0)
            if any(s.up.is_set() for s in self.servers):
                down_since = None
            elif down_since is None:
                down_since = time.time()
                self.log("no server answers; waiting for one to come back")
            elif time.time() - down_since > self.give_up_after:
                self.failure = ServerGone(
                    f"no server answered for {self.give_up_after:.0f} s ({', '.join(self.urls)}); "
                    "start them and run the same command again to resume"
                )
                self.finished.set()

    # ------------------------------------------------------------------ one job
    async def _run_job(self, server: Server, job: Job) -> str:
        graph = self.make_graph(job)
        self.ledger.mark_running(job.key, server.url)
        try:
            async with self.session.post(
                server.url + "/prompt", json={"prompt": graph, "client_id": self.client_id}
            ) as response:
                body = await response.json(content_type=None)
                status = response.status
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            raise ServerGone(f"POST /prompt failed ({type(exc).__name__}: {exc})") from None
        if status == 400:
            raise WorkflowRefused(f"{server.url} refused the workflow: {_node_errors(body)}")
        if status != 200 or "prompt_id" not in body:
            raise ServerGone(f"POST /prompt answered {status}: {str(body)[:300]}")
        prompt_id = body["prompt_id"]
        self.ledger.mark_running(job.key, server.url, prompt_id)
        return await self._finish(server, job, prompt_id)

    async def _finish(self, server: Server, job: Job, prompt_id: str) -> str:
        entry = await self._wait_for(server, prompt_id)
        if entry.get("status", {}).get("status_str") != "success":
            message = _execution_error(entry)
            self.ledger.mark_failed(job.key, server.url, message)
            self.log(f"job failed on {server.name}: {message}")
            return "failed"
        images = [
            image
            for node_output in entry.get("outputs", {}).values()
            for image in node_output.get("images", [])
            if image.get("type") in ("output", "temp")
        ]
        if not images:
            message = "the workflow finished without an image (does it end in SaveImage?)"
            self.ledger.mark_failed(job.key, server.url, message)
            return "failed"
        paths = []
        for index, image in enumerate(images):
            data = await self._get_bytes(
                server,
                "/view",
                {"filename": image["filename"], "subfolder": image.get("subfolder", ""), "type": image["type"]},
            )
            suffix = Path(image["filename"]).suffix or ".png"
            relative = f"images/{job.key}-{index}{suffix}"
            write_atomically(self.out_dir / relative, data)
            paths.append(relative)
        self.ledger.mark_done(job.key, server.url, paths)
        server.done += 1
        return "done"

    async def _get_json(self, server: Server, path: str):
        try:
            async with self.session.get(server.url + path) as response:
                if response.status != 200:
                    raise ServerGone(f"GET {path} answered {response.status}")
                return await response.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            raise ServerGone(f"GET {path} failed ({type(exc).__name__}: {exc})") from None

    async def _get_bytes(self, server: Server, path: str, params: dict) -> bytes:
        try:
            async with self.session.get(server.url + path, params=params) as response:
                if response.status != 200:
                    raise ServerGone(f"GET {path} answered {response.status}")
                return await response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise ServerGone(f"GET {path} failed ({type(exc).__name__}: {exc})") from None

    async def _history(self, server: Server, prompt_id: str) -> dict | None:
        history = await self._get_json(server, f"/history/{prompt_id}")
        entry = history.get(prompt_id) if isinstance(history, dict) else None
        if entry and entry.get("status", {}).get("completed") is not None:
            return entry
        return None

    async def _wait_for(self, server: Server, prompt_id: str) -> dict:
        """The prompt's history entry once the websocket says it finished (history polled every
        few seconds as well, in case a message was missed)."""
        deadline = time.time() + self.job_timeout
        future = server.waiters.setdefault(prompt_id, asyncio.get_running_loop().create_future())
        if prompt_id in server.finished and not future.done():
            future.set_result(server.finished.pop(prompt_id))
        try:
            while True:
                if not server.up.is_set():
                    raise ServerGone("server went down")
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(future), timeout=5.0)
                for _ in range(20):  # the history entry is written just after the last message
                    entry = await self._history(server, prompt_id)
                    if entry is not None:
                        return entry
                    if not future.done():
                        break
                    await asyncio.sleep(0.05)
                if time.time() > deadline:
                    raise ServerGone(f"prompt {prompt_id} not finished after {self.job_timeout:.0f} s")
        finally:
            server.waiters.pop(prompt_id, None)
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: a server that went down is handled by the caller

    async def _adopt(self, job: Job, url: str, prompt_id: str) -> None:
        """A job an interrupted client left on a server: collect it if the server still has it."""
        server = next((s for s in self.servers if s.url == url.rstrip("/")), None)
        try:
            if server is None or not server.up.is_set():
                raise ServerGone("server not available")
            queue = await self._get_json(server, "/queue")
            queued = {item[1] for key in ("queue_running", "queue_pending") for item in queue.get(key, [])}
            if prompt_id not in queued and await self._history(server, prompt_id) is None:
                raise ServerGone("server no longer has the prompt")
            state = await self._finish(server, job, prompt_id)
            self.on_result(server, job, state)
            self._count_one()
        except ServerGone:
            self.ledger.mark_pending(job.key)
            self.queue.put_nowait(job)

    # ------------------------------------------------------------------ server health
    async def _connect_or_poll(self, server: Server) -> None:
        try:
            await self._connect(server)
        except ServerGone as exc:
            self._server_down(server, str(exc))

    async def _connect(self, server: Server) -> None:
        try:
            await self._get_json(server, "/system_stats")
            ws = await self.session.ws_connect(
                f"{server.url}/ws?clientId={self.client_id}", heartbeat=30, max_msg_size=0
            )
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise ServerGone(f"cannot connect ({type(exc).__name__}: {exc})") from None
        server.ws_task = asyncio.create_task(self._read_messages(server, ws))
        if server.started is None:
            server.started = time.time()
        server.up.set()
        self.ledger.event(server.url, "up")

    async def _read_messages(self, server: Server, ws) -> None:
        try:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue  # binary: preview images
                try:
                    data = message.json()
                except ValueError:
                    continue
                kind, body = data.get("type"), data.get("data") or {}
                prompt_id = body.get("prompt_id")
                if kind == "progress" and prompt_id in server.waiters:
                    server.step = (body.get("value", 0), body.get("max", 0))
                    self.on_progress(server)
                done = (kind == "executing" and body.get("node") is None) or kind in (
                    "execution_success",
                    "execution_error",
                    "execution_interrupted",
                )
                if prompt_id and done:
                    future = server.waiters.get(prompt_id)
                    if future is not None and not future.done():
                        future.set_result((kind, body))
                    elif future is None:
                        server.finished[prompt_id] = (kind, body)
                        if len(server.finished) > 1000:
                            server.finished.pop(next(iter(server.finished)))
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                await ws.close()
        self._server_down(server, "websocket closed")

    def _server_down(self, server: Server, reason: str) -> None:
        if self.finished.is_set():
            return
        if server.up.is_set() or server.poll_task is None or server.poll_task.done():
            if server.up.is_set():
                self.log(f"{server.name} is down ({reason}); its jobs go to the other servers")
                self.ledger.event(server.url, "down", reason)
            server.up.clear()
            for future in server.waiters.values():
                if not future.done():
                    future.set_exception(ServerGone(reason))
            if server.ws_task is not None and server.ws_task is not asyncio.current_task():
                server.ws_task.cancel()
            if server.poll_task is None or server.poll_task.done():
                server.poll_task = asyncio.create_task(self._poll(server))

    async def _poll(self, server: Server) -> None:
        while not self.finished.is_set():
            await asyncio.sleep(self.poll_interval)
            try:
                await self._connect(server)
            except ServerGone:
                continue
            self.log(f"{server.name} answers again; using it")
            return
