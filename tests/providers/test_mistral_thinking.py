"""Mistral's thinking: read from its ``thinking`` content parts and sent back the same way.

Mistral's reasoning models answer with ``content`` as a list of parts, a ``thinking`` part (its
own list of text pieces) before the ``text`` part, whole and streamed. The recorded hybrid
reasoning exchanges are replayed: the thinking becomes ``message.thinking``, the text the reply,
and the next request carries the reply as Mistral returned it (a ``thinking`` part, then the
text), also after a persisted chat is loaded again from its rows (``thinking_text``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

import sa_llm
from persisted import World
from sa_llm.testing import Replay

MISTRAL = Path(__file__).parents[1] / "fixtures" / "wire" / "mistral"
WHOLE = "chat_mistral_hybrid_reasoning_separates_thinking_from_final_content.json"
STREAMED = "chat_mistral_hybrid_reasoning_streams_thinking_separately_from_content.json"
URL = "https://api.mistral.ai/v1/chat/completions"
FOLLOW_UP = "And 13 * 13?"


def recorded(name: str) -> dict[str, Any]:
    return dict(json.loads((MISTRAL / name).read_text(encoding="utf-8")))


def recorded_thinking(recording: dict[str, Any]) -> str:
    """The thinking text of the recorded reply, read straight from the wire."""
    response = recording["interactions"][0]["response"]
    if "event-stream" not in response["headers"]["content-type"]:
        content = json.loads(response["body"])["choices"][0]["message"]["content"]
        parts = [content]
    else:
        parts = [
            json.loads(line[5:])["choices"][0]["delta"].get("content")
            for line in response["body"].splitlines()
            if line.startswith("data:")
            and line.strip() != "data: [DONE]"
            and json.loads(line[5:])["choices"]
        ]
    return "".join(
        piece["text"]
        for content in parts
        if isinstance(content, list)
        for part in content
        if part["type"] == "thinking"
        for piece in part["thinking"]
    )


def answer(text: str, *, stream: bool, message: dict[str, Any] | None = None) -> dict[str, Any]:
    """A recorded Mistral reply (whole or streamed) with ``text``, or with ``message``."""
    message = message or {"role": "assistant", "content": text}
    finish = "tool_calls" if message.get("tool_calls") else "stop"
    usage = {"prompt_tokens": 80, "completion_tokens": 3, "total_tokens": 83}
    if stream:
        delta = {k: v for k, v in message.items() if k != "role"}
        if delta.get("tool_calls"):
            delta["tool_calls"] = [{"index": i, **c} for i, c in enumerate(delta["tool_calls"])]
        events = [
            {"id": "x", "object": "chat.completion.chunk", "model": "mistral-small-latest",
             "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
            {"id": "x", "object": "chat.completion.chunk", "model": "mistral-small-latest",
             "choices": [{"index": 0, "delta": {}, "finish_reason": finish}], "usage": usage},
        ]  # fmt: skip
        body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        content_type = "text/event-stream"
    else:
        body = json.dumps(
            {"id": "x", "object": "chat.completion", "model": "mistral-small-latest",
             "choices": [{"index": 0, "message": message, "finish_reason": finish}],
             "usage": usage}
        )  # fmt: skip
        content_type = "application/json"
    return {
        "request": {"method": "POST", "url": URL},
        "response": {"status": 200, "headers": {"content-type": content_type}, "body": body},
    }


def with_follow_up(name: str) -> tuple[dict[str, Any], bool]:
    recording = copy.deepcopy(recorded(name))
    stream = name == STREAMED
    recording["interactions"].append(answer("169", stream=stream))
    return recording, stream


def thinking_part(text: str) -> dict[str, Any]:
    return {"type": "thinking", "thinking": [{"type": "text", "text": text}], "closed": True}


@pytest.mark.parametrize("name", [WHOLE, STREAMED], ids=["whole", "streamed"])
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_thinking_is_read_and_sent_back_as_mistral_returned_it(mode: str, name: str) -> None:
    recording, stream = with_follow_up(name)
    thinking = recorded_thinking(recording)
    assert thinking.startswith("The user is asking for the product of 12")
    replay = Replay(recording)
    chat = replay.context().chat("mistral-small-latest").with_thinking(effort="high")
    chunks: list[sa_llm.Chunk] = []
    kwargs: dict[str, Any] = {"on_chunk": chunks.append} if stream else {}
    prompt = "What is 12 * 12? Answer with just the number."

    reply = chat.ask(prompt, **kwargs) if mode == "sync" else await chat.aask(prompt, **kwargs)

    assert reply.text == "144"
    assert reply.thinking is not None and reply.thinking.text == thinking
    if stream:
        assert "".join(c.thinking or "" for c in chunks) == thinking
        assert "".join(c.content or "" for c in chunks) == "144"

    follow = (
        chat.ask(FOLLOW_UP, **kwargs) if mode == "sync" else await chat.aask(FOLLOW_UP, **kwargs)
    )

    assert follow.text == "169"
    sent = replay.seen[1].body["messages"]
    assert sent == [
        {"role": "user", "content": prompt},
        {
            "role": "assistant",
            "content": [thinking_part(thinking), {"type": "text", "text": "144"}],
        },
        {"role": "user", "content": FOLLOW_UP},
    ]
    replay.assert_all_used()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_thinking_before_a_tool_call_goes_back_with_the_call(stream: bool) -> None:
    """A reasoning model that called a tool gets its thinking back with the tool's result."""
    call = {
        "id": "D681PevKs",
        "type": "function",
        "function": {"name": "multiply", "arguments": '{"a": 12, "b": 12}'},
    }
    thought = [{"type": "thinking", "thinking": [{"type": "text", "text": "Use the tool."}]}]
    recording = {
        "interactions": [
            answer(
                "",
                stream=stream,
                message={"role": "assistant", "content": thought, "tool_calls": [call]},
            ),
            answer("144", stream=stream),
        ]
    }
    replay = Replay(recording)

    def multiply(a: int, b: int) -> int:
        """Multiplies two integers."""
        return a * b

    chat = replay.context().chat("mistral-small-latest").with_tool(multiply)
    reply = chat.ask("12 * 12?", on_chunk=(lambda c: None) if stream else None)

    assert reply.text == "144"
    assistant = replay.seen[1].body["messages"][1]
    assert assistant == {
        "role": "assistant",
        "content": [thinking_part("Use the tool.")],
        "tool_calls": [call],
    }
    assert replay.seen[1].body["messages"][2] == {
        "role": "tool",
        "tool_call_id": "D681PevKs",
        "content": "144",
    }


def test_a_reply_without_thinking_is_sent_as_plain_text() -> None:
    chat = sa_llm.context(mistral_api_key="k").chat("mistral-small-latest")
    chat.add_message(sa_llm.Message(role="user", content="Hi"))
    chat.add_message(sa_llm.Message(role="assistant", content="Hello!"))
    body = chat.provider.build_request(chat.chat_request()).json
    assert body["messages"][1] == {"role": "assistant", "content": "Hello!"}


# -- persisted chats ---------------------------------------------------------------------------


async def reopened(world: World, chat: Any) -> Any:
    """The chat row loaded again in a new session: its history comes from the rows alone."""
    chat_id = chat.id
    if isinstance(world.session, AsyncSession):
        await world.session.close()
        assert world.async_engine is not None
        world.session = AsyncSession(world.async_engine, expire_on_commit=False)
        return await world.session.get(world.Chat, chat_id)
    world.session.close()
    world.session = Session(world.sync_engine)
    return world.session.get(world.Chat, chat_id)


@pytest.mark.parametrize("name", [WHOLE, STREAMED], ids=["whole", "streamed"])
async def test_a_persisted_chat_keeps_the_thinking_and_sends_it_back(
    world: World, name: str
) -> None:
    recording, stream = with_follow_up(name)
    thinking = recorded_thinking(recording)
    replay = Replay(recording)
    ctx = replay.context()
    chat = world.Chat(model="mistral-small-latest", context=ctx)
    await world.add(chat)
    kwargs: dict[str, Any] = {"on_chunk": lambda chunk: None} if stream else {}

    chat.with_thinking(effort="high")
    await world.call(chat.ask, "What is 12 * 12? Answer with just the number.", **kwargs)

    rows = world.messages()
    assert [(r.role, r.content, r.thinking_text) for r in rows] == [
        ("user", "What is 12 * 12? Answer with just the number.", None),
        ("assistant", "144", thinking),
    ]

    again = await reopened(world, chat)
    again.with_context(ctx)
    await world.call(again.ask, FOLLOW_UP, **kwargs)

    assert replay.seen[1].body["messages"][1] == {
        "role": "assistant",
        "content": [thinking_part(thinking), {"type": "text", "text": "144"}],
    }
    assert [r.content for r in world.messages()][-1] == "169"
    replay.assert_all_used()
