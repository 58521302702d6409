"""sa_llm: LLM conversations as first-class SQLAlchemy models.

The plain chat works without a database::

    import sa_llm

    sa_llm.configure(openai_api_key="sk-...")
    reply = sa_llm.chat("gpt-4.1-nano").ask("What is the capital of France?")
    print(reply.text)

See the documentation for persisted chats (``@acts_as_chat``), tools, streaming, structured
output, contexts and the testing kit.
"""

from __future__ import annotations

from typing import Any

from sa_llm import registry
from sa_llm._context import Context, context
from sa_llm.chat import Chat
from sa_llm.config import Config, configure, get_config, reset_config
from sa_llm.content import Attachment
from sa_llm.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ApprovalPendingError,
    AttachmentError,
    AuthenticationError,
    BadRequestError,
    ChatBusyError,
    ConfigurationError,
    ContentBlockedError,
    ContextLengthExceededError,
    DetachedRecordError,
    MissingAPIKeyError,
    MissingDependencyError,
    ModelNotFoundError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    PersistenceError,
    ProviderError,
    ProviderNotFoundError,
    RateLimitError,
    ResponseParseError,
    SaLLMError,
    ServerError,
    StaleApprovalError,
    StreamInterruptedError,
    StructuredOutputError,
    ToolError,
    TurnCancelledError,
    TurnLeaseLostError,
    UnsupportedAttachmentError,
    UnsupportedFeatureError,
)
from sa_llm.storage import FsspecStorage, LocalStorage, Storage
from sa_llm.tools import Halt, Param, Tool, as_tool
from sa_llm.types import Chunk, Content, Message, RawContent, Thinking, Tokens, ToolCall

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "ApprovalPendingError",
    "Attachment",
    "AttachmentError",
    "AuthenticationError",
    "BadRequestError",
    "Chat",
    "ChatBusyError",
    "Chunk",
    "Config",
    "ConfigurationError",
    "Content",
    "ContentBlockedError",
    "Context",
    "ContextLengthExceededError",
    "DetachedRecordError",
    "FsspecStorage",
    "Halt",
    "LocalStorage",
    "Message",
    "MissingAPIKeyError",
    "MissingDependencyError",
    "ModelNotFoundError",
    "NotFoundError",
    "OverloadedError",
    "Param",
    "PermissionDeniedError",
    "PersistenceError",
    "ProviderError",
    "ProviderNotFoundError",
    "RateLimitError",
    "RawContent",
    "ResponseParseError",
    "SaLLMError",
    "ServerError",
    "StaleApprovalError",
    "Storage",
    "StreamInterruptedError",
    "StructuredOutputError",
    "Thinking",
    "Tokens",
    "Tool",
    "ToolCall",
    "ToolError",
    "TurnCancelledError",
    "TurnLeaseLostError",
    "UnsupportedAttachmentError",
    "UnsupportedFeatureError",
    "__version__",
    "as_tool",
    "chat",
    "configure",
    "context",
    "get_config",
    "registry",
    "reset_config",
]


def chat(
    model: str | None = None,
    *,
    provider: str | None = None,
    assume_model_exists: bool = False,
    **kwargs: Any,
) -> Chat:
    """A new in-memory :class:`Chat` using the global configuration.

    Args:
        model: model id or alias (default: ``default_model``).
        provider: route through this provider; default: the registry's.
        assume_model_exists: skip the registry lookup (needs ``provider``).
    """
    return Chat(model, provider=provider, assume_model_exists=assume_model_exists, **kwargs)
