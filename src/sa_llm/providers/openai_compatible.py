"""The OpenAI-compatible providers: OpenRouter, DeepSeek, Mistral and Ollama.

Each speaks the Chat Completions wire format of :mod:`sa_llm.providers._chat_completions` and
subclasses it only where it really differs: the base URL, which key it needs, OpenRouter's
``developer`` role for system prompts and its attribution headers, Ollama's keyless local server.

Example::

    sa_llm.configure(openrouter_api_key="sk-or-...", openrouter_app_title="My app")
    sa_llm.chat("anthropic/claude-haiku-4.5", provider="openrouter").ask("Hello")
    sa_llm.chat("qwen3", provider="ollama", assume_model_exists=True).ask("Hello")
"""

from __future__ import annotations

from typing import Any, ClassVar

from sa_llm.content import Attachment
from sa_llm.providers import register_provider
from sa_llm.providers._chat_completions import ChatCompletionsCodec

__all__ = ["DeepSeek", "Mistral", "Ollama", "OpenRouter"]


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


@register_provider
class DeepSeek(ChatCompletionsCodec):
    """DeepSeek (``reasoning_content`` and prompt-cache-hit tokens are read by the base)."""

    name: ClassVar[str] = "deepseek"
    default_base_url: ClassVar[str] = "https://api.deepseek.com"


@register_provider
class Mistral(ChatCompletionsCodec):
    """Mistral La Plateforme: takes an image part's URL as a bare string."""

    name: ClassVar[str] = "mistral"
    default_base_url: ClassVar[str] = "https://api.mistral.ai/v1"

    def format_attachment(self, attachment: Attachment) -> dict[str, Any]:
        part = super().format_attachment(attachment)
        if part.get("type") == "image_url" and isinstance(part.get("image_url"), dict):
            return {"type": "image_url", "image_url": part["image_url"]["url"]}
        return part


@register_provider
class Ollama(ChatCompletionsCodec):
    """A local Ollama server (no key) or Ollama Cloud (``ollama_api_key``)."""

    name: ClassVar[str] = "ollama"
    default_base_url: ClassVar[str] = "http://localhost:11434/v1"
    requires_api_key: ClassVar[bool] = False
