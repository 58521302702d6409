"""Database faults during a turn: the chat in the database stays valid and can continue.

Each fault hits a persisted turn at the worst moment: the completion's flush fails, the
connection is killed while the provider answers (PostgreSQL ``pg_terminate_backend``), or the
completion hits a serialization failure. Every case checks what a user would see: the error is
raised, no blank or orphaned rows are left, the user's message is kept, and the next ``ask`` on
the same chat succeeds with a valid history.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, event, exc, make_url, text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

import sa_llm
from conftest import engine_arguments
from persisted import World, default_models, new_chat
from sa_llm.testing import FakeLLM


def assert_valid(world: World) -> None:
    """No blank assistant row; every tool call has its result."""
    rows = world.messages()
    assert [r for r in rows if r.role == "assistant" and not r.content and not r.tool_calls] == []
    results = {r.tool_call_id for r in rows if r.role == "tool"}
    assert {c.id for c in world.rows(world.ToolCall)} <= results


async def continues(world: World, chat: Any, fake: FakeLLM, expected_history: list[str]) -> None:
    """The next ask succeeds and sends the history the rows hold."""
    fake.reply("recovered")
    await world.call(chat.ask, "still there?")
    sent = fake.requests[-1]["messages"]
    assert [m["content"] for m in sent] == [*expected_history, "still there?"]
    assert_valid(world)


async def test_the_completion_flush_fails(world: World, fake: FakeLLM) -> None:
    fake.reply("Paris")
    chat = await new_chat(world)
    armed = [True]

    def fail_once(mapper: Any, connection: Any, target: Any) -> None:
        if armed[0] and target.role == "assistant" and target.content:
            armed[0] = False
            raise RuntimeError("injected: the completion could not be written")

    event.listen(world.Message, "before_update", fail_once)
    try:
        with pytest.raises(RuntimeError, match="injected"):
            await world.call(chat.ask, "capital of France?")
    finally:
        event.remove(world.Message, "before_update", fail_once)
    assert [(r.role, r.content) for r in world.messages()] == [("user", "capital of France?")]
    await continues(world, chat, fake, ["capital of France?"])


async def test_a_failed_step_leaves_the_chat_row_readable_as_before(
    world: World, fake: FakeLLM
) -> None:
    """The step's rollback expires every row; the chat's columns read as before the step,
    without a SELECT (under an ``AsyncSession`` a lazy load there would raise)."""
    chat = await new_chat(world)
    fake.reply("Paris")
    await world.call(chat.ask, "capital of France?")  # a turn leaves the row's columns loaded
    columns = [prop.key for prop in sa_inspect(chat).mapper.column_attrs]
    before = {key: chat.__dict__[key] for key in columns if key in chat.__dict__}
    assert {"id", "model_id", "turn_token", "updated_at"} <= before.keys()

    def fail(mapper: Any, connection: Any, target: Any) -> None:
        raise RuntimeError("injected: the user message could not be written")

    event.listen(world.Message, "before_insert", fail)
    try:
        with pytest.raises(RuntimeError, match="injected"):
            await world.call(chat.ask, "and of Spain?")
    finally:
        event.remove(world.Message, "before_insert", fail)
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engine = world.sync_engine_for_async()
    event.listen(engine, "before_cursor_execute", record)
    try:
        after = {key: getattr(chat, key) for key in before}
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert statements == []
    assert after == before
    assert [m.content for m in world.messages()] == ["capital of France?", "Paris"]
    fake.reply("Madrid")
    assert (await world.call(chat.ask, "and of Spain?")).text == "Madrid"


def _postgres_only(world: World) -> None:
    if world.sync_engine.dialect.name != "postgresql":
        pytest.skip("a PostgreSQL fault")


def _terminate_others(world: World) -> None:
    """Kill every other connection of this test (as a DBA or a failover would): those with
    the test's application_name (its schema's name), not other tests' running beside it."""
    admin = create_engine(world.sync_engine.url)
    with admin.connect() as conn:
        killed = conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND application_name = current_setting('application_name')"
            )
        ).all()
        assert killed, "the test's own connections were not found"
        conn.commit()
    admin.dispose()


async def test_the_connection_is_killed_during_the_provider_call(
    world: World, fake: FakeLLM
) -> None:
    """The pooled connection dies while the provider answers (a failover, a DBA): the reply's
    step finds it dead before it commits anything, and runs again on a new connection."""
    _postgres_only(world)
    chat = await new_chat(world)
    fake.reply("Paris")
    original = fake.handle

    def kill_then_answer(request: httpx.Request) -> httpx.Response:
        _terminate_others(world)
        return original(request)

    fake.handle = kill_then_answer  # type: ignore[method-assign]
    try:
        reply = await world.call(chat.ask, "capital of France?")
    finally:
        fake.handle = original  # type: ignore[method-assign]
    assert reply.text == "Paris"
    world.sync_engine.dispose()  # the test's own reader lost its pooled connection too
    rows = [(r.role, r.content) for r in world.messages()]
    assert rows == [("user", "capital of France?"), ("assistant", "Paris")]
    await continues(world, chat, fake, ["capital of France?", "Paris"])


@pytest.mark.parametrize("driver", ["psycopg", "asyncpg"])
async def test_every_driver_fails_with_persistence_error(
    db_url: str, fake: FakeLLM, driver: str
) -> None:
    """psycopg and asyncpg: a step that keeps failing is a PersistenceError with the reply."""
    if not db_url.startswith("postgresql"):
        pytest.skip("a PostgreSQL driver")
    models = default_models()
    sync_engine = create_engine(db_url)
    models["Base"].metadata.create_all(sync_engine)
    url, connect_args = engine_arguments(make_url(db_url).set(drivername=f"postgresql+{driver}"))
    engine = create_async_engine(url, connect_args=connect_args)
    dbapi = engine.sync_engine.dialect.loaded_dbapi

    def down(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("UPDATE messages"):
            raise dbapi.OperationalError("the database went away (injected)")

    try:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            chat = models["Chat"](model="fake-model", provider="fake")
            session.add(chat)
            await session.commit()
            fake.reply("Paris")
            event.listen(engine.sync_engine, "before_cursor_execute", down)
            try:
                with pytest.raises(sa_llm.PersistenceError, match="went away") as caught:
                    await chat.aask("capital of France?")
            finally:
                event.remove(engine.sync_engine, "before_cursor_execute", down)
            assert caught.value.reply.text == "Paris"
            assert isinstance(caught.value.__cause__, exc.DBAPIError)
            fake.reply("Madrid")
            assert (await chat.aask("and of Spain?")).text == "Madrid"
    finally:
        await engine.dispose()
        sync_engine.dispose()


def _inject(world: World, conflict: Any) -> Any:
    engines = [world.sync_engine]
    if world.async_engine is not None:
        engines.append(world.async_engine.sync_engine)
    for engine in engines:
        event.listen(engine, "before_cursor_execute", conflict)

    def remove() -> None:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", conflict)

    return remove


async def test_a_serialization_failure_on_the_completion_is_retried(
    world: World, fake: FakeLLM
) -> None:
    _postgres_only(world)
    import psycopg.errors

    chat = await new_chat(world)
    fake.reply("Paris")
    armed = [True]

    def conflict(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if armed[0] and statement.startswith("UPDATE messages"):
            armed[0] = False
            raise psycopg.errors.SerializationFailure("could not serialize access (injected)")

    remove = _inject(world, conflict)
    try:
        reply = await world.call(chat.ask, "capital of France?")
    finally:
        remove()
    assert not armed[0] and reply.text == "Paris"  # the failure happened, and was retried
    rows = [(r.role, r.content) for r in world.messages()]
    assert rows == [("user", "capital of France?"), ("assistant", "Paris")]
    await continues(world, chat, fake, ["capital of France?", "Paris"])


async def test_a_completion_that_keeps_failing_raises_with_the_reply(
    world: World, fake: FakeLLM
) -> None:
    _postgres_only(world)
    import psycopg.errors

    chat = await new_chat(world)
    fake.reply("Paris")
    failures = [0]

    def conflict(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("UPDATE messages"):
            failures[0] += 1
            raise psycopg.errors.SerializationFailure("could not serialize access (injected)")

    remove = _inject(world, conflict)
    try:
        with pytest.raises(sa_llm.PersistenceError, match="serialize") as caught:
            await world.call(chat.ask, "capital of France?")
    finally:
        remove()
    error = caught.value
    assert error.reply is not None and error.reply.text == "Paris"  # the app can still show it
    assert isinstance(error.__cause__, exc.OperationalError)
    assert failures[0] == 1 + sa_llm.get_config().db_retries
    assert [(r.role, r.content) for r in world.messages()] == [("user", "capital of France?")]
    await continues(world, chat, fake, ["capital of France?"])
