"""Pins what type checkers see on decorated models (checked by ``nox -s typing``).

At run time ``assert_type`` does nothing, so these tests also check the calls work.
"""

from __future__ import annotations

from sqlalchemy import create_engine
from sqlalchemy.orm import DeclarativeBase, Session
from typing_extensions import assert_type

from sa_llm import Message
from sa_llm._persisted.chat import PersistedChat
from sa_llm.declarative import acts_as_chat, acts_as_message, acts_as_model, acts_as_tool_call
from sa_llm.mixins import ChatMixin, MessageMixin, ModelMixin, ToolCallMixin
from sa_llm.registry import ModelInfo
from sa_llm.testing import fake_llm
from sa_llm.types import ToolCall as ToolCallValue


class Base(DeclarativeBase):
    pass


@acts_as_chat(message_class="ChatMessage")
class Chat(ChatMixin, Base):
    __tablename__ = "chats"


@acts_as_message()
class ChatMessage(MessageMixin, Base):
    __tablename__ = "messages"


@acts_as_tool_call(message_class="ChatMessage")
class ToolCall(ToolCallMixin, Base):
    __tablename__ = "tool_calls"


@acts_as_model()
class Model(ModelMixin, Base):
    __tablename__ = "models"


def test_record_api_types() -> None:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with fake_llm(echo=False) as fake, Session(engine) as session:
        fake.reply("typed")
        chat = Chat(model="fake-model", provider="fake")
        session.add(chat)
        session.commit()
        assert_type(chat.with_temperature(0.1), Chat)
        assert_type(chat.with_instructions("Be brief."), Chat)
        reply = chat.ask("hi")
        assert_type(reply, Message)
        assert_type(chat.to_llm(), PersistedChat)
        row = session.get(ChatMessage, 3)
        assert row is not None
        assert_type(row.to_llm(), Message)
        model = session.get(Model, 1)
        assert model is not None
        assert_type(model.to_llm(), ModelInfo)
        assert reply.text == "typed"
        assert row.to_llm().text == "typed"
        assert model.to_llm().id == "fake-model"
    engine.dispose()


def test_tool_call_record_type() -> None:
    call = ToolCall(tool_call_id="c1", name="weather", arguments={"city": "Oslo"})
    assert_type(call.to_llm(), ToolCallValue)
    assert call.to_llm() == ToolCallValue(id="c1", name="weather", arguments={"city": "Oslo"})
