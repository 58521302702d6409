"""A testing kit for your own test suite: a scripted fake model and a replay transport.

**The fake model** (provider ``"fake"``) answers from a script you write, through sa_llm's real
transport, SSE decoding, retries and tool loop, so tests exercise everything but the network::

    from sa_llm.testing import fake_llm

    with fake_llm() as fake:
        fake.tool_call("weather", {"city": "Berlin"}).reply("It is 15°C in Berlin.")
        chat = sa_llm.chat("fake-model", provider="fake").with_tool(Weather)
        assert chat.ask("Weather in Berlin?").text == "It is 15°C in Berlin."
        assert fake.requests[1]["messages"][-1]["role"] == "tool"

Replies can stream in chunks, carry token usage, fail with any HTTP status, or break off
mid-stream. Without a script the fake echoes the last user message.

**The replay transport** serves recorded HTTP traffic (the JSON format of
``tests/fixtures/wire``) to any chat, matching requests by method and URL in order and sending
streamed bodies in small pieces::

    replay = Replay.from_file("openai/chat_basic....json")
    ctx = replay.context()              # a Context whose HTTP clients hit the recording
    ctx.chat("gpt-5-nano").ask("What's 2 + 2?")
    replay.assert_all_used()
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

import httpx

from sa_llm._context import Context
from sa_llm.config import Config, get_config
from sa_llm.providers import register_provider
from sa_llm.providers._sse import SSEDecoder
from sa_llm.providers.base import (
    ChatRequest,
    HttpRequest,
    HttpResponse,
    Provider,
    StreamParser,
)
from sa_llm.types import Chunk, Content, Message, RawContent, Tokens, ToolCallDelta

__all__ = [
    "FakeLLM",
    "FakeProvider",
    "Replay",
    "ScriptedReply",
    "fake_llm",
]

FAKE_BASE_URL = "http://fake-llm.sa-llm.invalid/v1"


# -- byte streams that work with both httpx clients -----------------------------------------------


class _PieceStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body sent in pieces; optionally breaks off after some pieces."""

    def __init__(self, pieces: Sequence[bytes], fail_after: int | None = None) -> None:
        self.pieces = pieces
        self.fail_after = fail_after

    def __iter__(self) -> Iterator[bytes]:
        for index, piece in enumerate(self.pieces):
            if self.fail_after is not None and index >= self.fail_after:
                raise httpx.RemoteProtocolError("peer closed connection mid-stream")
            yield piece

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.__iter__():
            yield piece


def _split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


# -- the scripted fake model ----------------------------------------------------------------------


@dataclass
class ScriptedReply:
    """One scripted answer of the fake model."""

    content: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    thinking: str | None = None
    tokens: Tokens | None = None
    model: str | None = None
    chunks: int | Sequence[str] | None = None
    status: int = 200
    error_message: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    fail_after_chunks: int | None = None
    raw_body: bytes | None = None


class FakeLLM:
    """A scripted model. Queue replies with the builder methods; inspect ``requests`` after.

    Attributes:
        requests: the JSON bodies the fake received, in order.
        echo: answer ``"echo: <last user text>"`` when the script is empty (else fail 500).
    """

    def __init__(self, *, echo: bool = True, chunk_size: int = 8) -> None:
        self.echo = echo
        self.chunk_size = chunk_size
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._queue: list[ScriptedReply] = []
        self._lock = threading.Lock()

    # -- script --

    def reply(
        self,
        content: str | None = None,
        *,
        tool_calls: Sequence[Mapping[str, Any]] = (),
        thinking: str | None = None,
        tokens: Tokens | None = None,
        model: str | None = None,
        chunks: int | Sequence[str] | None = None,
    ) -> FakeLLM:
        """Queue an answer. ``chunks``: how many pieces (or which pieces) a stream sends."""
        calls = [
            {
                "id": str(call.get("id") or f"call_{len(self._queue)}_{i}"),
                "name": str(call["name"]),
                "arguments": dict(call.get("arguments") or {}),
            }
            for i, call in enumerate(tool_calls)
        ]
        self._queue.append(
            ScriptedReply(
                content=content,
                tool_calls=calls,
                thinking=thinking,
                tokens=tokens,
                model=model,
                chunks=chunks,
            )
        )
        return self

    def tool_call(
        self, name: str, arguments: Mapping[str, Any] | None = None, *, id: str | None = None
    ) -> FakeLLM:
        """Queue an answer that calls one tool."""
        return self.reply(tool_calls=[{"name": name, "arguments": arguments or {}, "id": id}])

    def error(
        self,
        status: int = 500,
        message: str = "scripted failure",
        *,
        headers: Mapping[str, str] | None = None,
        times: int = 1,
    ) -> FakeLLM:
        """Queue ``times`` HTTP error answers (OpenAI's error body format)."""
        for _ in range(times):
            self._queue.append(
                ScriptedReply(status=status, error_message=message, headers=dict(headers or {}))
            )
        return self

    def broken_stream(self, content: str, *, after_chunks: int = 2) -> FakeLLM:
        """Queue a streamed answer whose connection drops after ``after_chunks`` pieces."""
        self._queue.append(ScriptedReply(content=content, fail_after_chunks=after_chunks))
        return self

    def raw(self, body: bytes, status: int = 200) -> FakeLLM:
        """Queue a literal response body (e.g. malformed JSON)."""
        self._queue.append(ScriptedReply(raw_body=body, status=status))
        return self

    @property
    def pending(self) -> int:
        """Scripted replies not used yet."""
        return len(self._queue)

    # -- serving --

    def _next(self, body: Mapping[str, Any]) -> ScriptedReply:
        with self._lock:
            if self._queue:
                return self._queue.pop(0)
        if not self.echo:
            return ScriptedReply(status=500, error_message="the fake LLM's script is empty")
        last_user = next(
            (m.get("content") for m in reversed(body.get("messages", [])) if m["role"] == "user"),
            "",
        )
        return ScriptedReply(content=f"echo: {last_user}")

    def handle(self, request: httpx.Request) -> httpx.Response:
        """The HTTP handler (used by the fake provider's transport)."""
        body = json.loads(request.content or b"{}")
        with self._lock:
            self.requests.append(body)
            self.headers.append(dict(request.headers))
        reply = self._next(body)
        if reply.raw_body is not None:
            return httpx.Response(reply.status, content=reply.raw_body)
        if reply.status >= 400:
            error = {"error": {"message": reply.error_message, "type": "scripted_error"}}
            return httpx.Response(reply.status, headers=dict(reply.headers), json=error)
        model = reply.model or str(body.get("model") or "fake-model")
        usage = _usage(reply.tokens, body)
        if not body.get("stream"):
            payload = {
                "model": model,
                "content": reply.content,
                "thinking": reply.thinking,
                "tool_calls": reply.tool_calls,
                "usage": usage,
            }
            return httpx.Response(200, json=payload)
        events = _stream_events(reply, model, usage)
        data = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
        pieces = [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events]
        if reply.fail_after_chunks is None:
            pieces = _split(data, self.chunk_size * 8)
        return httpx.Response(
            200,
            headers={"content-type": "text/event-stream"},
            stream=_PieceStream(pieces, reply.fail_after_chunks),
        )


def _usage(tokens: Tokens | None, body: Mapping[str, Any]) -> dict[str, Any]:
    if tokens is None:
        words = sum(len(str(m.get("content") or "").split()) for m in body.get("messages", []))
        tokens = Tokens(input=max(1, words), output=5)
    return {
        "input": tokens.input,
        "output": tokens.output,
        "cached": tokens.cached,
        "cache_creation": tokens.cache_creation,
        "reasoning": tokens.reasoning,
    }


def _stream_events(reply: ScriptedReply, model: str, usage: dict[str, Any]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    if reply.thinking:
        events.append({"thinking": reply.thinking})
    text = reply.content or ""
    if isinstance(reply.chunks, Sequence) and not isinstance(reply.chunks, str):
        pieces = list(reply.chunks)
    elif text:
        count = max(1, reply.chunks if isinstance(reply.chunks, int) else min(len(text), 5))
        size = max(1, -(-len(text) // count))
        pieces = [text[i : i + size] for i in range(0, len(text), size)]
    else:
        pieces = []
    events.extend({"content": piece} for piece in pieces)
    for index, call in enumerate(reply.tool_calls):
        arguments = json.dumps(call["arguments"])
        half = len(arguments) // 2
        events.append({"tool_call": {"index": index, "id": call["id"], "name": call["name"]}})
        events.append({"tool_call": {"index": index, "arguments": arguments[:half]}})
        events.append({"tool_call": {"index": index, "arguments": arguments[half:]}})
    events.append({"done": True, "model": model, "usage": usage})
    return events


_fakes_lock = threading.Lock()
_fakes: list[FakeLLM] = []
_default_fake = FakeLLM()


class fake_llm:
    """Make a :class:`FakeLLM` the one that answers provider ``"fake"`` inside the block."""

    def __init__(self, fake: FakeLLM | None = None, **options: Any) -> None:
        self.fake = fake or FakeLLM(**options)

    def __enter__(self) -> FakeLLM:
        with _fakes_lock:
            _fakes.append(self.fake)
        return self.fake

    def __exit__(self, *exc: object) -> None:
        with _fakes_lock:
            _fakes.remove(self.fake)

    async def __aenter__(self) -> FakeLLM:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__()


def active_fake() -> FakeLLM:
    """The fake answering now: the innermost ``fake_llm()`` block's, else an echoing one."""
    with _fakes_lock:
        return _fakes[-1] if _fakes else _default_fake


class _FakeTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        return active_fake().handle(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        return active_fake().handle(request)


_clients: tuple[httpx.Client, httpx.AsyncClient] | None = None


def _fake_clients() -> tuple[httpx.Client, httpx.AsyncClient]:
    """One pair of clients for every fake chat (they hold no connections to close)."""
    global _clients
    if _clients is None:
        _clients = (
            httpx.Client(transport=_FakeTransport()),
            httpx.AsyncClient(transport=_FakeTransport()),
        )
    return _clients


@register_provider
class FakeProvider(Provider):
    """Provider ``"fake"``: answers from the active :class:`FakeLLM`; serves any model id."""

    name: ClassVar[str] = "fake"
    default_base_url: ClassVar[str] = FAKE_BASE_URL
    requires_api_key: ClassVar[bool] = False
    uses_registry: ClassVar[bool] = False

    def http_clients(self) -> tuple[httpx.Client, httpx.AsyncClient] | None:
        return _fake_clients()

    def build_request(self, request: ChatRequest) -> HttpRequest:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [_message_json(m) for m in request.messages],
            "stream": request.stream,
        }
        if request.tools:
            body["tools"] = [
                {"name": t.name, "description": t.description, "parameters": dict(t.parameters)}
                for t in request.tools
            ]
        if request.tool_choice is not None:
            body["tool_choice"] = request.tool_choice
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.schema is not None:
            body["schema"] = {"name": request.schema.name, "schema": dict(request.schema.schema)}
        if request.params:
            body["params"] = dict(request.params)
        headers = {"content-type": "application/json", **request.headers}
        key = self.config.api_key("fake", required=False)
        if key:
            headers["authorization"] = f"Bearer {key}"
        return HttpRequest("POST", f"{self.base_url}/chat", headers, json=body)

    def parse_response(self, response: HttpResponse) -> list[Chunk]:
        body = self.parse_json(response)
        if not isinstance(body, Mapping):
            raise self.malformed("the reply is not an object", body)
        chunks = [
            Chunk(
                content=body.get("content") or None,
                thinking=body.get("thinking") or None,
                tool_calls=tuple(
                    ToolCallDelta(
                        key=i, id=c["id"], name=c["name"], arguments=json.dumps(c["arguments"])
                    )
                    for i, c in enumerate(body.get("tool_calls") or ())
                ),
            )
        ]
        chunks.append(_final_chunk(body))
        return chunks

    def stream_parser(self) -> StreamParser:
        return _FakeStreamParser(self)


def _final_chunk(body: Mapping[str, Any]) -> Chunk:
    usage = body.get("usage") or {}
    return Chunk(
        tokens=Tokens(
            input=usage.get("input"),
            output=usage.get("output"),
            cached=usage.get("cached"),
            cache_creation=usage.get("cache_creation"),
            reasoning=usage.get("reasoning"),
        ),
        model_id=body.get("model"),
        finish_reason="stop",
    )


def _message_json(message: Message) -> dict[str, Any]:
    content: Any = message.content
    if isinstance(content, Content):
        content = {
            "text": content.text,
            "attachments": [
                {"filename": a.display_name, "mime_type": a.type, "size": a.byte_size}
                for a in content.attachments
            ],
        }
    elif isinstance(content, RawContent):
        content = content.value
    data: dict[str, Any] = {"role": message.role, "content": content}
    if message.tool_calls:
        data["tool_calls"] = [
            {"id": c.id, "name": c.name, "arguments": dict(c.arguments)} for c in message.tool_calls
        ]
    if message.tool_call_id:
        data["tool_call_id"] = message.tool_call_id
    return data


class _FakeStreamParser(StreamParser):
    def __init__(self, provider: Provider) -> None:
        super().__init__(provider)
        self.decoder = SSEDecoder()

    def feed(self, data: bytes) -> list[Chunk]:
        chunks = []
        for event in self.decoder.feed(data):
            payload = json.loads(event.data)
            if payload.get("done"):
                self.finished = True
                chunks.append(_final_chunk(payload))
            elif "tool_call" in payload:
                call = payload["tool_call"]
                delta = ToolCallDelta(
                    key=call["index"],
                    id=call.get("id"),
                    name=call.get("name"),
                    arguments=call.get("arguments", ""),
                )
                chunks.append(Chunk(tool_calls=(delta,)))
            elif "thinking" in payload:
                chunks.append(Chunk(thinking=payload["thinking"]))
            else:
                chunks.append(Chunk(content=payload.get("content")))
        return chunks


# -- replaying recorded traffic -------------------------------------------------------------------


def _body_bytes(part: Mapping[str, Any]) -> bytes:
    body = part.get("body")
    if body is None:
        return b""
    if part.get("body_base64"):
        return base64.b64decode(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body).encode("utf-8")


def url_matches(recorded: str, actual: str) -> bool:
    """Whether a live request URL matches a recorded one (placeholders and quoting aside)."""
    act = urlsplit(actual)
    act_path = unquote(act.path).rstrip("/")
    if recorded.startswith("<"):  # "<OLLAMA_API_BASE>/chat/completions"
        path, _, query = recorded.split(">", 1)[1].partition("?")
        return act_path.endswith(unquote(path).rstrip("/")) and act.query == query
    rec = urlsplit(recorded)
    return act_path == unquote(rec.path).rstrip("/") and act.query == rec.query


@dataclass
class ReplayedRequest:
    """A request the replay served: what the library sent and what was recorded."""

    method: str
    url: str
    headers: dict[str, str]
    body: Any
    recorded: Mapping[str, Any]


class Replay(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """An httpx transport that answers with recorded interactions, in order.

    Attributes:
        pending: interactions not requested yet.
        seen: the requests served, with the recorded request each matched.
    """

    def __init__(
        self,
        recording: Mapping[str, Any],
        *,
        piece_size: int = 7,
        ignore_unused_downloads: bool = True,
    ) -> None:
        self.recording = recording
        self.pending: list[Mapping[str, Any]] = list(recording.get("interactions", []))
        self.seen: list[ReplayedRequest] = []
        self.piece_size = piece_size
        self.ignore_unused_downloads = ignore_unused_downloads
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **options: Any) -> Replay:
        """A replay of one recording file."""
        with open(path, encoding="utf-8") as handle:
            return cls(json.load(handle), **options)

    def _serve(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            for index, item in enumerate(self.pending):
                recorded = item["request"]
                if recorded["method"] == request.method and url_matches(
                    recorded["url"], str(request.url)
                ):
                    self.pending.pop(index)
                    break
            else:
                raise AssertionError(f"unexpected request: {request.method} {request.url}")
            try:
                body: Any = json.loads(request.content) if request.content else None
            except ValueError:
                body = request.content
            self.seen.append(
                ReplayedRequest(
                    request.method, str(request.url), dict(request.headers), body, recorded
                )
            )
        response = item["response"]
        data = _body_bytes(response)
        headers = dict(response.get("headers") or {})
        streamed = "event-stream" in headers.get(
            "content-type", ""
        ) or "eventstream" in headers.get("content-type", "")
        pieces = _split(data, self.piece_size) if streamed else [data]
        return httpx.Response(int(response["status"]), headers=headers, stream=_PieceStream(pieces))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        return self._serve(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        return self._serve(request)

    def context(self, config: Config | None = None, **settings: Any) -> Context:
        """A :class:`Context` whose HTTP clients hit this replay, with test keys set."""
        base = config or get_config()
        keys = {
            f"{name}_api_key": "test-key"
            for name in (
                "openai",
                "anthropic",
                "gemini",
                "openrouter",
                "deepseek",
                "mistral",
                "xai",
            )
            if getattr(base, f"{name}_api_key") is None
        }
        return Context(
            base.replace(
                http_client=httpx.Client(transport=self),
                async_http_client=httpx.AsyncClient(transport=self),
                max_retries=0,
                **{**keys, **settings},
            )
        )

    @property
    def unused(self) -> list[Mapping[str, Any]]:
        """Recorded interactions never requested (downloads the library skipped excluded)."""
        return [
            item
            for item in self.pending
            if not (self.ignore_unused_downloads and item["request"]["method"] == "GET")
        ]

    def assert_all_used(self) -> None:
        """Fail when a recorded model call was never made."""
        if self.unused:
            urls = ", ".join(item["request"]["url"] for item in self.unused)
            raise AssertionError(f"recorded interactions not replayed: {urls}")


def load_recording(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A recording file as a dict."""
    return dict(json.loads(Path(path).read_text(encoding="utf-8")))
