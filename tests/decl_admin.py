"""A second namespace for ``tests/declarative/test_declarative.py``: the module ``decl_admin``.

``build(Base)`` declares classes with the same bare names as :mod:`decl_assistants`
(``BotChat``, ``BotMessage``, ``BotToolCall``) on ``admin_bot_*`` tables, like
``Admin::BotChat`` beside ``Assistants::BotChat``: in one registry a bare ``"BotMessage"`` is
ambiguous, and ``"decl_admin.BotMessage"`` is not.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy.orm import DeclarativeBase

from sa_llm.declarative import acts_as_chat, acts_as_message, acts_as_tool_call
from sa_llm.mixins import ChatMixin, MessageMixin, ToolCallMixin

TABLES = {
    "chats": "admin_bot_chats",
    "messages": "admin_bot_messages",
    "tool_calls": "admin_bot_tool_calls",
}


def build(base: type[DeclarativeBase]) -> dict[str, type[Any]]:
    """Fresh ``decl_admin.BotChat``/``BotMessage``/``BotToolCall`` classes on ``base``."""

    # mypy cannot check a base class passed in as a value; the classes are ordinary models.
    @acts_as_chat(messages="bot_messages", message_class="decl_admin.BotMessage")
    class BotChat(ChatMixin, base):  # type: ignore[misc,valid-type]
        __tablename__ = TABLES["chats"]

    @acts_as_message(
        chat="bot_chat",
        chat_class="decl_admin.BotChat",
        tool_calls="bot_tool_calls",
        tool_call_class="decl_admin.BotToolCall",
    )
    class BotMessage(MessageMixin, base):  # type: ignore[misc,valid-type]
        __tablename__ = TABLES["messages"]
        __sa_llm_tables__: ClassVar[dict[str, str]] = TABLES

    @acts_as_tool_call(message="bot_message", message_class="decl_admin.BotMessage")
    class BotToolCall(ToolCallMixin, base):  # type: ignore[misc,valid-type]
        __tablename__ = TABLES["tool_calls"]
        __sa_llm_tables__: ClassVar[dict[str, str]] = TABLES

    return {"Chat": BotChat, "Message": BotMessage, "ToolCall": BotToolCall}
