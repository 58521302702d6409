"""Persistence strategies, session binding, per-tenant contexts and recorded persisted chats."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, event, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, scoped_session, sessionmaker

import sa_llm
from persisted import StatementCounter, World, default_models, new_chat
from sa_llm.persistence import (
    InTransactionStrategy,
    PersistenceStrategy,
    SaveOnCompletionStrategy,
    use_strategy,
)
from sa_llm.testing import FakeLLM, Replay, fake_llm

WIRE = Path(__file__).parents[1] / "fixtures" / "wire"


@pytest.fixture
def world_settings() -> dict[str, Any]:
    return {"max_retries": 0}


# -- in-transaction -------------------------------------------------------------------------------


async def test_in_transaction_strategy_leaves_the_commit_to_the_caller(
    world: World, fake: FakeLLM
) -> None:
    use_strategy(world.session, InTransactionStrategy())
    chat = await new_chat(world)
    fake.reply("one")
    await world.call(chat.ask, "kept?")
    assert world.messages() == []  # nothing visible before the caller commits
    await world.commit()
    assert [m.role for m in world.messages()] == ["user", "assistant"]


async def test_in_transaction_strategy_rolls_back_with_the_caller(
    world: World, fake: FakeLLM
) -> None:
    use_strategy(world.session, InTransactionStrategy())
    chat = await new_chat(world)
    fake.reply("one")
    await world.call(chat.ask, "gone?")
    result = world.session.rollback()
    if hasattr(result, "__await__"):
        await result
    assert world.messages() == []


async def test_in_transaction_strategy_cleans_up_a_failed_turn(world: World, fake: FakeLLM) -> None:
    use_strategy(world.session, InTransactionStrategy())
    chat = await new_chat(world)
    fake.error(500)
    with pytest.raises(sa_llm.ServerError):
        await world.call(chat.ask, "hello")
    await world.commit()
    assert [(m.role, m.content) for m in world.messages()] == [("user", "hello")]


# -- save on completion ---------------------------------------------------------------------------


async def test_save_on_completion_writes_no_placeholder(world: World, fake: FakeLLM) -> None:
    use_strategy(world.session, SaveOnCompletionStrategy())
    chat = await new_chat(world)
    inserted: list[tuple[str, str | None]] = []

    @event.listens_for(world.Message, "after_insert")
    def on_insert(mapper: Any, connection: Any, target: Any) -> None:
        inserted.append((target.role, target.content))

    fake.reply("complete answer", chunks=4)
    await world.call(chat.ask, "hi", on_chunk=lambda c: None)
    assert inserted == [("user", "hi"), ("assistant", "complete answer")]
    assert [m.content for m in world.messages()] == ["hi", "complete answer"]


async def test_save_on_completion_failure_leaves_the_user_message(
    world: World, fake: FakeLLM
) -> None:
    use_strategy(world.session, SaveOnCompletionStrategy())
    chat = await new_chat(world)
    fake.error(500)
    with pytest.raises(sa_llm.ServerError):
        await world.call(chat.ask, "hello")
    assert [m.role for m in world.messages()] == ["user"]


# -- overriding one hook --------------------------------------------------------------------------


class Audited(PersistenceStrategy):
    def __init__(self) -> None:
        self.completed: list[str] = []

    def persist_message_completion(
        self, session: Session, turn: Any, row: Any, message: Any
    ) -> Any:
        row = super().persist_message_completion(session, turn, row, message)
        self.completed.append(f"{row.role}:{row.content}")
        return row


async def test_single_hooks_can_be_overridden(world: World, fake: FakeLLM) -> None:
    strategy = Audited()
    use_strategy(world.session, strategy)
    chat = await new_chat(world)
    fake.reply("audited")
    await world.call(chat.ask, "hi")
    assert strategy.completed == ["assistant:audited"]


def test_strategy_bound_to_a_sessionmaker(db_url: str) -> None:
    models = default_models()
    engine = create_engine(db_url)
    models["Base"].metadata.create_all(engine)
    factory = sessionmaker(engine)
    strategy = Audited()
    use_strategy(factory, strategy)
    registry = scoped_session(factory)
    try:
        with fake_llm(echo=False) as fake:
            fake.reply("scoped")
            chat = models["Chat"](model="fake-model", provider="fake")
            registry.add(chat)
            registry.commit()
            chat.ask("hi")
        assert strategy.completed == ["assistant:scoped"]
    finally:
        registry.remove()
        engine.dispose()


async def test_strategy_bound_to_an_async_sessionmaker(async_db_url: str, db_url: str) -> None:
    models = default_models()
    sync_engine = create_engine(db_url)
    models["Base"].metadata.create_all(sync_engine)
    sync_engine.dispose()
    engine = create_async_engine(async_db_url)
    factory = async_sessionmaker(engine, expire_on_commit=False)
    strategy = Audited()
    use_strategy(factory, strategy)
    try:
        with fake_llm(echo=False) as fake:
            fake.reply("async scoped")
            async with factory() as session:
                chat = models["Chat"](model="fake-model", provider="fake")
                session.add(chat)
                await session.commit()
                await chat.aask("hi")
        assert strategy.completed == ["assistant:async scoped"]
    finally:
        await engine.dispose()


def test_strategy_per_model_class(db_url: str) -> None:
    models = default_models()
    strategy = Audited()
    models["Chat"].__sa_llm_chat__.persistence = strategy
    engine = create_engine(db_url)
    models["Base"].metadata.create_all(engine)
    try:
        with fake_llm(echo=False) as fake, Session(engine) as session:
            fake.reply("per class")
            chat = models["Chat"](model="fake-model", provider="fake")
            session.add(chat)
            session.commit()
            chat.ask("hi")
        assert strategy.completed == ["assistant:per class"]
    finally:
        engine.dispose()


async def test_no_transaction_is_open_during_the_provider_call(world: World, fake: FakeLLM) -> None:
    chat = await new_chat(world)
    seen: list[bool] = []
    sync_session = world.session.sync_session if world.mode == "async" else world.session

    original = fake.handle

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(sync_session.in_transaction())
        return original(request)

    fake.handle = handle  # type: ignore[method-assign]
    fake.reply("x").reply("y", chunks=3)
    await world.call(chat.ask, "one")
    await world.call(chat.ask, "two", on_chunk=lambda c: None)
    assert seen == [False, False]


# -- per-tenant contexts --------------------------------------------------------------------------


async def test_load_event_sets_each_tenants_context(world: World, fake: FakeLLM) -> None:
    keys = {"acme": "key-acme", "globex": "key-globex"}
    contexts = {tenant: sa_llm.context(api_keys={"fake": key}) for tenant, key in keys.items()}

    @event.listens_for(world.Chat, "load")
    def set_context(chat: Any, _context: Any) -> None:
        chat.context = contexts[chat.title]

    for tenant in keys:
        await world.add(world.Chat(model="fake-model", provider="fake", title=tenant))
    # Load the chats anew, as a request handler would.
    world.session.expunge_all()
    result = world.session.execute(select(world.Chat).order_by(world.Chat.id))
    if hasattr(result, "__await__"):
        result = await result
    chats = list(result.scalars().all())
    for _ in range(2):
        for chat in chats:
            fake.reply("ok")
            await world.call(chat.ask, chat.title)
    for body, headers in zip(fake.requests, fake.headers, strict=True):
        tenant = body["messages"][-1]["content"]
        assert headers["authorization"] == f"Bearer {keys[tenant]}"


# -- recorded persisted chats ---------------------------------------------------------------------


def _replay_context(name: str) -> tuple[Replay, sa_llm.Context]:
    replay = Replay.from_file(WIRE / "openai" / name)
    return replay, replay.context()


async def test_recorded_persisted_chat_history(world: World) -> None:
    replay, ctx = _replay_context(
        "activerecord_actsas_basic_chat_functionality_persists_chat_history.json"
    )
    recorded = replay.recording["interactions"][0]
    chat = world.Chat(model="gpt-4.1-nano", context=ctx)
    await world.add(chat)
    reply = await world.call(chat.ask, "What's your favorite Ruby feature?")
    body = json.loads(recorded["response"]["body"])
    text = "".join(
        part["text"]
        for item in body["output"]
        if item["type"] == "message"
        for part in item["content"]
    )
    assert reply.text == text
    rows = world.messages()
    assert [(r.role, r.content) for r in rows] == [
        ("user", "What's your favorite Ruby feature?"),
        ("assistant", text),
    ]
    assert rows[1].input_tokens == body["usage"]["input_tokens"]
    assert rows[1].output_tokens == body["usage"]["output_tokens"]
    assert replay.seen[0].body["input"] == recorded["request"]["body"]["input"]
    replay.assert_all_used()


async def test_recorded_persisted_chat_with_an_attachment(world: World, tmp_path: Path) -> None:
    import base64

    replay, ctx = _replay_context(
        "activerecord_actsas_attachment_handling_handles_attachments_in_ask_method.json"
    )
    recorded = replay.recording["interactions"][0]["request"]["body"]
    image_url = recorded["input"][0]["content"][1]["image_url"]
    image = tmp_path / "ruby.png"
    image.write_bytes(base64.b64decode(image_url.split(",", 1)[1]))
    chat = world.Chat(model="gpt-4.1-nano", context=ctx)
    await world.add(chat)
    await world.call(chat.ask, "What do you see?", attachments=[str(image)])
    sent = replay.seen[0].body["input"][0]["content"]
    assert sent == recorded["input"][0]["content"]
    assert [m.role for m in world.messages()] == ["user", "assistant"]
    replay.assert_all_used()


async def test_missing_attachment_fails_before_anything_is_saved(
    world: World, fake: FakeLLM
) -> None:
    chat = await new_chat(world)
    with pytest.raises(sa_llm.AttachmentError, match="not found"):
        await world.call(chat.ask, "see this", attachments=["/no/such/file.png"])
    assert world.messages() == []
    assert fake.requests == []


async def test_statement_counts_do_not_grow_with_chunks(world: World, fake: FakeLLM) -> None:
    chat = await new_chat(world)
    engine = world.async_engine.sync_engine if world.async_engine else world.sync_engine
    writes = []
    for chunks in (5, 100):
        fake.reply("y" * 400, chunks=chunks)
        counter = StatementCounter(engine)
        try:
            await world.call(chat.ask, "go", on_chunk=lambda c: None)
            writes.append(counter.count("INSERT", "UPDATE"))
        finally:
            counter.close()
    assert writes[0] == writes[1] <= 3 + 2  # rows: user, placeholder, reply; lease: claim, release


@pytest.mark.postgres
async def test_persisted_turn_over_asyncpg(db_url: str) -> None:
    """The async record API on the asyncpg driver (the suite's default async driver is psycopg)."""
    from sqlalchemy.engine import make_url

    from conftest import engine_arguments

    if make_url(db_url).get_backend_name() != "postgresql":
        pytest.skip("asyncpg is a PostgreSQL driver")
    models = default_models()
    sync_engine = create_engine(db_url)
    models["Base"].metadata.create_all(sync_engine)
    url, connect_args = engine_arguments(make_url(db_url).set(drivername="postgresql+asyncpg"))
    engine = create_async_engine(url, connect_args=connect_args)
    try:
        with fake_llm(echo=False) as fake:
            fake.tool_call("weather", {"city": "Oslo"}).reply("cold", chunks=3)
            async with async_sessionmaker(engine, expire_on_commit=False)() as session:
                chat = models["Chat"](model="fake-model", provider="fake")
                session.add(chat)
                await session.commit()

                def weather(city: str) -> str:
                    """The weather."""
                    return f"{city}: -3°C"

                reply = await chat.with_tool(weather).aask("Oslo?", on_chunk=lambda c: None)
        assert reply.text == "cold"
        with Session(sync_engine) as check:
            roles = [
                m.role
                for m in check.scalars(select(models["Message"]).order_by(models["Message"].id))
            ]
        assert roles == ["user", "assistant", "tool", "assistant"]
    finally:
        await engine.dispose()
        sync_engine.dispose()
