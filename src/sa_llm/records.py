"""Typed bases of the record API, for models that declare their columns themselves.

The ``@acts_as_*`` decorators add their methods to any mapped class at runtime, which a type
checker cannot see. The column mixins (:mod:`sa_llm.mixins`) already inherit these bases; a
model that declares every column by hand inherits the base instead, and ``mypy --strict``
then knows ``chat.ask(...)`` returns a :class:`~sa_llm.types.Message`::

    @acts_as_chat()
    class Chat(ChatRecord, Base):
        __tablename__ = "chats"
        id: Mapped[int] = mapped_column(primary_key=True)
        model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"))
        ...
"""

from __future__ import annotations

from sa_llm._records.methods import AttachmentMethods as AttachmentRecord
from sa_llm._records.methods import ChatMethods as ChatRecord
from sa_llm._records.methods import MessageMethods as MessageRecord
from sa_llm._records.methods import ModelMethods as ModelRecord
from sa_llm._records.methods import ToolCallMethods as ToolCallRecord

__all__ = ["AttachmentRecord", "ChatRecord", "MessageRecord", "ModelRecord", "ToolCallRecord"]
