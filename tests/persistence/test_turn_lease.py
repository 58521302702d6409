"""The turn lease in one process: claim and release ride in the turn's own commits, a second
turn waits or raises, a dead turn is taken over and settled, histories are valid whatever the
table holds, partial output, cancel, repeated task cancellation, database failures, tenants.

The same behaviours across real OS processes are in test_turns_across_processes.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import create_engine, event, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

import sa_llm
from persisted import StatementCounter, World, default_models, new_chat
from sa_llm.persistence import repair_chats
from sa_llm.testing import FakeLLM
from sa_llm.testing.server import FakeOpenAIServer


def lease_of(world: World, chat_id: Any) -> tuple[Any, Any, Any]:
    with world.sync_engine.connect() as connection:
        row = connection.execute(
            text(
                "SELECT turn_token, turn_expires_at, cancel_requested_at FROM chats WHERE id = :id"
            ),
            {"id": chat_id},
        ).one()
    return row[0], row[1], row[2]


@contextlib.asynccontextmanager
async def served_chat(
    world: World, *, poll: float | None = None, **server: Any
) -> AsyncIterator[tuple[FakeOpenAIServer, Any]]:
    """A new chat of ``world`` talking to a scripted server of its own (``server``: its
    options), the heartbeat polling every ``poll`` seconds when given; the configuration is
    reset afterwards."""
    async with FakeOpenAIServer(**server) as fake_server:
        settings = {} if poll is None else {"turn_poll_interval": poll}
        sa_llm.configure(
            openai_base_url=fake_server.url, openai_api_key="k", max_retries=0, **settings
        )
        try:
            chat = world.Chat(model="gpt-4.1-nano")
            await world.add(chat)
            yield fake_server, chat
        finally:
            sa_llm.reset_config()


def cancel_turn(world: World, chat_id: Any) -> bool:
    """Ask the chat's running turn to stop, in a session of its own, as another request would."""
    with Session(world.sync_engine) as session:
        return bool(world.Chat.cancel_turn(session, chat_id))


def rows(world: World) -> list[tuple[str, str | None, str | None]]:
    return [(r.role, r.content, r.status) for r in world.messages()]


def sent(fake: FakeLLM, index: int = -1) -> list[tuple[str, Any]]:
    return [(m["role"], m.get("content")) for m in fake.requests[index]["messages"]]


async def hold_lease(world: World, chat_id: Any, *, expires_in: float) -> None:
    """Write a lease as a turn in another process would hold it (or a dead one left it)."""
    await world.commit()  # SQLite: the world's session must not hold a read lock meanwhile
    expires = datetime.now(timezone.utc) + timedelta(seconds=expires_in)
    table = world.Chat.__table__
    with world.sync_engine.begin() as connection:
        connection.execute(
            update(table)
            .where(table.c.id == chat_id)
            .values(turn_token="other-process", turn_expires_at=expires)
        )


async def add_raw_message(world: World, chat_id: Any, **values: Any) -> Any:
    """A message row written by raw SQL (as a crashed process or an older version left it)."""
    await world.commit()
    table = world.Message.__table__
    now = datetime.now(timezone.utc)
    values = {"chat_id": chat_id, "created_at": now, "updated_at": now, **values}
    with world.sync_engine.begin() as connection:
        return connection.execute(table.insert().values(**values).returning(table.c.id)).scalar()


async def add_raw_call(world: World, message_id: Any, call_id: str, name: str = "weather") -> Any:
    await world.commit()
    table = world.ToolCall.__table__
    with world.sync_engine.begin() as connection:
        return connection.execute(
            table.insert()
            .values(
                message_id=message_id,
                tool_call_id=call_id,
                name=name,
                arguments={"city": "Berlin"},
                created_at=datetime.now(timezone.utc),
            )
            .returning(table.c.id)
        ).scalar()


# -- the lease rides in the turn's commits ---------------------------------------------------------


async def test_a_turn_claims_and_releases_the_chat_in_its_own_commits(
    world: World, fake: FakeLLM
) -> None:
    chat = await new_chat(world)
    fake.reply("Hi").reply("Paris")
    await world.call(chat.ask, "hello")  # the first turn also resolves the chat's model row
    seen: list[Any] = []

    original = fake.handle

    def during_the_call(request: Any) -> Any:
        seen.append(lease_of(world, chat.id))  # read by another connection: committed
        return original(request)

    fake.handle = during_the_call  # type: ignore[method-assign]
    counter = StatementCounter(world.sync_engine_for_async())
    commits = []
    event.listen(world.sync_engine_for_async(), "commit", lambda conn: commits.append(1))
    try:
        await world.call(chat.ask, "capital of France?")
    finally:
        counter.close()
        fake.handle = original  # type: ignore[method-assign]
    (token, expires, cancel), *_ = seen
    assert token is not None and expires is not None and cancel is None
    assert lease_of(world, chat.id) == (None, None, None)  # released
    assert counter.count("UPDATE chats") == 2  # the claim and the release
    assert len(commits) == 2  # the user message's and the reply's: none of the lease's own
    assert rows(world)[2:] == [
        ("user", "capital of France?", "complete"),
        ("assistant", "Paris", "complete"),
    ]


async def test_raise_mode_refuses_while_another_process_holds_the_chat(
    world: World, fake: FakeLLM
) -> None:
    chat = await new_chat(world)
    await hold_lease(world, chat.id, expires_in=60)
    sa_llm.configure(concurrent_turns="raise")
    try:
        with pytest.raises(sa_llm.ChatBusyError, match="Another turn"):
            await world.call(chat.ask, "hello?")
    finally:
        sa_llm.reset_config()
    assert rows(world) == []  # the refused turn wrote nothing
    assert fake.requests == []


async def test_a_waiting_turn_gives_up_after_turn_wait_timeout(world: World, fake: FakeLLM) -> None:
    chat = await new_chat(world)
    await hold_lease(world, chat.id, expires_in=60)
    sa_llm.configure(turn_wait_timeout=0.3)
    try:
        with pytest.raises(sa_llm.ChatBusyError, match="turn_wait_timeout"):
            await world.call(chat.ask, "hello?")
    finally:
        sa_llm.reset_config()
    assert rows(world) == []


async def test_a_waiting_turn_starts_when_the_lease_is_released(
    world: World, fake: FakeLLM
) -> None:
    chat = await new_chat(world)
    await hold_lease(world, chat.id, expires_in=60)
    fake.reply("finally")
    table = world.Chat.__table__

    async def release_soon() -> None:
        await asyncio.sleep(0.3)
        with world.sync_engine.begin() as connection:
            connection.execute(
                update(table)
                .where(table.c.id == chat.id)
                .values(turn_token=None, turn_expires_at=None)
            )

    releaser = asyncio.ensure_future(release_soon())
    if world.mode == "sync":
        # The blocking wait polls: run it in a thread so the releaser's sleep can end.
        reply = await asyncio.to_thread(chat.ask, "hello?")
    else:
        reply = await chat.aask("hello?")
    await releaser
    assert reply.text == "finally"
    assert rows(world)[-1] == ("assistant", "finally", "complete")


# -- a dead turn is taken over and settled ---------------------------------------------------------


@pytest.mark.parametrize("partial", [False, True], ids=["blank", "with-text"])
async def test_an_expired_lease_is_taken_over_and_its_rows_settled(
    world: World, fake: FakeLLM, partial: bool
) -> None:
    chat = await new_chat(world)
    fake.reply("one")
    await world.call(chat.ask, "first")
    # What a process that died mid-stream leaves: its user message, its streaming placeholder
    # (with text when it flushed partial output) and an expired lease.
    await add_raw_message(world, chat.id, role="user", content="second", status="complete")
    await add_raw_message(
        world, chat.id, role="assistant", content="half a rep" if partial else "",
        status="streaming",
    )  # fmt: skip
    await hold_lease(world, chat.id, expires_in=-1)
    fake.reply("three")
    await world.call(chat.ask, "third")
    assert sent(fake) == [
        ("user", "first"), ("assistant", "one"), ("user", "second"), ("user", "third"),
    ]  # fmt: skip
    settled = [r for r in rows(world) if r[2] not in ("complete",)]
    assert settled == ([("assistant", "half a rep", "interrupted")] if partial else [])
    assert lease_of(world, chat.id)[0] is None


async def test_a_dead_tool_round_is_closed_so_the_chat_can_continue(
    world: World, fake: FakeLLM
) -> None:
    chat = await new_chat(world)
    asked = await add_raw_message(
        world, chat.id, role="user", content="weather?", status="complete"
    )
    assert asked is not None
    calling = await add_raw_message(world, chat.id, role="assistant", content="", status="complete")
    await add_raw_call(world, calling, "call_1")
    await add_raw_call(world, calling, "call_2")
    done = await add_raw_call(world, calling, "call_3")
    await add_raw_message(
        world, chat.id, role="tool", content="Sunny", status="complete", tool_call_id=done
    )
    await add_raw_message(
        world, chat.id, role="tool", content="", status="pending"
    )  # call_1 running
    await hold_lease(world, chat.id, expires_in=-1)
    fake.reply("ok")
    await world.call(chat.ask, "and now?")
    messages = fake.requests[-1]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool", "tool", "user"]
    results = {m["tool_call_id"]: m["content"] for m in messages if m["role"] == "tool"}
    assert results["call_3"] == "Sunny"
    assert "interrupted" in results["call_1"] and "interrupted" in results["call_2"]
    assert [m["tool_call_id"] for m in messages if m["role"] == "tool"] == [
        "call_1", "call_2", "call_3",
    ]  # fmt: skip


async def test_repair_chats_settles_a_whole_database(world: World, fake: FakeLLM) -> None:
    first = await new_chat(world)
    second = await new_chat(world)
    busy = await new_chat(world)
    await add_raw_message(world, first.id, role="assistant", content="", status="pending")
    await add_raw_message(
        world, second.id, role="assistant", content="some text", status="streaming"
    )
    await add_raw_message(world, busy.id, role="assistant", content="", status="streaming")
    await hold_lease(world, busy.id, expires_in=60)  # a live turn: left alone
    with Session(world.sync_engine) as session:
        report = repair_chats(session, world.Chat)
    assert set(report.chats) == {first.id, second.id} and report.busy == (busy.id,)
    states = {(r.chat_id, r.content, r.status) for r in world.messages()}
    assert states == {(second.id, "some text", "interrupted"), (busy.id, "", "streaming")}


def test_sa_llm_chats_repair(tmp_path: Any) -> None:
    from click.testing import CliRunner

    from sa_llm.cli import main

    models = tmp_path / "models.py"
    models.write_text(
        "from persisted import default_models\n_m = default_models()\nChat = _m['Chat']\n"
    )
    url = f"sqlite:///{tmp_path / 'app.db'}"
    engine = create_engine(url)
    built = default_models()
    built["Base"].metadata.create_all(engine)
    with Session(engine) as session:
        chat = built["Chat"](model="fake-model", provider="fake")
        session.add(chat)
        session.commit()
        session.add(
            built["Message"](chat_id=chat.id, role="assistant", content="", status="pending")
        )
        session.commit()
    result = CliRunner().invoke(
        main, ["chats", "repair", "--database-url", url, "--module", str(models)]
    )
    assert result.exit_code == 0, result.output
    assert "repaired 1 chat(s), 1 row(s) changed" in result.output
    with Session(engine) as session:
        assert session.scalars(select(built["Message"])).all() == []
    engine.dispose()


# -- a valid history, whatever the table holds -----------------------------------------------------


async def test_the_history_sends_only_valid_rows(world: World, fake: FakeLLM) -> None:
    chat = await new_chat(world)
    await add_raw_message(world, chat.id, role="user", content="one", status="complete")
    await add_raw_message(
        world, chat.id, role="assistant", content=None
    )  # an old blank placeholder
    await add_raw_message(world, chat.id, role="assistant", content="kept?", status="interrupted")
    await add_raw_message(world, chat.id, role="assistant", content="half", status="streaming")
    await add_raw_message(world, chat.id, role="user", content="two")  # status NULL: complete
    calling = await add_raw_message(world, chat.id, role="assistant", content="let me look")
    call = await add_raw_call(world, calling, "call_a")
    await add_raw_message(world, chat.id, role="user", content="three", status="complete")
    # The result arrived after another message (interleaved turns): it follows its call.
    await add_raw_message(world, chat.id, role="tool", content="Sunny", tool_call_id=call)
    unanswered = await add_raw_message(world, chat.id, role="assistant", content="")
    await add_raw_call(world, unanswered, "call_b")
    await add_raw_message(world, chat.id, role="tool", content="orphan")  # no call
    fake.reply("four")
    await world.call(chat.ask, "four?")
    roles = [
        (m["role"], m.get("content"), m.get("tool_call_id")) for m in fake.requests[-1]["messages"]
    ]
    assert roles == [
        ("user", "one", None),
        ("user", "two", None),
        ("assistant", "let me look", None),
        ("tool", "Sunny", "call_a"),
        ("user", "three", None),
        ("user", "four?", None),
    ]
    llm = await world.call(chat.to_llm)
    assert [m.role for m in llm.messages] == [
        "user",
        "user",
        "assistant",
        "tool",
        "user",
        "user",
        "assistant",
    ]


# -- partial output --------------------------------------------------------------------------------


async def test_partial_output_is_flushed_in_batches_and_kept_on_failure(
    world: World, fake: FakeLLM
) -> None:
    chat = await new_chat(world)
    chat.with_partial_output(True)
    sa_llm.configure(partial_output_interval=0.05)
    fake.broken_stream(
        "The quick brown fox jumps over the lazy dog " * 4, chunks=40, after_chunks=30
    )
    engine = world.sync_engine_for_async()
    counter = StatementCounter(engine)
    chunks: list[Any] = []

    async def slow(chunk: Any) -> None:
        chunks.append(chunk)
        await asyncio.sleep(0.01)

    def slow_sync(chunk: Any) -> None:
        chunks.append(chunk)
        import time

        time.sleep(0.01)

    try:
        with pytest.raises(sa_llm.APIConnectionError):
            await world.call(chat.ask, "go", on_chunk=slow if world.mode == "async" else slow_sync)
    finally:
        counter.close()
        sa_llm.reset_config()
    flushes = counter.count("UPDATE messages") - 1  # the last one: the clean-up's
    assert 1 <= flushes < len(chunks) / 2  # in batches, never per chunk
    (user, kept) = rows(world)
    assert user == ("user", "go", "complete")
    assert kept[0] == "assistant" and kept[2] == "failed"
    assert kept[1] == "".join(c.content or "" for c in chunks)  # everything that streamed
    fake.reply("again")
    await world.call(chat.ask, "retry")
    assert sent(fake) == [("user", "go"), ("user", "retry")]  # the failed text is not sent


async def test_without_partial_output_a_failed_reply_leaves_no_row(
    world: World, fake: FakeLLM
) -> None:
    chat = await new_chat(world)
    fake.broken_stream("some words that stream", after_chunks=2)
    with pytest.raises(sa_llm.APIConnectionError):
        await world.call(chat.ask, "go", on_chunk=lambda chunk: None)
    assert rows(world) == [("user", "go", "complete")]
    assert lease_of(world, chat.id)[0] is None


# -- cancel ----------------------------------------------------------------------------------------


async def test_cancel_stops_the_stream_and_keeps_what_streamed(world: World) -> None:
    async with served_chat(world, poll=0.05, chunks=400, chunk_interval=0.01) as (server, chat):
        got: list[str] = []
        cancelled: list[bool] = []

        def on_chunk(chunk: Any) -> None:
            got.append(chunk.content or "")
            if len(got) == 20 and not cancelled:
                cancelled.append(cancel_turn(world, chat.id))

        async def aon_chunk(chunk: Any) -> None:
            got.append(chunk.content or "")
            if len(got) == 20 and not cancelled:
                # From a thread, as another request would cancel. A blocking write on the
                # event loop could stall this turn's own heartbeat inside its transaction,
                # and SQLite has one writer: the cancel would wait for a lock never freed.
                cancelled.append(await asyncio.to_thread(cancel_turn, world, chat.id))

        async def talk() -> Any:
            if world.mode == "sync":
                return await asyncio.to_thread(chat.ask, "talk", on_chunk=on_chunk)
            return await chat.aask("talk", on_chunk=aon_chunk)

        with pytest.raises(sa_llm.TurnCancelledError) as caught:
            await talk()
    assert cancelled == [True]
    assert len(got) < 400  # stopped long before the end
    partial = caught.value.partial
    assert partial is not None and partial.text == "".join(got)
    (role, content, status) = rows(world)[-1]
    assert (role, status) == ("assistant", "cancelled") and content == "".join(got)
    assert lease_of(world, chat.id) == (None, None, None)
    assert server.exchanges[-1].finished is False  # the provider's stream was closed


async def test_cancel_interrupts_a_stream_that_waits_for_its_first_token(world: World) -> None:
    """The cancel cuts short the read that waits for the model (here silent for two minutes
    after the stream opened): the turn does not sit the silence out."""
    async with served_chat(world, poll=0.05, chunks=5, first_token_delay=120.0) as (server, chat):
        chat_id = chat.id
        got: list[str] = []

        def cancel_once_streaming() -> bool:
            # As another request would: once the reply's row is written (the stream is open
            # and the turn waits for its first token), ask the turn to stop.
            for _ in range(3000):
                if any(status == "streaming" for _, _, status in rows(world)):
                    return cancel_turn(world, chat_id)
                server.wait_stopped(0.02)
            return False

        async def talk() -> Any:
            if world.mode == "sync":
                return await asyncio.to_thread(chat.ask, "talk", on_chunk=got.append)
            return await chat.aask("talk", on_chunk=got.append)

        canceller = asyncio.ensure_future(asyncio.to_thread(cancel_once_streaming))
        # Far below the model's silence: only an interrupted read ends the turn in time.
        with pytest.raises(sa_llm.TurnCancelledError):
            await asyncio.wait_for(talk(), 60)
        assert await canceller is True
    assert got == []
    assert rows(world) == [("user", "talk", "complete")]  # nothing streamed: no reply row kept
    assert lease_of(world, chat_id) == (None, None, None)


async def test_cancel_without_a_running_turn_says_so(world: World, fake: FakeLLM) -> None:
    chat = await new_chat(world)
    assert await world.call(chat.cancel) is False


# -- repeated task cancellation --------------------------------------------------------------------


@pytest.mark.parametrize("form", ["aask", "astream"])
@pytest.mark.parametrize("cancels", [1, 2, 5])
async def test_repeated_task_cancel_leaves_no_blank_row(
    world: World, form: str, cancels: int
) -> None:
    if world.mode == "sync":
        pytest.skip("task cancellation is an async matter")
    async with served_chat(world, chunks=200, chunk_interval=0.01) as (_, chat):
        started = asyncio.Event()

        async def turn() -> None:
            if form == "aask":
                await chat.aask("talk", on_chunk=lambda chunk: started.set())
            else:
                async for _ in chat.astream("talk"):
                    started.set()

        task = asyncio.ensure_future(turn())
        await started.wait()
        for _ in range(cancels):
            task.cancel()
            await asyncio.sleep(0)
        with pytest.raises(asyncio.CancelledError):
            await task
    assert rows(world) == [("user", "talk", "complete")]  # no blank row, no unfinished one
    assert lease_of(world, chat.id)[0] is None


# -- database failures -----------------------------------------------------------------------------


async def test_the_database_failing_at_completion_raises_with_the_reply(
    world: World, fake: FakeLLM
) -> None:
    """The database goes away while the provider answers and comes back later."""
    chat = await new_chat(world)
    fake.reply("Paris")
    engine = world.sync_engine_for_async()
    down = [False]

    def refuse(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if down[0]:
            raise _driver_error(engine, "the database is down (injected)")

    original = fake.handle

    def answer_then_fail(request: Any) -> Any:
        down[0] = True
        return original(request)

    fake.handle = answer_then_fail  # type: ignore[method-assign]
    event.listen(engine, "before_cursor_execute", refuse)
    try:
        with pytest.raises(sa_llm.PersistenceError) as caught:
            await world.call(chat.ask, "capital of France?")
    finally:
        event.remove(engine, "before_cursor_execute", refuse)
        fake.handle = original  # type: ignore[method-assign]
    assert caught.value.reply is not None and caught.value.reply.text == "Paris"
    # The database is back: the same chat continues, with a valid history.
    fake.reply("Madrid")
    await world.call(chat.ask, "and of Spain?")
    assert sent(fake) == [("user", "capital of France?"), ("user", "and of Spain?")]
    statuses = [status for _, _, status in rows(world)]
    assert statuses == ["complete", "complete", "complete"]
    assert lease_of(world, chat.id)[0] is None


def _driver_error(engine: Any, message: str) -> Exception:
    """An error of the engine's own driver (psycopg, sqlite3, ...), as it raises them."""
    return engine.dialect.loaded_dbapi.OperationalError(message)  # type: ignore[no-any-return]


# -- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["", "   ", None])
async def test_an_empty_question_is_refused_before_anything(
    world: World, fake: FakeLLM, content: Any
) -> None:
    chat = await new_chat(world)
    with pytest.raises(sa_llm.ConfigurationError, match="needs a message"):
        await world.call(chat.ask, content)
    assert rows(world) == [] and fake.requests == []


# -- collections -----------------------------------------------------------------------------------


async def test_a_loaded_messages_collection_shows_the_turn(
    db_url: str, async_db_url: str, fake: FakeLLM
) -> None:
    models = default_models()
    Chat = models["Chat"]
    engine = create_engine(db_url)
    models["Base"].metadata.create_all(engine)
    fake.reply("Paris").reply("Madrid")
    try:
        with Session(engine, expire_on_commit=False) as session:
            chat = Chat(model="fake-model", provider="fake")
            session.add(chat)
            session.commit()
            before = chat.messages
            assert len(before) == 0
            chat.ask("capital of France?")
            assert [m.content for m in chat.messages] == ["capital of France?", "Paris"]
            assert chat.messages is before  # the same list, updated in place
            assert chat.messages[-1].content == "Paris"  # the guide reads the reply so
        async_engine = create_async_engine(async_db_url)
        try:
            async with AsyncSession(async_engine, expire_on_commit=False) as session:
                chat = await session.get(Chat, chat.id, populate_existing=True)
                assert chat is not None
                await session.refresh(chat, ["messages"])
                await chat.aask("and of Spain?")
                assert [m.content for m in chat.messages][-2:] == ["and of Spain?", "Madrid"]
        finally:
            await async_engine.dispose()
    finally:
        engine.dispose()


# -- tenants ---------------------------------------------------------------------------------------


async def test_chat_1_of_one_tenant_database_does_not_block_chat_1_of_another(
    tmp_path: Any,
) -> None:
    async with FakeOpenAIServer(latency=0.5) as server:
        sa_llm.configure(
            openai_base_url=server.url, openai_api_key="k", max_retries=0,
            concurrent_turns="raise",
        )  # fmt: skip
        engines = []
        try:
            chats = []
            for tenant in ("a", "b"):
                models = default_models()
                engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / tenant}.db")
                engines.append(engine)
                async with engine.begin() as connection:
                    await connection.run_sync(models["Base"].metadata.create_all)
                session = AsyncSession(engine, expire_on_commit=False)
                chat = models["Chat"](model="gpt-4.1-nano")
                session.add(chat)
                await session.commit()
                assert chat.id == 1
                chats.append((session, chat))
            # Both tenants' chat 1 at once: neither is busy.
            replies = await asyncio.gather(*(chat.aask("hi") for _, chat in chats))
            assert all(reply.text for reply in replies)
            for session, _ in chats:
                await session.close()
        finally:
            sa_llm.reset_config()
            for engine in engines:
                await engine.dispose()


def test_the_lease_columns_are_all_or_none(fresh_base: Any) -> None:
    from sqlalchemy import Column, DateTime, Integer, String

    from sa_llm.declarative import acts_as_chat, acts_as_message, acts_as_tool_call, chat_schema
    from sa_llm.mixins import LegacyMessageMixin, ToolCallMixin

    @acts_as_chat(model=None)
    class Chat(fresh_base):  # type: ignore[misc]
        __tablename__ = "chats"
        id = Column(Integer, primary_key=True)
        model_id = Column(String(100))
        turn_token = Column(String(64))
        turn_expires_at = Column(DateTime(timezone=True))
        created_at = Column(DateTime(timezone=True))
        updated_at = Column(DateTime(timezone=True))

    @acts_as_message(model=None)
    class Message(LegacyMessageMixin, fresh_base):  # type: ignore[misc]
        __tablename__ = "messages"

    @acts_as_tool_call()
    class ToolCall(ToolCallMixin, fresh_base):  # type: ignore[misc]
        __tablename__ = "tool_calls"

    with pytest.raises(sa_llm.ConfigurationError, match="cancel_requested_at"):
        chat_schema(Chat)
