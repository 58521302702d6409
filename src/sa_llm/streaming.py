"""Folding reply chunks into one assistant message.

Streamed replies arrive as many :class:`~sa_llm.types.Chunk` objects; whole replies are parsed
into the same chunks. :class:`Accumulator` folds either into the final
:class:`~sa_llm.types.Message`, so streamed and non-streamed turns end identically.

Example::

    acc = Accumulator()
    for chunk in chunks:
        acc.add(chunk)
    message = acc.message()
"""

from __future__ import annotations

import json
from typing import Any

from sa_llm import errors
from sa_llm.types import Chunk, Content, Message, Thinking, Tokens, ToolCall

__all__ = ["Accumulator"]


class _PendingCall:
    __slots__ = ("arguments", "extra", "id", "name")

    def __init__(self) -> None:
        self.id: str | None = None
        self.name: str | None = None
        self.arguments: list[str] = []
        self.extra: dict[str, Any] = {}


def parse_arguments(text: str) -> tuple[dict[str, Any], str | None]:
    """A tool call's arguments from the JSON text the model sent, and what was wrong with it.

    Empty text and ``null`` are no arguments. Text that is not a JSON object is kept whole as
    ``{"_raw": text}`` (how stored rows have always kept unreadable arguments), so it can be
    stored and sent back to the model next to the error result.
    """
    text = text.strip()
    if not text:
        return {}, None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return {"_raw": text}, f"the arguments are not valid JSON ({exc})"
    except (ValueError, RecursionError):
        return {"_raw": text}, "the arguments are not valid JSON"
    if value is None:
        return {}, None
    if not isinstance(value, dict):
        return {"_raw": text}, f"the arguments are not a JSON object but {type(value).__name__!s}"
    return value, None


class Accumulator:
    """Collects chunks of one reply and builds the assistant :class:`Message` from them."""

    __slots__ = (
        "_attachments",
        "_calls",
        "_content",
        "_thinking",
        "chunks",
        "finish_reason",
        "model_id",
        "provider",
        "raw",
        "thinking_extra",
        "thinking_signature",
        "tokens",
    )

    def __init__(self, provider: str | None = None) -> None:
        self.provider = provider
        self._content: list[str] = []
        self._thinking: list[str] = []
        self._calls: dict[int | str, _PendingCall] = {}
        self._attachments: list[Any] = []
        self.thinking_signature: str | None = None
        self.thinking_extra: dict[str, Any] = {}
        self.tokens: Tokens | None = None
        self.model_id: str | None = None
        self.finish_reason: str | None = None
        self.chunks = 0
        self.raw: Any = None

    def add(self, chunk: Chunk) -> None:
        """Fold one chunk in."""
        self.chunks += 1
        if chunk.content:
            self._content.append(chunk.content)
        if chunk.thinking:
            self._thinking.append(chunk.thinking)
        if chunk.thinking_signature:
            self.thinking_signature = chunk.thinking_signature
        if chunk.thinking_extra:
            self.thinking_extra.update(chunk.thinking_extra)
        if chunk.attachments:
            self._attachments.extend(chunk.attachments)
        for delta in chunk.tool_calls:
            pending = self._calls.get(delta.key)
            if pending is None:
                pending = self._calls[delta.key] = _PendingCall()
            if delta.id:
                pending.id = delta.id
            if delta.name:
                pending.name = delta.name
            if delta.arguments:
                pending.arguments.append(delta.arguments)
            if delta.extra:
                pending.extra.update(delta.extra)
        if chunk.tokens is not None:
            self.tokens = chunk.tokens if self.tokens is None else self.tokens.merged(chunk.tokens)
        if chunk.model_id:
            self.model_id = chunk.model_id
        if chunk.finish_reason:
            self.finish_reason = chunk.finish_reason

    def partial(self) -> Message:
        """The reply as far as it arrived: text, thinking and usage (no tool calls, whose
        arguments may be cut), for a turn that stops before the reply ends."""
        thinking = None
        if self._thinking or self.thinking_signature:
            thinking = Thinking("".join(self._thinking) or None, self.thinking_signature)
        return Message(
            role="assistant",
            content="".join(self._content),
            tokens=self.tokens,
            model_id=self.model_id,
            thinking=thinking,
        )

    @property
    def text(self) -> str:
        """The reply text received so far."""
        return "".join(self._content)

    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The complete tool calls, with their JSON arguments parsed.

        Arguments that are not a JSON object are the model's mistake, not a broken reply: the
        call keeps them as ``{"_raw": text}`` with ``arguments_error`` saying why, so the turn
        goes on and the model is told (see ``Chat._execute_tool``).

        Raises:
            ResponseParseError: a call without a name (nothing could answer it).
        """
        calls = []
        for key, pending in self._calls.items():
            if not pending.name:
                raise errors.ResponseParseError(
                    f"Tool call {pending.id or key!r} has no name.", provider=self.provider
                )
            arguments, problem = parse_arguments("".join(pending.arguments))
            calls.append(
                ToolCall(
                    id=pending.id or f"call_{key}",
                    name=pending.name,
                    arguments=arguments,
                    extra=pending.extra,
                    arguments_error=problem,
                )
            )
        return tuple(calls)

    def message(self) -> Message:
        """The assistant message built from everything received."""
        text = "".join(self._content)
        thinking = None
        if self._thinking or self.thinking_signature or self.thinking_extra:
            thinking = Thinking(
                text="".join(self._thinking) or None,
                signature=self.thinking_signature,
                extra=dict(self.thinking_extra),
            )
        content: str | Content | None = text if text else None
        if self._attachments:  # files the model returned: text and files, as a user's are
            content = Content(text or None, tuple(self._attachments))
        return Message(
            role="assistant",
            content=content,
            tool_calls=self.tool_calls(),
            tokens=self.tokens,
            model_id=self.model_id,
            thinking=thinking,
            finish_reason=self.finish_reason,
            raw=self.raw,
        )
