"""The scripted fake model: provider ``"fake"``, answering from a script you write.

It runs through sa_llm's real transport, SSE decoding, retries and tool loop, so tests
exercise everything but the network::

    from sa_llm.testing import fake_llm

    with fake_llm() as fake:
        fake.tool_call("weather", {"city": "Berlin"}).reply("It is 15°C in Berlin.")
        chat = sa_llm.chat("fake-model", provider="fake").with_tool(Weather)
        assert chat.ask("Weather in Berlin?").text == "It is 15°C in Berlin."
        assert fake.requests[1]["messages"][-1]["role"] == "tool"

Replies can stream in chunks, carry token usage, fail with any HTTP status, or break off
mid-stream. Without a script the fake echoes the last user message.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, ClassVar

import httpx

from sa_llm import _http
from sa_llm.content import Attachment
from sa_llm.providers import register_provider
from sa_llm.providers.base import (
    ChatRequest,
    HttpRequest,
    HttpResponse,
    Provider,
    SSEStreamParser,
    StreamParser,
)
from sa_llm.providers.sse import ServerSentEvent
from sa_llm.types import Chunk, Content, Message, RawContent, Tokens, ToolCallDelta

__all__ = [
    "FAKE_BASE_URL",
    "FakeLLM",
    "FakeProvider",
    "PieceStream",
    "ScriptedReply",
    "active_fake",
    "fake_llm",
    "piece_stream",
    "split_pieces",
]

FAKE_BASE_URL = "http://fake-llm.sa-llm.invalid/v1"


# -- byte streams that work with both httpx clients -----------------------------------------------


class PieceStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body sent in pieces; optionally breaks off after some pieces (with the
    library's ``RemoteProtocolError``). For httpx; :func:`piece_stream` makes one for either."""

    library: ClassVar[ModuleType] = httpx

    def __init__(self, pieces: Sequence[bytes], fail_after: int | None = None) -> None:
        self.pieces = pieces
        self.fail_after = fail_after

    def __iter__(self) -> Iterator[bytes]:
        for index, piece in enumerate(self.pieces):
            if self.fail_after is not None and index >= self.fail_after:
                raise self.library.RemoteProtocolError("peer closed connection mid-stream")
            yield piece

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.__iter__():
            yield piece


_piece_streams: dict[str, type[PieceStream]] = {"httpx": PieceStream}


def piece_stream(
    library: ModuleType, pieces: Sequence[bytes], fail_after: int | None = None
) -> PieceStream:
    """A :class:`PieceStream` that ``library``'s responses take (httpx2 checks that a body is
    one of its own byte streams)."""
    cls = _piece_streams.get(library.__name__)
    if cls is None:
        bases = (PieceStream, library.SyncByteStream, library.AsyncByteStream)
        cls = type(f"PieceStream_{library.__name__}", bases, {"library": library})
        _piece_streams[library.__name__] = cls
    return cls(pieces, fail_after)


def split_pieces(data: bytes, size: int) -> list[bytes]:
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
        echo: answer ``"echo: <last user text>"`` when the script is empty (else the call fails
            at once with :class:`~sa_llm.errors.BadRequestError`, not retried).
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

    def broken_stream(
        self, content: str, *, after_chunks: int = 2, chunks: int | None = None
    ) -> FakeLLM:
        """Queue a streamed answer, cut into ``chunks`` pieces (default 5), whose connection
        drops after ``after_chunks`` of them."""
        reply = ScriptedReply(content=content, fail_after_chunks=after_chunks)
        if chunks is not None:
            reply.chunks = chunks
        self._queue.append(reply)
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
            # 400, not 5xx: an unscripted call is a bug in the test, so it fails at once as a
            # BadRequestError instead of being retried with backoff like a server fault.
            return ScriptedReply(
                status=400,
                error_message="the fake LLM's script is empty (echo=False): script a reply "
                "with fake.reply(...) before the call",
            )
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
        library = _http.library_of(request)  # answer in the client's own library
        if reply.raw_body is not None:
            return library.Response(reply.status, content=reply.raw_body)  # type: ignore[no-any-return]
        if reply.status >= 400:
            error = {"error": {"message": reply.error_message, "type": "scripted_error"}}
            return library.Response(reply.status, headers=dict(reply.headers), json=error)  # type: ignore[no-any-return]
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
            return library.Response(200, json=payload)  # type: ignore[no-any-return]
        events = _stream_events(reply, model, usage)
        data = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
        pieces = [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events]
        if reply.fail_after_chunks is None:
            pieces = split_pieces(data, self.chunk_size * 8)
        return library.Response(  # type: ignore[no-any-return]
            200,
            headers={"content-type": "text/event-stream"},
            stream=piece_stream(library, pieces, reply.fail_after_chunks),
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


_clients: dict[str, tuple[httpx.Client, httpx.AsyncClient]] = {}


def _fake_clients(library: ModuleType) -> tuple[httpx.Client, httpx.AsyncClient]:
    """One pair of clients per library for every fake chat (they hold no connections)."""
    pair = _clients.get(library.__name__)
    if pair is None:
        pair = (
            library.Client(transport=_FakeTransport()),
            library.AsyncClient(transport=_FakeTransport()),
        )
        _clients[library.__name__] = pair
    return pair


@register_provider
class FakeProvider(Provider):
    """Provider ``"fake"``: answers from the active :class:`FakeLLM`; serves any model id."""

    name: ClassVar[str] = "fake"
    default_base_url: ClassVar[str] = FAKE_BASE_URL
    requires_api_key: ClassVar[bool] = False
    uses_registry: ClassVar[bool] = False

    def http_clients(self) -> tuple[httpx.Client, httpx.AsyncClient] | None:
        # Of the configured http_library, so the fake exercises httpx2's client when asked.
        return _fake_clients(self.config.http_module())

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


def _file_json(attachment: Attachment) -> dict[str, Any]:
    """An attachment as the fake receives it. A remote file not downloaded is described by its
    URL, as a provider that takes URLs gets it: reading its size would download it."""
    size = attachment.known_size()
    if size is None and attachment.url is not None:
        return {"filename": attachment.display_name, "mime_type": attachment.type,
                "url": attachment.url}  # fmt: skip
    return {
        "filename": attachment.display_name,
        "mime_type": attachment.type,
        "size": attachment.byte_size if size is None else size,
    }


def _message_json(message: Message) -> dict[str, Any]:
    content: Any = message.content
    if isinstance(content, Content):
        content = {
            "text": content.text,
            "attachments": [_file_json(a) for a in content.attachments],
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


class _FakeStreamParser(SSEStreamParser):
    def parse_event(self, event: ServerSentEvent) -> Chunk:
        payload = json.loads(event.data)
        if payload.get("done"):
            self.finished = True
            return _final_chunk(payload)
        if "tool_call" in payload:
            call = payload["tool_call"]
            delta = ToolCallDelta(
                key=call["index"],
                id=call.get("id"),
                name=call.get("name"),
                arguments=call.get("arguments", ""),
            )
            return Chunk(tool_calls=(delta,))
        if "thinking" in payload:
            return Chunk(thinking=payload["thinking"])
        return Chunk(content=payload.get("content"))
