"""Namespaced models with custom foreign keys for ``tests/declarative/test_declarative.py``:
``decl_support``.

Like ``Support::Conversation`` / ``Support::Message`` / ``Support::ToolCall`` of the reference:
tables prefixed ``support_``, the message's chat FK is ``conversation_id``, and the tool-call
links use ``support_message_id`` / ``support_tool_call_id``, names no inference finds, so they
are passed as options. Message and tool-call columns are declared by hand (only the required
ones: no raw content, cache or thinking columns).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sa_llm.declarative import acts_as_chat, acts_as_message, acts_as_tool_call
from sa_llm.mixins import ChatMixin, JSONType, utcnow


def build(
    base: type[DeclarativeBase], *, explicit_foreign_keys: bool = True
) -> dict[str, type[Any]]:
    """Fresh ``decl_support`` classes on ``base``.

    ``explicit_foreign_keys=False`` leaves out the tool-call FK options, which the schema
    needs: the mappers then fail to configure.
    """
    tool_call_keys: dict[str, Any] = {}
    message_keys: dict[str, Any] = {}
    if explicit_foreign_keys:
        tool_call_keys = {
            "message_foreign_key": "support_message_id",
            "result_foreign_key": "support_tool_call_id",
        }
        message_keys = {
            "tool_calls_foreign_key": "support_message_id",
            "parent_tool_call_foreign_key": "support_tool_call_id",
        }

    # mypy cannot check a base class passed in as a value; the classes are ordinary models.
    @acts_as_chat(message_class="decl_support.Message", messages_foreign_key="conversation_id")
    class Conversation(ChatMixin, base):  # type: ignore[misc,valid-type]
        __tablename__ = "support_conversations"

    @acts_as_message(
        chat="conversation",
        chat_class="decl_support.Conversation",
        chat_foreign_key="conversation_id",
        tool_call_class="decl_support.ToolCall",
        **message_keys,
    )
    class Message(base):  # type: ignore[misc,valid-type]
        __tablename__ = "support_messages"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        conversation_id: Mapped[int] = mapped_column(ForeignKey("support_conversations.id"))
        role: Mapped[str] = mapped_column(String(20))
        content: Mapped[str | None] = mapped_column(Text)
        input_tokens: Mapped[int | None] = mapped_column(Integer)
        output_tokens: Mapped[int | None] = mapped_column(Integer)
        model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"))
        support_tool_call_id: Mapped[int | None] = mapped_column(
            ForeignKey("support_tool_calls.id", use_alter=True)
        )
        created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    @acts_as_tool_call(message_class="decl_support.Message", **tool_call_keys)
    class ToolCall(base):  # type: ignore[misc,valid-type]
        __tablename__ = "support_tool_calls"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        support_message_id: Mapped[int] = mapped_column(ForeignKey("support_messages.id"))
        tool_call_id: Mapped[str] = mapped_column(String(255))
        name: Mapped[str] = mapped_column(String(255))
        arguments: Mapped[Any] = mapped_column(JSONType, default=dict)

    return {"Chat": Conversation, "Message": Message, "ToolCall": ToolCall}
