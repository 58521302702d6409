"""The history a chat row instance reuses between turns, and the writes of one turn.

A turn rebuilds the conversation from the rows, unless the rows are as the last turn on the same
instance left them: then the history it holds is reused after one aggregate SELECT, run in the
user message's own transaction. These tests check what a user would notice: what the provider
is sent after rows change elsewhere, how many statements and commits a turn costs, and that a
reused history is exactly a rebuilt one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import pytest
from sqlalchemy import Engine, event, select, text
from sqlalchemy.orm import Session

import sa_llm
from persisted import StatementCounter, World, close_world, default_models, make_world, new_chat
from sa_llm.testing import FakeLLM, fake_llm
from sa_llm.types import Tokens


@pytest.fixture
def world_settings() -> dict[str, Any]:
    return {"max_retries": 0}


class Calculator(sa_llm.Tool):
    """Adds two numbers."""

    def execute(self, a: Annotated[int, "first"], b: Annotated[int, "second"]) -> str:
        return str(a + b)


def engine_of(world: World) -> Engine:
    return world.async_engine.sync_engine if world.async_engine else world.sync_engine


@contextmanager
def counting(world: World) -> Iterator[tuple[StatementCounter, list[int]]]:
    """Statements by verb, and the number of COMMITs, on the world's engine."""
    engine = engine_of(world)
    counter = StatementCounter(engine)
    commits = [0]

    def on_commit(conn: Any) -> None:
        commits[0] += 1

    event.listen(engine, "commit", on_commit)
    try:
        yield counter, commits
    finally:
        counter.close()
        event.remove(engine, "commit", on_commit)


def sent(fake: FakeLLM, index: int = -1) -> list[tuple[str, Any]]:
    """(role, content) of every message in a request the fake received."""
    return [(m["role"], m.get("content")) for m in fake.requests[index]["messages"]]


# -- cost of a turn -------------------------------------------------------------------------------


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_later_turn_reads_one_select_and_commits_per_write_step(
    world: World, fake: FakeLLM, streamed: bool
) -> None:
    chat = await new_chat(world)
    fake.reply("one")
    await world.call(chat.ask, "first")
    fake.reply("two", chunks=5)
    kwargs = {"on_chunk": lambda chunk: None} if streamed else {}
    with counting(world) as (counter, commits):
        await world.call(chat.ask, "second", **kwargs)
    assert counter.count("SELECT") == 1  # count(*), max(updated_at): the history is reused
    # Two rows; the chat's lease claimed, the reply written, the lease released.
    assert (counter.count("INSERT"), counter.count("UPDATE")) == (2, 3)
    # Not streamed: the claim, the user message and the empty reply row in one commit, the
    # reply and the release in another. Streamed: the reply's row is written when the stream
    # opens, so three.
    assert commits[0] == (3 if streamed else 2)
    assert sent(fake) == [("user", "first"), ("assistant", "one"), ("user", "second")]


async def test_the_first_turn_of_an_instance_rebuilds(world: World, fake: FakeLLM) -> None:
    chat = await new_chat(world)
    fake.reply("one").reply("two")
    await world.call(chat.ask, "first")
    loaded = await reload(world, chat)
    with counting(world) as (counter, _):
        await world.call(loaded.ask, "second")
    assert counter.count("SELECT") >= 2  # messages and tool calls: nothing to reuse yet
    assert sent(fake) == [("user", "first"), ("assistant", "one"), ("user", "second")]


async def reload(world: World, chat: Any) -> Any:
    """The same chat row as a new instance (as the next web request would load it)."""
    chat_id = chat.id
    if world.mode == "async":
        world.session.expunge(chat)
        return await world.session.get(world.Chat, chat_id)
    world.session.expunge(chat)
    return world.session.get(world.Chat, chat_id)


# -- rows changed elsewhere -----------------------------------------------------------------------


def _add_row(world: World, chat_id: Any) -> None:
    with Session(world.sync_engine) as session:
        session.add(world.Message(chat_id=chat_id, role="user", content="written elsewhere"))
        session.commit()


def _edit_row(world: World, chat_id: Any) -> None:
    with Session(world.sync_engine) as session:
        row = session.scalars(
            select(world.Message).where(world.Message.role == "assistant")
        ).first()
        assert row is not None
        row.content = "edited elsewhere"
        session.commit()


def _delete_row(world: World, chat_id: Any) -> None:
    with Session(world.sync_engine) as session:
        rows = session.scalars(select(world.Message).order_by(world.Message.id)).all()
        for row in rows[:2]:  # the first exchange
            session.delete(row)
        session.commit()


CHANGES = {
    "added": (_add_row, [("user", "written elsewhere")]),
    "edited": (_edit_row, [("user", "first"), ("assistant", "edited elsewhere")]),
    "deleted": (_delete_row, []),
}


@pytest.mark.parametrize("change", list(CHANGES))
async def test_rows_changed_by_another_session_are_sent(
    world: World, fake: FakeLLM, change: str
) -> None:
    chat = await new_chat(world)
    fake.reply("one").reply("two").reply("three")
    await world.call(chat.ask, "first")
    edit, expected = CHANGES[change]
    if change == "added":
        expected = [("user", "first"), ("assistant", "one"), *expected]
    edit(world, chat.id)
    await world.call(chat.ask, "second")
    assert sent(fake) == [*expected, ("user", "second")]
    # ... and the turn after that is consistent again (and reuses it).
    await world.call(chat.ask, "third")
    assert sent(fake) == [*expected, ("user", "second"), ("assistant", "two"), ("user", "third")]


async def test_a_raw_sql_edit_is_seen_after_expire_history(world: World, fake: FakeLLM) -> None:
    chat = await new_chat(world)
    fake.reply("one").reply("two").reply("three")
    await world.call(chat.ask, "first")
    with world.sync_engine.begin() as conn:  # leaves updated_at alone: invisible to the check
        conn.execute(text("UPDATE messages SET content = 'patched' WHERE role = 'assistant'"))
    await world.call(chat.ask, "second")
    assert sent(fake)[1] == ("assistant", "one")
    chat.expire_history()
    await world.call(chat.ask, "third")
    assert sent(fake)[1] == ("assistant", "patched")


# -- a reused history is a rebuilt one ------------------------------------------------------------


async def test_the_reused_history_equals_a_rebuild(world: World, fake: FakeLLM) -> None:
    chat = await new_chat(world)
    chat.with_tool(Calculator)
    fake.reply("plain", tokens=Tokens(input=10, output=2, cached=4))
    fake.tool_call("calculator", {"a": 2, "b": 3}, id="call_1").reply("5", thinking="adding")
    fake.reply("done")
    await world.call(chat.ask, "hello")
    await world.call(chat.ask, "2 + 3?")
    with counting(world) as (counter, _):
        reused = (await world.call(chat.to_llm)).messages
    assert counter.count("SELECT") == 1
    chat.expire_history()
    rebuilt = (await world.call(chat.to_llm)).messages
    assert [m.role for m in reused] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "tool",
        "assistant",
    ]
    assert reused == rebuilt
    assert reused[1].tokens == Tokens(input=10, output=2, cached=4)
    assert reused[3].tool_calls[0].arguments == {"a": 2, "b": 3}
    assert reused[4].tool_call_id == "call_1"
    # The next turn sends exactly what a fresh process would.
    await world.call(chat.ask, "thanks")
    fresh = sent(fake)
    assert len(fresh) == 7


async def test_a_turn_of_another_instance_in_this_process_is_seen(
    world: World, fake: FakeLLM
) -> None:
    chat = await new_chat(world)
    fake.reply("one").reply("two").reply("three")
    await world.call(chat.ask, "first")
    if world.mode == "async":
        assert world.async_engine is not None
        from sqlalchemy.ext.asyncio import AsyncSession

        async with AsyncSession(world.async_engine) as other_session:
            other = await other_session.get(world.Chat, chat.id)
            assert other is not None
            await other.aask("from elsewhere")
    else:
        with Session(world.sync_engine) as other_session:
            other = other_session.get(world.Chat, chat.id)
            assert other is not None
            other.ask("from elsewhere")
    await world.call(chat.ask, "third")
    assert [content for _, content in sent(fake)] == [
        "first",
        "one",
        "from elsewhere",
        "two",
        "third",
    ]


# -- the placeholder ------------------------------------------------------------------------------


async def test_a_refused_placeholder_keeps_the_user_message(world: World, fake: FakeLLM) -> None:
    chat = await new_chat(world)
    fake.reply("one").reply("never sent")
    await world.call(chat.ask, "first")

    def refuse_empty(mapper: Any, connection: Any, target: Any) -> None:
        if target.role == "assistant" and not target.content:
            raise ValueError("content can't be blank")

    event.listen(world.Message, "before_insert", refuse_empty)
    try:
        with pytest.raises(ValueError, match="blank"):
            await world.call(chat.ask, "second")
    finally:
        event.remove(world.Message, "before_insert", refuse_empty)
    assert [(m.role, m.content) for m in world.messages()] == [
        ("user", "first"),
        ("assistant", "one"),
        ("user", "second"),
    ]
    assert len(fake.requests) == 1  # nothing was sent for the refused turn


async def test_a_stream_that_fails_after_opening_leaves_no_placeholder(
    world: World, fake: FakeLLM
) -> None:
    chat = await new_chat(world)
    fake.broken_stream("never finished", after_chunks=0)
    seen: list[Any] = []
    with pytest.raises(sa_llm.errors.ProviderError):
        await world.call(chat.ask, "hi", on_chunk=seen.append)
    assert [(m.role, m.content) for m in world.messages()] == [("user", "hi")]
    fake.reply("again")
    await world.call(chat.ask, "retry")
    assert [m.content for m in world.messages()] == ["hi", "retry", "again"]


async def test_instructions_and_added_messages_between_turns_are_sent(
    world: World, fake: FakeLLM
) -> None:
    chat = await new_chat(world)
    fake.reply("one").reply("two").reply("three")
    await world.call(chat.ask, "first")
    await world.call(chat.with_instructions, "Be brief")
    await world.call(chat.ask, "second")
    assert sent(fake)[0] == ("system", "Be brief")
    await world.call(chat.add_message, role="user", content="added by hand")
    await world.call(chat.with_instructions, "Be very brief")  # replaces the system message
    await world.call(chat.ask, "third")
    assert sent(fake) == [
        ("system", "Be very brief"),
        ("user", "first"),
        ("assistant", "one"),
        ("user", "second"),
        ("assistant", "two"),
        ("user", "added by hand"),
        ("user", "third"),
    ]


# -- schemas the cache cannot check ---------------------------------------------------------------


def _support_models() -> dict[str, Any]:
    """Hand-declared message columns without ``updated_at`` (``decl_support``)."""
    from sqlalchemy.orm import DeclarativeBase

    import decl_support
    from sa_llm.declarative import acts_as_model
    from sa_llm.mixins import ModelMixin

    class Base(DeclarativeBase):
        pass

    models: dict[str, Any] = {"Base": Base, **decl_support.build(Base)}

    @acts_as_model(chats="conversations", chat_class="decl_support.Conversation")
    class Model(ModelMixin, Base):
        __tablename__ = "models"

    models["Model"] = Model
    return models


async def test_without_updated_at_every_turn_rebuilds(
    db_url: str, async_db_url: str, fake: FakeLLM
) -> None:
    world = make_world("sync", db_url, async_db_url, _support_models())
    try:
        chat = await new_chat(world)
        fake.reply("one").reply("two")
        await world.call(chat.ask, "first")
        with Session(world.sync_engine) as session:  # an edit the cache could not see
            row = session.scalars(
                select(world.Message).where(world.Message.role == "assistant")
            ).one()
            row.content = "edited elsewhere"
            session.commit()
        with counting(world) as (counter, _):
            await world.call(chat.ask, "second")
        assert counter.count("SELECT") >= 2  # read again: there is nothing to check it with
        assert sent(fake) == [
            ("user", "first"),
            ("assistant", "edited elsewhere"),
            ("user", "second"),
        ]
    finally:
        await close_world(world)


# -- differential: the cached instance against a fresh instance every turn ------------------------

OPERATIONS = ("ask", "ask", "ask", "tool", "edit", "add", "delete", "instructions", "raw")


async def _play(world: World, seed: int, *, fresh_each_turn: bool) -> list[list[dict[str, Any]]]:
    """A seeded random sequence of turns and changes made elsewhere; the requests it sent."""
    import random

    rng = random.Random(seed)
    with fake_llm(echo=False) as fake:
        chat = await new_chat(world)
        chat_id = chat.id
        await world.commit()  # reading the id began a transaction: SQLite's writers need it ended
        for step in range(14):
            operation = rng.choice(OPERATIONS)
            if fresh_each_turn and operation in ("ask", "tool"):
                chat = await reload(world, chat)
            chat.with_tool(Calculator)
            if operation == "ask":
                fake.reply(f"reply {step}", tokens=Tokens(input=step, output=1))
                await world.call(chat.ask, f"question {step}")
            elif operation == "tool":
                fake.tool_call("calculator", {"a": step, "b": 1}, id=f"call_{step}")
                fake.reply(f"{step + 1}")
                await world.call(chat.ask, f"{step} + 1?")
            elif operation == "edit":
                with Session(world.sync_engine) as session:
                    rows = session.scalars(
                        select(world.Message)
                        .where(world.Message.role == "assistant", world.Message.chat_id == chat_id)
                        .order_by(world.Message.id)
                    ).all()
                    if rows:
                        rng.choice(rows).content = f"edited at {step}"
                        session.commit()
            elif operation == "add":
                with Session(world.sync_engine) as session:
                    session.add(
                        world.Message(chat_id=chat_id, role="user", content=f"added {step}")
                    )
                    session.commit()
            elif operation == "delete":
                with Session(world.sync_engine) as session:
                    plain = session.scalars(
                        select(world.Message)
                        .where(world.Message.role == "user", world.Message.chat_id == chat_id)
                        .order_by(world.Message.id)
                    ).all()
                    if plain:
                        session.delete(rng.choice(plain))
                        session.commit()
            elif operation == "instructions":
                await world.call(chat.with_instructions, f"instructions {step}")
            else:  # an edit invisible to the check, made visible by expire_history()
                with world.sync_engine.begin() as conn:
                    conn.execute(
                        text("UPDATE messages SET content = :c WHERE role = 'user'"),
                        {"c": f"raw {step}"},
                    )
                chat.expire_history()
        return [list(request["messages"]) for request in fake.requests]


@pytest.mark.parametrize("seed", range(6))
async def test_a_reused_history_sends_what_a_fresh_instance_sends(
    db_url: str, async_db_url: str, seed: int
) -> None:
    sent_by: dict[bool, list[list[dict[str, Any]]]] = {}
    for fresh in (False, True):
        models = default_models()
        world = make_world("sync", db_url, async_db_url, models)
        try:
            sent_by[fresh] = await _play(world, seed, fresh_each_turn=fresh)
        finally:
            models["Base"].metadata.drop_all(world.sync_engine)  # the next run starts empty
            await close_world(world)
    assert sent_by[False] == sent_by[True]
    assert len(sent_by[False]) >= 3
