"""OpenAI through ``/chat/completions`` (audio input, or ``openai_api="chat_completions"``)."""

from __future__ import annotations

from sa_llm.providers._chat_completions import ChatCompletionsCodec
from sa_llm.providers.openai import organization_headers

__all__ = ["OpenAIChatCompletions"]


class OpenAIChatCompletions(ChatCompletionsCodec):
    """OpenAI through ``/chat/completions``."""

    name = "openai"
    default_base_url = "https://api.openai.com/v1"

    def auth_headers(self) -> dict[str, str]:
        return {**super().auth_headers(), **organization_headers(self.config)}
