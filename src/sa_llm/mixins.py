"""Column mixins for persisted chats: the standard schema in one base class per model.

Example::

    from sa_llm.mixins import ChatMixin, MessageMixin, ModelMixin, ToolCallMixin

    @acts_as_chat()
    class Chat(ChatMixin, Base):
        __tablename__ = "chats"
"""

from __future__ import annotations

from sa_llm._records.mixins import (
    AttachmentMixin,
    ChatMixin,
    JSONType,
    LegacyChatMixin,
    LegacyMessageMixin,
    MessageMixin,
    ModelMixin,
    ToolCallMixin,
    utcnow,
)

__all__ = [
    "AttachmentMixin",
    "ChatMixin",
    "JSONType",
    "LegacyChatMixin",
    "LegacyMessageMixin",
    "MessageMixin",
    "ModelMixin",
    "ToolCallMixin",
    "utcnow",
]
