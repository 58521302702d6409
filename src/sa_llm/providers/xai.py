"""xAI (Grok) through the Responses API, the same codec as OpenAI's.

Example::

    sa_llm.configure(xai_api_key="xai-...")
    sa_llm.chat("grok-4-1-fast-non-reasoning", provider="xai").ask("Hello")
"""

from __future__ import annotations

from typing import ClassVar

from sa_llm.providers import register_provider
from sa_llm.providers.responses import ResponsesCodec

__all__ = ["XAI"]


@register_provider
class XAI(ResponsesCodec):
    """xAI's ``/v1/responses``."""

    name: ClassVar[str] = "xai"
    default_base_url: ClassVar[str] = "https://api.x.ai/v1"

    def is_reasoning_model(self, model: str) -> bool:
        # xAI accepts (and its recorded clients send) the encrypted-reasoning include always.
        return True
