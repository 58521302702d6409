"""Replay recorded provider replies over real HTTP on 127.0.0.1, with a fault injected per request.

:class:`FaultInjectingServer` answers every request with the next queued :class:`Answer`: a
recorded reply of any provider API (OpenAI Chat Completions or Responses, Anthropic Messages,
Gemini, Bedrock Converse), replayed byte for byte as a whole body, an SSE stream or an AWS event
stream, with an optional fault. The faults are those of :mod:`sa_llm.testing.server`, one
vocabulary for both fakes, rendered in the format of the provider being replayed:

* :class:`~sa_llm.testing.server.Refuse`: close the connection without a response;
* :class:`~sa_llm.testing.server.Hang`: read the request and send nothing for ``seconds``;
* :class:`~sa_llm.testing.server.Failure`: an HTTP error status with the provider's own error
  body (OpenAI ``{"error": {...}}``, Anthropic ``{"type": "error", ...}``, Gemini
  ``{"error": {"code", "message", "status"}}``, Bedrock ``{"message"}`` and
  ``x-amzn-errortype``);
* :class:`~sa_llm.testing.server.CloseAfter`: drop the connection after ``chunks`` events (SSE
  events or event-stream frames; pieces of a whole body);
* :class:`~sa_llm.testing.server.Malformed`: an event whose payload is not JSON after ``after``
  good ones (a whole body: cut short);
* :class:`~sa_llm.testing.server.ErrorEvent`: the provider's error event after ``after`` events
  (a whole body: the provider's error object with status 200);
* :class:`~sa_llm.testing.server.Drip`: the reply in small pieces, slowly;

and two that only a replay of real traffic needs:

* :class:`EndEarly`: the reply ends cleanly after ``after`` events, before the provider's final
  one (a whole body: an empty one);
* :class:`Garbled`: the framing is broken: an event is cut in half and runs into the next (a
  whole body: bytes in its middle are overwritten).

The recorded replies come from the caller (:meth:`RecordedReply.from_interaction` reads one
interaction of the wire-corpus JSON shape); this module reads no files. The server is bounded
and stops by itself: after ``max_requests`` requests (later ones get a 503 in the provider's
format), after ``idle_timeout`` seconds without a request and after ``max_seconds`` in all. It
is a context manager, sync and async, counts every request and keeps it in
:attr:`FaultInjectingServer.requests`. Example::

    import sa_llm
    from sa_llm.testing.faults import Answer, FaultInjectingServer, RecordedReply
    from sa_llm.testing.server import Failure

    reply = RecordedReply.from_interaction(recording["interactions"][0])
    with FaultInjectingServer("anthropic") as server:
        server.queue(Answer(reply, Failure(529)), Answer(reply))
        ctx = sa_llm.context(anthropic_base_url=server.url, anthropic_api_key="x",
                             max_retries=1, retry_interval=0)
        ctx.chat("claude-haiku-4-5").ask("Hello")  # overloaded, retried, answered
        assert server.request_count == 2

One concept, one module (over 600 lines): recorded replies served with faults, in every
provider's format.
"""

from __future__ import annotations

import base64
import json
import struct
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal
from zlib import crc32

from sa_llm.testing._loopback import (
    LAST_CHUNK,
    CloseAfter,
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

__all__ = [
    "Answer",
    "Api",
    "EndEarly",
    "FaultInjectingServer",
    "Garbled",
    "InjectedFault",
    "ReceivedRequest",
    "RecordedReply",
    "encode_frame",
    "error_reply",
    "split_events",
]

Api = Literal["chat_completions", "responses", "anthropic", "gemini", "bedrock"]
"""The wire format of the replies a server replays (and of the errors it renders)."""


# -- what the server replays ----------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedReply:
    """One recorded HTTP reply: status, lower-case headers and the exact body bytes."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @classmethod
    def from_interaction(cls, interaction: Mapping[str, Any]) -> RecordedReply:
        """The reply of one wire-corpus interaction (or of its ``response`` object alone).

        Bodies marked ``body_base64`` (Bedrock's event streams) are decoded; JSON values that
        were stored parsed are serialised again.
        """
        response = interaction.get("response", interaction)
        body = response.get("body")
        if body is None:
            data = b""
        elif response.get("body_base64"):
            data = base64.b64decode(body)
        elif isinstance(body, str):
            data = body.encode("utf-8")
        else:
            data = json.dumps(body).encode("utf-8")
        headers = {str(k).lower(): str(v) for k, v in (response.get("headers") or {}).items()}
        return cls(int(response["status"]), headers, data)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    @property
    def event_stream(self) -> bool:
        """A binary AWS event stream (Bedrock's ``converse-stream``)."""
        return "vnd.amazon.eventstream" in self.content_type

    @property
    def streamed(self) -> bool:
        """An SSE stream or an AWS event stream, as opposed to a whole JSON body."""
        return self.event_stream or "event-stream" in self.content_type


@dataclass(frozen=True)
class EndEarly:
    """End the reply cleanly after ``after`` events, without the provider's final event.

    The connection is not broken: the stream's last chunk arrives as usual, so the client sees
    a well-formed response that simply stops. A whole body is sent empty (``content-length:
    0``), what a proxy that loses the upstream reply may deliver.
    """

    after: int = 1


@dataclass(frozen=True)
class Garbled:
    """Break the framing of the reply at event ``after`` (or the first data event after it).

    That event is cut in half and runs straight into the next one, as a proxy that drops bytes
    would deliver it: the SSE ``data`` of two events fuses into one that is not JSON; an AWS
    event-stream frame's length covers the next frame's bytes and its checksum fails. A whole
    body has 16 bytes in its middle overwritten with bytes that cannot be JSON.
    """

    after: int = 1


InjectedFault = Fault | Failure | EndEarly | Garbled
"""Everything a server can do to one reply instead of replaying it as recorded."""


@dataclass(frozen=True)
class Answer:
    """What the server sends for one request: ``reply``, with ``fault`` applied (if any)."""

    reply: RecordedReply
    fault: InjectedFault | None = None


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the server received it.

    Attributes:
        index: 1 for the first request this server received, then 2, 3, ...
        method: the HTTP method.
        path: the path, query string included.
        headers: the request headers, names in lower case.
        body: the JSON body, or ``None`` when the body was not JSON.
        stream: whether the request asked for a stream (``"stream": true``, Gemini's
            ``streamGenerateContent``, Bedrock's ``converse-stream``).
        fault: the name of the fault applied to the answer (``None``: replayed as recorded).
    """

    index: int
    method: str
    path: str
    headers: Mapping[str, str] = field(repr=False)  # they carry the client's credentials
    body: Any
    stream: bool
    fault: str | None


def _asks_for_stream(path: str, body: Any) -> bool:
    route = path.split("?", 1)[0]
    if route.endswith(("/converse-stream", ":streamGenerateContent")):
        return True
    return isinstance(body, Mapping) and body.get("stream") is True


# -- events ---------------------------------------------------------------------------------------


def split_events(reply: RecordedReply) -> list[bytes]:
    """The events of a streamed reply, each with its own framing, in order.

    SSE events keep their terminating blank line (``\\n\\n`` or Gemini's ``\\r\\n\\r\\n``);
    AWS event-stream frames are split by the length in their prelude. Joining the list gives
    the body back. A whole body is one "event".
    """
    body = reply.body
    if not reply.streamed:
        return [body]
    if reply.event_stream:
        frames, position = [], 0
        while position + 4 <= len(body):
            total = int.from_bytes(body[position : position + 4], "big")
            if total <= 0:
                break
            frames.append(body[position : position + total])
            position += total
        if position < len(body):
            frames.append(body[position:])
        return frames
    separator = _separator(body)
    events, start = [], 0
    while start < len(body):
        end = body.find(separator, start)
        end = len(body) if end < 0 else end + len(separator)
        events.append(body[start:end])
        start = end
    return events


def _separator(body: bytes) -> bytes:
    return b"\r\n\r\n" if b"\r\n\r\n" in body else b"\n\n"


def _has_data(event: bytes, binary: bool) -> bool:
    if binary:
        return True
    return any(line.startswith(b"data:") for line in event.splitlines())


def encode_frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One AWS event-stream frame with string headers and valid prelude and message CRCs."""
    head = b""
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        head += bytes([len(raw_name)]) + raw_name + b"\x07" + struct.pack(">H", len(raw_value))
        head += raw_value
    prelude = struct.pack(">II", 12 + len(head) + len(payload) + 4, len(head))
    message = prelude + struct.pack(">I", crc32(prelude)) + head + payload
    return message + struct.pack(">I", crc32(message))


def _dumps(value: Any) -> bytes:
    return dumps(value).encode()


# -- errors in each provider's format -------------------------------------------------------------

_OPENAI_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_GOOGLE_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_AWS_TYPES = {
    400: "ValidationException",
    401: "UnrecognizedClientException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}


def error_reply(api: Api, status: int, message: str) -> tuple[bytes, dict[str, str]]:
    """The body and headers with which ``api``'s provider answers ``status``."""
    headers = {"content-type": "application/json"}
    if api in ("chat_completions", "responses"):
        default = ("server_error", None) if status >= 500 else ("invalid_request_error", None)
        kind, code = _OPENAI_TYPES.get(status, default)
        error = {"message": message, "type": kind, "param": None, "code": code}
        return _dumps({"error": error}), headers
    if api == "anthropic":
        kind = _ANTHROPIC_TYPES.get(
            status, "api_error" if status >= 500 else "invalid_request_error"
        )
        body = {"type": "error", "error": {"type": kind, "message": message}}
        return _dumps(body), headers
    if api == "gemini":
        state = _GOOGLE_STATUSES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
        return _dumps({"error": {"code": status, "message": message, "status": state}}), headers
    kind = _AWS_TYPES.get(
        status, "InternalServerException" if status >= 500 else "ValidationException"
    )
    namespace = "com.amazon.coral.service" if status == 401 else "com.amazon.bedrock"
    headers["x-amzn-errortype"] = f"{kind}:http://internal.amazon.com/coral/{namespace}/"
    return _dumps({"message": message}), headers


# An ErrorEvent's ``code`` names the kind of failure in OpenAI's words; the other providers have
# their own names for the same kinds.
_EVENT_KINDS = {
    "anthropic": {
        "server_error": "api_error",
        "overloaded": "overloaded_error",
        "rate_limit_exceeded": "rate_limit_error",
    },
    "bedrock": {
        "server_error": "internalServerException",
        "overloaded": "serviceUnavailableException",
        "rate_limit_exceeded": "throttlingException",
    },
}
_GEMINI_EVENT_STATUS = {"server_error": 500, "overloaded": 503, "rate_limit_exceeded": 429}


def _error_object(api: Api, fault: ErrorEvent, created: bool, sequence: int) -> tuple[str, Any]:
    """(SSE event name, JSON payload) of ``api``'s error event for ``fault``."""
    if api == "chat_completions":
        error = {"message": fault.message, "type": fault.code, "param": None, "code": fault.code}
        return "", {"error": error}
    if api == "responses":
        if not created:
            # Before ``response.created`` there is no response to fail: a bare error event.
            error_event = {"type": "error", "code": fault.code, "message": fault.message}
            return "error", {**error_event, "param": None, "sequence_number": sequence}
        response = {
            "id": "resp_fault",
            "object": "response",
            "status": "failed",
            "error": {"code": fault.code, "message": fault.message},
            "output": [],
        }
        return "response.failed", {
            "type": "response.failed",
            "sequence_number": sequence,
            "response": response,
        }
    if api == "anthropic":
        kind = _EVENT_KINDS["anthropic"].get(fault.code, fault.code)
        return "error", {"type": "error", "error": {"type": kind, "message": fault.message}}
    status = _GEMINI_EVENT_STATUS.get(fault.code, 500)
    state = _GOOGLE_STATUSES.get(status, "INTERNAL")
    return "", {"error": {"code": status, "message": fault.message, "status": state}}


def _sse_event(name: str, payload: bytes, line_end: bytes) -> bytes:
    head = b"event: " + name.encode() + line_end if name else b""
    return head + b"data: " + payload + line_end + line_end


def _stream_error_event(api: Api, fault: ErrorEvent, sent: list[bytes], body: bytes) -> bytes:
    if api == "bedrock":
        kind = _EVENT_KINDS["bedrock"].get(fault.code, "modelStreamErrorException")
        headers = {
            ":message-type": "exception",
            ":exception-type": kind,
            ":content-type": "application/json",
        }
        return encode_frame(headers, _dumps({"message": fault.message}))
    created = any(b"response.created" in event for event in sent)
    name, payload = _error_object(api, fault, created, len(sent))
    return _sse_event(name, _dumps(payload), _line_end(body))


def _malformed_event(api: Api, body: bytes) -> bytes:
    if api == "bedrock":
        headers = {
            ":message-type": "event",
            ":event-type": "contentBlockDelta",
            ":content-type": "application/json",
        }
        return encode_frame(headers, b'{"contentBlockIndex":0,"delta":{"text":')
    name = {"responses": "response.output_text.delta", "anthropic": "content_block_delta"}
    return _sse_event(name.get(api, ""), b'{"type": "delta", "text": ', _line_end(body))


def _line_end(body: bytes) -> bytes:
    return b"\r\n" if _separator(body) == b"\r\n\r\n" else b"\n"


# -- the HTTP side --------------------------------------------------------------------------------


_HOP_BY_HOP = frozenset({"content-length", "transfer-encoding", "connection", "content-encoding"})


class _Handler(LoopbackHandler):
    @property
    def owner(self) -> FaultInjectingServer:
        return self.server.owner  # type: ignore[return-value]

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        owner = self.owner
        length = self.headers.get("content-length")
        raw = self.rfile.read(int(length)) if length and length.isdigit() else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {name.lower(): value for name, value in self.headers.items()}
        answer = owner._admit(self.command, self.path, headers, body)
        try:
            if answer is None:
                message = "The fault-injecting server has served its last request."
                self._send_whole(503, *error_reply(owner.api, 503, message))
                self.close_connection = True
                # Only now: stopping drops open connections, and this one must get its 503.
                owner._stop_later("max_requests")
            elif isinstance(answer, str):
                self._send_whole(400, *error_reply(owner.api, 400, answer))
            else:
                self._answer(answer)
        except (Dropped, OSError):
            self.close_connection = True
            self.drop()

    # -- answering --

    def _answer(self, answer: Answer) -> None:
        fault, reply = answer.fault, answer.reply
        stopping = self.owner._stopping
        if isinstance(fault, Refuse):
            raise Dropped
        if isinstance(fault, Hang):
            stopping.wait(fault.seconds)
            raise Dropped
        if isinstance(fault, Failure):
            body, headers = error_reply(self.owner.api, fault.status, fault.message)
            self._send_whole(fault.status, body, {**headers, **fault.headers})
            return
        if reply.streamed:
            self._stream(reply, fault)
        else:
            self._whole(reply, fault)

    def _recorded_headers(self, reply: RecordedReply) -> dict[str, str]:
        return {k: v for k, v in reply.headers.items() if k not in _HOP_BY_HOP}

    def _whole(self, reply: RecordedReply, fault: InjectedFault | None) -> None:
        api = self.owner.api
        status, body, headers = reply.status, reply.body, self._recorded_headers(reply)
        if isinstance(fault, CloseAfter):
            self.start_response(status, headers, length=len(body))
            piece = max(1, len(body) // (fault.chunks + 2))
            self.write(body[: piece * fault.chunks], None)
            raise Dropped
        if isinstance(fault, EndEarly):
            body = b""
        elif isinstance(fault, Malformed):
            body = body[: max(1, len(body) // 2)]  # a JSON object cut short
        elif isinstance(fault, Garbled):
            middle = len(body) // 2
            body = body[: max(0, middle - 8)] + b"\x00\xff garbled \xfe\x00" + body[middle + 8 :]
        elif isinstance(fault, ErrorEvent):
            _, payload = _error_object(api, fault, created=True, sequence=0)
            if api == "responses":
                payload = payload["response"]
            elif api == "bedrock":
                payload = {"message": fault.message}
            body, status = _dumps(payload), 200
            headers["content-type"] = "application/json"
        self._send_whole(status, body, headers, fault)

    def _stream(self, reply: RecordedReply, fault: InjectedFault | None) -> None:
        api = self.owner.api
        events = split_events(reply)
        position = fault.chunks if isinstance(fault, CloseAfter) else getattr(fault, "after", 0)
        # A fault always lands before the last event: after it, there is nothing to break.
        position = max(0, min(position, len(events) - 1))
        if isinstance(fault, Malformed):
            events[position:] = [_malformed_event(api, reply.body)]
        elif isinstance(fault, ErrorEvent):
            error = _stream_error_event(api, fault, events[:position], reply.body)
            events[position:] = [error]
        elif isinstance(fault, EndEarly):
            del events[position:]
        elif isinstance(fault, Garbled):
            binary = reply.event_stream
            target = next(
                (i for i in range(position, len(events) - 1) if _has_data(events[i], binary)),
                position,
            )
            events[target] = events[target][: max(1, len(events[target]) // 2)]
        self.start_response(reply.status, self._recorded_headers(reply), length=None)
        for sent, event in enumerate(events):
            if isinstance(fault, CloseAfter) and sent >= position:
                raise Dropped
            self.write(http_chunk(event), fault)
        self.write(LAST_CHUNK, fault)

    def _send_whole(
        self,
        status: int,
        body: bytes,
        headers: Mapping[str, str],
        fault: InjectedFault | None = None,
    ) -> None:
        self.start_response(status, headers, length=len(body))
        self.write(body, fault)


# -- the server -----------------------------------------------------------------------------------


class FaultInjectingServer(LoopbackServer):
    """A threaded loopback server replaying recorded replies with faults; see the module doc.

    Args:
        api: the wire format of the replies, which decides how errors and broken events look.
        answers: answers for the first requests, in order (more with :meth:`queue`).
        fallback: the answer once the queue is empty; without one such a request gets a 400
            in the provider's format that says so (a 400 is not retried, so a test that
            queued too few answers fails at once).
        max_requests: requests served before the server answers 503 and stops.
        idle_timeout: seconds without a request after which the server stops.
        max_seconds: seconds after which the server stops whatever happens.
    """

    def __init__(
        self,
        api: Api,
        answers: Iterable[Answer] = (),
        *,
        fallback: Answer | None = None,
        max_requests: int = 1_000,
        idle_timeout: float = 30.0,
        max_seconds: float = 300.0,
    ) -> None:
        super().__init__(idle_timeout=idle_timeout, max_seconds=max_seconds)
        self.api: Api = api
        self.fallback = fallback
        self.max_requests = max_requests
        self.requests: list[ReceivedRequest] = []
        self._answers: deque[Answer] = deque(answers)
        self._admitted = threading.Condition(self._lock)

    def queue(self, *answers: Answer) -> None:
        """Answer the next requests (after those already queued) with ``answers``, in order."""
        with self._lock:
            self._answers.extend(answers)

    @property
    def pending(self) -> int:
        """Queued answers no request has taken yet."""
        with self._lock:
            return len(self._answers)

    name: ClassVar[str] = "fault-injecting server"
    handler: ClassVar[type[LoopbackHandler]] = _Handler
    poll_interval: ClassVar[float] = 0.005

    # -- state --

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: the base URL to point a provider at."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def request_count(self) -> int:
        """Requests received so far (those refused after ``max_requests`` included)."""
        with self._lock:
            return len(self.requests)

    def wait_for_requests(self, count: int, timeout: float | None = None) -> bool:
        """Block until the server has received ``count`` requests; false on timeout.

        A client that gave up on a request (a timeout) may be ahead of the handler thread that
        is still to read it: wait for the server to catch up before counting.
        """
        with self._admitted:
            return self._admitted.wait_for(lambda: len(self.requests) >= count, timeout)

    def bodies(self) -> list[Any]:
        """The JSON bodies received, in order (``None`` for bodies that were not JSON)."""
        with self._lock:
            return [request.body for request in self.requests]

    def _admit(
        self, method: str, path: str, headers: Mapping[str, str], body: Any
    ) -> Answer | str | None:
        """The answer for a new request: an :class:`Answer`, a complaint, or ``None`` (limit)."""
        with self._lock:
            index = len(self.requests) + 1
            self._last_activity = time.monotonic()
            over = index > self.max_requests
            answer: Answer | str | None = None
            if not over:
                if self._answers:
                    answer = self._answers.popleft()
                elif self.fallback is not None:
                    answer = self.fallback
                else:
                    answer = f"No answer is queued for request {index} ({method} {path})."
            fault = answer.fault if isinstance(answer, Answer) else None
            self.requests.append(
                ReceivedRequest(
                    index=index,
                    method=method,
                    path=path,
                    headers=dict(headers),
                    body=body,
                    stream=_asks_for_stream(path, body),
                    fault=type(fault).__name__ if fault is not None else None,
                )
            )
            self._admitted.notify_all()
        return None if over else answer
