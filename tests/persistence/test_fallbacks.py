"""Model fallbacks through the fault-injecting server: the first provider (Anthropic) fails,
the second (OpenAI Responses) answers from recorded traffic. SQLite and PostgreSQL, sync and
async, streamed and not. Each attempt is its own message (the failed one ``failed`` with the
model that failed), the rest of the turn stays on the fallback model, the next turn starts on
the chat's own model again; in-band stream errors fall back too."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

import sa_llm
from faults_support import SPECS, first_content_event, reply_text, tool_names
from persisted import World
from sa_llm.fallbacks import FallbackEvent
from sa_llm.testing.faults import Answer, FaultInjectingServer
from sa_llm.testing.server import ErrorEvent, Failure

PRIMARY = SPECS["anthropic"]
BACKUP = SPECS["responses"]
CLAUDE = sa_llm.registry.find("claude-haiku-4-5").id  # the id the alias resolves to


@pytest.fixture(params=[False, True], ids=["whole", "streamed"])
def stream(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def servers() -> Iterator[tuple[FaultInjectingServer, FaultInjectingServer]]:
    with ExitStack() as stack:
        primary = stack.enter_context(FaultInjectingServer("anthropic"))
        backup = stack.enter_context(FaultInjectingServer("responses"))
        yield primary, backup


def context(servers: tuple[FaultInjectingServer, FaultInjectingServer]) -> sa_llm.Context:
    primary, backup = servers
    return sa_llm.context(
        **PRIMARY.settings(primary), **BACKUP.settings(backup), max_retries=1, retry_interval=0
    )


async def ask(world: World, chat: Any, question: str, stream: bool) -> str | None:
    """Ask (streaming through the iterator form when ``stream``); the final reply's text."""
    if not stream:
        return (await world.call(chat.ask, question)).text  # type: ignore[no-any-return]
    if world.mode == "async":
        chunks: AsyncIterator[sa_llm.Chunk] = chat.astream(question)
        async for _ in chunks:
            pass
    else:
        for _ in chat.stream(question):
            pass
    return str(world.messages()[-1].content)


def model_names(world: World) -> dict[Any, str]:
    return {row.id: row.model_id for row in world.rows(world.Model)}


async def test_a_503_moves_the_turn_to_the_next_provider(
    world: World, servers: tuple[FaultInjectingServer, FaultInjectingServer], stream: bool
) -> None:
    primary, backup = servers
    failing = PRIMARY.replies(stream).text
    primary.queue(Answer(failing, Failure(503)), Answer(failing, Failure(503)))
    backup.queue(Answer(BACKUP.replies(stream).text))
    chat = world.Chat(model="claude-haiku-4-5", context=context(servers))
    await world.add(chat)
    events: list[FallbackEvent] = []
    chat.with_fallbacks("gpt-5-nano").on_fallback(events.append)

    text = await ask(world, chat, "Count to 3", stream)

    expected = reply_text("responses", BACKUP.replies(stream).text)
    assert text == expected
    assert (primary.request_count, backup.request_count) == (2, 1)  # retried, then moved on
    names = model_names(world)
    rows = world.messages()
    assert [(r.role, r.status, names.get(r.model_id)) for r in rows] == [
        ("user", "complete", None),
        ("assistant", "failed", CLAUDE),
        ("assistant", "complete", "gpt-5-nano"),
    ]
    assert rows[1].content == "" and rows[2].content == expected
    assert [(e.from_model, e.to_model, e.attempt, e.streaming) for e in events] == [
        (CLAUDE, "gpt-5-nano", 1, stream)
    ]
    assert isinstance(events[0].error, sa_llm.OverloadedError)
    # The backup got the conversation without the failed attempt.
    (request,) = [r.body for r in backup.requests]
    assert [item.get("role") for item in request["input"]] == ["user"]


async def test_the_next_turn_starts_on_the_chats_own_model(
    world: World, servers: tuple[FaultInjectingServer, FaultInjectingServer]
) -> None:
    primary, backup = servers
    failing = PRIMARY.whole.text
    primary.queue(Answer(failing, Failure(529)), Answer(failing, Failure(529)))
    primary.queue(Answer(PRIMARY.whole.text))
    backup.queue(Answer(BACKUP.whole.text))
    chat = world.Chat(model="claude-haiku-4-5", context=context(servers))
    await world.add(chat)
    chat.with_fallbacks("openai/gpt-5-nano")
    await world.call(chat.ask, "first")
    second = await world.call(chat.ask, "second")
    assert second.text == reply_text("anthropic", PRIMARY.whole.text)
    assert (primary.request_count, backup.request_count) == (3, 1)
    names = model_names(world)
    assert [names.get(r.model_id) for r in world.messages() if r.status == "complete"][-1] == (
        CLAUDE
    )


async def test_tool_rounds_continue_on_the_fallback_model(
    world: World, servers: tuple[FaultInjectingServer, FaultInjectingServer], stream: bool
) -> None:
    primary, backup = servers
    failing = PRIMARY.replies(stream).text
    primary.queue(Answer(failing, Failure(503)), Answer(failing, Failure(503)))
    backup.queue(Answer(BACKUP.replies(stream).tool_call), Answer(BACKUP.replies(stream).text))
    (name,) = tool_names("responses", BACKUP.replies(stream).tool_call)

    def best_language() -> str:
        return "Ruby"

    chat = world.Chat(model="claude-haiku-4-5", context=context(servers))
    await world.add(chat)
    chat.with_tool(sa_llm.as_tool(best_language, name=name)).with_fallbacks("gpt-5-nano")
    await ask(world, chat, "What is the best language to learn?", stream)
    assert (primary.request_count, backup.request_count) == (2, 2)
    names = model_names(world)
    assert [(r.role, r.status, names.get(r.model_id)) for r in world.messages()] == [
        ("user", "complete", None),
        ("assistant", "failed", CLAUDE),
        ("assistant", "complete", "gpt-5-nano"),
        ("tool", "complete", None),
        ("assistant", "complete", "gpt-5-nano"),
    ]


async def test_an_error_event_mid_stream_starts_a_new_message(
    world: World, servers: tuple[FaultInjectingServer, FaultInjectingServer]
) -> None:
    primary, backup = servers
    streamed = PRIMARY.streamed.text
    after = first_content_event("anthropic", streamed) + 1  # text was handed on already
    overloaded = ErrorEvent(after=after, code="overloaded", message="Overloaded")
    primary.queue(Answer(streamed, overloaded))
    backup.queue(Answer(BACKUP.streamed.text))
    chat = world.Chat(model="claude-haiku-4-5", context=context(servers))
    await world.add(chat)
    started: list[str] = []
    events: list[FallbackEvent] = []
    chat.with_fallbacks("gpt-5-nano").on_fallback(events.append)
    chat.on_new_message(lambda: started.append("new"))
    chat.with_partial_output(True)
    await ask(world, chat, "Count to 3", stream=True)
    assert primary.request_count == 1  # an in-band error is not retried: it falls back
    assert len(started) == 2 and events[0].chunks_delivered
    rows = world.messages()
    assert [(r.role, r.status) for r in rows] == [
        ("user", "complete"),
        ("assistant", "failed"),
        ("assistant", "complete"),
    ]
    # The partial text is kept (keep_partial_output) on the failed row, never concatenated.
    assert rows[1].content and reply_text("anthropic", streamed).startswith(rows[1].content)
    assert rows[2].content == reply_text("responses", BACKUP.streamed.text)


async def test_errors_that_are_not_triggers_do_not_fall_back(
    world: World, servers: tuple[FaultInjectingServer, FaultInjectingServer]
) -> None:
    primary, backup = servers
    primary.queue(Answer(PRIMARY.whole.text, Failure(400)))
    chat = world.Chat(model="claude-haiku-4-5", context=context(servers))
    await world.add(chat)
    chat.with_fallbacks("gpt-5-nano")
    with pytest.raises(sa_llm.BadRequestError):
        await world.call(chat.ask, "hi")
    assert backup.request_count == 0
    assert [r.role for r in world.messages()] == ["user"]


def test_fallback_specs_resolve_now() -> None:
    chat = sa_llm.chat("gpt-4.1-nano").with_fallbacks("bedrock/claude-haiku-4-5", "gpt-5-nano")
    assert [m.provider for m in chat.fallbacks] == ["bedrock", "openai"]
    assert "claude-haiku-4-5" in chat.fallbacks[0].id
    with pytest.raises(sa_llm.ModelNotFoundError):
        chat.with_fallbacks("no-such-model-xyz")
    assert chat.with_fallbacks().fallbacks == ()
