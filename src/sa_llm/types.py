"""Value objects of a conversation: messages, content, tool calls, token usage and stream chunks.

They know nothing of SQLAlchemy or HTTP. Providers turn them into request bodies and build
them from replies; the persistence layer turns them into rows and back.

Example::

    from sa_llm.types import Message, Tokens

    reply = Message(role="assistant", content="Paris", tokens=Tokens(input=12, output=1))
    assert reply.text == "Paris"
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    from sa_llm.content import Attachment

__all__ = [
    "Chunk",
    "Content",
    "Message",
    "RawContent",
    "Role",
    "Thinking",
    "Tokens",
    "ToolCall",
    "ToolCallDelta",
]

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[Role, ...] = ("system", "user", "assistant", "tool")


# A count or an amount: token counts add as ints, costs as Decimals.
_Amount = TypeVar("_Amount", int, Decimal)


def _add_optional(a: _Amount | None, b: _Amount | None) -> _Amount | None:
    """``a + b``, where an unknown value (``None``) adds nothing; ``None`` when both are."""
    if a is None:
        return b
    if b is None:
        return a
    return a + b


@dataclass(frozen=True, slots=True)
class Tokens:
    """Token usage of one model reply.

    Attributes:
        input: prompt tokens, including cached ones.
        output: completion tokens, including reasoning ones.
        cached: prompt tokens read from the provider's prompt cache.
        cache_creation: prompt tokens written to the provider's prompt cache.
        reasoning: output tokens spent on hidden reasoning.
    """

    input: int | None = None
    output: int | None = None
    cached: int | None = None
    cache_creation: int | None = None
    reasoning: int | None = None

    def __add__(self, other: Tokens) -> Tokens:
        return Tokens(
            input=_add_optional(self.input, other.input),
            output=_add_optional(self.output, other.output),
            cached=_add_optional(self.cached, other.cached),
            cache_creation=_add_optional(self.cache_creation, other.cache_creation),
            reasoning=_add_optional(self.reasoning, other.reasoning),
        )

    def merged(self, newer: Tokens) -> Tokens:
        """Fields of ``newer`` that are set win; used while a stream reports usage in parts."""
        return Tokens(
            input=self.input if newer.input is None else newer.input,
            output=self.output if newer.output is None else newer.output,
            cached=self.cached if newer.cached is None else newer.cached,
            cache_creation=(
                self.cache_creation if newer.cache_creation is None else newer.cache_creation
            ),
            reasoning=self.reasoning if newer.reasoning is None else newer.reasoning,
        )


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the model asked for.

    Attributes:
        id: the provider's call id; the tool result must quote it.
        name: the tool's name.
        arguments: the parsed JSON arguments.
        extra: provider data that must be sent back verbatim on replay (e.g. Gemini's
            thought signature); empty for most providers.
        arguments_error: why the arguments the model sent could not be read (not valid JSON,
            not a JSON object), ``None`` when they could. ``arguments`` is then
            ``{"_raw": <the text as sent>}``; the tool is not run and the model receives an
            error result instead.
    """

    id: str
    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    arguments_error: str | None = None


@dataclass(frozen=True, slots=True)
class Thinking:
    """The model's visible reasoning and the opaque token that lets it be replayed.

    Attributes:
        text: reasoning text or summary, when the provider shows it.
        signature: the provider's signature or encrypted reasoning, sent back on the next
            turn so the model keeps its chain of thought.
        extra: provider details needed for replay (e.g. the reasoning item id).
    """

    text: str | None = None
    signature: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Content:
    """Text plus file attachments, the content of a user message or a tool result."""

    text: str | None = None
    attachments: tuple[Attachment, ...] = ()

    def __str__(self) -> str:
        return self.text or ""


@dataclass(frozen=True, slots=True)
class RawContent:
    """Provider-native content blocks, sent to the provider exactly as given.

    Use it for features sa_llm does not model, e.g. Anthropic prompt caching::

        RawContent([{"type": "text", "text": long_doc, "cache_control": {"type": "ephemeral"}}])

    It is stored verbatim in ``messages.content_raw`` and replayed unchanged.
    """

    value: Any

    def text(self) -> str | None:
        """The concatenated text of the blocks, for display and logs."""
        value = self.value
        if isinstance(value, str):
            return value
        if isinstance(value, Mapping):
            value = [value]
        if isinstance(value, Sequence):
            texts = [
                str(block.get("text"))
                for block in value
                if isinstance(block, Mapping) and isinstance(block.get("text"), str)
            ]
            return "".join(texts) if texts else None
        return None


MessageContent = str | Content | RawContent | None


@dataclass(slots=True)
class Message:
    """One message of a conversation.

    Attributes:
        role: ``system``, ``user``, ``assistant`` or ``tool``.
        content: plain text, :class:`Content` (text + attachments), :class:`RawContent`
            (provider blocks sent verbatim), or ``None`` (an assistant turn with only tool calls).
        tool_calls: calls the assistant asked for.
        tool_call_id: for a ``tool`` message, the id of the call it answers.
        tokens: usage of the reply that produced this message.
        model_id: the model that produced it, as the provider reported it.
        thinking: reasoning text and signature, when the model produced any.
        parsed: the structured reply (a dict or pydantic instance) when a schema was set.
        finish_reason: why the model stopped, in the provider's words.
        raw: the provider's whole HTTP reply (``HttpResponse``: status, headers, body,
            ``.json()``) for a non-streamed turn; ``None`` when streamed.
    """

    role: Role
    content: MessageContent = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    tokens: Tokens | None = None
    model_id: str | None = None
    thinking: Thinking | None = None
    parsed: Any = None
    finish_reason: str | None = None
    raw: Any = field(default=None, repr=False, compare=False)

    @property
    def text(self) -> str | None:
        """The message's text, whatever form its content takes."""
        content = self.content
        if content is None or isinstance(content, str):
            return content
        if isinstance(content, Content):
            return content.text
        return content.text()

    @property
    def attachments(self) -> tuple[Attachment, ...]:
        """Files attached to this message."""
        return self.content.attachments if isinstance(self.content, Content) else ()

    @property
    def is_tool_call(self) -> bool:
        """True when the assistant asked for one or more tools."""
        return bool(self.tool_calls)

    @property
    def is_tool_result(self) -> bool:
        """True for a tool's answer."""
        return self.role == "tool"

    @property
    def input_tokens(self) -> int | None:
        return self.tokens.input if self.tokens else None

    @property
    def output_tokens(self) -> int | None:
        return self.tokens.output if self.tokens else None

    @property
    def cached_tokens(self) -> int | None:
        return self.tokens.cached if self.tokens else None

    @property
    def cache_creation_tokens(self) -> int | None:
        return self.tokens.cache_creation if self.tokens else None

    @property
    def reasoning_tokens(self) -> int | None:
        return self.tokens.reasoning if self.tokens else None

    def copy(self, **changes: Any) -> Message:
        """A copy with some fields replaced."""
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a streamed tool call; pieces with the same ``key`` belong together.

    Attributes:
        key: what ties the pieces of one call together (an index or an item id).
        id: the call id, in the piece that carries it.
        name: the tool name, in the piece that carries it.
        arguments: a fragment of the JSON arguments text, to be concatenated.
        extra: provider replay data (e.g. a thought signature).
    """

    key: int | str
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    extra: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a reply: what a stream delivers, and what a whole reply is parsed into.

    Attributes:
        content: a fragment of the reply text.
        thinking: a fragment of the reasoning text.
        thinking_signature: the reasoning signature or encrypted reasoning, when it arrives.
        thinking_extra: provider replay details for the reasoning (e.g. the item id).
        tool_calls: fragments of tool calls.
        attachments: files the reply returns (e.g. an image a model generated).
        tokens: usage reported so far (fields that are set replace earlier ones).
        model_id: the model that answers.
        finish_reason: why the model stopped, in the last chunk.
    """

    content: str | None = None
    thinking: str | None = None
    thinking_signature: str | None = None
    thinking_extra: Mapping[str, Any] | None = None
    tool_calls: tuple[ToolCallDelta, ...] = ()
    tokens: Tokens | None = None
    model_id: str | None = None
    finish_reason: str | None = None
    attachments: tuple[Attachment, ...] = ()
