"""The persistence flow of ``@acts_as_chat`` models, on SQLite and PostgreSQL, sync and async.

Ports the conformance list of the reference (section 12.1 of ruby_llm_behaviour.md): rows in
the database after each scenario, scripted with the fake LLM of ``sa_llm.testing``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import pytest
from sqlalchemy import Engine, event

import sa_llm
from persisted import StatementCounter, World, close_world, default_models, make_world, new_chat
from sa_llm.testing import FakeLLM, fake_llm
from sa_llm.types import RawContent, Tokens


@pytest.fixture
def world_settings() -> dict[str, Any]:
    return {"max_retries": 0, "default_model": "gpt-4.1-nano"}


class Calculator(sa_llm.Tool):
    """Evaluates a simple arithmetic expression."""

    def execute(self, expression: Annotated[str, "e.g. 2 + 2"]) -> str:
        left, op, right = expression.split()
        value = {"+": int(left) + int(right), "*": int(left) * int(right)}[op]
        return str(value)


# -- basic chat -----------------------------------------------------------------------------------


async def test_persists_chat_history(world: World, fake: FakeLLM) -> None:
    fake.reply("Paris", tokens=Tokens(input=12, output=3))
    chat = await new_chat(world)
    reply = await world.call(chat.ask, "What is the capital of France?")
    assert reply.text == "Paris"
    rows = world.messages()
    assert [(r.role, r.content) for r in rows] == [
        ("user", "What is the capital of France?"),
        ("assistant", "Paris"),
    ]
    assert (rows[1].input_tokens, rows[1].output_tokens) == (12, 3)
    assert all(r.chat_id == chat.id for r in rows)


async def test_associates_chat_and_messages_with_the_model_row(world: World, fake: FakeLLM) -> None:
    fake.reply("Hi")
    chat = world.Chat(model="gpt-4.1-nano")
    await world.add(chat)
    models = world.rows(world.Model)
    assert [(m.model_id, m.provider) for m in models] == [("gpt-4.1-nano", "openai")]
    assert models[0].name == sa_llm.registry.find("gpt-4.1-nano").name
    assert world.rows(world.Chat)[0].model_id == models[0].id


async def test_default_model_from_config(world: World) -> None:
    chat = world.Chat()
    await world.add(chat)
    model = world.rows(world.Model)[0]
    assert model.model_id == "gpt-4.1-nano"
    assert world.rows(world.Chat)[0].model_id == model.id


async def test_assistant_rows_reference_the_chat_model(world: World, fake: FakeLLM) -> None:
    fake.reply("ok")
    chat = await new_chat(world)
    await world.call(chat.ask, "hi")
    model = world.rows(world.Model)[0]
    assert (model.model_id, model.provider) == ("fake-model", "fake")
    assistant = [m for m in world.messages() if m.role == "assistant"]
    assert [m.model_id for m in assistant] == [model.id]


async def test_multi_turn_history_is_sent_in_order(world: World, fake: FakeLLM) -> None:
    fake.reply("one").reply("two")
    chat = await new_chat(world)
    await world.call(chat.ask, "first")
    await world.call(chat.ask, "second")
    sent = fake.requests[1]["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        ("user", "first"),
        ("assistant", "one"),
        ("user", "second"),
    ]
    assert [m.content for m in world.messages()] == ["first", "one", "second", "two"]


# -- system messages ------------------------------------------------------------------------------


async def test_system_messages_replace_by_default(world: World, fake: FakeLLM) -> None:
    chat = await new_chat(world)
    await world.call(chat.with_instructions, "Be brief.")
    await world.call(chat.with_instructions, "Be verbose.")
    system = [m for m in world.messages() if m.role == "system"]
    assert [m.content for m in system] == ["Be verbose."]


async def test_system_messages_append_when_asked(world: World, fake: FakeLLM) -> None:
    chat = await new_chat(world)
    await world.call(chat.with_instructions, "Be brief.")
    await world.call(chat.with_instructions, "Use French.", append=True)
    fake.reply("ok")
    await world.call(chat.ask, "hi")
    system = [m.content for m in world.messages() if m.role == "system"]
    assert system == ["Be brief.", "Use French."]
    sent = fake.requests[0]["messages"]
    assert [m["role"] for m in sent] == ["system", "system", "user"]


async def test_system_message_none_clears(world: World) -> None:
    chat = await new_chat(world)
    await world.call(chat.with_instructions, "Be brief.")
    await world.call(chat.with_instructions, None)
    assert world.messages() == []


async def test_system_messages_are_sent_first(world: World, fake: FakeLLM) -> None:
    fake.reply("one").reply("two")
    chat = await new_chat(world)
    await world.call(chat.ask, "first")
    await world.call(chat.with_instructions, "Answer in French.")
    await world.call(chat.ask, "second")
    assert [m["role"] for m in fake.requests[1]["messages"]] == [
        "system",
        "user",
        "assistant",
        "user",
    ]


# -- tools ----------------------------------------------------------------------------------------


async def test_tool_calls_and_results_are_persisted_and_linked(world: World, fake: FakeLLM) -> None:
    fake.tool_call("calculator", {"expression": "2 + 2"}, id="call_1").reply("It is 4.")
    chat = await new_chat(world)
    assert chat.with_tool(Calculator) is chat
    reply = await world.call(chat.ask, "What is 2 + 2?")
    assert reply.text == "It is 4."
    rows = world.messages()
    assert [r.role for r in rows] == ["user", "assistant", "tool", "assistant"]
    calls = world.rows(world.ToolCall)
    assert [(c.tool_call_id, c.name, c.arguments, c.message_id) for c in calls] == [
        ("call_1", "calculator", {"expression": "2 + 2"}, rows[1].id)
    ]
    assert rows[2].content == "4"
    assert rows[2].tool_call_id == calls[0].id
    # The model saw the result tied to its call.
    tool_message = fake.requests[1]["messages"][-1]
    assert (tool_message["role"], tool_message["tool_call_id"], tool_message["content"]) == (
        "tool",
        "call_1",
        "4",
    )


async def test_tool_links_navigate_both_ways(world: World, fake: FakeLLM) -> None:
    fake.tool_call("calculator", {"expression": "3 * 3"}, id="call_9").reply("9")
    chat = await new_chat(world)
    await world.call(chat.with_tool(Calculator).ask, "3 * 3?")
    from sqlalchemy.orm import Session

    with Session(world.sync_engine) as session:
        call = session.get(world.ToolCall, world.rows(world.ToolCall)[0].id)
        assert call is not None
        assert call.result.content == "9"
        assert call.message.tool_results == [call.result]
        assert call.result.parent_tool_call is call
        assert call.message.is_tool_call and call.result.is_tool_result
        assert call.result.to_llm().tool_call_id == "call_9"
        assert call.message.to_llm().tool_calls[0].arguments == {"expression": "3 * 3"}


async def test_tool_callbacks_run(world: World, fake: FakeLLM) -> None:
    fake.tool_call("calculator", {"expression": "2 + 2"}).reply("4")
    seen: list[Any] = []
    chat = await new_chat(world)
    chat.with_tool(Calculator).on_tool_call(lambda c: seen.append(("call", c.name))).on_tool_result(
        lambda r: seen.append(("result", r))
    )
    await world.call(chat.ask, "2 + 2")
    assert seen == [("call", "calculator"), ("result", "4")]


async def test_halting_tool_stops_the_loop(world: World, fake: FakeLLM) -> None:
    class Stop(sa_llm.Tool):
        """Stops."""

        def execute(self) -> Any:
            return self.halt("stopped here")

    fake.tool_call("stop", {})
    chat = await new_chat(world)
    reply = await world.call(chat.with_tool(Stop).ask, "stop")
    assert reply.role == "tool" and reply.text == "stopped here"
    assert len(fake.requests) == 1
    assert [r.role for r in world.messages()] == ["user", "assistant", "tool"]


# -- failures -------------------------------------------------------------------------------------


async def test_failed_call_leaves_only_the_user_message(world: World, fake: FakeLLM) -> None:
    fake.error(500, "boom")
    chat = await new_chat(world)
    with pytest.raises(sa_llm.ServerError):
        await world.call(chat.ask, "hello?")
    assert [(r.role, r.content) for r in world.messages()] == [("user", "hello?")]
    fake.reply("recovered")
    assert (await world.call(chat.complete)).text == "recovered"
    assert [r.role for r in world.messages()] == ["user", "assistant"]


async def test_broken_stream_removes_the_placeholder(world: World, fake: FakeLLM) -> None:
    fake.broken_stream("a long answer that breaks", after_chunks=2)
    chat = await new_chat(world)
    chunks: list[Any] = []
    with pytest.raises(sa_llm.APIConnectionError):
        await world.call(chat.ask, "go", on_chunk=chunks.append)
    assert chunks  # the placeholder existed: chunks reached the caller
    assert [r.role for r in world.messages()] == ["user"]


async def test_complete_tool_round_is_kept_when_the_next_call_fails(
    world: World, fake: FakeLLM
) -> None:
    fake.tool_call("calculator", {"expression": "2 + 2"}).error(500)
    chat = await new_chat(world)
    with pytest.raises(sa_llm.ServerError):
        await world.call(chat.with_tool(Calculator).ask, "2 + 2?")
    assert [r.role for r in world.messages()] == ["user", "assistant", "tool"]
    fake.reply("4")
    assert (await world.call(chat.with_tool(Calculator).complete)).text == "4"


async def test_incomplete_tool_round_is_removed(world: World, fake: FakeLLM) -> None:
    fake.reply(
        tool_calls=[
            {"name": "calculator", "arguments": {"expression": "1 + 1"}, "id": "a"},
            {"name": "calculator", "arguments": {"expression": "2 + 2"}, "id": "b"},
        ]
    )

    def interrupt(result: Any) -> None:
        raise KeyboardInterrupt  # the worker dies between the two results

    chat = await new_chat(world)
    chat.with_tool(Calculator).on_tool_result(interrupt)
    with pytest.raises(KeyboardInterrupt):
        await world.call(chat.ask, "sums")
    assert [r.role for r in world.messages()] == ["user"]
    assert world.rows(world.ToolCall) == []


async def test_tool_call_message_without_results_is_removed(world: World, fake: FakeLLM) -> None:
    fake.tool_call("calculator", {"expression": "1 + 1"})

    def interrupt(call: Any) -> None:
        raise KeyboardInterrupt

    chat = await new_chat(world)
    chat.with_tool(Calculator).on_tool_call(interrupt)
    with pytest.raises(KeyboardInterrupt):
        await world.call(chat.ask, "sum")
    assert [r.role for r in world.messages()] == ["user"]


async def test_detached_record_raises_a_clear_error(world: World) -> None:
    chat = world.Chat(model="fake-model", provider="fake")
    with pytest.raises(sa_llm.DetachedRecordError, match="session"):
        await world.call(chat.ask, "hi")


async def test_unknown_model_raises_not_found(world: World) -> None:
    chat = world.Chat(model="gpt-4.1-nan")
    with pytest.raises(sa_llm.ModelNotFoundError) as caught:
        await world.add(chat)
    assert "gpt-4.1-nano" in caught.value.suggestions


# -- model registry -------------------------------------------------------------------------------


async def test_with_model_switches_and_persists(world: World, fake: FakeLLM) -> None:
    fake.reply("a").reply("b")
    chat = await new_chat(world)
    await world.call(chat.ask, "one")
    await world.call(chat.with_model, "other-fake", provider="fake")
    await world.call(chat.ask, "two")
    model_ids = {m.id: m.model_id for m in world.rows(world.Model)}
    assert model_ids[world.rows(world.Chat)[0].model_id] == "other-fake"
    assistant = [m for m in world.messages() if m.role == "assistant"]
    assert [model_ids[m.model_id] for m in assistant] == ["fake-model", "other-fake"]
    assert fake.requests[1]["model"] == "other-fake"


async def test_assume_model_exists_creates_a_row(world: World) -> None:
    chat = world.Chat(model="brand-new-model", provider="openrouter", assume_model_exists=True)
    await world.add(chat)
    rows = world.rows(world.Model)
    assert [(r.model_id, r.provider) for r in rows] == [("brand-new-model", "openrouter")]


async def test_assume_model_exists_reuses_existing_rows(world: World) -> None:
    first = world.Chat(model="gpt-4.1-nano")
    second = world.Chat(model="gpt-4.1-nano", provider="openai", assume_model_exists=True)
    await world.add(first, second)
    assert len(world.rows(world.Model)) == 1


async def test_aliases_resolve_per_provider(world: World) -> None:
    alias = "claude-haiku-4-5"
    expected = sa_llm.registry.find(alias, "bedrock").id
    chat = world.Chat(model=alias, provider="bedrock")
    await world.add(chat)
    assert [(r.model_id, r.provider) for r in world.rows(world.Model)] == [(expected, "bedrock")]


# -- structured output and raw content ------------------------------------------------------------


async def test_structured_output_is_stored_as_json(world: World, fake: FakeLLM) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    fake.reply('{"name": "Alice", "age": 28}').reply("plain")
    chat = await new_chat(world)
    reply = await world.call(chat.with_schema(schema).ask, "Alice, 28")
    assert reply.parsed == {"name": "Alice", "age": 28}
    assert json.loads(world.messages()[1].content) == {"name": "Alice", "age": 28}
    assert fake.requests[0]["schema"]["schema"] == schema
    reply = await world.call(chat.with_schema(None).ask, "and now?")
    assert reply.parsed is None and "schema" not in fake.requests[1]


async def test_raw_content_round_trips(world: World, fake: FakeLLM) -> None:
    blocks = [{"type": "text", "text": "long doc", "cache_control": {"type": "ephemeral"}}]
    fake.reply("ok", tokens=Tokens(input=100, output=2, cached=42, cache_creation=7))
    chat = await new_chat(world)
    await world.call(chat.ask, RawContent(blocks))
    user, assistant = world.messages()
    assert (user.content, user.content_raw) == (None, blocks)
    assert (assistant.cached_tokens, assistant.cache_creation_tokens) == (42, 7)
    assert fake.requests[0]["messages"][0]["content"] == blocks
    from sqlalchemy.orm import Session

    with Session(world.sync_engine) as session:
        row = session.get(world.Message, user.id)
        assert row is not None
        rebuilt = row.to_llm()
    assert isinstance(rebuilt.content, RawContent) and rebuilt.content.value == blocks
    assert assistant.tokens == Tokens(input=100, output=2, cached=42, cache_creation=7)


# -- runtime configuration ------------------------------------------------------------------------


async def test_params_headers_and_temperature_reach_the_request(
    world: World, fake: FakeLLM
) -> None:
    fake.reply("ok")
    chat = await new_chat(world)
    chat.with_params(max_tokens=5, extra={"a": 1}).with_headers(X_Trace="abc").with_temperature(0.2)
    await world.call(chat.ask, "hi")
    body = fake.requests[0]
    assert body["params"] == {"max_tokens": 5, "extra": {"a": 1}}
    assert body["temperature"] == 0.2
    assert fake.headers[0]["x-trace"] == "abc"


async def test_user_callbacks_run_with_persistence(world: World, fake: FakeLLM) -> None:
    fake.reply("hello")
    events: list[str] = []
    chat = await new_chat(world)
    chat.on_new_message(lambda: events.append("new")).on_end_message(
        lambda m: events.append(f"end:{m.role}")
    )
    await world.call(chat.ask, "hi")
    assert events == ["end:user", "new", "end:assistant"]
    assert len(world.messages()) == 2


# -- when rows are written ------------------------------------------------------------------------


async def test_placeholder_before_call_without_streaming(world: World, fake: FakeLLM) -> None:
    fake.reply("done")
    chat = await new_chat(world)
    inserted: list[tuple[str, int]] = []

    @event.listens_for(world.Message, "after_insert")
    def on_insert(mapper: Any, connection: Any, target: Any) -> None:
        inserted.append((target.role, len(fake.requests)))

    await world.call(chat.ask, "hi")
    # The empty assistant row exists before the provider is called.
    assert inserted == [("user", 0), ("assistant", 0)]


async def test_placeholder_on_first_chunk_when_streaming(world: World, fake: FakeLLM) -> None:
    fake.reply("a streamed answer", chunks=4)
    chat = await new_chat(world)
    inserted: list[tuple[str, int]] = []
    chunks_at_insert: list[int] = []
    chunks: list[Any] = []

    @event.listens_for(world.Message, "after_insert")
    def on_insert(mapper: Any, connection: Any, target: Any) -> None:
        inserted.append((target.role, len(fake.requests)))
        chunks_at_insert.append(len(chunks))

    def on_chunk(chunk: Any) -> None:
        if not chunks:
            # The placeholder is in the database when the first chunk reaches the caller.
            assert [(m.role, m.content) for m in world.messages()][-1] == ("assistant", "")
        chunks.append(chunk)

    reply = await world.call(chat.ask, "hi", on_chunk=on_chunk)
    assert inserted == [("user", 0), ("assistant", 1)]
    assert chunks_at_insert == [0, 0]
    assert "".join(c.content or "" for c in chunks) == reply.text == "a streamed answer"
    assert [m.content for m in world.messages()] == ["hi", "a streamed answer"]


@pytest.mark.parametrize("streamed", [False, True])
async def test_at_most_three_row_writes_per_ask(
    world: World, fake: FakeLLM, streamed: bool
) -> None:
    fake.reply("x" * 200, chunks=50)
    chat = await new_chat(world)
    counter = StatementCounter(
        world.async_engine.sync_engine if world.async_engine else world.sync_engine
    )
    try:
        kwargs = {"on_chunk": lambda c: None} if streamed else {}
        await world.call(chat.ask, "hi", **kwargs)
        # The user message, the reply's row, the reply; plus the lease's claim and release.
        assert counter.count("INSERT", "UPDATE") <= 3 + 2
        assert counter.count("UPDATE chats") == 2
        assert counter.count("SELECT") <= 3
    finally:
        counter.close()


async def test_history_rebuild_uses_constant_queries(world: World, fake: FakeLLM) -> None:
    chat = await new_chat(world)
    for i in range(5):
        fake.tool_call("calculator", {"expression": f"{i} + 1"}).reply(f"{i + 1}")
        await world.call(chat.with_tool(Calculator).ask, f"{i} + 1?")
    counter = StatementCounter(
        world.async_engine.sync_engine if world.async_engine else world.sync_engine
    )
    try:
        llm = await world.call(chat.to_llm)
        assert len(llm.messages) == 20
        assert counter.count("SELECT") <= 3
    finally:
        counter.close()
    assert [m.role for m in llm.messages[:4]] == ["user", "assistant", "tool", "assistant"]
    assert llm.messages[1].tool_calls[0].name == "calculator"
    assert llm.messages[2].tool_call_id == llm.messages[1].tool_calls[0].id


async def test_cancelled_turn_is_cleaned_up(db_url: str, async_db_url: str) -> None:
    import asyncio

    world = make_world("async", db_url, async_db_url, default_models())
    try:
        with fake_llm(echo=False) as fake:
            chat = await new_chat(world)
            fake.reply("a slow streamed answer", chunks=5)
            started = asyncio.Event()

            async def on_chunk(chunk: Any) -> None:
                started.set()
                await asyncio.sleep(3600)  # the client went away; the task gets cancelled

            task = asyncio.create_task(chat.aask("hi", on_chunk=on_chunk))
            await asyncio.wait_for(started.wait(), 10)
            assert [m.role for m in world.messages()] == ["user", "assistant"]
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert [(m.role, m.content) for m in world.messages()] == [("user", "hi")]
    finally:
        await close_world(world)


def test_abandoned_stream_iterator_is_cleaned_up(db_url: str, async_db_url: str) -> None:
    import asyncio

    world = make_world("sync", db_url, async_db_url, default_models())
    try:
        with fake_llm(echo=False) as fake:
            chat = asyncio.run(new_chat(world))
            fake.reply("one two three four five", chunks=5)
            stream = chat.stream("count")
            next(stream)
            stream.close()  # the caller stopped reading
            assert [(m.role, m.content) for m in world.messages()] == [("user", "count")]
    finally:
        asyncio.run(close_world(world))


async def test_chat_row_stays_readable_after_an_async_turn(async_db_url: str, db_url: str) -> None:
    """Our commits do not expire the caller's row: no MissingGreenlet on ``chat.id`` after."""
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    models = default_models()
    sync_world = make_world("sync", db_url, async_db_url, models)
    engine = create_async_engine(async_db_url)
    try:
        with fake_llm(echo=False) as fake:
            fake.reply("ok")
            async with AsyncSession(engine) as session:  # expire_on_commit=True, the default
                chat = models["Chat"](model="fake-model", provider="fake", title="kept")
                session.add(chat)
                await session.flush()
                chat_id = chat.id
                await chat.aask("hi")
                assert (chat.id, chat.title) == (chat_id, "kept")
    finally:
        await engine.dispose()
        await close_world(sync_world)


def test_a_step_commit_expires_the_other_rows_and_keeps_its_own(
    db_url: str, async_db_url: str, engine: Engine
) -> None:
    """With ``expire_on_commit`` (the default) a turn's commit expires every other row of the
    session, as a plain commit does (a change made elsewhere is read again), and leaves the
    chat row loaded."""
    import asyncio

    from sqlalchemy import inspect, update
    from sqlalchemy.orm import Session

    models = default_models()
    world = make_world("sync", db_url, async_db_url, models)
    Chat = models["Chat"]
    try:
        with fake_llm(echo=False) as fake, Session(engine) as session:
            fake.reply("ok")
            other = Chat(model="fake-model", provider="fake", title="before")
            chat = Chat(model="fake-model", provider="fake", title="kept")
            session.add_all([other, chat])
            session.commit()
            assert (other.title, chat.title) == ("before", "kept")  # loaded again
            with engine.begin() as conn:
                conn.execute(update(Chat).where(Chat.id == other.id).values(title="after"))
            chat.ask("hi")
            assert "title" in inspect(chat).dict
            assert "title" not in inspect(other).dict  # expired by the turn's commit
            assert other.title == "after"
    finally:
        asyncio.run(close_world(world))


async def test_abandoned_async_stream_is_cleaned_up(db_url: str, async_db_url: str) -> None:
    from contextlib import aclosing

    world = make_world("async", db_url, async_db_url, default_models())
    try:
        with fake_llm(echo=False) as fake:
            chat = await new_chat(world)
            fake.reply("one two three four five", chunks=5)
            async with aclosing(chat.astream("count")) as stream:
                async for _chunk in stream:
                    break  # the caller stopped reading
            assert [(m.role, m.content) for m in world.messages()] == [("user", "count")]
    finally:
        await close_world(world)


async def test_a_new_chat_on_a_known_model_does_not_read_the_model_row_again(
    world: World, fake: FakeLLM
) -> None:
    """Creating a chat on a model the table holds reads that row whole (one SELECT), so its
    first turn neither reads it again nor, with its row loaded (``expire_on_commit=False``, as
    the async world), runs a step of its own before the turn's first statement, the claim."""
    await new_chat(world)  # writes the model's row
    chat = await new_chat(world)
    counter = StatementCounter(world.sync_engine_for_async())
    try:
        fake.reply("hi")
        await world.call(chat.ask, "hello")
    finally:
        counter.close()
    sql = [statement for statement in counter.sql if statement != "BEGIN"]  # SQLite savepoints
    assert not [statement for statement in sql if "FROM models" in statement]
    if world.mode == "async":
        assert sql[0].startswith("UPDATE chats SET turn_token=")
    else:  # the commit that saved the chat expired it: the turn reads it first
        assert sql[0].startswith("SELECT chats.")
        assert sql[1].startswith("UPDATE chats SET turn_token=")
    assert (await world.call(chat.to_llm)).model_id == "fake-model"


def test_a_model_class_with_its_own_to_llm_is_read_through_it(
    db_url: str, async_db_url: str
) -> None:
    """A registry class that builds its ``ModelInfo`` itself is still asked for it on the first
    turn of a chat created on a row it already holds (the row is loaded for it)."""
    import asyncio
    import dataclasses

    from sqlalchemy.orm import DeclarativeBase

    from sa_llm.declarative import acts_as_model
    from sa_llm.mixins import ModelMixin
    from sa_llm.registry import ModelInfo

    class Base(DeclarativeBase):
        pass

    @acts_as_model()
    class Model(ModelMixin, Base):
        __tablename__ = "models"

        def to_llm(self) -> ModelInfo:
            return dataclasses.replace(super().to_llm(), context_window=1234)

    world = make_world("sync", db_url, async_db_url, default_models(base=Base, Model=Model))
    try:
        with fake_llm(echo=False) as fake:
            asyncio.run(new_chat(world))  # writes the model's row
            chat = asyncio.run(new_chat(world))
            fake.reply("hi")
            chat.ask("hello")
            assert chat.to_llm().model_info.context_window == 1234
    finally:
        asyncio.run(close_world(world))


async def test_models_only_in_the_table_can_be_chosen(world: World, fake: FakeLLM) -> None:
    """A row loaded into the table (or created earlier) wins over the bundled registry."""
    custom = world.Model(model_id="in-house-model", name="In-house", provider="fake")
    await world.add(custom)
    chat = world.Chat(model="in-house-model")
    await world.add(chat)
    assert world.rows(world.Chat)[0].model_id == custom.id
    await world.call(chat.with_model, "in-house-model", provider="fake")
    fake.reply("from the table")
    assert (await world.call(chat.ask, "hi")).text == "from the table"
    assert fake.requests[0]["model"] == "in-house-model"
