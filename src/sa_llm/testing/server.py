"""A fake OpenAI server on the loopback interface: real HTTP, scripted replies, injected faults.

:class:`FakeOpenAIServer` speaks OpenAI Chat Completions (``POST /v1/chat/completions``) and
Responses (``POST /v1/responses``), whole JSON replies and SSE streams, over real sockets on
``127.0.0.1`` (an ephemeral port). Any client that takes a base URL can use it: sa_llm, the
official SDK, frameworks built on it. Use it where :mod:`sa_llm.testing`'s in-process fakes are
not enough: benchmarks against other libraries, connection pools, timeouts and broken sockets::

    import sa_llm
    from sa_llm.testing.server import FakeOpenAIServer

    with FakeOpenAIServer(chunks=5, tool_turns={2}, failures={3: 500}) as server:
        ctx = sa_llm.context(openai_base_url=server.url, openai_api_key="x", max_retries=0)
        chat = ctx.chat("gpt-4.1-nano")
        chat.ask("Hello")                       # turn 1: a text reply
        assert server.request_count == 1

What it answers is decided per request. The options describe the usual script: ``latency``
before the reply, ``chunks`` text deltas per streamed reply (``first_token_delay`` between a
stream's opening events and its first delta, as a model's time to first token), ``usage``
(cached tokens too), a tool call on the user turns in ``tool_turns`` and an HTTP error
(OpenAI's error format) on the turns in ``failures``. A **turn** is the number of user
messages in the request, so a chat's n-th question is turn n however many tool rounds came
before; a request that ends in a tool result is answered with text. Each request first gets
the :class:`Plan` the options imply; a ``plan`` hook may replace it, for instance to inject a
:data:`Fault` (:class:`Refuse`, :class:`Hang`, :class:`CloseAfter`, :class:`Malformed`,
:class:`ErrorEvent`, :class:`Drip`).

Paths may carry any prefix before ``/chat/completions`` or ``/responses`` (``Received.path``
keeps it), so one server can tell apart clients configured with different base URLs; and
``GET <prefix>/_fake/exchanges`` returns the exchange log as JSON, for clients in another
process.

The server is bounded and stops by itself: after ``max_requests`` requests (later ones get a
503), after ``idle_timeout`` seconds without a request, and after ``max_seconds`` in all. It is
a context manager, sync (``with``) and async (``async with``); handler threads never touch the
caller's event loop. Every request is counted and kept in :attr:`FakeOpenAIServer.exchanges`.

One concept, one module (over 600 lines): the scripted fake OpenAI server, both of its APIs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Container, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

from sa_llm.testing._loopback import (
    LAST_CHUNK,
    CloseAfter,
    Drip,
    Dropped,
    ErrorEvent,
    Failure,
    Fault,
    Hang,
    LoopbackHandler,
    LoopbackServer,
    Malformed,
    Refuse,
    dumps,
    http_chunk,
)

#: The path (after any prefix) of the exchange log, for clients in another process.
EXCHANGES_PATH = "/_fake/exchanges"

__all__ = [
    "EXCHANGES_PATH",
    "CloseAfter",
    "Drip",
    "ErrorEvent",
    "Exchange",
    "Failure",
    "FakeOpenAIServer",
    "Fault",
    "Hang",
    "Malformed",
    "Plan",
    "PlannedToolCall",
    "Received",
    "Refuse",
    "Usage",
]

Api = Literal["chat_completions", "responses"]


def _api_of(path: str) -> Api | None:
    """The API a request path addresses; any prefix is allowed (``/v1``, ``/run-7/v1``, ...)."""
    path = path.split("?", 1)[0].rstrip("/")
    if path.endswith("/chat/completions"):
        return "chat_completions"
    if path.endswith("/responses"):
        return "responses"
    return None


_FILLER = (
    "The quick brown fox jumps over the lazy dog while the server streams this reply "
    "in as many pieces as the plan asks for, one delta at a time."
)


# -- what a request asked -------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One request as the server understood it.

    Attributes:
        index: 1 for the first request this server received, then 2, 3, ...
        api: ``"chat_completions"`` or ``"responses"`` (from the path).
        path: the request path.
        body: the JSON body (``{}`` when it was not a JSON object).
        headers: the request headers, names in lower case.
        stream: whether the client asked for an SSE stream.
        turn: the number of user messages in the request (a chat's n-th question is turn n).
        after_tool_result: the last input item is a tool result (a tool round's second call).
        model: the requested model id.
    """

    index: int
    api: Api
    path: str
    body: Mapping[str, Any]
    headers: Mapping[str, str]
    stream: bool
    turn: int
    after_tool_result: bool
    model: str


def _inspect_body(api: Api, body: Mapping[str, Any]) -> tuple[int, bool]:
    """(user turns, ends in a tool result) of a Chat Completions or Responses body."""
    if api == "chat_completions":
        messages = body.get("messages")
        items = messages if isinstance(messages, list) else []
        turn = sum(1 for m in items if isinstance(m, Mapping) and m.get("role") == "user")
        last = items[-1] if items and isinstance(items[-1], Mapping) else {}
        return turn, last.get("role") == "tool"
    given = body.get("input")
    if isinstance(given, str):
        return 1, False
    items = given if isinstance(given, list) else []
    turn = sum(1 for item in items if isinstance(item, Mapping) and item.get("role") == "user")
    last = items[-1] if items and isinstance(items[-1], Mapping) else {}
    return turn, last.get("type") == "function_call_output"


# -- what the server answers ----------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """Token usage reported with a reply; ``None`` counts are estimated (4 bytes a token)."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True)
class PlannedToolCall:
    """A function call the reply asks for; ``id`` defaults to one unique per request."""

    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True)
class Plan:
    """How the server answers one request. Replace fields with :func:`dataclasses.replace`.

    Attributes:
        status: the HTTP status; >= 400 sends OpenAI's error body with ``error_message``.
        text: the reply text (``None``: none, e.g. a tool-call-only reply).
        chunks: the number of text deltas a streamed reply is cut into.
        chunk_interval: seconds between two streamed events.
        first_token_delay: seconds between the events that open a stream (sent with the
            headers) and the first text delta: the model's time to first token. Replies
            without text and whole JSON replies are not delayed.
        latency: seconds to wait before the response headers.
        tool_calls: the function calls the reply asks for.
        usage: the token usage sent with the reply.
        headers: extra response headers (e.g. ``retry-after``).
        error_message: the message of an error reply.
        fault: a misbehaviour to show instead of (or during) the normal reply.
    """

    status: int = 200
    text: str | None = None
    chunks: int = 1
    chunk_interval: float = 0.0
    first_token_delay: float = 0.0
    latency: float = 0.0
    tool_calls: tuple[PlannedToolCall, ...] = ()
    usage: Usage = Usage()
    headers: Mapping[str, str] = field(default_factory=dict)
    error_message: str = "The server had an error while processing your request."
    fault: Fault | None = None


@dataclass
class Exchange:
    """One request and what the server did with it.

    Attributes:
        received: the request.
        plan: the plan it was answered with.
        first_content_ns: ``time.perf_counter_ns()`` just before the event carrying the first
            text delta was written to the socket (streams only); the clock is system-wide on
            Linux and macOS, so another process can compare its own readings with it.
        finished: the response was sent in full (false after a fault or a dropped client).
    """

    received: Received
    plan: Plan
    first_content_ns: int | None = None
    finished: bool = False


def _pieces(text: str, count: int) -> list[str]:
    """``text`` cut into ``count`` non-empty pieces of nearly equal length."""
    count = max(1, min(count, len(text)))
    size, extra = divmod(len(text), count)
    pieces, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


def _error_type(status: int) -> tuple[str, str | None]:
    if status == 401:
        return "invalid_request_error", "invalid_api_key"
    if status == 429:
        return "requests", "rate_limit_exceeded"
    if status >= 500:
        return "server_error", None
    return "invalid_request_error", None


def _error_body(status: int, message: str) -> dict[str, Any]:
    """OpenAI's error object for an HTTP status."""
    kind, code = _error_type(status)
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


# -- reply bodies ---------------------------------------------------------------------------------


class _Reply:
    """The JSON body or SSE events of one planned reply, in one API's format."""

    def __init__(self, received: Received, plan: Plan, request_bytes: int) -> None:
        self.received = received
        self.plan = plan
        self.created = int(time.time())
        self.ident = f"{received.index:08x}"
        self.calls = [
            (call.id or f"call_{received.index}_{position}", call)
            for position, call in enumerate(plan.tool_calls)
        ]
        usage = plan.usage
        text_tokens = len(plan.text or "") // 4 + 1
        call_tokens = sum(len(json.dumps(dict(c.arguments))) // 4 + 5 for _, c in self.calls)
        self.input_tokens = (
            usage.input_tokens if usage.input_tokens is not None else request_bytes // 4 + 1
        )
        self.output_tokens = (
            usage.output_tokens if usage.output_tokens is not None else text_tokens + call_tokens
        )

    def arguments(self, call: PlannedToolCall) -> str:
        return json.dumps(dict(call.arguments), separators=(",", ":"))

    def deltas(self) -> list[str]:
        return _pieces(self.plan.text, self.plan.chunks) if self.plan.text else []

    # -- Chat Completions --

    def chat_usage(self) -> dict[str, Any]:
        usage = self.plan.usage
        return {
            "prompt_tokens": self.input_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": usage.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def chat_calls(self) -> list[dict[str, Any]]:
        return [
            {
                "id": ident,
                "type": "function",
                "function": {"name": call.name, "arguments": self.arguments(call)},
            }
            for ident, call in self.calls
        ]

    def chat_json(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": self.plan.text,
            "refusal": None,
            "annotations": [],
        }
        if self.calls:
            message["tool_calls"] = self.chat_calls()
        return {
            "id": f"chatcmpl-{self.ident}",
            "object": "chat.completion",
            "created": self.created,
            "model": self.received.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "tool_calls" if self.calls else "stop",
                }
            ],
            "usage": self.chat_usage(),
            "service_tier": "default",
            "system_fingerprint": None,
        }

    def chat_chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{self.ident}",
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.received.model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    def chat_events(self) -> Iterator[tuple[str | None, str, bool]]:
        """(event name, data, carries text) for each SSE event of a streamed reply."""
        yield None, dumps(self.chat_chunk({"role": "assistant", "content": ""})), False
        for delta in self.deltas():
            yield None, dumps(self.chat_chunk({"content": delta})), True
        for position, (ident, call) in enumerate(self.calls):
            opening = {
                "index": position,
                "id": ident,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            yield None, dumps(self.chat_chunk({"tool_calls": [opening]})), False
            arguments = {"index": position, "function": {"arguments": self.arguments(call)}}
            yield None, dumps(self.chat_chunk({"tool_calls": [arguments]})), False
        finish = "tool_calls" if self.calls else "stop"
        yield None, dumps(self.chat_chunk({}, finish)), False
        options = self.received.body.get("stream_options")
        if isinstance(options, Mapping) and options.get("include_usage"):
            final = self.chat_chunk({})
            final["choices"] = []
            final["usage"] = self.chat_usage()
            yield None, dumps(final), False
        yield None, "[DONE]", False

    # -- Responses --

    def responses_usage(self) -> dict[str, Any]:
        usage = self.plan.usage
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_tokens},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            "total_tokens": self.input_tokens + self.output_tokens,
        }

    def message_item(self, done: bool) -> dict[str, Any]:
        content: list[dict[str, Any]] = [
            {"type": "output_text", "text": self.plan.text, "annotations": []}
        ]
        return {
            "id": f"msg_{self.ident}",
            "type": "message",
            "status": "completed" if done else "in_progress",
            "role": "assistant",
            "content": content if done else [],
        }

    def call_item(self, ident: str, call: PlannedToolCall, done: bool) -> dict[str, Any]:
        return {
            "id": f"fc_{ident}",
            "type": "function_call",
            "status": "completed" if done else "in_progress",
            "call_id": ident,
            "name": call.name,
            "arguments": self.arguments(call) if done else "",
        }

    def responses_output(self) -> list[dict[str, Any]]:
        output = [self.message_item(True)] if self.plan.text else []
        return output + [self.call_item(ident, call, True) for ident, call in self.calls]

    def response_object(self, done: bool) -> dict[str, Any]:
        body = self.received.body
        return {
            "id": f"resp_{self.ident}",
            "object": "response",
            "created_at": self.created,
            "status": "completed" if done else "in_progress",
            "background": False,
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "max_output_tokens": None,
            "model": self.received.model,
            "output": self.responses_output() if done else [],
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None},
            "store": bool(body.get("store", True)),
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": list(body.get("tools") or []),
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": self.responses_usage() if done else None,
            "user": None,
            "metadata": {},
        }

    def responses_events(self) -> Iterator[tuple[str | None, str, bool]]:
        sequence = 0

        def event(kind: str, payload: dict[str, Any], text: bool = False) -> tuple[str, str, bool]:
            nonlocal sequence
            data = dumps({"type": kind, **payload, "sequence_number": sequence})
            sequence += 1
            return kind, data, text

        yield event("response.created", {"response": self.response_object(False)})
        yield event("response.in_progress", {"response": self.response_object(False)})
        index = 0
        if self.plan.text:
            item_id = f"msg_{self.ident}"
            where = {"item_id": item_id, "output_index": index, "content_index": 0}
            yield event(
                "response.output_item.added",
                {"output_index": index, "item": self.message_item(False)},
            )
            empty = {"type": "output_text", "text": "", "annotations": []}
            yield event("response.content_part.added", {**where, "part": empty})
            for delta in self.deltas():
                yield event(
                    "response.output_text.delta", {**where, "delta": delta, "logprobs": []}, True
                )
            text = self.plan.text or ""
            yield event("response.output_text.done", {**where, "text": text, "logprobs": []})
            part = {"type": "output_text", "text": text, "annotations": []}
            yield event("response.content_part.done", {**where, "part": part})
            yield event(
                "response.output_item.done",
                {"output_index": index, "item": self.message_item(True)},
            )
            index += 1
        for ident, call in self.calls:
            item_id = f"fc_{ident}"
            yield event(
                "response.output_item.added",
                {"output_index": index, "item": self.call_item(ident, call, False)},
            )
            arguments = self.arguments(call)
            where = {"item_id": item_id, "output_index": index}
            yield event("response.function_call_arguments.delta", {**where, "delta": arguments})
            yield event("response.function_call_arguments.done", {**where, "arguments": arguments})
            yield event(
                "response.output_item.done",
                {"output_index": index, "item": self.call_item(ident, call, True)},
            )
            index += 1
        yield event("response.completed", {"response": self.response_object(True)})

    # -- either API --

    def json_body(self) -> dict[str, Any]:
        if self.received.api == "chat_completions":
            return self.chat_json()
        return self.response_object(True)

    def events(self) -> Iterator[tuple[str | None, str, bool]]:
        if self.received.api == "chat_completions":
            return self.chat_events()
        return self.responses_events()

    def error_event(self, fault: ErrorEvent) -> tuple[str | None, str]:
        if self.received.api == "chat_completions":
            error = {"message": fault.message, "type": "server_error", "code": fault.code}
            return None, dumps({"error": error})
        payload = {"type": "error", "code": fault.code, "message": fault.message, "param": None}
        return "error", dumps(payload)


# -- the HTTP side --------------------------------------------------------------------------------


def _sse(name: str | None, data: str) -> bytes:
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {data}\n\n".encode()


class _Handler(LoopbackHandler):
    @property
    def owner(self) -> FakeOpenAIServer:
        return self.server.owner  # type: ignore[return-value]

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if not path.endswith(EXCHANGES_PATH):
            self._refuse_method()
            return
        since = int(query.removeprefix("since=")) if query.startswith("since=") else 0
        self._send_json(200, {"exchanges": self.owner.exchange_log(since)})

    def do_POST(self) -> None:
        owner = self.owner
        length = self.headers.get("content-length")
        raw = self.rfile.read(int(length)) if length and length.isdigit() else b""
        api = _api_of(self.path)
        if api is None:
            self._send_json(404, _error_body(404, f"Unknown path {self.path}"))
            return
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._send_json(400, _error_body(400, "The request body is not a JSON object."))
            return
        exchange = owner._admit(api, self.path, body, self.headers, len(raw))
        if exchange is None:
            self._send_json(503, _error_body(503, "The fake server has served its last request."))
            self.close_connection = True
            # Only now: stopping drops open connections, and this one must get its 503.
            owner._stop_later("max_requests")
            return
        try:
            self._answer(exchange, len(raw))
        except (Dropped, OSError):
            exchange.finished = False
            self.close_connection = True
            self.drop()
        finally:
            if not owner.keep_bodies:
                exchange.received = replace(exchange.received, body={})

    def _refuse_method(self) -> None:
        self._send_json(405, _error_body(405, f"{self.command} is not supported here."))

    # -- answering --

    def _answer(self, exchange: Exchange, request_bytes: int) -> None:
        plan = exchange.plan
        owner = self.owner
        fault = plan.fault
        if isinstance(fault, Refuse):
            raise Dropped
        if isinstance(fault, Hang):
            owner._stopping.wait(fault.seconds)
            raise Dropped
        if plan.latency > 0 and owner._stopping.wait(plan.latency):
            raise Dropped
        if plan.status >= 400:
            body = dumps(_error_body(plan.status, plan.error_message)).encode()
            self._send_bytes(plan.status, body, "application/json", plan.headers, exchange)
            return
        reply = _Reply(exchange.received, plan, request_bytes)
        if exchange.received.stream:
            self._stream(exchange, reply)
            return
        if isinstance(fault, Malformed):
            # A JSON object cut short: what a proxy that truncates a reply delivers.
            broken = dumps(reply.json_body())[: max(1, request_bytes % 50 + 10)]
            self._send_bytes(
                plan.status, broken.encode(), "application/json", plan.headers, exchange
            )
            return
        data = dumps(reply.json_body()).encode()
        self._send_bytes(plan.status, data, "application/json", plan.headers, exchange)

    def _stream(self, exchange: Exchange, reply: _Reply) -> None:
        plan = exchange.plan
        fault = plan.fault
        headers = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
        self.start_response(plan.status, {**headers, **plan.headers}, length=None)
        stopping = self.owner._stopping
        events = [(_sse(name, data), text) for name, data, text in reply.events()]
        if isinstance(fault, Malformed):
            events[fault.after :] = [(b"data: {not json\n\n", False)]
        elif isinstance(fault, ErrorEvent):
            events[fault.after :] = [(_sse(*reply.error_event(fault)), False)]
        for sent, (payload, carries_text) in enumerate(events):
            if isinstance(fault, CloseAfter) and sent >= fault.chunks:
                raise Dropped
            if sent and plan.chunk_interval > 0 and stopping.wait(plan.chunk_interval):
                raise Dropped
            last = sent == len(events) - 1
            if last:
                # Set before the write: a client that has read the last event may look at once.
                exchange.finished = True
            if carries_text and exchange.first_content_ns is None:
                if plan.first_token_delay > 0 and stopping.wait(plan.first_token_delay):
                    raise Dropped
                # Taken just before the write, so a client in another process never sees the
                # event earlier than this stamp.
                exchange.first_content_ns = time.perf_counter_ns()
            self.write(http_chunk(payload) + (LAST_CHUNK if last else b""), fault)

    def _send_json(
        self, status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
    ) -> None:
        self._send_bytes(status, dumps(body).encode(), "application/json", headers or {})

    def _send_bytes(
        self,
        status: int,
        data: bytes,
        content_type: str,
        headers: Mapping[str, str],
        exchange: Exchange | None = None,
    ) -> None:
        fault = exchange.plan.fault if exchange is not None else None
        self.start_response(status, {"content-type": content_type, **headers}, length=len(data))
        if isinstance(fault, CloseAfter):
            # A whole body has no events: send that many pieces of it, then drop.
            piece = max(1, len(data) // (fault.chunks + 2))
            self.wfile.write(data[: piece * fault.chunks])
            raise Dropped
        if exchange is not None:
            exchange.finished = True  # before the write: the client may look at once
        self.write(data, fault)


# -- the server -----------------------------------------------------------------------------------

TurnSelector = Container[int] | Callable[[int], bool]
"""User turns to act on: a set of turn numbers, or a predicate over the turn number."""


def _selected(selector: TurnSelector, turn: int) -> bool:
    if callable(selector):
        return bool(selector(turn))
    return turn in selector


class FakeOpenAIServer(LoopbackServer):
    """A threaded fake OpenAI server on ``127.0.0.1``; see the module docstring.

    Args:
        latency: seconds before each response's headers (time to first byte).
        chunks: text deltas per streamed reply.
        chunk_interval: seconds between streamed events.
        first_token_delay: seconds between a stream's opening events and its first text
            delta (see :class:`Plan`).
        reply: the reply text, or a function of the request that returns it; default: a
            sentence naming the turn.
        usage: the token usage to report (``None`` counts are estimated).
        tool_turns: user turns answered with a tool call (then text after its result).
        tool_call: the call those turns ask for.
        failures: user turn -> HTTP status or :class:`Failure`; the first request(s) of that
            turn get the error (once by default, so a client's retry succeeds unless it is
            told not to retry).
        plan: ``plan(received, default_plan) -> Plan``, called for every request.
        max_requests: requests served before the server answers 503 and stops.
        idle_timeout: seconds without a request after which the server stops.
        max_seconds: seconds after which the server stops whatever happens.
        keep_bodies: keep each request's JSON body in :attr:`exchanges` (turn it off for
            long benchmarks whose histories would fill memory).
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        chunks: int = 1,
        chunk_interval: float = 0.0,
        first_token_delay: float = 0.0,
        reply: str | Callable[[Received], str] | None = None,
        usage: Usage | None = None,
        tool_turns: TurnSelector = (),
        tool_call: PlannedToolCall | None = None,
        failures: Mapping[int, int | Failure] | None = None,
        plan: Callable[[Received, Plan], Plan] | None = None,
        max_requests: int = 10_000,
        idle_timeout: float = 30.0,
        max_seconds: float = 600.0,
        keep_bodies: bool = True,
    ) -> None:
        self.latency = latency
        self.chunks = chunks
        self.chunk_interval = chunk_interval
        self.first_token_delay = first_token_delay
        self.reply = reply
        self.usage = usage or Usage()
        self.tool_turns = tool_turns
        self.tool_call = tool_call or PlannedToolCall("weather", {"city": "Berlin"})
        self.failures = {
            turn: failure if isinstance(failure, Failure) else Failure(failure)
            for turn, failure in (failures or {}).items()
        }
        super().__init__(idle_timeout=idle_timeout, max_seconds=max_seconds)
        self.plan_hook = plan
        self.max_requests = max_requests
        self.keep_bodies = keep_bodies
        self.exchanges: list[Exchange] = []
        self._failed: dict[int, int] = {}
        self._count = 0

    name: ClassVar[str] = "fake OpenAI server"
    handler: ClassVar[type[LoopbackHandler]] = _Handler
    backlog: ClassVar[int] = 1024

    # -- state --

    @property
    def url(self) -> str:
        """The base URL to configure clients with, ``http://127.0.0.1:<port>/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def request_count(self) -> int:
        """Requests received so far (those refused with 503 after the limit included)."""
        with self._lock:
            return self._count

    def bodies(self) -> list[Mapping[str, Any]]:
        """The JSON bodies received, in order (empty ones when ``keep_bodies`` is off)."""
        with self._lock:
            return [exchange.received.body for exchange in self.exchanges]

    def exchange_log(self, since: int = 0) -> list[dict[str, Any]]:
        """The exchanges after request ``since`` as JSON-ready dicts, without bodies.

        Served over HTTP too: ``GET <any prefix>/_fake/exchanges?since=N`` returns
        ``{"exchanges": [...]}``, for a client in another process (that GET is not counted).
        """
        with self._lock:
            chosen = [e for e in self.exchanges if e.received.index > since]
        return [
            {
                "index": e.received.index,
                "path": e.received.path,
                "api": e.received.api,
                "turn": e.received.turn,
                "after_tool_result": e.received.after_tool_result,
                "stream": e.received.stream,
                "status": e.plan.status,
                "fault": type(e.plan.fault).__name__ if e.plan.fault is not None else None,
                "first_content_ns": e.first_content_ns,
                "finished": e.finished,
            }
            for e in chosen
        ]

    # -- planning --

    def default_plan(self, received: Received) -> Plan:
        """The plan the constructor's options give for ``received`` (before the hook)."""
        turn = received.turn
        new_turn = not received.after_tool_result
        with self._lock:
            failure = self.failures.get(turn) if new_turn else None
            if failure is not None and self._failed.get(turn, 0) < failure.times:
                self._failed[turn] = self._failed.get(turn, 0) + 1
            else:
                failure = None
        if failure is not None:
            return Plan(
                status=failure.status,
                latency=self.latency,
                headers=failure.headers,
                error_message=failure.message,
            )
        if new_turn and _selected(self.tool_turns, turn):
            return Plan(
                text=None,
                latency=self.latency,
                chunk_interval=self.chunk_interval,
                tool_calls=(self.tool_call,),
                usage=self.usage,
            )
        if callable(self.reply):
            text = self.reply(received)
        elif self.reply is not None:
            text = self.reply
        else:
            text = f"Reply to turn {turn}. {_FILLER}"
        return Plan(
            text=text,
            chunks=self.chunks,
            chunk_interval=self.chunk_interval,
            first_token_delay=self.first_token_delay,
            latency=self.latency,
            usage=self.usage,
        )

    def _admit(
        self, api: Api, path: str, body: Mapping[str, Any], headers: Any, size: int
    ) -> Exchange | None:
        with self._lock:
            self._count += 1
            index = self._count
            self._last_activity = time.monotonic()
        if index > self.max_requests:
            return None
        turn, after_tool = _inspect_body(api, body)
        received = Received(
            index=index,
            api=api,
            path=path,
            body=body,
            headers={name.lower(): value for name, value in headers.items()},
            stream=bool(body.get("stream")),
            turn=turn,
            after_tool_result=after_tool,
            model=str(body.get("model") or "fake-model"),
        )
        plan = self.default_plan(received)
        if self.plan_hook is not None:
            plan = self.plan_hook(received, plan)
        exchange = Exchange(received, plan)
        with self._lock:
            self.exchanges.append(exchange)
        return exchange
