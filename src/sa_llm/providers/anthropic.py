"""Anthropic: the Messages API (``POST {base_url}/v1/messages``), sans-IO.

Builds the request body from a :class:`~sa_llm.providers.base.ChatRequest` (system prompts as
top-level ``system`` blocks, content blocks for text, images, PDFs and inlined text files,
``tool_use``/``tool_result`` blocks, ``output_config`` for structured output, ``thinking`` for
extended thinking) and parses a whole reply or its event stream into
:class:`~sa_llm.types.Chunk` objects. Thinking blocks come back with their signatures and are
replayed before the reply's text and tool calls on later turns, as the API requires.
:class:`~sa_llm.types.RawContent` goes out verbatim, which is how prompt caching
(``cache_control``) is used.

Token usage: ``Tokens.input`` is the whole prompt, i.e. Anthropic's ``input_tokens`` plus
``cache_read_input_tokens`` plus ``cache_creation_input_tokens`` (Anthropic counts the three
apart); ``Tokens.cached`` and ``Tokens.cache_creation`` are the two cache counts.

Example::

    sa_llm.configure(anthropic_api_key="sk-ant-...")        # or ANTHROPIC_API_KEY
    chat = sa_llm.chat("claude-haiku-4-5").with_thinking(budget=2048)
    chat.ask("What is 5 + 3?").thinking
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import urlencode

from sa_llm import errors
from sa_llm.content import Attachment
from sa_llm.providers import register_provider
from sa_llm.providers._anthropic_blocks import (
    THINKING_BLOCKS,
    AnthropicStreamParser,
    reply_chunks,
)
from sa_llm.providers.base import (
    ChatRequest,
    HttpRequest,
    HttpResponse,
    Provider,
    SchemaSpec,
    StreamParser,
    ToolSpec,
    deep_merge,
)
from sa_llm.providers.responses import inline_text_file
from sa_llm.schema import strict_schema
from sa_llm.types import Chunk, Message, RawContent, Thinking

__all__ = ["API_VERSION", "THINKING_BLOCKS", "Anthropic", "AnthropicStreamParser"]

#: The ``anthropic-version`` header every request carries.
API_VERSION = "2023-06-01"

# ``max_tokens`` is required; models the registry does not know get a value every Claude
# model accepts (``with_params(max_tokens=...)`` overrides it).
_FALLBACK_MAX_TOKENS = 4096

# ``with_thinking(effort=...)`` without a budget: Anthropic takes a token budget (min 1024).
_EFFORT_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384}

_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

# Anthropic's error types and the status each stands for, for errors that arrive without one
# (an ``error`` event in a stream).
_ERROR_STATUSES = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def _as_blocks(value: Any) -> list[Any]:
    """Raw content as a list of blocks (a plain string becomes one text block)."""
    if isinstance(value, str):
        return [{"type": "text", "text": value}] if value else []
    if isinstance(value, Mapping):
        return [dict(value)]
    return list(value) if isinstance(value, Sequence) else []


@register_provider
class Anthropic(Provider):
    """Anthropic's Messages API: Claude models with tools, vision, PDFs, caching, thinking."""

    name: ClassVar[str] = "anthropic"
    default_base_url: ClassVar[str] = "https://api.anthropic.com"

    def auth_headers(self) -> dict[str, str]:
        """``x-api-key`` and ``anthropic-version`` (the API rejects requests without either)."""
        headers = {"anthropic-version": API_VERSION}
        key = self.api_key()
        if key:
            headers["x-api-key"] = key
        return headers

    # -- request ------------------------------------------------------------------------------

    def build_request(self, request: ChatRequest) -> HttpRequest:
        """``POST {base_url}/v1/messages`` with the JSON body for ``request``.

        Raises:
            UnsupportedAttachmentError: a file Anthropic cannot read (audio, video, ...),
                before anything is sent.
        """
        params = dict(request.params)
        # "_thinking" is sa_llm's own key (set by with_thinking): translate it, never send it.
        thinking = params.pop("_thinking", None)
        body: dict[str, Any] = {
            "model": request.model,
            "messages": self.format_messages(request.messages),
            "stream": request.stream,
            "max_tokens": self.max_tokens(request.model),
        }
        system = self.format_system(request.messages)
        if system:
            body["system"] = system
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.tools:
            body["tools"] = [self.format_tool(tool) for tool in request.tools]
            choice = self.format_tool_choice(request.tool_choice, request.parallel_tool_calls)
            if choice is not None:
                body["tool_choice"] = choice
        if request.schema is not None:
            body["output_config"] = {"format": self.format_schema(request.schema)}
        if isinstance(thinking, Mapping) and thinking:
            body["thinking"] = self.format_thinking(thinking)
        body = deep_merge(body, params)
        headers = {**self.auth_headers(), "content-type": "application/json", **request.headers}
        return HttpRequest("POST", f"{self.base_url}/v1/messages", headers, json=body)

    def max_tokens(self, model: str) -> int:
        """The model's ``max_output_tokens`` from the registry, else a safe default."""
        # Imported here: the registry sits beside the chat layer, above the codecs.
        from sa_llm import registry

        try:
            info = registry.default_registry.find(model, self.name)
        except errors.ModelNotFoundError:
            return _FALLBACK_MAX_TOKENS
        return info.max_output_tokens or _FALLBACK_MAX_TOKENS

    def format_system(self, messages: Sequence[Message]) -> list[Any]:
        """Every system message as ``system`` blocks, in order (RawContent verbatim)."""
        blocks: list[Any] = []
        for message in messages:
            if message.role != "system":
                continue
            if isinstance(message.content, RawContent):
                blocks.extend(_as_blocks(message.content.value))
            elif message.text:
                blocks.append({"type": "text", "text": message.text})
        return blocks

    def format_messages(self, messages: Sequence[Message]) -> list[dict[str, Any]]:
        """The ``messages`` array: user and assistant turns, tool results as user turns.

        The results of one round of calls (several tools, parallel calls) go in one user turn,
        as the API wants every ``tool_result`` right after the ``tool_use`` turn.
        """
        turns: list[dict[str, Any]] = []
        results: list[Any] | None = None  # the content of the tool-result turn being filled
        for message in messages:
            role = message.role
            if role == "system":
                continue
            if role == "tool":
                blocks = self.format_tool_result(message)
                if results is not None:
                    results.extend(blocks)
                else:
                    results = blocks
                    turns.append({"role": "user", "content": results})
                continue
            results = None
            if role == "assistant":
                content = self.assistant_blocks(message)
                if content:  # an empty reply (tool choice "none") cannot be sent back
                    turns.append({"role": "assistant", "content": content})
            else:
                turns.append({"role": "user", "content": self.user_content(message)})
        return turns

    def user_content(self, message: Message) -> Any:
        """Text and file blocks; :class:`RawContent` exactly as given."""
        content = message.content
        if isinstance(content, RawContent):
            return content.value
        blocks: list[dict[str, Any]] = []
        text = message.text
        if text:
            blocks.append({"type": "text", "text": text})
        blocks.extend(self.format_attachment(a) for a in message.attachments)
        return blocks

    def assistant_blocks(self, message: Message) -> list[Any]:
        """An earlier reply: its thinking first, then text, then ``tool_use`` blocks."""
        blocks: list[Any] = self.thinking_blocks(message)
        content = message.content
        if isinstance(content, RawContent):
            blocks.extend(_as_blocks(content.value))
        elif message.text:
            blocks.append({"type": "text", "text": message.text})
        sent = {
            b.get("id") for b in blocks if isinstance(b, Mapping) and b.get("type") == "tool_use"
        }
        for call in message.tool_calls:
            if call.id not in sent:
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call.id,
                        "name": call.name,
                        "input": dict(call.arguments),
                    }
                )
        return blocks

    def thinking_blocks(self, message: Message) -> list[Any]:
        """The reply's thinking blocks to replay: as they came, else rebuilt from the signature.

        A reply stored without the blocks (a persisted chat keeps text and signature) gets one
        ``thinking`` block. Another vendor's reasoning (a chat that switched model) is left
        out: only Claude can check a Claude signature.
        """
        thinking: Thinking | None = message.thinking
        if thinking is None:
            return []
        stored = thinking.extra.get(THINKING_BLOCKS)
        if stored:
            return [dict(block) for block in stored]
        if not thinking.signature or (message.model_id and "claude" not in message.model_id):
            return []
        return [
            {"type": "thinking", "thinking": thinking.text or "", "signature": thinking.signature}
        ]

    def format_tool_result(self, message: Message) -> list[dict[str, Any]]:
        """One ``tool_result`` block; files the tool returned go inside it."""
        content = message.content
        if isinstance(content, RawContent):
            value: Any = content.value
        else:
            blocks: list[dict[str, Any]] = []
            text = message.text
            if text:
                blocks.append({"type": "text", "text": text})
            blocks.extend(self.format_attachment(a) for a in message.attachments)
            value = blocks
        result: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id}
        if value:  # the API rejects empty text blocks; an empty result has no content
            result["content"] = value
        return [result]

    def format_attachment(self, attachment: Attachment) -> dict[str, Any]:
        """An ``image`` or ``document`` block (by URL or base64), or a text file inlined.

        Raises:
            UnsupportedAttachmentError: audio, video and other files, and image formats the
                API does not read.
        """
        kind = attachment.kind
        if kind == "text":
            return {"type": "text", "text": inline_text_file(attachment)}
        if kind in ("image", "pdf"):
            block_type = "image" if kind == "image" else "document"
            if attachment.url is not None and self.accepts_url(attachment.type):
                return {"type": block_type, "source": {"type": "url", "url": attachment.url}}
            if kind == "pdf" or attachment.type in _IMAGE_TYPES:
                source = {
                    "type": "base64",
                    "media_type": attachment.type,
                    "data": attachment.base64(),
                }
                return {"type": block_type, "source": source}
        raise errors.UnsupportedAttachmentError(
            f"Anthropic cannot read {attachment.display_name!r} ({attachment.type}): it takes "
            "JPEG, PNG, GIF and WebP images, PDFs and text files."
        )

    def accepts_url(self, mime_type: str) -> bool:
        """Images and PDFs may be sent by URL (Anthropic fetches them); text is downloaded."""
        return mime_type.startswith("image/") or mime_type == "application/pdf"

    def format_tool(self, tool: ToolSpec) -> dict[str, Any]:
        """One entry of ``tools``: name, description and ``input_schema``."""
        spec: dict[str, Any] = {"name": tool.name}
        if tool.description:
            spec["description"] = tool.description
        spec["input_schema"] = dict(tool.parameters)
        return spec

    def format_tool_choice(
        self, choice: str | None, parallel: bool | None
    ) -> dict[str, Any] | None:
        """``auto``/``any``/``none``/``tool``; ``calls="one"`` disables parallel tool use."""
        if choice == "none":
            return {"type": "none"}
        if choice is None and parallel is not False:
            return None
        if choice in (None, "auto"):
            result: dict[str, Any] = {"type": "auto"}
        elif choice == "required":
            result = {"type": "any"}
        else:
            result = {"type": "tool", "name": choice}
        if parallel is False:
            result["disable_parallel_tool_use"] = True
        return result

    def format_schema(self, schema: SchemaSpec) -> dict[str, Any]:
        """``output_config.format``: the JSON Schema (made strict-mode compatible if strict)."""
        return {
            "type": "json_schema",
            "schema": strict_schema(schema.schema) if schema.strict else dict(schema.schema),
        }

    def format_thinking(self, thinking: Mapping[str, Any]) -> dict[str, Any]:
        """``{"type": "enabled", "budget_tokens": N}``: the budget, or one for the effort."""
        budget = thinking.get("budget")
        if budget is None:
            effort = str(thinking.get("effort") or "medium")
            if effort == "none":
                return {"type": "disabled"}
            budget = _EFFORT_BUDGETS.get(effort, _EFFORT_BUDGETS["medium"])
        return {"type": "enabled", "budget_tokens": int(budget)}

    # -- reply --------------------------------------------------------------------------------

    def parse_response(self, response: HttpResponse) -> list[Chunk]:
        """A whole reply: one chunk per content block, then usage, model and stop reason.

        Raises:
            ResponseParseError: the body is not JSON or has no ``content`` list.
            ProviderError: the body is an error object.
        """
        body = self.parse_json(response)
        if type(body) is not dict:
            raise self.malformed("the reply is not a JSON object", body)
        if body.get("type") == "error":
            raise self.stream_error(body)
        return reply_chunks(self, body)

    def stream_parser(self) -> StreamParser:
        """A fresh :class:`AnthropicStreamParser` for one streamed reply."""
        return AnthropicStreamParser(self)

    # -- errors -------------------------------------------------------------------------------

    def error_for(self, response: HttpResponse) -> errors.APIStatusError:
        """As the base class; the body's ``request_id`` stands in for a missing header."""
        error = super().error_for(response)
        body = error.body
        if error.request_id is None and isinstance(body, Mapping):
            request_id = body.get("request_id")
            if isinstance(request_id, str):
                error.request_id = request_id
        return error

    def stream_error(self, payload: Any) -> errors.ProviderError:
        """The typed error for ``{"type": "error", "error": {"type": ..., "message": ...}}``.

        The error type decides the class (``overloaded_error`` -> :class:`OverloadedError`,
        ``rate_limit_error`` -> :class:`RateLimitError`, ...), as its HTTP status would.
        """
        message, code = self.error_message(payload)
        status = _ERROR_STATUSES.get(code or "")
        if status is None:
            return super().stream_error(payload)
        return self.stream_error_for(status, message, code, payload)

    # -- model listing ------------------------------------------------------------------------

    def list_models_request(self) -> HttpRequest:
        """``GET {base_url}/v1/models``, in pages of 1000 models (Anthropic's maximum)."""
        return HttpRequest("GET", f"{self.base_url}/v1/models?limit=1000", self.auth_headers())

    def next_models_request(
        self, request: HttpRequest, response: HttpResponse
    ) -> HttpRequest | None:
        """The page after ``last_id`` while ``has_more`` is true."""
        body = self.parse_json(response)
        if not isinstance(body, Mapping) or body.get("has_more") is not True:
            return None
        last = body.get("last_id")
        if not isinstance(last, str) or not last:
            return None
        query = urlencode({"limit": 1000, "after_id": last})
        return HttpRequest("GET", f"{self.base_url}/v1/models?{query}", self.auth_headers())

    def model_entry(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """``display_name`` and an ISO ``created_at`` (Anthropic's fields)."""
        created = item.get("created_at")
        return {
            "id": str(item["id"]),
            "name": str(item.get("display_name") or item["id"]),
            "created_at": created if isinstance(created, str) else None,
        }
