"""The reply side of Anthropic's Messages format: usage, content blocks and the event stream.

Pure functions and a stream parser over the JSON Anthropic sends, shared by every API that
answers in this format (Anthropic's own; Claude behind other clouds sends the same blocks and
events). A whole reply's ``content`` list becomes :class:`~sa_llm.types.Chunk` objects with
:func:`reply_chunks`; a stream's events go through :class:`AnthropicStreamParser`, whose
:meth:`~AnthropicStreamParser.parse_payload` takes one decoded event so a non-SSE transport can
feed it too.

Example::

    chunks = reply_chunks(provider, json.loads(body))
    parser = AnthropicStreamParser(provider)
    chunks = parser.feed(b"event: message_start\\ndata: {...}\\n\\n")
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sa_llm.providers.base import Provider, SSEStreamParser
from sa_llm.providers.sse import ServerSentEvent
from sa_llm.types import Chunk, Tokens, ToolCallDelta

__all__ = ["THINKING_BLOCKS", "AnthropicStreamParser", "reply_chunks", "usage_tokens"]

#: The key of ``Thinking.extra`` that holds a reply's thinking blocks exactly as they came
#: (``thinking`` with its signature, ``redacted_thinking`` with its data), for replay.
THINKING_BLOCKS = "anthropic_blocks"


def _string_field(provider: Provider, data: Mapping[str, Any], key: str) -> str:
    """``data[key]`` when it is a string, ``""`` when absent; anything else is malformed."""
    value = data.get(key)
    if value is None or type(value) is str:
        return value or ""
    raise provider.malformed(f"{key!r} is not a string", data)


def _count(value: Any) -> int | None:
    return value if type(value) is int else None


def usage_tokens(usage: Any) -> Tokens | None:
    """:class:`Tokens` from an Anthropic ``usage`` object (``None`` when there is none).

    ``input`` adds the cache reads and writes to ``input_tokens``, so it is the whole prompt
    as for every other provider; it stays ``None`` when ``input_tokens`` is absent, so a later
    partial usage does not overwrite an earlier full one.
    """
    if type(usage) is not dict:
        return None
    fresh = _count(usage.get("input_tokens"))
    cached = _count(usage.get("cache_read_input_tokens"))
    created = _count(usage.get("cache_creation_input_tokens"))
    details = usage.get("output_tokens_details")
    return Tokens(
        input=None if fresh is None else fresh + (cached or 0) + (created or 0),
        output=_count(usage.get("output_tokens")),
        cached=cached,
        cache_creation=created,
        reasoning=_count(details.get("thinking_tokens")) if type(details) is dict else None,
    )


def reply_chunks(provider: Provider, body: Mapping[str, Any]) -> list[Chunk]:
    """A whole reply (a ``message`` object): one chunk per content block, then usage, model
    and stop reason. Thinking blocks are also kept whole under :data:`THINKING_BLOCKS`.

    Raises:
        ResponseParseError: no ``content`` list, or a block that is not what it says.
    """
    content = body.get("content")
    if not isinstance(content, list):
        raise provider.malformed("the reply has no 'content' list", body)
    chunks: list[Chunk] = []
    thinking: list[dict[str, Any]] = []
    for index, block in enumerate(content):
        if type(block) is not dict:
            raise provider.malformed("a content block is not an object", block)
        kind = block.get("type")
        if kind == "text":
            text = _string_field(provider, block, "text")
            if text:
                chunks.append(Chunk(content=text))
        elif kind == "tool_use":
            arguments = block.get("input")
            call = ToolCallDelta(
                key=index,
                id=_string_field(provider, block, "id") or f"toolu_{index}",
                name=_string_field(provider, block, "name"),
                arguments=json.dumps(arguments if arguments is not None else {}),
            )
            chunks.append(Chunk(tool_calls=(call,)))
        elif kind == "thinking":
            thinking.append(block)
            chunks.append(
                Chunk(
                    thinking=_string_field(provider, block, "thinking") or None,
                    thinking_signature=_string_field(provider, block, "signature") or None,
                )
            )
        elif kind == "redacted_thinking":
            thinking.append(block)
    if thinking:
        chunks.append(Chunk(thinking_extra={THINKING_BLOCKS: thinking}))
    chunks.append(
        Chunk(
            tokens=usage_tokens(body.get("usage")),
            model_id=_string_field(provider, body, "model") or None,
            finish_reason=_string_field(provider, body, "stop_reason") or None,
        )
    )
    return chunks


class AnthropicStreamParser(SSEStreamParser):
    """Parses the Messages event stream, from ``message_start`` to ``message_stop``.

    Events are dispatched on their ``type`` with the frequent ``content_block_delta`` first;
    each event's JSON is parsed once and nothing is re-serialised.
    """

    def __init__(self, provider: Provider) -> None:
        super().__init__(provider)
        # Usage arrives twice (message_start, then message_delta with the final counts); the
        # later fields update the earlier so cache counts given only once are kept.
        self._usage: dict[str, Any] = {}
        # Thinking blocks being streamed (index -> text pieces, signature) and those finished,
        # kept whole for replay.
        self._open: dict[int, tuple[list[str], list[str]]] = {}
        self._thinking: list[dict[str, Any]] = []

    def parse_event(self, event: ServerSentEvent) -> Chunk | None:
        """The chunk for one SSE event, ``None`` for events that carry nothing.

        Raises:
            ResponseParseError: the event's data is not a JSON object.
            ProviderError: an ``error`` event.
        """
        data = event.data
        if not data:
            return None
        try:
            payload = json.loads(data)
        except ValueError:
            raise self.provider.malformed("a stream event is not JSON", data) from None
        return self.parse_payload(payload)

    def parse_payload(self, payload: Any) -> Chunk | None:
        """The chunk for one decoded event (``{"type": "content_block_delta", ...}``)."""
        if type(payload) is not dict:
            raise self.provider.malformed("a stream event is not an object", payload)
        kind = payload.get("type")
        if kind == "content_block_delta":
            return self._delta(payload)
        if kind == "content_block_start":
            return self._block_start(payload)
        if kind == "content_block_stop":
            return self._block_stop(payload)
        if kind == "message_start":
            message = payload.get("message")
            if type(message) is not dict:
                raise self.provider.malformed("message_start has no message", payload)
            usage = message.get("usage")
            if type(usage) is dict:
                self._usage.update(usage)
            model = self._string(message.get("model"), "the model", payload)
            return Chunk(tokens=usage_tokens(self._usage), model_id=model or None)
        if kind == "message_delta":
            usage = payload.get("usage")
            if type(usage) is dict:
                self._usage.update(usage)
            delta = payload.get("delta")
            stop = delta.get("stop_reason") if type(delta) is dict else None
            stop = self._string(stop, "the stop reason", payload)
            return Chunk(tokens=usage_tokens(self._usage), finish_reason=stop or None)
        if kind == "message_stop":
            self.finished = True
            return None
        if kind == "error":
            raise self.provider.stream_error(payload)
        return None  # ping, and event types added after this was written

    def _string(self, value: Any, what: str, payload: Any) -> str:
        """``value`` when it is a string, ``""`` when absent; anything else is malformed."""
        if type(value) is str:
            return value
        if value is None:
            return ""
        raise self.provider.malformed(f"{what} is not a string", payload)

    def _index(self, payload: dict[str, Any]) -> int:
        index = payload.get("index")
        if type(index) is not int:
            raise self.provider.malformed(f"{payload.get('type')} has no block index", payload)
        return index

    def _delta(self, payload: dict[str, Any]) -> Chunk | None:
        delta = payload.get("delta")
        if type(delta) is not dict:
            raise self.provider.malformed("content_block_delta has no delta", payload)
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            if type(text) is not str:
                text = self._string(text, "a text delta", payload)
            return Chunk(content=text) if text else None
        if kind == "input_json_delta":
            partial = self._string(delta.get("partial_json"), "a tool-input delta", payload)
            if not partial:
                return None
            return Chunk(tool_calls=(ToolCallDelta(key=self._index(payload), arguments=partial),))
        if kind == "thinking_delta":
            text = self._string(delta.get("thinking"), "a thinking delta", payload)
            if not text:
                return None
            block = self._open.get(self._index(payload))
            if block is not None:
                block[0].append(text)
            return Chunk(thinking=text)
        if kind == "signature_delta":
            signature = self._string(delta.get("signature"), "a signature delta", payload)
            if not signature:
                return None
            block = self._open.get(self._index(payload))
            if block is not None:
                # The accumulator keeps the last signature it sees: hand it the whole one.
                block[1].append(signature)
                signature = "".join(block[1])
            return Chunk(thinking_signature=signature)
        return None  # citations_delta and newer kinds carry no text of their own

    def _block_start(self, payload: dict[str, Any]) -> Chunk | None:
        block = payload.get("content_block")
        if type(block) is not dict:
            raise self.provider.malformed("content_block_start has no content_block", payload)
        kind = block.get("type")
        if kind == "tool_use":
            # The block's "input" is always {} here; the arguments follow as input_json_delta.
            call = ToolCallDelta(
                key=self._index(payload),
                id=self._string(block.get("id"), "a tool call id", payload) or None,
                name=self._string(block.get("name"), "a tool name", payload) or None,
            )
            return Chunk(tool_calls=(call,))
        if kind == "text":
            text = self._string(block.get("text"), "a text block", payload)
            return Chunk(content=text) if text else None
        if kind == "thinking":
            text = self._string(block.get("thinking"), "a thinking block", payload)
            signature = self._string(block.get("signature"), "a signature", payload)
            self._open[self._index(payload)] = (
                [text] if text else [],
                [signature] if signature else [],
            )
            return Chunk(thinking=text or None, thinking_signature=signature or None)
        if kind == "redacted_thinking":
            self._thinking.append(block)
            return Chunk(thinking_extra={THINKING_BLOCKS: list(self._thinking)})
        return None

    def _block_stop(self, payload: dict[str, Any]) -> Chunk | None:
        if not self._open:
            return None
        pieces = self._open.pop(self._index(payload), None)
        if pieces is None:
            return None
        texts, signatures = pieces
        block = {"type": "thinking", "thinking": "".join(texts), "signature": "".join(signatures)}
        self._thinking.append(block)
        return Chunk(thinking_extra={THINKING_BLOCKS: list(self._thinking)})
