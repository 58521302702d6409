"""``@acts_as_*`` beyond the defaults: custom names, namespaces, legacy mode, misconfiguration.

Ports the "custom configurations" examples of the reference (sections 2 and 12.1 of
ruby_llm_behaviour.md; "Using Custom Model Names", "Namespaced Models" and "Legacy Mode" of the
Rails integration guide). Database tests run on SQLite and PostgreSQL, sync and async, and check
the rows a scenario leaves; misconfigured models must raise
:class:`~sa_llm.errors.ConfigurationError` when the mappers configure, naming the class and the
option. The namespaced classes live in ``tests/decl_*.py`` so that they have real module names.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, ClassVar, TypeVar

import pytest
from sqlalchemy import DateTime, ForeignKey, Integer, String, Text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

import decl_admin
import decl_assistants
import decl_support
import sa_llm
from persisted import World, close_world, default_models, make_world, new_chat
from sa_llm.declarative import acts_as_chat, acts_as_message, acts_as_model, acts_as_tool_call
from sa_llm.mixins import (
    ChatMixin,
    JSONType,
    LegacyChatMixin,
    LegacyMessageMixin,
    MessageMixin,
    ModelMixin,
    ToolCallMixin,
    utcnow,
)
from sa_llm.testing import FakeLLM
from sa_llm.types import Tokens

T = TypeVar("T")

# -- harness --------------------------------------------------------------------------------------

BuildWorld = Callable[[dict[str, Any]], World]


@pytest.fixture
async def build_world(mode: str, db_url: str, async_db_url: str) -> AsyncIterator[BuildWorld]:
    """Makes a :class:`World` for a models dict; closes it and disposes its registry after."""
    worlds: list[World] = []

    def build(models: dict[str, Any]) -> World:
        world = make_world(mode, db_url, async_db_url, models)
        worlds.append(world)
        return world

    sa_llm.configure(max_retries=0, default_model="gpt-4.1-nano")
    try:
        yield build
    finally:
        for world in worlds:
            await close_world(world)
            world.models["Base"].registry.dispose()
        sa_llm.reset_config()


async def run(world: World, fn: Callable[[Session], T]) -> T:
    """``fn`` on the world's own session: as it is in sync mode, through ``run_sync`` in async."""
    if isinstance(world.session, AsyncSession):
        return await world.session.run_sync(fn)
    return fn(world.session)


def read(world: World, fn: Callable[[Session], T]) -> T:
    """``fn`` on a separate sync session: what is really in the database, navigable."""
    with Session(world.sync_engine) as session:
        return fn(session)


def table_names(world: World) -> set[str]:
    return set(sa_inspect(world.sync_engine).get_table_names())


def model_ids(world: World) -> dict[Any, str]:
    """Registry primary key -> model id string."""
    return {row.id: row.model_id for row in world.rows(world.Model)}


class Calculator(sa_llm.Tool):
    """Evaluates a simple arithmetic expression."""

    def execute(self, expression: Annotated[str, "e.g. 2 + 2"]) -> str:
        left, op, right = expression.split()
        return str({"+": int(left) + int(right), "*": int(left) * int(right)}[op])


def configure_error(models: dict[str, Any], how: str = "configure") -> str:
    """The ConfigurationError raised when ``models`` configure (registry disposed after).

    ``how``: ``"configure"`` (``registry.configure()``) or ``"instantiate"`` (the first
    ``Chat()``, which configures the mappers on its own).
    """
    base = models["Base"]

    def configure() -> None:
        if how == "configure":
            base.registry.configure()
        else:
            models["Chat"]()

    try:
        with pytest.raises(sa_llm.ConfigurationError) as caught:
            configure()
    finally:
        base.registry.dispose()
    return str(caught.value)


# -- models ---------------------------------------------------------------------------------------


def custom_models() -> dict[str, Any]:
    """Conversation / ChatMessage / AIToolCall / AIModel, the guide's "custom model names".

    Every column is declared by hand and the foreign keys have no ``ON DELETE``: deletes must be
    done by the ORM. Most FK attributes are the ones inference finds from the association names
    (``conversation_id``, ``chat_message_id``, ``ai_tool_call_id``); the chat's ``ai_model_id``
    is also named explicitly, and the message's model FK ``answered_by_id`` must be.
    """

    class Base(DeclarativeBase):
        pass

    @acts_as_chat(
        messages="chat_messages",
        message_class="ChatMessage",
        model="ai_model",
        model_class="AIModel",
        model_foreign_key="ai_model_id",
    )
    class Conversation(Base):
        __tablename__ = "conversations"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        ai_model_id: Mapped[int | None] = mapped_column(ForeignKey("ai_models.id"))
        title: Mapped[str | None] = mapped_column(String(100))
        created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
        updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    @acts_as_message(
        chat="conversation",
        chat_class="Conversation",
        tool_calls="ai_tool_calls",
        tool_call_class="AIToolCall",
        model="ai_model",
        model_class="AIModel",
        model_foreign_key="answered_by_id",
        touch_chat=True,
    )
    class ChatMessage(Base):
        __tablename__ = "chat_messages"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
        role: Mapped[str] = mapped_column(String(20))
        content: Mapped[str | None] = mapped_column(Text)
        input_tokens: Mapped[int | None] = mapped_column(Integer)
        output_tokens: Mapped[int | None] = mapped_column(Integer)
        answered_by_id: Mapped[int | None] = mapped_column(ForeignKey("ai_models.id"))
        ai_tool_call_id: Mapped[int | None] = mapped_column(
            ForeignKey("ai_tool_calls.id", use_alter=True)
        )
        created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    @acts_as_tool_call(message="chat_message", message_class="ChatMessage")
    class AIToolCall(Base):
        __tablename__ = "ai_tool_calls"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        chat_message_id: Mapped[int] = mapped_column(ForeignKey("chat_messages.id"))
        tool_call_id: Mapped[str] = mapped_column(String(255))
        name: Mapped[str] = mapped_column(String(255))
        arguments: Mapped[Any] = mapped_column(JSONType, default=dict)

    @acts_as_model(
        chats="conversations", chat_class="Conversation", chats_foreign_key="ai_model_id"
    )
    class AIModel(ModelMixin, Base):
        __tablename__ = "ai_models"

    return {
        "Base": Base,
        "Chat": Conversation,
        "Message": ChatMessage,
        "ToolCall": AIToolCall,
        "Model": AIModel,
    }


def assistants_models(*, with_admin: bool = False) -> dict[str, Any]:
    """``decl_assistants`` classes (and ``decl_admin`` ones under ``"Admin*"`` keys)."""

    class Base(DeclarativeBase):
        pass

    models: dict[str, Any] = {"Base": Base, **decl_assistants.build(Base)}
    if with_admin:
        admin = decl_admin.build(Base)
        models.update({f"Admin{key}": cls for key, cls in admin.items()})

    @acts_as_model(chats="bot_chats", chat_class="decl_assistants.BotChat")
    class Model(ModelMixin, Base):
        __tablename__ = "models"

    models["Model"] = Model
    return models


def support_models(*, explicit_foreign_keys: bool = True) -> dict[str, Any]:
    class Base(DeclarativeBase):
        pass

    models: dict[str, Any] = {
        "Base": Base,
        **decl_support.build(Base, explicit_foreign_keys=explicit_foreign_keys),
    }

    @acts_as_model(chats="conversations", chat_class="decl_support.Conversation")
    class Model(ModelMixin, Base):
        __tablename__ = "models"

    models["Model"] = Model
    return models


def legacy_models(flag: str) -> dict[str, Any]:
    """Legacy mode: string ``model_id`` columns and no registry class or table."""

    class Base(DeclarativeBase):
        pass

    if flag == "model=None":
        chat_decorator, message_decorator = acts_as_chat(model=None), acts_as_message(model=None)
    else:
        chat_decorator, message_decorator = acts_as_chat(legacy=True), acts_as_message(legacy=True)

    @chat_decorator
    class Chat(LegacyChatMixin, Base):
        __tablename__ = "chats"

    @message_decorator
    class Message(LegacyMessageMixin, Base):
        __tablename__ = "messages"

    @acts_as_tool_call()
    class ToolCall(ToolCallMixin, Base):
        __tablename__ = "tool_calls"

    return {"Base": Base, "Chat": Chat, "Message": Message, "ToolCall": ToolCall}


def standard_models(
    *,
    chat: dict[str, Any] | None = None,
    message: dict[str, Any] | None = None,
    decorate_message: bool = True,
) -> dict[str, Any]:
    """The default four classes with options to get wrong."""

    class Base(DeclarativeBase):
        pass

    @acts_as_chat(**(chat or {}))
    class Chat(ChatMixin, Base):
        __tablename__ = "chats"

    class Message(MessageMixin, Base):
        __tablename__ = "messages"

    if decorate_message:
        acts_as_message(**(message or {}))(Message)
    return default_models(base=Base, Chat=Chat, Message=Message)


# -- custom class names ---------------------------------------------------------------------------


async def test_custom_names_persist_a_tool_turn_in_their_own_tables(
    build_world: BuildWorld, fake: FakeLLM
) -> None:
    world = build_world(custom_models())
    assert {"conversations", "chat_messages", "ai_tool_calls", "ai_models"} <= table_names(world)
    assert not {"chats", "messages", "tool_calls", "models"} & table_names(world)
    fake.tool_call("calculator", {"expression": "2 + 2"}, id="call_1").reply(
        "It is 4.", tokens=Tokens(input=20, output=4)
    )
    chat = await new_chat(world)
    chat_id = chat.id
    reply = await world.call(chat.with_tool(Calculator).ask, "What is 2 + 2?")
    assert reply.text == "It is 4."

    rows = world.messages()
    assert [(r.role, r.content) for r in rows] == [
        ("user", "What is 2 + 2?"),
        ("assistant", None),
        ("tool", "4"),
        ("assistant", "It is 4."),
    ]
    assert {r.conversation_id for r in rows} == {chat_id}
    calls = world.rows(world.ToolCall)
    assert [(c.tool_call_id, c.name, c.arguments, c.chat_message_id) for c in calls] == [
        ("call_1", "calculator", {"expression": "2 + 2"}, rows[1].id)
    ]
    assert [r.ai_tool_call_id for r in rows] == [None, None, calls[0].id, None]
    ids = model_ids(world)
    assert [ids.get(r.answered_by_id) for r in rows] == [None, "fake-model", None, "fake-model"]
    assert (rows[3].input_tokens, rows[3].output_tokens) == (20, 4)
    assert ids[world.rows(world.Chat)[0].ai_model_id] == "fake-model"
    # The model saw the result tied to its call.
    tool_message = fake.requests[1]["messages"][-1]
    assert (tool_message["role"], tool_message["tool_call_id"]) == ("tool", "call_1")


async def test_custom_associations_navigate(build_world: BuildWorld, fake: FakeLLM) -> None:
    world = build_world(custom_models())
    fake.tool_call("calculator", {"expression": "3 * 3"}, id="call_9").reply(
        "Nine.", tokens=Tokens(input=7, output=2)
    )
    chat = await new_chat(world)
    chat_id = chat.id
    await world.call(chat.with_tool(Calculator).ask, "3 * 3?")
    Conversation, ChatMessage, AIToolCall, AIModel = (
        world.Chat,
        world.Message,
        world.ToolCall,
        world.Model,
    )

    def navigate(session: Session) -> None:
        conversation = session.get(Conversation, chat_id)
        assert conversation is not None
        user, asking, result, final = conversation.chat_messages
        assert [m.role for m in (user, asking, result, final)] == [
            "user",
            "assistant",
            "tool",
            "assistant",
        ]
        assert all(isinstance(m, ChatMessage) for m in conversation.chat_messages)
        assert all(m.conversation is conversation for m in conversation.chat_messages)
        (call,) = asking.ai_tool_calls
        assert isinstance(call, AIToolCall)
        assert call.chat_message is asking
        assert call.result is result and result.parent_tool_call is call
        assert asking.tool_results == [result]
        assert asking.is_tool_call and result.is_tool_result and not final.is_tool_call
        assert isinstance(final.ai_model, AIModel) and final.ai_model.model_id == "fake-model"
        assert conversation.ai_model is final.ai_model
        assert final.ai_model.conversations == [conversation]
        # to_llm conversions of the custom rows.
        llm_final = final.to_llm()
        assert (llm_final.role, llm_final.text, llm_final.tokens) == (
            "assistant",
            "Nine.",
            Tokens(input=7, output=2),
        )
        assert llm_final.model_id == "fake-model"
        (llm_call,) = asking.to_llm().tool_calls
        assert (llm_call.id, llm_call.name, llm_call.arguments) == (
            "call_9",
            "calculator",
            {"expression": "3 * 3"},
        )
        assert result.to_llm().tool_call_id == "call_9"

    read(world, navigate)


async def test_custom_names_system_messages(build_world: BuildWorld, fake: FakeLLM) -> None:
    world = build_world(custom_models())
    chat = await new_chat(world)
    await world.call(chat.with_instructions, "Be brief.")
    await world.call(chat.with_instructions, "Be verbose.")
    await world.call(chat.with_instructions, "Use French.", append=True)
    fake.reply("Bonjour")
    await world.call(chat.ask, "Hello")
    assert [(m.role, m.content) for m in world.messages()] == [
        ("system", "Be verbose."),
        ("system", "Use French."),
        ("user", "Hello"),
        ("assistant", "Bonjour"),
    ]
    sent = fake.requests[0]["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        ("system", "Be verbose."),
        ("system", "Use French."),
        ("user", "Hello"),
    ]


async def test_custom_names_with_model_switches_the_model(
    build_world: BuildWorld, fake: FakeLLM
) -> None:
    world = build_world(custom_models())
    fake.reply("a").reply("b")
    chat = await new_chat(world, title="switching")
    chat_id = chat.id  # the row is loaded in the session from here on
    await world.call(chat.ask, "one")
    await world.call(chat.with_model, "other-fake", provider="fake")
    assert chat.model_name == "other-fake"
    await world.call(chat.ask, "two")
    assert [r["model"] for r in fake.requests] == ["fake-model", "other-fake"]
    ids = model_ids(world)
    (row,) = world.rows(world.Chat)
    assert (row.id, ids[row.ai_model_id]) == (chat_id, "other-fake")
    assistant = [m for m in world.messages() if m.role == "assistant"]
    assert [ids[m.answered_by_id] for m in assistant] == ["fake-model", "other-fake"]


@pytest.mark.parametrize("keyword", ["model", "ai_model"])
async def test_constructor_takes_the_model_whatever_the_association_is_called(
    build_world: BuildWorld, keyword: str
) -> None:
    world = build_world(custom_models())
    chat = world.Chat(**{keyword: "fake-model"}, provider="fake", title="t")
    await world.add(chat)
    (row,) = world.rows(world.Chat)
    assert (row.title, model_ids(world)[row.ai_model_id]) == ("t", "fake-model")
    assert [(m.model_id, m.provider) for m in world.rows(world.Model)] == [("fake-model", "fake")]


async def test_touch_chat_bumps_the_chat_when_a_message_is_saved(build_world: BuildWorld) -> None:
    world = build_world(custom_models())
    chat = await new_chat(world)
    (before,) = world.rows(world.Chat)
    await asyncio.sleep(0.01)
    await world.call(chat.create_user_message, "no reply needed")
    (after,) = world.rows(world.Chat)
    assert after.updated_at > before.updated_at


# -- namespaced classes ---------------------------------------------------------------------------


async def test_namespaced_classes_and_custom_associations(
    build_world: BuildWorld, fake: FakeLLM
) -> None:
    world = build_world(assistants_models())
    assert world.Chat.__module__ == "decl_assistants"
    assert {"bot_chats", "bot_messages", "bot_tool_calls"} <= table_names(world)
    fake.tool_call("calculator", {"expression": "1 + 2"}, id="call_3").reply("3")
    chat = await new_chat(world)
    chat_id = chat.id
    await world.call(chat.with_tool(Calculator).ask, "1 + 2?")
    rows = world.messages()
    assert [r.role for r in rows] == ["user", "assistant", "tool", "assistant"]
    assert {r.chat_id for r in rows} == {chat_id}
    (call,) = world.rows(world.ToolCall)
    assert (call.message_id, rows[2].tool_call_id) == (rows[1].id, call.id)

    def navigate(session: Session) -> None:
        bot_chat = session.get(world.Chat, chat_id)
        assert bot_chat is not None
        assert [m.bot_chat for m in bot_chat.bot_messages] == [bot_chat] * 4
        tool_call = bot_chat.bot_messages[1].bot_tool_calls[0]
        assert tool_call.bot_message is bot_chat.bot_messages[1]
        assert tool_call.result is bot_chat.bot_messages[2]

    read(world, navigate)


async def test_namespaced_system_messages_and_model_switching(
    build_world: BuildWorld, fake: FakeLLM
) -> None:
    world = build_world(assistants_models())
    fake.reply("a").reply("b")
    chat = await new_chat(world)
    await world.call(chat.with_instructions, "Be brief.")
    await world.call(chat.with_instructions, "Be terse.")
    await world.call(chat.ask, "one")
    await world.call(chat.with_model, "other-fake", provider="fake")
    await world.call(chat.ask, "two")
    assert [(m.role, m.content) for m in world.messages()] == [
        ("system", "Be terse."),
        ("user", "one"),
        ("assistant", "a"),
        ("user", "two"),
        ("assistant", "b"),
    ]
    assert [r["model"] for r in fake.requests] == ["fake-model", "other-fake"]
    ids = model_ids(world)
    assert ids[world.rows(world.Chat)[0].model_id] == "other-fake"


async def test_same_bare_name_in_two_modules_resolves_by_module(
    build_world: BuildWorld, fake: FakeLLM
) -> None:
    models = assistants_models(with_admin=True)
    world = build_world(models)
    AdminChat, AdminMessage = models["AdminChat"], models["AdminMessage"]
    assert (world.Chat.__name__, AdminChat.__name__) == ("BotChat", "BotChat")
    fake.reply("from assistants").reply("from admin")
    assistants_chat = await new_chat(world)
    admin_chat = AdminChat(model="fake-model", provider="fake")
    await world.add(admin_chat)
    await world.call(assistants_chat.ask, "hi assistants")
    await world.call(admin_chat.ask, "hi admin")
    assert [m.content for m in world.messages()] == ["hi assistants", "from assistants"]
    assert [m.content for m in world.rows(AdminMessage)] == ["hi admin", "from admin"]
    assert {m.chat_id for m in world.rows(AdminMessage)} == {admin_chat.id}


def test_bare_name_shared_by_two_modules_is_ambiguous() -> None:
    class Base(DeclarativeBase):
        pass

    decl_assistants.build(Base)
    decl_admin.build(Base)

    @acts_as_chat(messages="bot_messages", message_class="BotMessage")
    class Lobby(ChatMixin, Base):
        __tablename__ = "lobbies"

    @acts_as_model(chat_class="Lobby")
    class Model(ModelMixin, Base):
        __tablename__ = "models"

    error = configure_error({"Base": Base, "Chat": Lobby})
    assert "Lobby" in error and "message_class='BotMessage'" in error and "ambiguous" in error
    assert "decl_assistants." in error and "decl_admin." in error


async def test_namespaced_models_with_custom_foreign_keys(
    build_world: BuildWorld, fake: FakeLLM
) -> None:
    world = build_world(support_models())
    assert {"support_conversations", "support_messages", "support_tool_calls"} <= table_names(world)
    fake.tool_call("calculator", {"expression": "5 + 5"}, id="call_5").reply("Ten.")
    chat = await new_chat(world)
    chat_id = chat.id
    await world.call(chat.with_instructions, "Help the customer.")
    await world.call(chat.with_tool(Calculator).ask, "5 + 5?")
    rows = world.messages()
    assert [(r.role, r.content) for r in rows] == [
        ("system", "Help the customer."),
        ("user", "5 + 5?"),
        ("assistant", None),
        ("tool", "10"),
        ("assistant", "Ten."),
    ]
    assert {r.conversation_id for r in rows} == {chat_id}
    (call,) = world.rows(world.ToolCall)
    assert (call.support_message_id, call.tool_call_id) == (rows[2].id, "call_5")
    assert [r.support_tool_call_id for r in rows] == [None, None, None, call.id, None]
    ids = model_ids(world)
    assert [ids.get(r.model_id) for r in rows] == [None, None, "fake-model", None, "fake-model"]
    assert [m["role"] for m in fake.requests[1]["messages"]] == [
        "system",
        "user",
        "assistant",
        "tool",
    ]


async def test_mixin_foreign_keys_follow_sa_llm_tables(build_world: BuildWorld) -> None:
    world = build_world(assistants_models())
    inspector = sa_inspect(world.sync_engine)

    def targets(table: str) -> dict[str, str]:
        return {
            fk["constrained_columns"][0]: fk["referred_table"]
            for fk in inspector.get_foreign_keys(table)
        }

    assert targets("bot_messages") == {
        "chat_id": "bot_chats",
        "tool_call_id": "bot_tool_calls",
        "model_id": "models",
    }
    assert targets("bot_tool_calls") == {"message_id": "bot_messages"}
    assert targets("bot_chats") == {"model_id": "models"}


# -- legacy mode ----------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["model=None", "legacy=True"])
async def test_legacy_mode_keeps_model_ids_as_strings(
    build_world: BuildWorld, fake: FakeLLM, flag: str
) -> None:
    models = legacy_models(flag)
    assert set(models["Base"].metadata.tables) == {"chats", "messages", "tool_calls"}
    world = build_world(models)
    assert table_names(world) == {"chats", "messages", "tool_calls"}
    fake.tool_call("calculator", {"expression": "2 + 2"}).reply("4").reply("still 4")
    chat = await new_chat(world)
    assert chat.model_id == "fake-model"
    await world.call(chat.with_tool(Calculator).ask, "2 + 2?")
    (row,) = world.rows(world.Chat)
    assert row.model_id == "fake-model"
    assert [(m.role, m.model_id) for m in world.messages()] == [
        ("user", None),
        ("assistant", "fake-model"),
        ("tool", None),
        ("assistant", "fake-model"),
    ]

    await world.call(chat.with_model, "other-fake", provider="fake")
    assert chat.model_id == "other-fake"
    assert world.rows(world.Chat)[0].model_id == "other-fake"
    await world.call(chat.ask, "again?")
    assert fake.requests[-1]["model"] == "other-fake"
    assert world.messages()[-1].model_id == "other-fake"


async def test_legacy_with_model_stores_the_resolved_model_id(build_world: BuildWorld) -> None:
    world = build_world(legacy_models("model=None"))
    chat = await new_chat(world)
    await world.call(chat.with_model, "claude-haiku-4-5", provider="bedrock")
    resolved = sa_llm.registry.find("claude-haiku-4-5", "bedrock").id
    assert resolved != "claude-haiku-4-5"
    assert world.rows(world.Chat)[0].model_id == resolved


# -- misconfiguration -----------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["configure", "instantiate"])
def test_misspelt_message_class(how: str) -> None:
    error = configure_error(standard_models(chat={"message_class": "Mesage"}), how)
    assert "Chat" in error and "message_class='Mesage'" in error


def test_misspelt_chat_class() -> None:
    error = configure_error(standard_models(message={"chat_class": "Chatt"}))
    assert "Message" in error and "chat_class='Chatt'" in error


def test_misspelt_messages_foreign_key() -> None:
    error = configure_error(standard_models(chat={"messages_foreign_key": "chatt_id"}))
    assert "Message" in error and "'chatt_id'" in error and "messages_foreign_key" in error


def test_misspelt_chat_foreign_key() -> None:
    error = configure_error(standard_models(message={"chat_foreign_key": "chatt_id"}))
    assert "Message" in error and "'chatt_id'" in error and "chat_foreign_key" in error


def test_message_class_that_is_not_decorated() -> None:
    error = configure_error(standard_models(decorate_message=False))
    assert "Chat" in error and "Message" in error and "@acts_as_message" in error


def test_message_class_without_a_role_column() -> None:
    class Base(DeclarativeBase):
        pass

    @acts_as_chat(message_class="Note")
    class Chat(ChatMixin, Base):
        __tablename__ = "chats"

    @acts_as_message()
    class Note(Base):
        __tablename__ = "notes"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        chat_id: Mapped[int] = mapped_column(ForeignKey("chats.id"))
        tool_call_id: Mapped[int | None] = mapped_column(
            ForeignKey("tool_calls.id", use_alter=True)
        )
        content: Mapped[str | None] = mapped_column(Text)
        input_tokens: Mapped[int | None] = mapped_column(Integer)
        output_tokens: Mapped[int | None] = mapped_column(Integer)
        model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"))
        created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    @acts_as_tool_call(message_class="Note")
    class ToolCall(ToolCallMixin, Base):
        __tablename__ = "tool_calls"
        __sa_llm_tables__: ClassVar[dict[str, str]] = {"messages": "notes"}

    @acts_as_model()
    class Model(ModelMixin, Base):
        __tablename__ = "models"

    error = configure_error({"Base": Base, "Chat": Chat})
    assert "Note" in error and "'role'" in error


def test_foreign_key_inference_failure_names_the_columns_tried_and_the_option() -> None:
    error = configure_error(support_models(explicit_foreign_keys=False))
    assert "Message" in error and "'tool_call_id'" in error and "result_foreign_key" in error


def test_legacy_chat_with_a_registry_message() -> None:
    class Base(DeclarativeBase):
        pass

    @acts_as_chat(model=None)
    class Chat(LegacyChatMixin, Base):
        __tablename__ = "chats"

    @acts_as_message()  # should be model=None too
    class Message(LegacyMessageMixin, Base):
        __tablename__ = "messages"

    @acts_as_tool_call()
    class ToolCall(ToolCallMixin, Base):
        __tablename__ = "tool_calls"

    error = configure_error({"Base": Base, "Chat": Chat})
    assert "Message" in error and "legacy" in error and "model=None" in error


@pytest.mark.parametrize(
    "decorator",
    [
        pytest.param(acts_as_chat(), id="acts_as_chat"),
        pytest.param(acts_as_message(), id="acts_as_message"),
        pytest.param(acts_as_tool_call(), id="acts_as_tool_call"),
        pytest.param(acts_as_model(), id="acts_as_model"),
    ],
)
def test_decorating_an_unmapped_class_raises_at_once(decorator: Callable[[type], type]) -> None:
    class Plain:
        pass

    with pytest.raises(sa_llm.ConfigurationError, match=r"Plain is not mapped"):
        decorator(Plain)


# -- relationship behaviour -----------------------------------------------------------------------


async def test_deleting_a_chat_deletes_its_messages_and_tool_calls(
    build_world: BuildWorld, fake: FakeLLM
) -> None:
    world = build_world(custom_models())
    fake.tool_call("calculator", {"expression": "2 + 2"}).reply("4")
    doomed = await new_chat(world)
    kept = await new_chat(world)
    doomed_id, kept_id = doomed.id, kept.id
    await world.call(doomed.with_tool(Calculator).ask, "2 + 2?")
    fake.reply("kept")
    await world.call(kept.ask, "keep me")
    assert len(world.rows(world.ToolCall)) == 1

    await run(world, lambda s: s.delete(s.get(world.Chat, doomed_id)))
    await world.commit()
    assert [c.id for c in world.rows(world.Chat)] == [kept_id]
    assert [(m.conversation_id, m.content) for m in world.messages()] == [
        (kept_id, "keep me"),
        (kept_id, "kept"),
    ]
    assert world.rows(world.ToolCall) == []
    assert len(world.rows(world.Model)) == 1  # the registry row is not the chat's to delete


async def test_deleting_a_tool_call_nullifies_its_result(
    build_world: BuildWorld, fake: FakeLLM
) -> None:
    world = build_world(custom_models())
    fake.tool_call("calculator", {"expression": "2 + 2"}).reply("4")
    chat = await new_chat(world)
    await world.call(chat.with_tool(Calculator).ask, "2 + 2?")
    (call,) = world.rows(world.ToolCall)
    result_id = world.messages()[2].id

    await run(world, lambda s: s.delete(s.get(world.ToolCall, call.id)))
    await world.commit()
    assert world.rows(world.ToolCall) == []
    rows = world.messages()
    assert [r.role for r in rows] == ["user", "assistant", "tool", "assistant"]
    assert [(r.id, r.ai_tool_call_id) for r in rows if r.role == "tool"] == [(result_id, None)]


async def test_chat_messages_are_ordered_by_created_at_then_id(build_world: BuildWorld) -> None:
    world = build_world(custom_models())
    chat = await new_chat(world)
    chat_id = chat.id
    M = world.Message
    t = datetime(2025, 1, 1, tzinfo=timezone.utc)
    # Inserted out of order: the latest first, then a tie inserted with the higher id first.
    late = t + timedelta(seconds=1)
    await world.add(M(id=30, conversation_id=chat_id, role="user", content="late", created_at=late))
    await world.add(M(id=20, conversation_id=chat_id, role="user", content="tie b", created_at=t))
    await world.add(M(id=10, conversation_id=chat_id, role="user", content="tie a", created_at=t))
    await world.add(
        M(
            id=40,
            conversation_id=chat_id,
            role="user",
            content="early",
            created_at=t - timedelta(days=1),
        )
    )

    def order(session: Session) -> list[str]:
        conversation = session.get(world.Chat, chat_id)
        assert conversation is not None
        return [m.content for m in conversation.chat_messages]

    assert read(world, order) == ["early", "tie a", "tie b", "late"]


# -- user-declared relationships ------------------------------------------------------------------


async def test_user_declared_relationship_is_kept(build_world: BuildWorld, fake: FakeLLM) -> None:
    class Base(DeclarativeBase):
        pass

    @acts_as_chat()
    class Chat(ChatMixin, Base):
        __tablename__ = "chats"
        # Newest first, for a UI: the decorator must not replace it with its own.
        messages: Mapped[list[Any]] = relationship(
            "Message", order_by="Message.id.desc()", cascade="all, delete-orphan"
        )

    world = build_world(default_models(base=Base, Chat=Chat))
    fake.reply("one").reply("two")
    chat = await new_chat(world)
    chat_id = chat.id
    await world.call(chat.ask, "first")
    await world.call(chat.ask, "second")
    # History still goes to the model oldest first.
    assert [m["content"] for m in fake.requests[1]["messages"]] == ["first", "one", "second"]

    def navigate(session: Session) -> None:
        loaded = session.get(Chat, chat_id)
        assert loaded is not None
        assert [m.content for m in loaded.messages] == ["two", "second", "one", "first"]
        assert all(m.chat is loaded for m in loaded.messages)

    read(world, navigate)
