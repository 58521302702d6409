"""OpenAI: the Responses API by default, Chat Completions when configured or for audio input.

``sa_llm.configure(openai_api="chat_completions")`` selects Chat Completions for every OpenAI
model; audio-input models (``gpt-audio*``, ``*-audio-preview``) always use it, because the
Responses API does not take audio.

Example::

    sa_llm.configure(openai_api_key="sk-...")
    sa_llm.chat("gpt-5-nano").ask("Hello")
"""

from __future__ import annotations

from sa_llm.config import Config
from sa_llm.providers import register_provider
from sa_llm.providers.base import Provider
from sa_llm.providers.chat_completions import ChatCompletionsCodec
from sa_llm.providers.responses import ResponsesCodec

__all__ = ["OpenAI", "OpenAIChatCompletions", "organization_headers"]

_BASE_URL = "https://api.openai.com/v1"


def organization_headers(config: Config) -> dict[str, str]:
    headers = {}
    if config.openai_organization:
        headers["openai-organization"] = config.openai_organization
    if config.openai_project:
        headers["openai-project"] = config.openai_project
    return headers


@register_provider
class OpenAI(ResponsesCodec):
    """OpenAI through ``/responses`` (the default)."""

    name = "openai"
    default_base_url = _BASE_URL

    @classmethod
    def for_model(cls, config: Config, model_id: str | None) -> Provider:
        if config.openai_api == "chat_completions" or (model_id and "audio" in model_id):
            return OpenAIChatCompletions(config)
        return cls(config)

    def auth_headers(self) -> dict[str, str]:
        return {**super().auth_headers(), **organization_headers(self.config)}


class OpenAIChatCompletions(ChatCompletionsCodec):
    """OpenAI through ``/chat/completions`` (audio input, or ``openai_api="chat_completions"``)."""

    name = "openai"
    default_base_url = _BASE_URL

    def auth_headers(self) -> dict[str, str]:
        return {**super().auth_headers(), **organization_headers(self.config)}
