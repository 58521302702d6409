"""The provider interface: a sans-IO codec between sa_llm's value objects and one HTTP API.

A provider turns a :class:`ChatRequest` into an :class:`HttpRequest`, a reply into
:class:`~sa_llm.types.Chunk` objects, a stream into chunks through a :class:`StreamParser`, and
an error status into the right :mod:`sa_llm.errors` class. It never opens a socket: only
:mod:`sa_llm.providers._transport` does I/O. A whole reply is parsed into the same chunks a
stream delivers, so streamed and non-streamed replies end in the same message through the same
accumulation (:mod:`sa_llm.streaming`).

Example (what a test of a codec looks like)::

    provider = OpenAIResponses(config)
    http = provider.build_request(ChatRequest(model="gpt-5-nano", messages=[...]))
    chunks = provider.parse_response(HttpResponse(200, {}, recorded_body))
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from sa_llm import errors
from sa_llm._redact import redact_error, redact_url
from sa_llm.config import Config
from sa_llm.providers.sse import ServerSentEvent, SSEDecoder
from sa_llm.types import Chunk, Content, Message, RawContent

E = TypeVar("E", bound=BaseException)

if TYPE_CHECKING:
    import httpx

    from sa_llm.content import Attachment
    from sa_llm.registry import ModelInfo, Registry

__all__ = [
    "ChatRequest",
    "HttpRequest",
    "HttpResponse",
    "Provider",
    "SSEStreamParser",
    "SchemaSpec",
    "StreamParser",
    "ToolSpec",
    "deep_merge",
    "error_class_for",
    "reasoning_effort",
]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool as the model sees it: name, description and JSON Schema of its parameters."""

    name: str
    description: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class SchemaSpec:
    """A structured-output request: the JSON Schema the reply must match."""

    name: str
    schema: Mapping[str, Any]
    strict: bool = True


class FormatCache:
    """The wire items of a conversation's earlier messages, kept from one request to the next.

    Every request sends the whole history, and formatting it costs in proportion to its length,
    turn after turn. A codec's :meth:`Provider.format_history` reuses the items it made for a
    message before, as long as it is the same message object with the same content, tool calls,
    thinking and role (a message edited in place by assigning those is formatted again) and
    the same codec class. Messages with files are always formatted again (a file may be
    downloaded in between). Only the messages of the latest request are kept.
    """

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        # By position in the conversation (which grows at the end): the message, what its
        # items were made from, and the items.
        self._entries: list[tuple[Message, type, Any, Any, Any, str, list[Any]] | None] = []

    def items(
        self,
        kind: type,
        format_message: Callable[[Message], list[Any]],
        messages: Sequence[Message],
    ) -> list[Any]:
        """``format_message`` of each message, flattened, reusing what is still valid (items
        made by a codec of class ``kind``)."""
        entries = self._entries
        known = len(entries)
        kept: list[tuple[Message, type, Any, Any, Any, str, list[Any]] | None] = []
        out: list[Any] = []
        for position, message in enumerate(messages):
            entry = entries[position] if position < known else None
            content = message.content
            if (
                entry is None
                or entry[0] is not message
                or entry[1] is not kind
                or entry[2] is not content
                or entry[3] is not message.tool_calls
                or entry[4] is not message.thinking
                or entry[5] != message.role
            ):
                items = format_message(message)
                if isinstance(content, Content) and content.attachments:
                    entry = None  # a file may be downloaded before the next request
                else:
                    entry = (
                        message, kind, content, message.tool_calls, message.thinking,
                        message.role, items,
                    )  # fmt: skip
            else:
                items = entry[6]
            kept.append(entry)
            out += items
        self._entries = kept
        return out


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """Everything a provider needs to build one request, independent of its wire format.

    Attributes:
        model: the provider's model id.
        messages: the conversation so far, system messages included.
        tools: tools the model may call.
        tool_choice: ``"auto"``, ``"none"``, ``"required"`` or a tool name; ``None`` = default.
        parallel_tool_calls: allow several calls in one reply; ``None`` = provider default.
        temperature: sampling temperature, ``None`` = provider default.
        schema: structured-output schema, or ``None``.
        params: provider-specific body fields, deep-merged into the body last.
        headers: extra HTTP headers.
        stream: ask for a streamed reply.
        format_cache: the conversation's :class:`FormatCache`, or ``None`` to format every
            message afresh.
    """

    model: str
    messages: Sequence[Message]
    tools: Sequence[ToolSpec] = ()
    tool_choice: str | None = None
    parallel_tool_calls: bool | None = None
    temperature: float | None = None
    schema: SchemaSpec | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    stream: bool = False
    format_cache: FormatCache | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """An HTTP request as data. ``json`` is serialised by the transport."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    content: bytes | None = None

    def __repr__(self) -> str:
        # Headers carry credentials: never show them (nor those written into the URL).
        return f"HttpRequest({self.method} {redact_url(self.url)})"


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """An HTTP response as data: status, lower-case headers and the whole body."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def request_id(self) -> str | None:
        for name in ("x-request-id", "request-id", "x-amzn-requestid", "x-goog-request-id"):
            value = self.headers.get(name)
            if value:
                return value
        return None


class StreamParser:
    """Turns the bytes of one streamed reply into chunks; one instance per stream.

    Subclasses implement :meth:`feed` (bytes in, chunks out) and set :attr:`finished` when the
    provider's final event arrives, so a stream cut short is detected in :meth:`close`.
    """

    finished: bool = False

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    def feed(self, data: bytes) -> list[Chunk]:
        """Parse the next bytes of the stream."""
        raise NotImplementedError

    def close(self) -> list[Chunk]:
        """The stream ended; raise :class:`StreamInterruptedError` if it ended early."""
        if not self.finished:
            raise errors.StreamInterruptedError(
                "The stream ended before the provider's final event; the reply is incomplete.",
                provider=self.provider.name,
            )
        return []


class SSEStreamParser(StreamParser):
    """A :class:`StreamParser` for a stream of server-sent events: subclasses turn each event
    into a chunk (:meth:`parse_event`), or override :meth:`parse_events` for a whole batch."""

    def __init__(self, provider: Provider) -> None:
        super().__init__(provider)
        self.decoder = SSEDecoder()

    def feed(self, data: bytes) -> list[Chunk]:
        """Chunks for the events completed by ``data``."""
        return self.parse_events(self.decoder.feed(data))

    def close(self) -> list[Chunk]:
        """The last event, if its blank line never came; raises if the reply is incomplete."""
        chunks = self.parse_events(self.decoder.flush())
        return chunks + super().close()

    def parse_events(self, events: Sequence[ServerSentEvent]) -> list[Chunk]:
        """The chunks of ``events``: each event's :meth:`parse_event` that is not ``None``."""
        parse = self.parse_event
        return [c for event in events if (c := parse(event)) is not None]

    def parse_event(self, event: ServerSentEvent) -> Chunk | None:
        """The chunk for one event, ``None`` for events that carry nothing."""
        raise NotImplementedError


def reasoning_effort(thinking: Mapping[str, Any]) -> str:
    """The effort of ``with_thinking(effort=..., budget=...)``: a budget alone maps to the
    nearest effort, for APIs that take no token budget."""
    effort = thinking.get("effort")
    if effort is None and thinking.get("budget") is not None:
        budget = int(thinking["budget"])
        effort = "low" if budget < 2048 else "medium" if budget < 8192 else "high"
    return str(effort or "medium")


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` merged into a copy of ``base``; nested mappings merge, other values replace.

    How ``with_params`` fields reach a request body: a nested field overrides only the keys
    it names.
    """
    merged = dict(base)
    for key, value in extra.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = value
    return merged


_STATUS_ERRORS: dict[int, type[errors.APIStatusError]] = {
    400: errors.BadRequestError,
    401: errors.AuthenticationError,
    403: errors.PermissionDeniedError,
    404: errors.NotFoundError,
    413: errors.BadRequestError,
    422: errors.BadRequestError,
    429: errors.RateLimitError,
    503: errors.OverloadedError,
    529: errors.OverloadedError,
}

_CONTEXT_LENGTH = re.compile(
    r"context[_ ]length|context window|maximum context|prompt is too long|too many tokens"
    r"|input is too long|exceeds the (?:maximum|context)|input token count|reduce the length",
    re.IGNORECASE,
)


_RATE_LIMITED = re.compile(r"\brate[ _-]?limit|\btoo many requests\b|\bthrottl|\bquota\b")

_BAD_KEY = re.compile(r"\b(?:incorrect|invalid|missing|wrong)\b[^.]*\bAPI key\b", re.IGNORECASE)


def error_class_for(
    status: int, message: str, code: str | None = None
) -> type[errors.APIStatusError]:
    """The error class for an HTTP status and the provider's message (a pure function)."""
    if status in (400, 413, 422) and (
        (code and "context_length" in code) or _CONTEXT_LENGTH.search(message)
    ):
        return errors.ContextLengthExceededError
    if status == 400 and _BAD_KEY.search(message):
        # Some providers (xAI) answer a wrong key with 400; it is still an auth failure.
        return errors.AuthenticationError
    if "overloaded" in message.lower() and status >= 500:
        return errors.OverloadedError
    if status in _STATUS_ERRORS:
        return _STATUS_ERRORS[status]
    if status >= 500:
        return errors.ServerError
    if status == 408:
        return errors.APIStatusError
    return errors.BadRequestError if 400 <= status < 500 else errors.APIStatusError


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return float(raw_ms) / 1000.0
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    from datetime import datetime, timezone
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


class Provider:
    """Base class of provider codecs. Subclasses set the class attributes and the codec methods.

    Attributes:
        name: the provider's registry name, e.g. ``"openai"``.
        default_base_url: used when neither config nor env var sets one.
        requires_api_key: whether requests need a key (Ollama's local server does not).
        uses_registry: whether models are looked up in the registry (the test fake serves any).
        supports_schema: whether the API can constrain a reply to a JSON Schema; a chat with a
            schema on a provider that cannot fails before any request.
    """

    name: ClassVar[str] = ""
    default_base_url: ClassVar[str] = ""
    requires_api_key: ClassVar[bool] = True
    uses_registry: ClassVar[bool] = True
    supports_schema: ClassVar[bool] = True

    def __init__(self, config: Config) -> None:
        self.config = config

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    @classmethod
    def for_model(cls, config: Config, model_id: str | None) -> Provider:
        """An instance for ``model_id``; providers with several APIs choose one here."""
        return cls(config)

    @classmethod
    def preferred_model(cls, info: ModelInfo, models: Registry, config: Config) -> ModelInfo:
        """The registry entry to call for ``info``, a model this provider serves.

        The registry names a model by its base id; a provider whose accounts reach the model
        through another id (Bedrock's regional inference profiles, ``us.anthropic...``) picks
        that entry here. The default is ``info`` itself.
        """
        return info

    def format_history(
        self,
        request: ChatRequest,
        messages: Sequence[Message],
        format_message: Callable[[Message], list[Any]],
    ) -> list[Any]:
        """``format_message`` of each of ``messages``, flattened; with the request's
        :class:`FormatCache`, the items of messages formatted for an earlier request are
        reused (so ``format_message`` must depend on the message alone and the codec's
        constants)."""
        if request.format_cache is None:
            return [item for message in messages for item in format_message(message)]
        return request.format_cache.items(type(self), format_message, messages)

    @property
    def base_url(self) -> str:
        return self.config.base_url(self.name, self.default_base_url)

    def api_key(self) -> str | None:
        """The key for this provider (raises :class:`MissingAPIKeyError` when required)."""
        return self.config.api_key(self.name, required=self.requires_api_key)

    def redact_error(self, error: E) -> E:
        """``error`` with every secret of the configuration (keys, URL credentials) found in
        its message, args or body replaced by ``***``, in place: a proxy that echoes the
        ``Authorization`` header must not put the key into an exception."""
        return redact_error(error, self.config.secret_values())

    # -- codec ---------------------------------------------------------------------------

    def build_request(self, request: ChatRequest) -> HttpRequest:
        """The HTTP request for one model call."""
        raise NotImplementedError

    def parse_response(self, response: HttpResponse) -> list[Chunk]:
        """A whole (non-streamed) reply, as the chunks a stream would have delivered."""
        raise NotImplementedError

    def stream_parser(self) -> StreamParser:
        """A fresh parser for one streamed reply."""
        raise NotImplementedError

    def error_message(self, body: Any) -> tuple[str, str | None]:
        """The human message and machine code inside an error body (common shapes)."""
        if isinstance(body, Mapping):
            err = body.get("error", body)
            if isinstance(err, Mapping):
                message = err.get("message") or body.get("message") or json.dumps(body)
                code = err.get("code") or err.get("type") or err.get("status")
                return str(message), (str(code) if code is not None else None)
            if isinstance(err, str):
                return err, None
            if "message" in body:
                return str(body["message"]), None
        if isinstance(body, list) and body:
            return self.error_message(body[0])
        return (str(body) if body not in (None, "") else "no error details"), None

    def error_for(self, response: HttpResponse) -> errors.APIStatusError:
        """The typed error for an HTTP error response."""
        try:
            body: Any = response.json()
        except ValueError:
            body = response.body.decode("utf-8", "replace")
        message, code = self.error_message(body)
        cls = self.error_class(response, message, code)
        kwargs: dict[str, Any] = {
            "provider": self.name,
            "status": response.status,
            "body": body,
            "request_id": response.request_id,
        }
        if cls is errors.RateLimitError:
            return errors.RateLimitError(
                message, retry_after=parse_retry_after(response.headers), **kwargs
            )
        return cls(message, **kwargs)

    def error_class(
        self, response: HttpResponse, message: str, code: str | None
    ) -> type[errors.APIStatusError]:
        """The error class of an HTTP error: by status, message and code (see
        :func:`error_class_for`); providers with their own error types override it."""
        return error_class_for(response.status, message, code)

    def stream_error(self, payload: Any) -> errors.ProviderError:
        """The typed error for an error event inside a stream."""
        message, code = self.error_message(payload)
        lowered = f"{message} {code or ''}".lower()
        # Whole words only: "generate" or "accurate" in a message must not read as a rate limit.
        status = 529 if "overloaded" in lowered else 429 if _RATE_LIMITED.search(lowered) else 500
        if "context" in lowered and "length" in lowered:
            status = 400
        return self.stream_error_for(status, message, code, payload)

    def stream_error_for(
        self, status: int, message: str, code: str | None, payload: Any
    ) -> errors.ProviderError:
        """The typed error that ``status`` stands for, for an error object inside a stream or
        a 200 reply (the error keeps no HTTP status of its own)."""
        cls = error_class_for(status, message, code)
        return cls(message, provider=self.name, status=None, body=payload)

    def parse_json(self, response: HttpResponse) -> Any:
        """The reply's JSON body, or a :class:`ResponseParseError` that keeps the raw text."""
        try:
            return response.json()
        except ValueError:
            raise errors.ResponseParseError(
                "The provider's reply is not valid JSON.",
                provider=self.name,
                status=response.status,
                body=response.body[:2000].decode("utf-8", "replace"),
                request_id=response.request_id,
            ) from None

    def malformed(self, what: str, payload: Any = None) -> errors.ResponseParseError:
        """A :class:`ResponseParseError` for a reply that lacks what the protocol promises."""
        return errors.ResponseParseError(
            f"Malformed reply from {self.name}: {what}", provider=self.name, body=payload
        )

    # -- model listing (registry refresh) --

    def list_models_request(self) -> HttpRequest:
        """The request that lists the provider's models (OpenAI's ``GET /models`` shape)."""
        return HttpRequest("GET", f"{self.base_url}/models", self.auth_headers())

    def next_models_request(
        self, request: HttpRequest, response: HttpResponse
    ) -> HttpRequest | None:
        """The request for the next page of a model listing, or ``None`` after the last page.

        OpenAI's ``GET /models`` answers with every model at once; providers that page their
        listings (Anthropic, Gemini) override this.
        """
        return None

    def auth_headers(self) -> dict[str, str]:
        """Authentication headers for this provider's requests."""
        key = self.api_key()
        return {"authorization": f"Bearer {key}"} if key else {}

    def parse_model_list(self, response: HttpResponse) -> list[dict[str, Any]]:
        """``[{"id": ..., "created_at": ..., "name": ...}]`` from a model-listing reply.

        Reads the ``data`` array of OpenAI's shape; :meth:`model_entry` reads each item.
        """
        body = self.parse_json(response)
        data = body.get("data") if isinstance(body, Mapping) else None
        if not isinstance(data, list):
            raise self.malformed("the model list has no 'data' array", body)
        return [
            self.model_entry(item) for item in data if isinstance(item, Mapping) and item.get("id")
        ]

    def model_entry(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """One listed model: ``id``, ``name`` and ``created_at`` (ISO) from OpenAI's fields."""
        created = item.get("created")
        return {
            "id": str(item["id"]),
            "name": str(item.get("name") or item["id"]),
            "created_at": (
                datetime.fromtimestamp(created, timezone.utc).isoformat()
                if isinstance(created, int | float)
                else None
            ),
        }

    def http_clients(self) -> tuple[httpx.Client, httpx.AsyncClient] | None:
        """Clients this provider must use instead of the configured ones (the test fake)."""
        return None

    # -- content shared by the JSON APIs (subclasses set the part type, format the files) --

    text_part_type: ClassVar[str] = "text"

    def format_attachment(self, attachment: Attachment) -> dict[str, Any]:
        """The content part for one file."""
        raise NotImplementedError

    def content_parts(self, content: str | Content | RawContent | None) -> Any:
        """A plain string, a list of text and file parts, or ``RawContent`` verbatim."""
        if isinstance(content, RawContent):
            return content.value
        if not isinstance(content, Content):
            return content or ""
        if not content.attachments:
            return content.text or ""
        parts: list[dict[str, Any]] = []
        if content.text:
            parts.append({"type": self.text_part_type, "text": content.text})
        parts.extend(self.format_attachment(a) for a in content.attachments)
        return parts

    def tool_attachments_turn(self, message: Message) -> list[dict[str, Any]]:
        """Files a tool returned, as a user turn after its result (results carry text only)."""
        if not message.attachments:
            return []
        intro = {
            "type": self.text_part_type,
            "text": f"Attachments from tool call {message.tool_call_id}:",
        }
        parts = [intro, *(self.format_attachment(a) for a in message.attachments)]
        return [{"role": "user", "content": parts}]

    def accepts_url(self, mime_type: str) -> bool:
        """Whether a remote file of this type can be sent by URL instead of downloaded."""
        return False
