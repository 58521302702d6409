"""The OpenAI-compatible providers: OpenRouter, DeepSeek, Mistral and Ollama.

Each speaks the Chat Completions wire format of :mod:`sa_llm.providers.chat_completions` and
subclasses it only where it really differs: the base URL, which key it needs, OpenRouter's
``developer`` role for system prompts, its attribution headers and its ``reasoning_details``
(kept on the reply and sent back with it, so a reasoning model's chain survives tool rounds),
DeepSeek's thinking switch, ``reasoning_content`` sent back and its ``/responses`` dialect,
Mistral's bare image URLs and ``thinking`` content parts sent back, Ollama's keyless local
server and its ``reasoning`` sent back.

Example::

    sa_llm.configure(openrouter_api_key="sk-or-...", openrouter_app_title="My app")
    sa_llm.chat("anthropic/claude-haiku-4.5", provider="openrouter").ask("Hello")
    sa_llm.chat("qwen3", provider="ollama", assume_model_exists=True).ask("Hello")
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar

from sa_llm.config import Config
from sa_llm.content import Attachment
from sa_llm.providers import register_provider
from sa_llm.providers.base import Provider, StreamParser, reasoning_effort
from sa_llm.providers.chat_completions import ChatCompletionsCodec, ChatCompletionsStreamParser
from sa_llm.providers.responses import ResponsesCodec
from sa_llm.types import Chunk, Message, RawContent

__all__ = [
    "THINKING_PARTS",
    "DeepSeek",
    "DeepSeekResponses",
    "Mistral",
    "MistralStreamParser",
    "Ollama",
    "OpenRouter",
]

#: The key of ``Thinking.extra`` holding Mistral's ``thinking`` content parts as they came.
THINKING_PARTS = "mistral_thinking"

# The ``format`` OpenRouter gives reasoning details, by model vendor: needed to rebuild the
# details of a reply stored before they were kept (only text and signature were).
_REASONING_FORMATS = {
    "anthropic/": "anthropic-claude-v1",
    "openai/": "openai-responses-v1",
    "x-ai/": "xai-responses-v1",
    "google/": "google-gemini-v1",
}


@register_provider
class OpenRouter(ChatCompletionsCodec):
    """OpenRouter: many vendors' models behind one key; attribution headers optional."""

    name: ClassVar[str] = "openrouter"
    default_base_url: ClassVar[str] = "https://openrouter.ai/api/v1"
    system_role: ClassVar[str] = "developer"

    def auth_headers(self) -> dict[str, str]:
        headers = super().auth_headers()
        # OpenRouter ranks and attributes traffic by these two headers when an app sends them.
        if self.config.openrouter_app_url:
            headers["http-referer"] = self.config.openrouter_app_url
        if self.config.openrouter_app_title:
            headers["x-title"] = self.config.openrouter_app_title
        return headers

    def format_thinking(self, thinking: Mapping[str, Any], model: str) -> dict[str, Any]:
        """``reasoning: {"effort": ...}``, or ``{"max_tokens": budget}`` for a budget alone."""
        if thinking.get("effort") is None and thinking.get("budget") is not None:
            return {"reasoning": {"max_tokens": int(thinking["budget"])}}
        return {"reasoning": {"effort": reasoning_effort(thinking)}}

    def format_assistant_message(self, message: Message) -> dict[str, Any]:
        """An earlier reply with its ``reasoning_details`` sent back unchanged.

        Models that reason before a tool call (Claude, Gemini, OpenAI's o-series) need their
        reasoning, signatures included, on the next request or they lose the thread.
        """
        data = super().format_assistant_message(message)
        details = self.reasoning_details(message)
        if details:
            data["reasoning_details"] = details
        return data

    def reasoning_details(self, message: Message) -> list[Any] | None:
        """The details a reply came with, or details rebuilt from stored text and signature."""
        thinking = message.thinking
        if thinking is None:
            return None
        kept = thinking.extra.get("reasoning_details")
        if isinstance(kept, list) and kept:
            return list(kept)
        if not thinking.signature:
            return None  # text alone cannot be verified by the model: nothing to send
        model = message.model_id or ""
        detail_format = next(
            (f for prefix, f in _REASONING_FORMATS.items() if model.startswith(prefix)), "unknown"
        )
        detail: dict[str, Any] = {"type": "reasoning.text", "format": detail_format, "index": 0}
        if thinking.text:
            detail["text"] = thinking.text
        detail["signature"] = thinking.signature
        return [detail]

    def message_chunk(self, message: Mapping[str, Any]) -> Chunk:
        chunk = super().message_chunk(message)
        details = message.get("reasoning_details")
        if not isinstance(details, list) or not details:
            return chunk
        return Chunk(
            content=chunk.content,
            thinking=chunk.thinking,
            thinking_signature=_signature(details),
            thinking_extra={"reasoning_details": details},
            tool_calls=chunk.tool_calls,
        )

    def stream_parser(self) -> StreamParser:
        return OpenRouterStreamParser(self)


def _signature(details: list[Any]) -> str | None:
    """The last signature among reasoning details (what a stored reply keeps of them)."""
    for detail in reversed(details):
        if isinstance(detail, Mapping) and isinstance(detail.get("signature"), str):
            return str(detail["signature"])
    return None


class OpenRouterStreamParser(ChatCompletionsStreamParser):
    """Also folds the streamed ``reasoning_details`` pieces into whole details.

    Each delta carries a piece of one detail (by ``index``): its text grows, its signature
    arrives last. The merged list is what the reply is sent back with.
    """

    provider: OpenRouter

    def __init__(self, provider: OpenRouter) -> None:
        super().__init__(provider)
        self.details: list[dict[str, Any]] = []

    def delta_chunk(self, delta: Mapping[str, Any]) -> Chunk:
        chunk = super().delta_chunk(delta)
        pieces = delta.get("reasoning_details")
        if not isinstance(pieces, list) or not pieces:
            return chunk
        signature = None
        for piece in pieces:
            if isinstance(piece, Mapping):
                signature = self.merge(piece) or signature
        return Chunk(
            content=chunk.content,
            thinking=chunk.thinking,
            thinking_signature=signature,
            thinking_extra={"reasoning_details": self.details},
            tool_calls=chunk.tool_calls,
        )

    def merge(self, piece: Mapping[str, Any]) -> str | None:
        """Add one streamed piece to its detail; returns the signature it carried."""
        index = piece.get("index", len(self.details))
        target = next((d for d in self.details if d.get("index") == index), None)
        if target is None or target.get("type") != piece.get("type", target.get("type")):
            self.details.append(dict(piece))
        else:
            for key, value in piece.items():
                if key in ("text", "summary", "data") and isinstance(value, str):
                    target[key] = str(target.get(key) or "") + value
                elif value is not None:
                    target[key] = value
        signature = piece.get("signature")
        return signature if isinstance(signature, str) and signature else None


@register_provider
class DeepSeek(ChatCompletionsCodec):
    """DeepSeek (``reasoning_content`` and prompt-cache-hit tokens are read by the base).

    With ``deepseek_api="responses"`` its OpenAI-Responses dialect is used instead
    (:class:`DeepSeekResponses`).
    """

    name: ClassVar[str] = "deepseek"
    default_base_url: ClassVar[str] = "https://api.deepseek.com"
    # DeepSeek takes response_format json_object only; a JSON Schema would be silently ignored.
    supports_schema: ClassVar[bool] = False

    @classmethod
    def for_model(cls, config: Config, model_id: str | None) -> Provider:
        if config.deepseek_api == "responses":
            return DeepSeekResponses(config)
        return cls(config)

    def format_assistant_message(self, message: Message) -> dict[str, Any]:
        """An earlier reply with its reasoning as ``reasoning_content``: a thinking model that
        called tools needs it on the requests that carry their results."""
        data = super().format_assistant_message(message)
        if message.thinking is not None and message.thinking.text:
            data["reasoning_content"] = message.thinking.text
        return data

    def format_thinking(self, thinking: Mapping[str, Any], model: str) -> dict[str, Any]:
        """``deepseek-reasoner`` always thinks and takes an effort; the hybrid models (V4)
        switch thinking on and off with ``thinking.type`` (effort ``"none"`` = off)."""
        effort = reasoning_effort(thinking)
        if effort == "none":
            return {"thinking": {"type": "disabled"}}
        if model.startswith("deepseek-reasoner"):
            return {"reasoning_effort": effort}
        return {"reasoning_effort": effort, "thinking": {"type": "enabled"}}


class DeepSeekResponses(ResponsesCodec):
    """DeepSeek's ``/responses`` endpoint: the Responses codec, DeepSeek's URL and key.

    It keeps no server-side state and returns no encrypted reasoning, so neither is asked for.
    """

    name: ClassVar[str] = "deepseek"
    default_base_url: ClassVar[str] = "https://api.deepseek.com"
    supports_schema: ClassVar[bool] = False

    def is_reasoning_model(self, model: str) -> bool:
        return False


@register_provider
class Mistral(ChatCompletionsCodec):
    """Mistral La Plateforme: takes an image part's URL as a bare string; reasoning comes as
    ``thinking`` parts of ``content`` (read by the base class) and goes back the same way."""

    name: ClassVar[str] = "mistral"
    default_base_url: ClassVar[str] = "https://api.mistral.ai/v1"

    def format_attachment(self, attachment: Attachment) -> dict[str, Any]:
        part = super().format_attachment(attachment)
        if part.get("type") == "image_url" and isinstance(part.get("image_url"), dict):
            return {"type": "image_url", "image_url": part["image_url"]["url"]}
        return part

    def format_assistant_message(self, message: Message) -> dict[str, Any]:
        """An earlier reply; one that thought is sent as Mistral returned it: its ``thinking``
        parts (as they came), then a ``text`` part (none when the reply only called tools).

        Reasoning models continue from their own thinking; without it the next request reads
        as if the model had answered without any.
        """
        data = super().format_assistant_message(message)
        thinking = message.thinking
        if thinking is None or isinstance(message.content, RawContent):
            return data
        kept = thinking.extra.get(THINKING_PARTS)
        parts: list[Any]
        if isinstance(kept, list | tuple) and kept:
            # As they came; a finished reply's thinking is closed (Mistral marks it so).
            parts = [
                part if "closed" in part else {**part, "closed": True}
                for part in kept
                if isinstance(part, Mapping)
            ]
        elif thinking.text:
            parts = [
                {
                    "type": "thinking",
                    "thinking": [{"type": "text", "text": thinking.text}],
                    "closed": True,
                }
            ]
        else:
            return data
        if message.text:
            parts.append({"type": "text", "text": message.text})
        data["content"] = parts
        return data

    def message_chunk(self, message: Mapping[str, Any]) -> Chunk:
        """Also keeps the ``thinking`` parts of a whole reply as they came, for replay."""
        chunk = super().message_chunk(message)
        content = message.get("content")
        parts = (
            [p for p in content if isinstance(p, Mapping) and p.get("type") == "thinking"]
            if isinstance(content, list)
            else []
        )
        if not parts:
            return chunk
        return replace(chunk, thinking_extra={THINKING_PARTS: parts})

    def stream_parser(self) -> StreamParser:
        return MistralStreamParser(self)


class MistralStreamParser(ChatCompletionsStreamParser):
    """Also rebuilds the streamed ``thinking`` parts as a whole reply has them: the pieces of
    consecutive thinking deltas joined into one part, a new part after text."""

    def __init__(self, provider: Mistral) -> None:
        super().__init__(provider)
        self.parts: list[dict[str, Any]] = []
        self._open = False  # whether the last piece of content was thinking

    def delta_chunk(self, delta: Mapping[str, Any]) -> Chunk:
        chunk = super().delta_chunk(delta)
        content = delta.get("content")
        if not isinstance(content, list):
            if isinstance(content, str) and content:
                self._open = False
            return chunk
        thought = False
        for part in content:
            if not isinstance(part, Mapping):
                continue
            if part.get("type") == "thinking":
                self._add(part)
                thought = True
            elif part.get("type") == "text" and part.get("text"):
                self._open = False
        if not thought:
            return chunk
        # The same list each time: the reply keeps it as it grows.
        return replace(chunk, thinking_extra={THINKING_PARTS: self.parts})

    def _add(self, piece: Mapping[str, Any]) -> None:
        inner = piece.get("thinking")
        text = "".join(
            str(p.get("text"))
            for p in (inner if isinstance(inner, list) else [])
            if isinstance(p, Mapping) and isinstance(p.get("text"), str)
        )
        if isinstance(inner, str):
            text = inner
        if not self._open or not self.parts:
            self.parts.append({"type": "thinking", "thinking": [{"type": "text", "text": ""}]})
            self._open = True
        part = self.parts[-1]
        part["thinking"][0]["text"] += text
        if "closed" in piece:
            part["closed"] = piece["closed"]


@register_provider
class Ollama(ChatCompletionsCodec):
    """A local Ollama server (no key) or Ollama Cloud (``ollama_api_key``)."""

    name: ClassVar[str] = "ollama"
    default_base_url: ClassVar[str] = "http://localhost:11434/v1"
    requires_api_key: ClassVar[bool] = False

    def format_assistant_message(self, message: Message) -> dict[str, Any]:
        """An earlier reply with its ``reasoning`` (the field Ollama returns it in): thinking
        models such as gpt-oss reason on from it across tool rounds."""
        data = super().format_assistant_message(message)
        if message.thinking is not None and message.thinking.text:
            data["reasoning"] = message.thinking.text
        return data
