"""The mixins' foreign keys point at the table of the class playing the other part, whatever
it is called: Flask-SQLAlchemy's and advanced-alchemy's generated names, custom names, any
declaration order; explicit ``__sa_llm_tables__`` and the default names are left alone."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import String, Uuid, create_engine, inspect
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from sa_llm.declarative import acts_as_chat, acts_as_message, acts_as_model, acts_as_tool_call
from sa_llm.mixins import (
    ChatMixin,
    ChatRecord,
    LegacyMessageMixin,
    MessageMixin,
    ModelMixin,
    ToolCallMixin,
)
from sa_llm.testing import fake_llm

PARTS: dict[str, tuple[Callable[..., Any], type[Any]]] = {
    "chat": (acts_as_chat, ChatMixin),
    "message": (acts_as_message, MessageMixin),
    "tool_call": (acts_as_tool_call, ToolCallMixin),
    "model": (acts_as_model, ModelMixin),
}


def declare(
    base: Any, order: tuple[str, ...], names: dict[str, str] | None = None
) -> dict[str, Any]:
    classes = {}
    for part in order:
        decorator, mixin = PARTS[part]
        namespace = {"__tablename__": names[part]} if names else {}
        cls = type(part.title().replace("_", ""), (mixin, base), namespace)
        classes[part] = decorator()(cls)
    return classes


def foreign_keys(metadata: Any) -> set[tuple[str, str, str]]:
    return {
        (table.name, fk.parent.name, fk.column.table.name)
        for table in metadata.tables.values()
        for fk in table.foreign_keys
    }


FLASK_KEYS = {
    ("chat", "model_id", "model"),
    ("message", "chat_id", "chat"),
    ("message", "model_id", "model"),
    ("message", "tool_call_id", "tool_call"),
    ("tool_call", "message_id", "message"),
}


@pytest.mark.parametrize("order", list(itertools.permutations(PARTS)), ids="-".join)
@pytest.mark.parametrize("model_class", ["default", "DeclarativeBase"])
def test_flask_sqlalchemy_default_naming_in_any_order(
    order: tuple[str, ...], model_class: str
) -> None:
    if model_class == "default":
        db = SQLAlchemy()
    else:

        class Base(DeclarativeBase):
            pass

        db = SQLAlchemy(model_class=Base)
    classes = declare(db.Model, order)
    assert {cls.__tablename__ for cls in classes.values()} == set(PARTS)
    assert foreign_keys(db.metadata) == FLASK_KEYS
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite://"
    db.init_app(app)
    with app.app_context():
        db.create_all()
        tables = set(inspect(db.engine).get_table_names())
        assert {"chat", "message", "tool_call", "model"} <= tables
        with fake_llm() as fake:
            fake.reply("Paris.")
            chat = classes["chat"](model="fake-model", provider="fake")
            db.session.add(chat)
            db.session.commit()
            assert chat.ask("Capital of France?").text == "Paris."
            assert [m.role for m in chat.messages] == ["user", "assistant"]
            assert chat.model.model_id == "fake-model"


@pytest.mark.parametrize("order", [("message", "tool_call", "chat", "model"), tuple(PARTS)])
def test_custom_table_names_need_no_sa_llm_tables(fresh_base: Any, order: tuple[str, ...]) -> None:
    names = {"chat": "conversations", "message": "lines", "tool_call": "calls", "model": "llms"}
    declare(fresh_base, order, names)
    assert foreign_keys(fresh_base.metadata) == {
        ("conversations", "model_id", "llms"),
        ("lines", "chat_id", "conversations"),
        ("lines", "model_id", "llms"),
        ("lines", "tool_call_id", "calls"),
        ("calls", "message_id", "lines"),
    }


def test_foreign_keys_take_the_uuid_type_of_a_repointed_key(fresh_base: Any) -> None:
    @acts_as_message(model=None)
    class Message(LegacyMessageMixin, fresh_base):  # type: ignore[misc]
        __tablename__ = "line"

    @acts_as_tool_call()
    class ToolCall(ToolCallMixin, fresh_base):  # type: ignore[misc]
        __tablename__ = "call"

    # Declared last, with a UUID key and by hand: the message's key was pending on "chats".
    @acts_as_chat(model=None)
    class Chat(ChatRecord, fresh_base):  # type: ignore[misc]
        __tablename__ = "conversation"
        id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
        model_id: Mapped[str | None] = mapped_column(String(255))

    assert isinstance(Message.__table__.c.chat_id.type, Uuid)
    assert foreign_keys(fresh_base.metadata) == {
        ("line", "chat_id", "conversation"),
        ("line", "tool_call_id", "call"),
        ("call", "message_id", "line"),
    }
    engine = create_engine("sqlite://")
    fresh_base.metadata.create_all(engine)
    with fake_llm() as fake, Session(engine) as session:
        fake.reply("Hi.")
        chat = Chat(model="fake-model", provider="fake")
        session.add(chat)
        session.commit()
        chat.ask("Hello")
        assert [(m.role, m.chat_id) for m in chat.messages] == [
            ("user", chat.id),
            ("assistant", chat.id),
        ]
    engine.dispose()


def test_default_names_and_explicit_tables_are_left_alone(fresh_base: Any) -> None:
    declare(fresh_base, tuple(PARTS), {p: p + "s" for p in PARTS})

    @acts_as_chat(messages="support_messages")
    class SupportChat(ChatMixin, fresh_base):  # type: ignore[misc]
        __tablename__ = "support_chats"

    @acts_as_message(chat="support_chat")
    class SupportMessage(MessageMixin, fresh_base):  # type: ignore[misc]
        __tablename__ = "support_messages"
        __sa_llm_tables__ = {"chats": "support_chats"}  # noqa: RUF012

    keys = foreign_keys(fresh_base.metadata)
    assert ("messages", "chat_id", "chats") in keys  # the default name, with two chat classes
    assert ("support_messages", "chat_id", "support_chats") in keys
    engine = create_engine("sqlite://")
    fresh_base.metadata.create_all(engine)
    referred = {
        fk["constrained_columns"][0]: fk["referred_table"]
        for fk in inspect(engine).get_foreign_keys("support_messages")
    }
    assert referred == {
        "chat_id": "support_chats",
        "model_id": "models",
        "tool_call_id": "tool_calls",
    }
    engine.dispose()
