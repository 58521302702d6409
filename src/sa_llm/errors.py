"""Every exception sa_llm raises, in one tree.

Misuse of the library (a wrong option, a missing key, an unknown model) is kept apart from
failures of a provider (an HTTP status, a broken stream), so callers can catch one family
without swallowing the other::

    SaLLMError
    ├── ConfigurationError            wrong settings or misuse; fix the code or the config
    │   ├── MissingAPIKeyError        no key configured and the env var is unset
    │   ├── MissingDependencyError    an optional package is not installed (names the extra)
    │   ├── ModelNotFoundError        unknown model id (carries close matches)
    │   ├── ProviderNotFoundError     unknown provider name (carries close matches)
    │   ├── DetachedRecordError       a record that is not attached to a session
    │   ├── UnsupportedAttachmentError a file type the model or provider cannot take
    │   └── UnsupportedFeatureError   e.g. a schema for a provider without structured output
    ├── AttachmentError               a file that cannot be read or is too large
    ├── ToolError                     a tool definition that cannot be used
    ├── StructuredOutputError         a reply that does not match the requested schema
    ├── ChatBusyError                 a turn is already running on this chat
    ├── TurnCancelledError            the turn was cancelled (chat.cancel(), from any process)
    ├── ApprovalPendingError          tool calls of the chat wait for approve() / deny()
    │   └── StaleApprovalError        a decision about arguments that have changed since
    ├── PersistenceError              the database failed a step of a turn (carries the reply)
    │   └── TurnLeaseLostError        the turn's lease expired and another turn took the chat
    └── ProviderError                 anything that went wrong talking to a provider
        ├── APIConnectionError        no response, or the connection was lost while reading it
        │   └── APITimeoutError       the request timed out
        ├── ResponseParseError        a reply that is not what the protocol promises
        │   └── StreamInterruptedError a stream that ended before its final event
        └── APIStatusError            the provider answered with an error status
            ├── BadRequestError                 400 (and 422)
            │   ├── ContextLengthExceededError  the prompt is too long for the model
            │   └── ContentBlockedError         the provider refused the prompt or withheld
            │                                   the reply (safety, recitation)
            ├── AuthenticationError             401
            ├── PermissionDeniedError           403
            ├── NotFoundError                   404
            ├── RateLimitError                  429 (carries ``retry_after``)
            └── ServerError                     5xx
                └── OverloadedError             503 / 529 "overloaded"

Every :class:`ProviderError` carries ``provider``, ``status`` (``None`` without a response),
``body`` (the parsed or raw error body) and ``request_id``. All exceptions pickle, because chats
run in worker processes and task queues, and none of them ever contains an API key.

Example::

    try:
        chat.ask("Hello")
    except sa_llm.RateLimitError as exc:
        retry_in = exc.retry_after
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "ApprovalPendingError",
    "AttachmentError",
    "AuthenticationError",
    "BadRequestError",
    "ChatBusyError",
    "ConfigurationError",
    "ContentBlockedError",
    "ContextLengthExceededError",
    "DetachedRecordError",
    "MissingAPIKeyError",
    "MissingDependencyError",
    "ModelNotFoundError",
    "NotFoundError",
    "OverloadedError",
    "PermissionDeniedError",
    "PersistenceError",
    "ProviderError",
    "ProviderNotFoundError",
    "RateLimitError",
    "ResponseParseError",
    "SaLLMError",
    "ServerError",
    "StaleApprovalError",
    "StreamInterruptedError",
    "StructuredOutputError",
    "ToolError",
    "TurnCancelledError",
    "TurnLeaseLostError",
    "UnsupportedAttachmentError",
    "UnsupportedFeatureError",
]


class SaLLMError(Exception):
    """Base class of every exception raised by sa_llm."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions with keyword-only state do not pickle by default; rebuild from the
        # instance dict so subclasses need no __reduce__ of their own.
        return (_rebuild, (type(self), self.message, self.__dict__))


def _rebuild(cls: type[SaLLMError], message: str, state: dict[str, Any]) -> SaLLMError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class ConfigurationError(SaLLMError):
    """The library is misconfigured or misused; the message names the fix."""


class MissingAPIKeyError(ConfigurationError):
    """A provider needs an API key and none is configured.

    Attributes:
        provider: the provider's name, e.g. ``"openai"``.
        env_var: the environment variable that would supply it, e.g. ``"OPENAI_API_KEY"``.
    """

    def __init__(self, provider: str, env_var: str | None) -> None:
        hint = f" or set {env_var}" if env_var else ""
        super().__init__(
            f"No API key for provider {provider!r}: pass {provider}_api_key=... to "
            f"sa_llm.configure() or sa_llm.context(){hint}."
        )
        self.provider = provider
        self.env_var = env_var


class MissingDependencyError(ConfigurationError):
    """A feature needs an optional package that is not installed; the message says how to
    install it (``pip install "sa-llm[<extra>]"`` where an sa_llm extra provides it).

    Attributes:
        package: the missing import, e.g. ``"fsspec"``.
        extra: the sa_llm extra that installs it, e.g. ``"storage"`` (``None``: no extra does,
            e.g. a database driver sa_llm does not test against).
    """

    def __init__(self, message: str, package: str, extra: str | None = None) -> None:
        super().__init__(message)
        self.package = package
        self.extra = extra


class ModelNotFoundError(ConfigurationError):
    """No model with this id is known (for this provider, if one was given).

    Attributes:
        model_id: the id that was asked for.
        provider: the provider it was looked up for, or ``None``.
        suggestions: close matches from the registry, best first.
    """

    def __init__(
        self, model_id: str, provider: str | None = None, suggestions: Sequence[str] = ()
    ) -> None:
        where = f" for provider {provider!r}" if provider else ""
        hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
        extra = (
            " Pass assume_model_exists=True with an explicit provider to use a model the"
            " registry does not list."
        )
        super().__init__(f"Unknown model {model_id!r}{where}.{hint}{extra}")
        self.model_id = model_id
        self.provider = provider
        self.suggestions = list(suggestions)


class ProviderNotFoundError(ConfigurationError):
    """No provider is registered under this name.

    Attributes:
        provider: the name that was asked for.
        suggestions: close matches among the registered providers.
    """

    def __init__(self, provider: str, suggestions: Sequence[str] = ()) -> None:
        hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"Unknown provider {provider!r}.{hint}")
        self.provider = provider
        self.suggestions = list(suggestions)


class DetachedRecordError(ConfigurationError):
    """A record method needs a database session but the record is not attached to one."""


class UnsupportedAttachmentError(ConfigurationError):
    """The chosen model or provider cannot take this kind of file."""


class UnsupportedFeatureError(ConfigurationError):
    """The provider cannot do what the chat asks (raised before any request is sent)."""


class AttachmentError(SaLLMError):
    """A file could not be read, was not found, or is larger than allowed."""


class ToolError(SaLLMError):
    """A tool is defined wrongly (bad signature, duplicate name, unknown tool called)."""


class StructuredOutputError(SaLLMError):
    """The model's reply does not match the requested schema.

    Attributes:
        raw_text: the reply exactly as the model sent it, so nothing is lost.
    """

    def __init__(self, message: str, raw_text: str | None) -> None:
        super().__init__(message)
        self.raw_text = raw_text


class ChatBusyError(SaLLMError):
    """Another turn is already running on this chat (in this process or any other)."""


class TurnCancelledError(SaLLMError):
    """The turn was cancelled by a request from any process (``chat.cancel()``).

    The assistant row keeps what was streamed before the cancel, with status ``cancelled``.

    Attributes:
        partial: the reply as far as it got (text, usage), or ``None`` before it began.
    """

    def __init__(self, message: str, partial: Any = None) -> None:
        super().__init__(message)
        self.partial = partial


class ApprovalPendingError(SaLLMError):
    """Tool calls of this chat wait for a decision (``chat.approve()`` / ``chat.deny()``).

    Raised by ``complete()`` while a call of the parked round has no decision, and by ``ask()``
    while a round is parked (unless the chat denies parked calls on a new question).

    Attributes:
        tool_call_ids: the provider ids of the calls that wait.
    """

    def __init__(self, message: str, tool_call_ids: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.tool_call_ids = tuple(tool_call_ids)


class StaleApprovalError(ApprovalPendingError):
    """A decision was about other arguments than the call now has: it is not applied, and the
    call waits for a fresh decision."""


class PersistenceError(SaLLMError):
    """A database step of a turn failed for good (after its retries).

    The driver's error is chained (``__cause__``); psycopg, asyncpg, sqlite3 and aiosqlite
    failures all arrive as this class. When the provider had already answered, the reply is
    attached so the application can still show it.

    Attributes:
        reply: the :class:`~sa_llm.types.Message` the provider produced, or ``None``.
        step: what was being written (``"begin"``, ``"completion"``, ...).
    """

    def __init__(self, message: str, reply: Any = None, step: str | None = None) -> None:
        super().__init__(message)
        self.reply = reply
        self.step = step


class TurnLeaseLostError(PersistenceError):
    """The turn's lease on its chat expired (its heartbeat could not renew it) and another turn
    took the chat over; this turn's reply was not written (it is attached)."""


class ProviderError(SaLLMError):
    """Talking to a provider failed.

    Attributes:
        provider: the provider's name, e.g. ``"openai"``.
        status: the HTTP status, or ``None`` when there was no response.
        body: the error body (parsed JSON where possible, else text), or ``None``.
        request_id: the provider's request id, when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status: int | None = None,
        body: Any = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.status = status
        self.body = body
        self.request_id = request_id

    def __str__(self) -> str:
        parts = [self.message]
        if self.provider:
            parts.append(f"provider={self.provider}")
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        return parts[0] if len(parts) == 1 else f"{parts[0]} ({', '.join(parts[1:])})"


class APIConnectionError(ProviderError):
    """No HTTP response was received: the connection was refused, reset or lost."""


class APITimeoutError(APIConnectionError):
    """The request timed out: connecting took longer than ``connect_timeout``, or a read, a
    write or the wait for a pooled connection longer than ``request_timeout``."""


class ResponseParseError(ProviderError):
    """The provider's reply could not be parsed (not JSON, missing fields, bad event)."""


class StreamInterruptedError(ResponseParseError):
    """A streamed reply ended before the provider's final event."""


class APIStatusError(ProviderError):
    """The provider answered with an HTTP error status."""


class BadRequestError(APIStatusError):
    """400/422: the provider rejected the request as malformed."""


class ContextLengthExceededError(BadRequestError):
    """The conversation is longer than the model's context window."""


class ContentBlockedError(BadRequestError):
    """The provider refused the prompt or withheld the reply (safety filters, recitation)."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing, wrong or revoked."""


class PermissionDeniedError(APIStatusError):
    """403: the key is valid but may not use this resource."""


class NotFoundError(APIStatusError):
    """404: the model or endpoint does not exist for this key."""


class RateLimitError(APIStatusError):
    """429: too many requests or tokens.

    Attributes:
        retry_after: seconds the provider asked to wait, when it said so.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(APIStatusError):
    """5xx: the provider failed."""


class OverloadedError(ServerError):
    """503/529: the provider is overloaded; try again later."""
