"""The aiohttp transport (``async_http_backend="aiohttp"``) next to httpx's own, on real sockets.

Every test talks HTTP to a loopback server (:mod:`sa_llm.testing.server`,
:mod:`sa_llm.testing.faults`, or a small gzip server below) through sa_llm's async chats, and
most run once per backend with the same expectations: the same text and usage, the same bytes
on the wire, the same error class and the same number of attempts when something breaks. A spy
on :meth:`AiohttpTransport.handle_async_request` (the real method, counted) proves that the
aiohttp runs really went through aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import json
import logging
import socket
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Annotated, Any, ClassVar
from unittest import mock

import anyio.to_thread
import httpx
import pytest

import sa_llm
from faults_support import SPECS
from sa_llm.providers._transport import default_async_client
from sa_llm.providers.aiohttp_transport import AiohttpTransport
from sa_llm.testing._loopback import LoopbackHandler, LoopbackServer
from sa_llm.testing.faults import Answer, FaultInjectingServer
from sa_llm.testing.server import (
    EXCHANGES_PATH,
    CloseAfter,
    Failure,
    FakeOpenAIServer,
    Fault,
    Hang,
    Plan,
    Received,
    Refuse,
    Usage,
)
from sa_llm.types import Chunk

pytest.importorskip("aiohttp")  # only a guard: CI installs it with the test extra

MODEL = "gpt-4.1-nano"
BACKENDS = ["httpx", "aiohttp"]
REPLY = "Paris is the capital of France, on the Seine."


def context_for(base_url: str, backend: str, **settings: Any) -> sa_llm.Context:
    values: dict[str, Any] = {
        "openai_base_url": base_url,
        "openai_api_key": "x",
        "openai_api": "chat_completions",
        "max_retries": 0,
        "retry_interval": 0,
        "async_http_backend": backend,
        **settings,
    }
    return sa_llm.context(**values)


def with_fault(fault: Fault) -> Callable[[Received, Plan], Plan]:
    return lambda received, plan: replace(plan, fault=fault)


@pytest.fixture
def sent_by_aiohttp(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URLs :class:`AiohttpTransport` sent, in order (the real method runs)."""
    sent: list[str] = []
    real = AiohttpTransport.handle_async_request

    async def counted(self: AiohttpTransport, request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        return await real(self, request)

    monkeypatch.setattr(AiohttpTransport, "handle_async_request", counted)
    return sent


def unused_port() -> int:
    """A loopback port nothing listens on: connecting to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Weather(sa_llm.Tool):
    """Gets the current weather for a city."""

    def execute(self, city: Annotated[str, "The city"]) -> str:
        return f"{city}: 15°C"


# -- replies --------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("api", ["responses", "chat_completions"])
async def test_whole_and_streamed_replies(
    backend: str, api: str, sent_by_aiohttp: list[str]
) -> None:
    usage = Usage(input_tokens=120, output_tokens=12, cached_tokens=64)
    async with FakeOpenAIServer(reply=REPLY, chunks=6, usage=usage) as server:
        chat = context_for(server.url, backend, openai_api=api).chat(MODEL)
        whole = await chat.aask("Capital of France?")
        chunks: list[Chunk] = []
        streamed = await chat.aask("Once more?", on_chunk=chunks.append)

    for message in (whole, streamed):
        assert message.text == REPLY
        assert message.tokens is not None
        assert (message.tokens.input, message.tokens.output, message.tokens.cached) == (120, 12, 64)
    pieces = [chunk.content for chunk in chunks if chunk.content]
    assert len(pieces) == 6
    assert "".join(pieces) == REPLY
    assert [e.received.stream for e in server.exchanges] == [False, True]
    assert all(e.finished for e in server.exchanges)
    assert len(sent_by_aiohttp) == (2 if backend == "aiohttp" else 0)


async def openai_wire(backend: str) -> list[tuple[str, Any, dict[str, str]]]:
    """Path, body and headers of each request of a conversation with a streamed tool round."""
    async with FakeOpenAIServer(reply=REPLY, chunks=3, tool_turns={2}) as server:
        # The aiohttp transport sits under an httpx client: compare with httpx's own pool.
        context = context_for(server.url, backend, http_library="httpx")
        chat = context.chat(MODEL).with_tool(Weather)
        await chat.aask("Hello")
        await chat.aask("Weather in Lyon?", on_chunk=lambda chunk: None)
        port = str(server.port)
    return [
        (
            e.received.path,
            e.received.body,
            # Everything but the port in the host header and the codings each side can decode.
            {
                name: value.replace(port, "<port>")
                for name, value in e.received.headers.items()
                if name != "accept-encoding"
            },
        )
        for e in server.exchanges
    ]


async def test_openai_requests_are_the_same_bytes_with_either_backend(
    sent_by_aiohttp: list[str],
) -> None:
    expected = await openai_wire("httpx")
    assert len(expected) == 3  # the question, the tool call's round, the second answer
    assert await openai_wire("aiohttp") == expected
    assert len(sent_by_aiohttp) == 3


async def received_headers(transport: httpx.AsyncBaseTransport | None) -> dict[str, str]:
    async with FakeOpenAIServer() as server, httpx.AsyncClient(transport=transport) as client:
        del client.headers["user-agent"]
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}
        await client.post(f"{server.url}/chat/completions", content=json.dumps(body).encode())
        (exchange,) = server.exchanges
        port = str(server.port)
    return {
        name: value.replace(port, "<port>")
        for name, value in exchange.received.headers.items()
        if name != "accept-encoding"
    }


async def test_no_header_is_added_to_what_httpx_sends() -> None:
    # Raw bytes carry no content-type and this client no user-agent: aiohttp would add both.
    expected = await received_headers(None)
    assert "content-type" not in expected
    assert "user-agent" not in expected
    assert await received_headers(AiohttpTransport()) == expected


async def bedrock_wire(backend: str) -> tuple[str, Any, list[str]]:
    spec = SPECS["bedrock"]
    async with FaultInjectingServer(spec.api, [Answer(spec.whole.text)]) as server:
        settings = spec.settings(server, max_retries=0, async_http_backend=backend)
        chat = sa_llm.context(**settings).chat(
            spec.model, provider=spec.provider, assume_model_exists=True
        )
        await chat.aask("Hello")
    (request,) = server.requests
    return request.path, request.body, sorted(request.headers)


async def test_signed_bedrock_paths_are_sent_as_signed() -> None:
    # SigV4 signs the percent-encoded path: a client that re-quoted "%3A" in a model id would
    # send a request whose signature no longer matches.
    path, body, header_names = await bedrock_wire("aiohttp")
    assert "%3A" in path
    assert "authorization" in header_names
    assert (path, body, header_names) == await bedrock_wire("httpx")


# -- compression ----------------------------------------------------------------------------------

COMPLETION = {
    "id": "chatcmpl-gz",
    "object": "chat.completion",
    "created": 0,
    "model": MODEL,
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": REPLY},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 11, "total_tokens": 20},
}


def completion_events() -> bytes:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        event = {"id": "chatcmpl-gz", "object": "chat.completion.chunk", "created": 0}
        payload = {**event, "model": MODEL, "choices": [choice], **extra}
        return b"data: " + json.dumps(payload).encode() + b"\n\n"

    words = REPLY.split(" ")
    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": word + " "}) for word in words[:-1]]
    events += [chunk({"content": words[-1]}), chunk({}, "stop")]
    usage = {"prompt_tokens": 9, "completion_tokens": 11, "total_tokens": 20}
    events.append(b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\n")
    return b"".join(events) + b"data: [DONE]\n\n"


class _GzipHandler(LoopbackHandler):
    def do_POST(self) -> None:
        owner = self.server.owner
        assert isinstance(owner, GzipServer)
        length = int(self.headers.get("content-length") or 0)
        request = json.loads(self.rfile.read(length))
        with owner._lock:
            owner.offered.append(self.headers.get("accept-encoding", ""))
        if request.get("stream"):
            body, content_type = completion_events(), "text/event-stream"
        else:
            body, content_type = json.dumps(COMPLETION).encode(), "application/json"
        packed = gzip.compress(body)
        headers = {"content-type": content_type, "content-encoding": "gzip"}
        self.start_response(200, headers, length=len(packed))
        self.write(packed)


class GzipServer(LoopbackServer):
    """Answers every Chat Completions request gzip-compressed, as JSON or as SSE."""

    name: ClassVar[str] = "gzip server"
    handler: ClassVar[type[LoopbackHandler]] = _GzipHandler

    def __init__(self) -> None:
        super().__init__(idle_timeout=10, max_seconds=60)
        self.offered: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_gzip_replies_are_decoded_once(backend: str, stream: bool) -> None:
    async with GzipServer() as server:
        chat = context_for(server.url, backend).chat(MODEL)
        message = await chat.aask("Hi", on_chunk=(lambda chunk: None) if stream else None)
    assert message.text == REPLY
    assert message.tokens is not None
    assert (message.tokens.input, message.tokens.output) == (9, 11)
    assert "gzip" in server.offered[0]


async def test_a_decoded_body_reaches_httpx_without_its_encoding_headers() -> None:
    async with (
        GzipServer() as server,
        httpx.AsyncClient(transport=AiohttpTransport()) as client,
    ):
        response = await client.post(f"{server.url}/chat/completions", json={})
    assert response.json() == COMPLETION
    assert "content-encoding" not in response.headers
    assert "content-length" not in response.headers  # it counted the compressed bytes


# -- faults ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A fault, and what the chat must raise after how many requests, whatever the backend."""

    name: str
    server: dict[str, Any]
    stream: bool
    error: type[sa_llm.ProviderError]
    requests: int
    cause: str | None = None  # the httpx exception a timeout names in its message
    partial: bool = False  # text reached the caller before the fault
    timeout: float = 5.0  # request_timeout: only the timeouts are meant to reach it

    def __str__(self) -> str:
        return self.name


RETRIES = 2
FAULTS = [
    Case(
        "no_reply_in_time",
        {"plan": with_fault(Hang(5))},
        False,
        sa_llm.APITimeoutError,
        1 + RETRIES,
        "ReadTimeout",
        timeout=0.1,
    ),
    Case(
        "silence_mid_stream",
        {"chunks": 4, "chunk_interval": 1.0},
        True,
        sa_llm.APITimeoutError,
        1,  # a stream is never retried once it has opened
        "ReadTimeout",
        timeout=0.1,
    ),
    Case("no_response", {"plan": with_fault(Refuse())}, False, sa_llm.APIConnectionError, 3),
    Case(
        "dropped_mid_body", {"plan": with_fault(CloseAfter(2))}, False, sa_llm.APIConnectionError, 3
    ),
    Case(
        "dropped_mid_stream",
        {"chunks": 6, "plan": with_fault(CloseAfter(3))},
        True,
        sa_llm.APIConnectionError,
        1,
        partial=True,
    ),
    Case("server_error", {"failures": {1: Failure(500, times=9)}}, False, sa_llm.ServerError, 3),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", FAULTS, ids=str)
async def test_a_fault_ends_in_the_same_error_after_the_same_attempts(
    backend: str, case: Case, sent_by_aiohttp: list[str]
) -> None:
    async with FakeOpenAIServer(reply=REPLY, **case.server) as server:
        ctx = context_for(server.url, backend, max_retries=RETRIES, request_timeout=case.timeout)
        chunks: list[Chunk] = []
        with pytest.raises(sa_llm.ProviderError) as raised:
            await ctx.chat(MODEL).aask("Hi", on_chunk=chunks.append if case.stream else None)
        assert server.request_count == case.requests
    assert type(raised.value) is case.error
    if case.cause is not None:
        assert f"({case.cause})" in str(raised.value)
    assert any(chunk.content for chunk in chunks) is case.partial
    assert len(sent_by_aiohttp) == (case.requests if backend == "aiohttp" else 0)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_connection_refused_is_retried_then_raised(
    backend: str, caplog: pytest.LogCaptureFixture, sent_by_aiohttp: list[str]
) -> None:
    caplog.set_level(logging.INFO, logger="sa_llm.http")
    ctx = context_for(f"http://127.0.0.1:{unused_port()}/v1", backend, max_retries=RETRIES)
    with pytest.raises(sa_llm.APIConnectionError) as raised:
        await ctx.chat(MODEL).aask("Anyone?")
    assert type(raised.value) is sa_llm.APIConnectionError  # refused, not timed out
    assert "ConnectError" in str(raised.value)
    retried = [r for r in caplog.records if r.getMessage().startswith("Retrying openai request")]
    assert len(retried) == RETRIES
    assert len(sent_by_aiohttp) == (1 + RETRIES if backend == "aiohttp" else 0)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_an_upload_the_server_never_reads_times_out(backend: str) -> None:
    # The server accepts connections (the kernel's backlog) and never reads: once the socket
    # buffers are full, writing the request stalls.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
        ctx = context_for(url, backend, request_timeout=0.1)
        started = time.perf_counter()
        with pytest.raises(sa_llm.APITimeoutError, match=r"\(WriteTimeout\)"):
            await ctx.chat(MODEL).aask("x" * (32 * 1024 * 1024))
        # aiohttp has no write timer: the transport's bound is connect + write + read + pool.
        assert time.perf_counter() - started < 3.0


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_full_pool_makes_the_next_request_wait_then_time_out(backend: str) -> None:
    if backend == "aiohttp":
        client = httpx.AsyncClient(transport=AiohttpTransport(limit=1))
    else:
        client = httpx.AsyncClient(limits=httpx.Limits(max_connections=1))
    timeout = httpx.Timeout(5.0, pool=0.1)
    async with FakeOpenAIServer(chunks=2, chunk_interval=0.1) as server, client:
        url = f"{server.url}/chat/completions"
        body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
        async with client.stream("POST", url, json=body, timeout=timeout) as held:
            with pytest.raises(httpx.PoolTimeout):
                await client.post(url, json=body, timeout=timeout)
            await held.aread()
        # Closing the held response gave its connection back.
        second = await client.post(url, json={**body, "stream": False}, timeout=timeout)
    assert second.status_code == 200
    assert server.request_count == 2


# -- configuration and lifetime -------------------------------------------------------------------


class CountingServer(FakeOpenAIServer):
    """A fake OpenAI server that also counts the TCP connections clients opened to it."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.connections_opened = 0

    def _track(self, connection: socket.socket, *, add: bool) -> None:
        super()._track(connection, add=add)
        if add:
            with self._lock:
                self.connections_opened += 1


@contextlib.contextmanager
def nothing_left_unclosed(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fails if the block leaves an aiohttp session open, or anything warns about an unclosed
    session, connector or socket (aiohttp warns and logs through asyncio's handler).

    The sessions the block creates are tracked as they are made (scanning every object of a
    large test process's heap for them took seconds)."""
    import aiohttp

    created: weakref.WeakSet[aiohttp.ClientSession] = weakref.WeakSet()
    original = aiohttp.ClientSession.__init__

    def tracked(self: aiohttp.ClientSession, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        created.add(self)

    with (
        mock.patch.object(aiohttp.ClientSession, "__init__", tracked),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        yield
        gc.collect()  # sessions dropped unclosed are collected: their warnings come now
        left_open = [session for session in created if not session.closed]
    complaints = [str(w.message) for w in caught if "nclosed" in str(w.message)]
    complaints += [r.getMessage() for r in caplog.records if "nclosed" in r.getMessage()]
    assert complaints == []
    assert left_open == []


def test_one_client_per_loop_reused_and_closed_with_its_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def three_turns(server: CountingServer) -> httpx.AsyncClient:
        chat = context_for(server.url, "aiohttp").chat(MODEL)
        await chat.aask("One")
        client = default_async_client("aiohttp")
        await chat.aask("Two", on_chunk=lambda chunk: None)
        await chat.aask("Three")
        assert default_async_client("aiohttp") is client
        assert default_async_client("httpx") is not client  # one client per backend
        return client

    with nothing_left_unclosed(caplog), CountingServer(chunks=3) as server:
        first = asyncio.run(three_turns(server))
        second = asyncio.run(three_turns(server))
        assert first is not second  # a loop's client goes away with it
        del first, second
    assert server.request_count == 6
    assert server.connections_opened == 2  # one kept-alive connection per loop


@pytest.mark.parametrize("backend", ["httpx", "aiohttp"])
def test_the_shared_client_and_its_loop_do_not_outlive_asyncio_run(backend: str) -> None:
    # Each asyncio.run used to leave its loop, the shared client and its kept-alive sockets
    # alive (the client refers to its loop, so the loop-keyed cache never let go).
    async def ask(server: CountingServer) -> None:
        await context_for(server.url, backend).chat(MODEL).aask("One")

    with warnings.catch_warnings(record=True) as caught, CountingServer(chunks=3) as server:
        warnings.simplefilter("always")
        for _ in range(3):
            asyncio.run(ask(server))
        gc.collect()
        loops = [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop)]
    assert [loop for loop in loops if not loop.is_running()] == []
    assert [str(w.message) for w in caught if "nclosed" in str(w.message)] == []
    assert server.request_count == 3


def test_your_own_client_survives_asyncio_run_twice(caplog: pytest.LogCaptureFixture) -> None:
    # The session ends with its loop; the next loop opens a new one behind the same client.
    client = httpx.AsyncClient(transport=AiohttpTransport())

    async def ask(server: FakeOpenAIServer) -> str | None:
        ctx = context_for(server.url, "httpx", async_http_client=client)
        return (await ctx.chat(MODEL).aask("Hi")).text

    with nothing_left_unclosed(caplog), FakeOpenAIServer(reply=REPLY) as server:
        assert asyncio.run(ask(server)) == REPLY
        assert asyncio.run(ask(server)) == REPLY
    assert server.request_count == 2


async def test_an_explicit_async_client_wins_over_the_backend(sent_by_aiohttp: list[str]) -> None:
    async with FakeOpenAIServer(reply=REPLY) as server, httpx.AsyncClient() as client:
        ctx = context_for(server.url, "aiohttp", async_http_client=client)
        assert (await ctx.chat(MODEL).aask("Hi")).text == REPLY
    assert server.request_count == 1
    assert sent_by_aiohttp == []


def test_the_backend_is_httpx_unless_configured() -> None:
    assert sa_llm.Config().async_http_backend == "httpx"
    with pytest.raises(sa_llm.ConfigurationError, match="async_http_backend"):
        sa_llm.context(async_http_backend="requests")


async def test_without_aiohttp_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aiohttp", None)  # what `import aiohttp` sees uninstalled
    with pytest.raises(sa_llm.MissingDependencyError, match=r'pip install "sa-llm\[aiohttp\]"'):
        AiohttpTransport()
    async with FakeOpenAIServer() as server:
        chat = context_for(server.url, "aiohttp").chat(MODEL)
        with pytest.raises(sa_llm.MissingDependencyError, match=r"sa-llm\[aiohttp\]"):
            await chat.aask("Hi")
    assert server.request_count == 0


def test_a_client_busy_in_one_loop_is_refused_to_another() -> None:
    client = httpx.AsyncClient(transport=AiohttpTransport())
    opened, release = threading.Event(), threading.Event()

    async def hold(url: str) -> None:
        await client.get(url)
        opened.set()
        await anyio.to_thread.run_sync(release.wait)
        await client.aclose()

    with FakeOpenAIServer() as server:
        url = f"{server.url}{EXCHANGES_PATH}"
        holder = threading.Thread(target=asyncio.run, args=(hold(url),))
        holder.start()
        try:
            assert opened.wait(5)
            with pytest.raises(RuntimeError, match="another event loop"):
                asyncio.run(client.get(url))
        finally:
            release.set()
            holder.join(5)
    assert not holder.is_alive()
