"""Concurrent turns on persisted chats (async, PostgreSQL and SQLite).

50 requests asking on one chat at once, each through its own session (as 50 web requests
would), must run one after another: every request the provider sees carries the whole history
so far, and the rows alternate user/assistant with every reply answering the message before it.
500 chats in parallel must all finish without errors or connection-pool exhaustion, every tool
call with its result and every user message with its reply.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

import sa_llm
from persisted import World, close_world, default_models, make_world
from sa_llm.testing import FakeLLM, fake_llm


@pytest.fixture
async def world(db_url: str, async_db_url: str) -> AsyncIterator[World]:
    world = make_world("async", db_url, async_db_url, default_models())
    try:
        yield world
    finally:
        await close_world(world)


@pytest.fixture
def fake() -> Any:
    with fake_llm(echo=True) as fake:
        yield fake


class Lookup(sa_llm.Tool):
    """Looks a word up."""

    def execute(self, word: Annotated[str, "the word"]) -> str:
        return f"{word} means {word[::-1]}"


async def test_fifty_concurrent_asks_on_one_chat(world: World, fake: FakeLLM) -> None:
    chat = world.Chat(model="fake-model", provider="fake")
    await world.add(chat)
    assert world.async_engine is not None
    sessions = async_sessionmaker(world.async_engine, expire_on_commit=False)

    async def ask(n: int) -> None:
        async with sessions() as session:
            row = await session.get(world.Chat, chat.id)
            assert row is not None
            await row.aask(f"q{n}")

    async with anyio.create_task_group() as group:
        for n in range(50):
            group.start_soon(ask, n)

    rows = world.messages()
    assert len(rows) == 100
    for user, reply in zip(rows[::2], rows[1::2], strict=True):
        assert (user.role, reply.role) == ("user", "assistant")
        assert reply.content == f"echo: {user.content}"
    # Each request carried every earlier turn: no turn saw a stale history.
    assert [len(r["messages"]) for r in fake.requests] == list(range(1, 100, 2))


async def test_five_hundred_chats_in_parallel(world: World, fake: FakeLLM) -> None:
    if world.sync_engine.dialect.name == "sqlite":
        pytest.skip("SQLite has one writer at a time: 500 parallel writers is a PostgreSQL load")
    assert world.async_engine is not None
    sessions = async_sessionmaker(world.async_engine, expire_on_commit=False)
    for n in range(500):
        if n % 5 == 0:  # every fifth chat calls a tool first
            fake.tool_call("lookup", {"word": f"w{n}"})
    errors: list[BaseException] = []

    async def converse(n: int) -> None:
        try:
            async with sessions() as session:
                chat = world.Chat(model="fake-model", provider="fake")
                session.add(chat)
                await session.commit()
                chat.with_tools(Lookup())
                await chat.aask(f"chat {n}")
        except Exception as exc:  # collected: the assertion below names them all
            errors.append(exc)

    async with anyio.create_task_group() as group:
        for n in range(500):
            group.start_soon(converse, n)

    assert errors == []
    rows = world.messages()
    by_chat: dict[Any, list[Any]] = {}
    for row in rows:
        by_chat.setdefault(row.chat_id, []).append(row)
    assert len(by_chat) == 500
    for messages in by_chat.values():
        assert messages[0].role == "user" and messages[-1].role == "assistant"
        assert messages[-1].content
    calls = world.rows(world.ToolCall)
    assert len(calls) == 100
    results = {r.tool_call_id for r in rows if r.role == "tool"}
    assert {c.id for c in calls} == results  # every tool call has its result


async def test_no_connection_is_held_during_the_provider_call(world: World, fake: FakeLLM) -> None:
    """The turn holds the chat, not the database: while the provider answers, every
    connection is back in the pool (no open transaction, no row lock)."""
    assert world.async_engine is not None
    chat = world.Chat(model="fake-model", provider="fake")
    await world.add(chat)
    pool = world.async_engine.sync_engine.pool
    held: list[int] = []
    original = fake.handle

    def handle(request: Any) -> Any:
        held.append(pool.checkedout())  # type: ignore[attr-defined]
        return original(request)

    fake.handle = handle  # type: ignore[method-assign]
    await chat.aask("hi")
    await chat.aask("again", on_chunk=lambda chunk: None)
    assert held == [0, 0]
