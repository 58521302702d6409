"""Runtime instructions: ``with_instructions(..., persist=False)`` applies to this row instance's
turns and is never stored; the order of stored and runtime instructions in a request is fixed
(stored first unless replaced, then runtime in the order given). SQLite and PostgreSQL, sync
and async."""

from __future__ import annotations

from typing import Any

import pytest

from persisted import World, new_chat
from sa_llm.testing import FakeLLM


@pytest.fixture
def world_settings() -> dict[str, Any]:
    return {"max_retries": 0}


def sent(fake: FakeLLM, index: int = -1) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in fake.requests[index]["messages"]]


async def test_runtime_instructions_are_sent_and_never_stored(world: World, fake: FakeLLM) -> None:
    fake.reply("one").reply("two")
    chat = await new_chat(world)
    await world.call(chat.with_instructions, "You are the billing agent.", persist=False)
    await world.call(chat.ask, "first")
    await world.call(chat.ask, "second")
    assert sent(fake, 0) == [("system", "You are the billing agent."), ("user", "first")]
    assert sent(fake, 1)[0] == ("system", "You are the billing agent.")
    assert [m.role for m in world.messages()] == ["user", "assistant", "user", "assistant"]


async def test_appended_runtime_instructions_follow_the_stored_ones(
    world: World, fake: FakeLLM
) -> None:
    fake.reply("ok")
    chat = await new_chat(world)
    await world.call(chat.with_instructions, "Stored rule.")
    await world.call(chat.with_instructions, "Runtime one.", persist=False, append=True)
    await world.call(chat.with_instructions, "Runtime two.", persist=False, append=True)
    await world.call(chat.ask, "hi")
    assert sent(fake) == [
        ("system", "Stored rule."),
        ("system", "Runtime one."),
        ("system", "Runtime two."),
        ("user", "hi"),
    ]
    assert [m.content for m in world.messages() if m.role == "system"] == ["Stored rule."]


async def test_a_replacing_runtime_instruction_hides_the_stored_ones_without_deleting_them(
    world: World, fake: FakeLLM
) -> None:
    fake.reply("ok").reply("again")
    chat = await new_chat(world)
    await world.call(chat.with_instructions, "Stored rule.")
    await world.call(chat.ask, "before")
    await world.call(chat.with_instructions, "Code rule.", persist=False)
    await world.call(chat.ask, "after")
    assert sent(fake) == [
        ("system", "Code rule."),
        ("user", "before"),
        ("assistant", "ok"),
        ("user", "after"),
    ]
    assert [m.content for m in world.messages() if m.role == "system"] == ["Stored rule."]


async def test_none_forgets_runtime_instructions(world: World, fake: FakeLLM) -> None:
    fake.reply("ok")
    chat = await new_chat(world)
    await world.call(chat.with_instructions, "Stored rule.")
    await world.call(chat.with_instructions, "Code rule.", persist=False)
    await world.call(chat.with_instructions, None, persist=False)
    await world.call(chat.ask, "hi")
    assert sent(fake) == [("system", "Stored rule."), ("user", "hi")]
    assert [m.content for m in world.messages() if m.role == "system"] == ["Stored rule."]


async def test_runtime_instructions_survive_an_expired_row_but_not_a_fresh_load(
    world: World, fake: FakeLLM
) -> None:
    fake.reply("one").reply("two")
    chat = await new_chat(world)
    await world.call(chat.with_instructions, "Code rule.", persist=False)
    world.session.expire_all()
    await world.call(chat.ask, "first")
    assert sent(fake)[0] == ("system", "Code rule.")
    # Another instance of the same row (another request, another process) starts without it.
    key = chat.id
    world.session.expunge(chat)
    if world.mode == "async":
        fresh = await world.session.get(world.Chat, key)
    else:
        fresh = world.session.get(world.Chat, key)
    await world.call(fresh.ask, "second")
    assert [role for role, _ in sent(fake)] == ["user", "assistant", "user"]


def test_to_llm_requests_carry_runtime_instructions(session: Any) -> None:
    from persisted import default_models

    models = default_models()
    models["Base"].metadata.create_all(session.get_bind())
    chat = models["Chat"](model="fake-model", provider="fake")
    session.add(chat)
    session.commit()
    chat.with_instructions("Stored rule.")
    chat.with_instructions("Runtime rule.", persist=False, append=True)
    request = chat.to_llm().chat_request()
    assert [(m.role, m.text) for m in request.messages] == [
        ("system", "Stored rule."),
        ("system", "Runtime rule."),
    ]
