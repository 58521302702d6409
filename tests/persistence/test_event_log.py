"""The chat event log: written in the transaction of each change, gap-free, streamed text in
batches, pruned deltas replaced by the completed message, a reset for pruned positions."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import sa_llm
from persisted import World, default_models, new_chat
from sa_llm.declarative import acts_as_chat, acts_as_event, acts_as_message, acts_as_tool_call
from sa_llm.events import prune_events, read_events, wait_for_events
from sa_llm.mixins import EventMixin, ToolCallMixin
from sa_llm.testing import FakeLLM
from sa_llm.testing.server import FakeOpenAIServer


def event_models() -> dict[str, Any]:
    return default_models("ChatEvent")


@pytest.fixture
def world_models() -> dict[str, Any]:
    return event_models()


@pytest.fixture
def world_settings() -> dict[str, Any]:
    return {"max_retries": 0}


def kinds(world: World, chat_id: Any) -> list[tuple[int, str, str | None]]:
    page = read_events(world.sync_engine, world.Chat, chat_id)
    return [(event.seq, event.kind, event.data.get("role")) for event in page.events]


async def test_a_turn_writes_its_events(world: World, fake: FakeLLM) -> None:
    chat = await new_chat(world)
    fake.reply("Paris", chunks=3)
    await world.call(chat.ask, "capital of France?")
    assert [(kind, role) for _, kind, role in kinds(world, chat.id)] == [
        ("turn.started", None),
        ("message.created", "user"),
        ("message.created", "assistant"),
        ("message.completed", "assistant"),
        ("turn.ended", None),
    ]
    page = read_events(world.sync_engine, world.Chat, chat.id)
    assert [event.seq for event in page.events] == [1, 2, 3, 4, 5] and page.last_seq == 5
    completed = page.events[3]
    assert completed.data["content"] == "Paris" and completed.data["status"] == "complete"
    rows = {str(row.id): row for row in world.messages()}
    assert rows[str(completed.message_id)].content == "Paris"  # the event names the row
    assert page.events[4].data == {"outcome": "complete"}


async def test_streamed_text_is_written_in_batches_and_replaced_on_completion(
    world: World,
) -> None:
    async with FakeOpenAIServer(chunks=60, chunk_interval=0.005) as server:
        sa_llm.configure(
            openai_base_url=server.url, openai_api_key="k", max_retries=0,
            stream_event_interval=0.05,
        )  # fmt: skip
        try:
            chat = world.Chat(model="gpt-4.1-nano")
            await world.add(chat)
            streamed: list[str] = []
            seen: list[list[Any]] = []

            def on_chunk(chunk: Any) -> None:
                streamed.append(chunk.content or "")
                page = read_events(world.sync_engine, world.Chat, chat.id)
                seen.append([e for e in page.events if e.kind == "message.delta"])

            if world.mode == "sync":
                await asyncio.to_thread(chat.ask, "talk", on_chunk=on_chunk)
            else:
                await chat.aask("talk", on_chunk=on_chunk)
        finally:
            sa_llm.reset_config()
    deltas = seen[-1]
    assert 1 <= len(deltas) < len(streamed) / 2  # batches, not one per chunk
    text = "".join(delta.data["text"] for delta in deltas)
    assert [delta.data["offset"] for delta in deltas] == [
        sum(len(d.data["text"]) for d in deltas[:i]) for i in range(len(deltas))
    ]  # contiguous: each delta starts where the last one ended
    assert "".join(streamed).startswith(text)
    # Once complete, the deltas are gone: the completed event carries the whole text.
    page = read_events(world.sync_engine, world.Chat, chat.id)
    assert not [e for e in page.events if e.kind == "message.delta"]
    (completed,) = [e for e in page.events if e.kind == "message.completed"]
    assert completed.data["content"] == "".join(streamed)


async def test_a_failed_turn_says_so(world: World, fake: FakeLLM) -> None:
    chat = await new_chat(world)
    fake.error(500, "the model is on fire")
    with pytest.raises(sa_llm.ServerError):
        await world.call(chat.ask, "hello?")
    page = read_events(world.sync_engine, world.Chat, chat.id)
    tail = [(e.kind, e.data.get("outcome")) for e in page.events][-2:]
    assert tail == [("message.deleted", None), ("turn.ended", "failed")]
    assert "on fire" in page.events[-1].data["error"]
    deleted = page.events[-2].message_id
    created = [e.message_id for e in page.events if e.kind == "message.created"]
    assert deleted in created  # the placeholder a viewer saw is removed


async def test_events_of_other_writers_share_one_gap_free_sequence(
    world: World, fake: FakeLLM
) -> None:
    if world.mode == "async":
        pytest.skip("threads with sync sessions")
    chat = await new_chat(world)
    chat_id = chat.id
    await world.commit()

    def add_messages(count: int) -> None:
        engine = create_engine(world.sync_engine.url)
        with Session(engine) as session:
            row = session.get(world.Chat, chat_id)
            for index in range(count):
                row.create_user_message(f"note {index}")  # type: ignore[union-attr]
        engine.dispose()

    threads = [threading.Thread(target=add_messages, args=(10,)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    page = read_events(world.sync_engine, world.Chat, chat_id)
    assert [event.seq for event in page.events] == list(range(1, 31))


async def test_a_pruned_position_asks_for_a_reset(world: World, fake: FakeLLM) -> None:
    chat = await new_chat(world)
    fake.reply("one").reply("two")
    await world.call(chat.ask, "first")
    middle = read_events(world.sync_engine, world.Chat, chat.id).last_seq
    await world.call(chat.ask, "second")
    await world.commit()
    with Session(world.sync_engine) as session:
        pruned = prune_events(
            session, world.Chat, older_than=datetime.now(timezone.utc) + timedelta(seconds=1)
        )
    assert pruned > 0
    page = read_events(world.sync_engine, world.Chat, chat.id, after=2)
    assert page.reset and page.events == [] and page.last_seq > middle
    fresh = read_events(world.sync_engine, world.Chat, chat.id, after=page.last_seq)
    assert not fresh.reset and fresh.events == []


async def test_a_viewer_is_woken_by_a_write(world: World, fake: FakeLLM) -> None:
    chat = await new_chat(world)
    chat_id = chat.id
    await world.commit()
    woken: list[bool] = []
    waiting = threading.Event()

    def viewer() -> None:
        waiting.set()
        woken.append(wait_for_events(world.sync_engine, world.Chat, chat_id, timeout=30))

    thread = threading.Thread(target=viewer)
    thread.start()
    waiting.wait()
    await asyncio.sleep(0.05)
    await world.call(chat.create_user_message, "wake up")
    thread.join(timeout=30)
    assert woken == [True]


def test_an_event_class_without_event_seq_is_refused() -> None:
    class Base(DeclarativeBase):
        pass

    from sa_llm.mixins import LegacyMessageMixin

    @acts_as_chat(model=None)
    class Chat(Base):
        __tablename__ = "chats"
        id: Mapped[int] = mapped_column(primary_key=True)
        model_id: Mapped[str | None] = mapped_column(default=None)

    @acts_as_message(model=None)
    class Message(LegacyMessageMixin, Base):
        __tablename__ = "messages"

    @acts_as_tool_call()
    class ToolCall(ToolCallMixin, Base):
        __tablename__ = "tool_calls"

    @acts_as_event()
    class ChatEvent(EventMixin, Base):
        __tablename__ = "chat_events"

    from sa_llm.declarative import chat_schema

    with pytest.raises(sa_llm.ConfigurationError, match="event_seq"):
        chat_schema(Chat)
