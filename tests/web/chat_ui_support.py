"""A generated chat UI, served for real: ``sa-llm install`` + ``sa-llm chat-ui`` in a project
directory, its tables migrated, the registry loaded, ``uvicorn chat_app:app`` in subprocesses
on 127.0.0.1, and a scripted OpenAI-compatible provider (``FakeOpenAIServer``) whose reply
depends on a keyword in the user's message:

* ``slow``: 40 chunks, 50 ms apart (a reply that takes ~2 s);
* ``fail``: an HTTP 400 from the provider (not retried: the turn fails at once);
* ``script``: a reply with a ``<script>`` and an ``onerror`` image in it;
* anything else: :data:`REPLY` in 8 chunks, 40 ms apart, after 0.3 s of latency.

:class:`ChaosProxy` sits between a browser and a server when a test wants the event stream
reordered, duplicated, cut or refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import Engine

from sa_llm.testing.server import FakeOpenAIServer, Plan, Received

BIN = Path(sys.executable).parent
REPLY = "Paris is the capital of France. Its river is the Seine — 🗼 and café culture."
SLOW_REPLY = " ".join(f"word{i}" for i in range(40))
SCRIPT_REPLY = (
    'Look: <script>window.pwned = 1</script> <img src=x onerror="window.pwned=2"> **bold**'
)
FAIL_MESSAGE = "The model refused this request"


def last_user_text(received: Received) -> str:
    items = received.body.get("input") or received.body.get("messages") or []
    users = [item for item in items if isinstance(item, dict) and item.get("role") == "user"]
    return json.dumps(users[-1]) if users else ""


def plan(received: Received, default: Plan) -> Plan:
    text = last_user_text(received)
    if "slow" in text:
        return dataclasses.replace(default, text=SLOW_REPLY, chunks=40, chunk_interval=0.05)
    if "fail" in text:
        return dataclasses.replace(default, status=400, error_message=FAIL_MESSAGE)
    if "script" in text:
        return dataclasses.replace(default, text=SCRIPT_REPLY, chunks=4, chunk_interval=0.03)
    return dataclasses.replace(default, text=REPLY, chunks=8, chunk_interval=0.04, latency=0.3)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(args: list[str], cwd: Path, env: dict[str, str]) -> None:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"


@dataclass
class ChatApp:
    """The generated app in ``root``, served by one or more uvicorn processes."""

    root: Path
    db_url: str
    engine: Engine
    provider: FakeOpenAIServer
    env: dict[str, str]
    urls: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.urls[0]

    def new_chat(self, prompt: str, base: str | None = None, timeout: float = 5.0) -> str:
        """Create a chat through the app's form; its page's URL."""
        response = httpx.post(
            f"{base or self.url}/chats",
            data={"prompt": prompt},
            follow_redirects=False,
            timeout=timeout,
        )
        assert response.status_code == 303, response.text
        return f"{base or self.url}{response.headers['location']}"


def generate(root: Path, env: dict[str, str], *mappings: str) -> None:
    """``sa-llm install`` + ``sa-llm chat-ui`` (as a user types them), then migrate and load."""
    run([str(BIN / "sa-llm"), "install", *mappings], root, env)
    run([str(BIN / "sa-llm"), "chat-ui", *mappings], root, env)
    run([str(BIN / "alembic"), "upgrade", "head"], root, env)
    model_class = next((m.split(":")[1] for m in mappings if m.startswith("model:")), "Model")
    load = ["models", "load", "--module", "models.py", "--class", model_class]
    run([str(BIN / "sa-llm"), *load], root, env)


@contextmanager
def serve(app: ChatApp, count: int = 1, extra_env: dict[str, str] | None = None) -> Iterator[None]:
    """``count`` uvicorn processes of the app (each its own port), stopped after."""
    with ExitStack() as stack:
        for _ in range(count):
            port = free_port()
            log = stack.enter_context((app.root / f"uvicorn-{port}.log").open("w"))
            process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "chat_app:app", "--port", str(port),
                 "--log-level", "warning"],
                cwd=app.root, env={**app.env, **(extra_env or {})}, stdout=log, stderr=log,
            )  # fmt: skip
            stack.callback(_stop, process)
            url = f"http://127.0.0.1:{port}"
            _wait_until_up(url, process, app.root / f"uvicorn-{port}.log")
            app.urls.append(url)
        try:
            yield
        finally:
            app.urls.clear()


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/chats", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "uvicorn did not start: " + log.read_text()
        time.sleep(0.1)


def app_env(db_url: str, provider: FakeOpenAIServer) -> dict[str, str]:
    env = {
        **os.environ,
        "SA_LLM_DATABASE_URL": db_url,
        "OPENAI_BASE_URL": provider.url,
        "OPENAI_API_KEY": "test-key",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DATABASE_URL", None)
    return env


# -- a proxy that disturbs the event stream --------------------------------------------------------


class ChaosProxy:
    """An HTTP/1.1 proxy on 127.0.0.1 in front of ``upstream``. Event-stream responses are
    de-chunked and their events disturbed: each pair swapped (``reorder``), every
    ``duplicate_every``-th sent twice, the stream cut after ``cut_after`` events; the event-stream
    request after a cut is answered ``503`` (``refuse_after_cut``). Other responses pass as they
    are. ``counts`` tells what it did."""

    def __init__(
        self,
        upstream: str,
        *,
        reorder: bool = True,
        duplicate_every: int = 3,
        cut_after: int | None = None,
        refuse_after_cut: bool = False,
    ) -> None:
        self.upstream_port = int(upstream.rsplit(":", 1)[1])
        self.reorder = reorder
        self.duplicate_every = duplicate_every
        self.cut_after = cut_after
        self.refuse_after_cut = refuse_after_cut
        self.counts = {"events": 0, "swapped": 0, "duplicated": 0, "cut": 0, "refused": 0}
        self._refuse_next = False
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.Server
        self.port = 0

    def __enter__(self) -> ChaosProxy:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        # A connection the browser opened as the proxy shut down (an event stream reconnects
        # at once) gets its handler task after the shutdown's look at the tasks: end those
        # too, or closing the loop destroys them pending.
        leftovers = asyncio.all_tasks(self._loop)
        for task in leftovers:
            task.cancel()
        if leftovers:
            self._loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        self._loop.close()

    async def _shutdown(self) -> None:
        self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_writer: asyncio.StreamWriter | None = None
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = [line for line in lines[1:] if line and not line.lower().startswith(
                ("connection:", "keep-alive:"))]  # fmt: skip
            length = next(
                (
                    int(h.split(":", 1)[1])
                    for h in headers
                    if h.lower().startswith("content-length:")
                ),
                0,
            )
            body = await reader.readexactly(length) if length else b""
            events = "/events" in lines[0].split(" ")[1]
            if events and self._refuse_next:
                self._refuse_next = False
                self.counts["refused"] += 1
                writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                             b"Connection: close\r\n\r\n")  # fmt: skip
                await writer.drain()
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            request = "\r\n".join([lines[0], *headers, "Connection: close", "", ""]).encode()
            up_writer.write(request + body)
            await up_writer.drain()
            response_head = await up_reader.readuntil(b"\r\n\r\n")
            if b"text/event-stream" not in response_head:
                writer.write(response_head)
                while chunk := await up_reader.read(65536):
                    writer.write(chunk)
                await writer.drain()
                return
            await self._events(response_head, up_reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            for stream in (up_writer, writer):
                if stream is not None:
                    stream.close()
                    with contextlib.suppress(Exception):
                        await stream.wait_closed()

    async def _events(
        self, head: bytes, upstream: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        lines = head.decode("latin-1").split("\r\n")
        kept = [line for line in lines if line and not line.lower().startswith(
            ("transfer-encoding:", "connection:"))]  # fmt: skip
        writer.write(("\r\n".join([*kept, "Connection: close", "", ""])).encode())
        await writer.drain()
        buffer = b""
        held: bytes | None = None
        sent = 0
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()

        async def dechunk() -> None:
            try:
                while True:
                    size = int((await upstream.readuntil(b"\r\n")).strip() or b"0", 16)
                    if size == 0:
                        break
                    data = await upstream.readexactly(size + 2)
                    await queue.put(data[:-2])
            except (asyncio.IncompleteReadError, ConnectionError, ValueError):
                pass
            await queue.put(None)

        task = asyncio.ensure_future(dechunk())
        try:
            while True:
                try:
                    data = await asyncio.wait_for(queue.get(), 0.15)
                except asyncio.TimeoutError:
                    if held is not None:  # nothing to swap it with: let it go
                        writer.write(held)
                        held = None
                        await writer.drain()
                    continue
                if data is None:
                    return
                buffer += data
                while b"\n\n" in buffer:
                    event, buffer = buffer.split(b"\n\n", 1)
                    event += b"\n\n"
                    self.counts["events"] += 1
                    out = [event]
                    if self.duplicate_every and self.counts["events"] % self.duplicate_every == 0:
                        out.append(event)
                        self.counts["duplicated"] += 1
                    if self.reorder and b"data:" in event and held is None:
                        held = b"".join(out)
                        continue
                    if held is not None:
                        out.append(held)
                        held = None
                        self.counts["swapped"] += 1
                    writer.write(b"".join(out))
                    await writer.drain()
                    sent += 1
                    if self.cut_after is not None and sent >= self.cut_after:
                        self.cut_after = None
                        self.counts["cut"] += 1
                        self._refuse_next = self.refuse_after_cut
                        return
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
