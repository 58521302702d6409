"""A rebuilt history holds the values a query of its rows returns, on SQLite and PostgreSQL.

The rebuild reads ``content_raw``, ``thinking_raw`` and ``updated_at`` as the driver returns them
and converts them itself, only where it needs to (a JSON value that is not NULL, the newest
``updated_at``). These tests check that the result is what the engine's own conversion gives:
with a custom ``json_deserializer`` on the engine, and for the fingerprint a later turn compares
(a rebuilt history is reused when the rows have not changed, with one SELECT). On PostgreSQL
both also run over asyncpg, which decodes JSON in the driver.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

import sa_llm
from persisted import StatementCounter, World, close_world, default_models, new_chat
from sa_llm.testing import FakeLLM, fake_llm
from sa_llm.types import RawContent

BLOCKS = [{"type": "text", "text": "long doc", "cache_control": {"type": "ephemeral"}}]
LATER = datetime(2100, 1, 1, tzinfo=timezone.utc)
REASONING = {"items": [{"type": "reasoning", "id": "rs_1", "encrypted_content": "opaque"}]}


def tagged_loads(text: str | bytes) -> Any:
    """An engine's JSON decoder that marks what it decoded (lists and objects)."""
    value = json.loads(text)
    if isinstance(value, dict):
        return {**value, "decoded_by": "engine"}
    if isinstance(value, list):
        return [*value, "decoded_by engine"]
    return value


@pytest.fixture
def world_engine_options() -> dict[str, Any]:
    return {"json_deserializer": tagged_loads}


@pytest.fixture
def world_settings() -> dict[str, Any]:
    return {"max_retries": 0}


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    with fake_llm(echo=False) as fake:
        yield fake


def stored_json(world: World) -> list[tuple[Any, Any]]:
    """(content_raw, thinking_raw) of every message, read through the ORM, in write order."""
    message = world.Message
    with Session(world.sync_engine) as session:
        query = select(message.content_raw, message.thinking_raw).order_by(message.id)
        return [tuple(row) for row in session.execute(query)]


@pytest.fixture
async def asyncpg_world(db_url: str) -> AsyncIterator[World]:
    """The default models over asyncpg (the ``world`` fixture's async driver is psycopg), with
    the same JSON decoder on the engine. asyncpg decodes JSON itself, with the decoder
    SQLAlchemy registers on its connections, so no result processor runs for these columns."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    from conftest import engine_arguments

    if make_url(db_url).get_backend_name() != "postgresql":
        pytest.skip("asyncpg is a PostgreSQL driver")
    models = default_models()
    sync_engine = create_engine(db_url, json_deserializer=tagged_loads)
    models["Base"].metadata.create_all(sync_engine)
    url, connect_args = engine_arguments(make_url(db_url).set(drivername="postgresql+asyncpg"))
    engine = create_async_engine(url, connect_args=connect_args, json_deserializer=tagged_loads)
    session = AsyncSession(engine, expire_on_commit=False)
    world = World("async", sync_engine, engine, models, session)
    sa_llm.configure(max_retries=0)
    try:
        yield world
    finally:
        sa_llm.reset_config()
        await close_world(world)


async def test_json_columns_are_decoded_as_the_engine_decodes_them(
    world: World, fake: FakeLLM
) -> None:
    await check_json_decoding(world, fake)


async def check_json_decoding(world: World, fake: FakeLLM) -> None:
    chat = await new_chat(world)
    fake.reply("plain")
    await world.call(chat.ask, RawContent(BLOCKS))
    with world.sync_engine.begin() as connection:
        table = world.Message.__table__
        connection.execute(
            update(table).where(table.c.role == "assistant").values(thinking_raw=REASONING)
        )
    chat.expire_history()
    rebuilt = (await world.call(chat.to_llm)).messages
    (user_raw, _), (_, assistant_raw) = stored_json(world)
    assert user_raw == [*BLOCKS, "decoded_by engine"]  # the engine's decoder ran
    assert rebuilt[0].content == RawContent(user_raw)
    assert rebuilt[1].thinking is not None
    assert rebuilt[1].thinking.extra == {**REASONING, "decoded_by": "engine"} == assistant_raw
    assert rebuilt[1].content == "plain"  # a NULL raw column stays NULL


async def test_a_rebuilt_history_is_reused_while_the_rows_are_unchanged(
    world: World, fake: FakeLLM
) -> None:
    await check_reuse_after_rebuild(world, fake)


async def check_reuse_after_rebuild(world: World, fake: FakeLLM) -> None:
    chat = await new_chat(world)
    fake.reply("one").reply("two").reply("three")
    await world.call(chat.ask, "first")
    # The newest updated_at is a row's the next turn does not write: the fingerprint that turn
    # keeps is the one its rebuild read.
    with world.sync_engine.begin() as connection:
        table = world.Message.__table__
        connection.execute(update(table).where(table.c.role == "user").values(updated_at=LATER))
    chat.expire_history()
    await world.call(chat.ask, "second")  # rebuilds: the rows are read
    counter = StatementCounter(world.sync_engine_for_async())
    try:
        await world.call(chat.ask, "third")
    finally:
        counter.close()
    # Only the aggregate count(*), max(updated_at): the newest updated_at the rebuild kept is
    # the one the database reports.
    assert counter.count("SELECT") == 1
    assert [m["content"] for m in fake.requests[-1]["messages"]] == [
        "first", "one", "second", "two", "third",
    ]  # fmt: skip


@pytest.mark.postgres
async def test_over_asyncpg_both_hold(asyncpg_world: World, fake: FakeLLM) -> None:
    """The two checks above on asyncpg, one after the other on one database."""
    await check_json_decoding(asyncpg_world, fake)
    await check_reuse_after_rebuild(asyncpg_world, fake)
