"""Bedrock's OpenAI-compatible "Mantle" endpoint: ``https://bedrock-mantle.{region}.api.aws/v1``.

Mantle serves open-weight models (Mistral's Voxtral, OpenAI's gpt-oss, Qwen, DeepSeek, ...)
through OpenAI's wire formats, with SigV4 signatures for the ``bedrock-mantle`` service instead
of an API key. These providers are the shared Chat Completions and Responses codecs with
Bedrock's region, endpoint and signing; :meth:`Bedrock.for_model
<sa_llm.providers.bedrock.Bedrock.for_model>` picks them for the models Mantle serves, so a
chat needs nothing but ``provider="bedrock"``::

    chat = sa_llm.chat("mistral.voxtral-mini-3b-2507", provider="bedrock")
    chat.provider          # <MantleChatCompletions bedrock>
    chat.ask("What is being said?", attachments=["speech.wav"])
"""

from __future__ import annotations

from typing import Any, ClassVar

from sa_llm.providers.base import ChatRequest, HttpRequest
from sa_llm.providers.bedrock._auth import AWSProvider
from sa_llm.providers.chat_completions import ChatCompletionsCodec
from sa_llm.providers.responses import ResponsesCodec
from sa_llm.types import Message

__all__ = ["MantleChatCompletions", "MantleResponses"]


class _Mantle(AWSProvider):
    """The endpoint and signing both Mantle APIs share."""

    name: ClassVar[str] = "bedrock"
    signing_service: ClassVar[str] = "bedrock-mantle"

    @property
    def base_url(self) -> str:
        """``https://bedrock-mantle.{region}.api.aws/v1`` (``bedrock_base_url`` is Converse's)."""
        return f"https://bedrock-mantle.{self.region}.api.aws/v1"

    def build_request(self, request: ChatRequest) -> HttpRequest:
        return self.sign(super().build_request(request))

    def list_models_request(self) -> HttpRequest:
        """``GET /v1/models``, signed; the reply is OpenAI's ``{"data": [...]}``."""
        return self.sign(
            HttpRequest("GET", f"{self.base_url}/models", {"accept": "application/json"})
        )


class MantleChatCompletions(_Mantle, ChatCompletionsCodec):
    """Mantle's ``/v1/chat/completions`` (audio input included, as Voxtral takes it)."""


class MantleResponses(_Mantle, ResponsesCodec):
    """Mantle's ``/v1/responses`` (gpt-oss, Gemma 4).

    Its reasoning items carry plain text and no encrypted content; Mantle keeps no state, so
    there is nothing to send back and they are left out of later requests.
    """

    def format_message(self, message: Message) -> list[dict[str, Any]]:
        return [
            item
            for item in super().format_message(message)
            if item.get("type") != "reasoning" or item.get("encrypted_content")
        ]
