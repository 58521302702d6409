"""Namespaced chat models for ``tests/declarative/test_declarative.py``: the module
``decl_assistants``.

``build(Base)`` declares ``BotChat``, ``BotMessage`` and ``BotToolCall`` on the caller's
declarative base (a fresh one per test), so they resolve as ``"decl_assistants.BotMessage"``,
like ``Assistants::BotMessage`` in the reference. The standard mixins supply the columns, and
``__sa_llm_tables__`` points their foreign keys at the ``bot_*`` tables. Associations are named
after the classes (``bot_messages``, ``bot_chat``, ...), so every class is named explicitly.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy.orm import DeclarativeBase

from sa_llm.declarative import acts_as_chat, acts_as_message, acts_as_tool_call
from sa_llm.mixins import ChatMixin, MessageMixin, ToolCallMixin

TABLES = {"chats": "bot_chats", "messages": "bot_messages", "tool_calls": "bot_tool_calls"}


def build(
    base: type[DeclarativeBase], *, module: str = __name__, tables: dict[str, str] = TABLES
) -> dict[str, type[Any]]:
    """Fresh ``BotChat``/``BotMessage``/``BotToolCall`` classes on ``base``, in ``module`` (their
    ``__module__``, which qualified class names resolve by) on ``tables``."""

    # mypy cannot check a base class passed in as a value; the classes are ordinary models.
    @acts_as_chat(messages="bot_messages", message_class=f"{module}.BotMessage")
    class BotChat(ChatMixin, base):  # type: ignore[misc,valid-type]
        __module__ = module
        __tablename__ = tables["chats"]

    @acts_as_message(
        chat="bot_chat",
        chat_class=f"{module}.BotChat",
        tool_calls="bot_tool_calls",
        tool_call_class=f"{module}.BotToolCall",
    )
    class BotMessage(MessageMixin, base):  # type: ignore[misc,valid-type]
        __module__ = module
        __tablename__ = tables["messages"]
        __sa_llm_tables__: ClassVar[dict[str, str]] = tables

    @acts_as_tool_call(message="bot_message", message_class=f"{module}.BotMessage")
    class BotToolCall(ToolCallMixin, base):  # type: ignore[misc,valid-type]
        __module__ = module
        __tablename__ = tables["tool_calls"]
        __sa_llm_tables__: ClassVar[dict[str, str]] = tables

    return {"Chat": BotChat, "Message": BotMessage, "ToolCall": BotToolCall}
