"""Concurrent turns on one chat never interleave: the second waits, or raises ChatBusyError.

Interleaved turns would each send a history missing the other's messages. What a user sees:
the messages of the chat alternate user/assistant, each request carries the whole history so
far, and with ``concurrent_turns="raise"`` the refused turn leaves no trace.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest

import sa_llm
from wire_responses import responses_reply


def user_texts(request: httpx.Request) -> list[str]:
    """The text of every message the request sent (assistant replies are lists of parts)."""
    texts = []
    for item in json.loads(request.content)["input"]:
        content = item["content"]
        texts.append(content if isinstance(content, str) else content[0]["text"])
    return texts


def answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=responses_reply(f"re: {user_texts(request)[-1]}"))


def alternates(chat: sa_llm.Chat) -> bool:
    """user, assistant, user, assistant, ... and every reply answers the message before it."""
    pairs = list(zip(chat.messages[::2], chat.messages[1::2], strict=True))
    return all(
        u.role == "user" and a.role == "assistant" and a.text == f"re: {u.text}" for u, a in pairs
    )


@dataclass
class Held:
    """A chat whose first turn ("one") is running, and the histories its requests sent."""

    chat: sa_llm.Chat
    seen: list[list[str]]


@contextmanager
def first_turn_held(**settings: Any) -> Iterator[Held]:
    """A chat (``settings`` in its context) whose first turn has sent its request, which the
    server holds until the block ends; the turn has ended when the block has."""
    entered, release = threading.Event(), threading.Event()
    seen: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(user_texts(request))
        entered.set()
        release.wait(5)
        return answer(request)

    client = httpx.Client(transport=httpx.MockTransport(handler))
    chat = sa_llm.context(openai_api_key="k", http_client=client, **settings).chat("gpt-4.1-nano")
    first = threading.Thread(target=chat.ask, args=("one",))
    first.start()
    assert entered.wait(5)
    try:
        yield Held(chat, seen)
    finally:
        release.set()
        first.join(5)


def test_a_second_sync_turn_waits_for_the_first() -> None:
    with first_turn_held() as held:
        second = threading.Thread(target=held.chat.ask, args=("two",))
        second.start()
        time.sleep(0.1)
        assert len(held.seen) == 1  # the second turn has not sent anything yet
        assert [m.text for m in held.chat.messages] == ["one"]  # nor added its message
    second.join(5)
    assert held.seen == [["one"], ["one", "re: one", "two"]]
    assert alternates(held.chat)


def test_raise_mode_refuses_a_second_turn_and_leaves_no_trace() -> None:
    with first_turn_held(concurrent_turns="raise") as held, pytest.raises(sa_llm.ChatBusyError):
        held.chat.ask("two")
    assert [m.text for m in held.chat.messages] == ["one", "re: one"]
    held.chat.ask("three")  # free again once the first turn ended
    assert alternates(held.chat)


def test_waiting_gives_up_after_the_timeout() -> None:
    with first_turn_held(turn_wait_timeout=0.05) as held:
        started = time.monotonic()
        with pytest.raises(sa_llm.ChatBusyError, match="turn_wait_timeout"):
            held.chat.ask("two")
        assert 0.04 <= time.monotonic() - started < 2


async def test_fifty_concurrent_async_turns_run_one_after_another() -> None:
    sizes: list[int] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        sizes.append(len(user_texts(request)))
        await anyio.sleep(0.001)
        return answer(request)

    ctx = sa_llm.context(
        openai_api_key="k",
        async_http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
    )
    chat = ctx.chat("gpt-4.1-nano")
    async with anyio.create_task_group() as group:
        for n in range(50):
            group.start_soon(chat.aask, f"q{n}")
    assert len(chat.messages) == 100
    assert alternates(chat)
    assert sizes == list(range(1, 100, 2))  # each request carried every earlier turn


async def test_async_raise_mode() -> None:
    started = anyio.Event()
    finish = anyio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        started.set()
        await finish.wait()
        return answer(request)

    ctx = sa_llm.context(
        openai_api_key="k",
        concurrent_turns="raise",
        async_http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
    )
    chat = ctx.chat("gpt-4.1-nano")
    async with anyio.create_task_group() as group:
        group.start_soon(chat.aask, "one")
        await started.wait()
        with pytest.raises(sa_llm.ChatBusyError):
            await chat.aask("two")
        finish.set()
    assert [m.text for m in chat.messages] == ["one", "re: one"]


def test_a_failed_turn_frees_the_chat() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return httpx.Response(500, json={"error": {"message": "boom"}})
        return answer(request)

    ctx = sa_llm.context(
        openai_api_key="k",
        max_retries=0,
        concurrent_turns="raise",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    chat = ctx.chat("gpt-4.1-nano")
    with pytest.raises(sa_llm.ServerError):
        chat.ask("one")
    assert chat.ask("two").text == "re: two"


def test_different_chats_do_not_wait_for_each_other() -> None:
    entered, release = threading.Event(), threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        if user_texts(request)[-1] == "slow":
            entered.set()
            release.wait(5)
        return answer(request)

    ctx = sa_llm.context(
        openai_api_key="k",
        concurrent_turns="raise",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    slow, fast = ctx.chat("gpt-4.1-nano"), ctx.chat("gpt-4.1-nano")
    worker = threading.Thread(target=slow.ask, args=("slow",))
    worker.start()
    assert entered.wait(5)
    assert fast.ask("fast").text == "re: fast"
    release.set()
    worker.join(5)
