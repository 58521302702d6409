"""RubyLLM 1.16 record-API behaviours that sa_llm lacked: tool calls of a round run concurrently
(a configured default and ``with_tools(..., concurrency=N)``) with their results persisted in
call order; callbacks registered on the object ``to_llm()`` returns fire on the record's own
turns; registry rows answer ``type`` and ``label``; image output (Gemini inline image parts) is
returned on the reply and stored as attachment rows of the assistant message. SQLite and
PostgreSQL, sync and async."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import pytest

import sa_llm
from persisted import World, default_models, new_chat
from sa_llm import registry
from sa_llm.declarative import acts_as_attachment
from sa_llm.mixins import AttachmentMixin
from sa_llm.testing import FakeLLM, Replay


def parity_models() -> dict[str, Any]:
    models = default_models()
    Base: Any = models["Base"]

    @acts_as_attachment()
    class Attachment(AttachmentMixin, Base):  # type: ignore[misc]
        __tablename__ = "attachments"

    models["Attachment"] = Attachment
    return models


@pytest.fixture
def world_models() -> dict[str, Any]:
    return parity_models()


@pytest.fixture
def world_settings(tmp_path: Path) -> dict[str, Any]:
    return {"max_retries": 0, "attachment_storage": tmp_path / "blobs"}


# -- tool concurrency ------------------------------------------------------------------------------


class Rendezvous:
    """Calls that can only finish when they run at the same time, the first one last."""

    def __init__(self, parties: int) -> None:
        self.barrier = threading.Barrier(parties, timeout=30)
        self.others_done = threading.Event()
        self.finished: list[int] = []

    def run(self, n: int) -> str:
        self.barrier.wait()  # breaks (an error result) unless every call of the round runs now
        if n == 1:
            self.others_done.wait(timeout=30)
        self.finished.append(n)
        if n != 1 and len(self.finished) == self.barrier.parties - 1:
            self.others_done.set()
        return f"page {n}"


def round_of_calls(fake: FakeLLM, count: int) -> None:
    calls = [{"id": f"c{n}", "name": "fetch", "arguments": {"n": n}} for n in range(1, count + 1)]
    fake.reply(tool_calls=calls).reply("All fetched.")


async def check_concurrent_round(
    world: World, fake: FakeLLM, chat: Any, meeting: Rendezvous
) -> None:
    await world.call(chat.ask, "Fetch them")
    count = meeting.barrier.parties
    assert meeting.finished[-1] == 1  # the first call finished last ...
    rows = world.messages()
    results = [r for r in world.messages() if r.role == "tool"]
    calls = {c.id: c.tool_call_id for c in world.rows(world.ToolCall)}
    # ... and the results are stored, and sent, in call order all the same.
    assert [calls[r.tool_call_id] for r in results] == [f"c{n}" for n in range(1, count + 1)]
    assert [r.content for r in results] == [f"page {n}" for n in range(1, count + 1)]
    sent = fake.requests[-1]["messages"]
    assert [m["tool_call_id"] for m in sent if m["role"] == "tool"] == [
        f"c{n}" for n in range(1, count + 1)
    ]
    assert rows[-1].content == "All fetched."


async def test_with_tools_concurrency_runs_a_round_at_once(world: World, fake: FakeLLM) -> None:
    meeting = Rendezvous(2)

    def fetch(n: int) -> str:
        """Fetches page n."""
        return meeting.run(n)

    chat = await new_chat(world)
    chat.with_tools(fetch, concurrency=2)
    round_of_calls(fake, 2)
    await check_concurrent_round(world, fake, chat, meeting)


@pytest.mark.parametrize("world_settings", [{"max_retries": 0, "tool_concurrency": 3}])
async def test_the_configured_default_concurrency(world: World, fake: FakeLLM) -> None:
    meeting = Rendezvous(3)

    def fetch(n: int) -> str:
        """Fetches page n."""
        return meeting.run(n)

    chat = await new_chat(world)
    chat.with_tool(fetch)
    round_of_calls(fake, 3)
    await check_concurrent_round(world, fake, chat, meeting)


def test_concurrency_must_be_a_positive_int() -> None:
    chat = sa_llm.chat("fake-model", provider="fake")
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(sa_llm.ConfigurationError):
            chat.with_tools(concurrency=bad)  # type: ignore[arg-type]


# -- callbacks on to_llm() -------------------------------------------------------------------------


async def test_callbacks_registered_on_to_llm_fire_on_record_turns(
    world: World, fake: FakeLLM
) -> None:
    chat = await new_chat(world)
    seen: list[str] = []
    llm = await world.call(chat.to_llm)
    llm.on_new_message(lambda: seen.append("new"))
    llm.on_end_message(lambda message: seen.append(message.role))
    fake.reply("Hello!")
    await world.call(chat.ask, "Hi")
    assert seen == ["user", "new", "assistant"]
    assert [(m.role, m.content) for m in world.messages()] == [
        ("user", "Hi"),
        ("assistant", "Hello!"),
    ]


# -- registry rows: type and label -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "kind", "label"),
    [
        ("gpt-4.1-nano", "chat", "GPT-4.1 nano (OpenAI)"),
        ("text-embedding-3-small", "embedding", "text-embedding-3-small (OpenAI)"),
        ("whisper-1", "transcription", "whisper-1 (OpenAI)"),
        ("tts-1", "audio", "tts-1 (OpenAI)"),
        ("claude-haiku-4-5", "chat", "Claude Haiku 4.5 (Anthropic)"),
    ],
)
def test_registry_rows_answer_type_and_label(model: str, kind: str, label: str) -> None:
    Model = default_models()["Model"]
    row = Model.from_llm(registry.find(model))
    assert (row.type, row.label) == (kind, label)
    assert (row.to_llm().type, row.to_llm().label) == (kind, label)


# -- image output ----------------------------------------------------------------------------------

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
GEMINI = "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash-image"


def gemini_answer(parts: list[dict[str, Any]]) -> dict[str, Any]:
    body = {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 1290},
        "modelVersion": "gemini-2.5-flash-image",
    }
    return {
        "request": {"method": "POST", "url": f"{GEMINI}:generateContent"},
        "response": {
            "status": 200,
            "headers": {"content-type": "application/json"},
            "body": json.dumps(body),
        },
    }


async def test_images_a_model_returns_are_stored_with_its_reply(world: World) -> None:
    image = {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}}
    replay = Replay(
        {
            "interactions": [
                gemini_answer([{"text": "Here is a red dot."}, image]),
                gemini_answer([{"text": "It is one pixel."}]),
            ]
        }
    )
    chat = await new_chat(
        world, model="gemini-2.5-flash-image", provider="gemini", context=replay.context()
    )
    reply = await world.call(chat.ask, "Draw a red dot")
    assert reply.text == "Here is a red dot."
    (returned,) = reply.attachments
    assert (returned.mime_type, returned.data()) == ("image/png", PNG)

    assistant = next(m for m in world.messages() if m.role == "assistant")
    (row,) = world.rows(world.models["Attachment"])
    assert row.message_id == assistant.id
    assert (row.content_type, row.byte_size, row.sha256) == (
        "image/png",
        len(PNG),
        hashlib.sha256(PNG).hexdigest(),
    )
    # The next turn, from the rows, sends the image back with the reply that made it.
    world.session.expunge(chat)
    loaded = (
        await world.session.get(world.Chat, chat.id)
        if world.mode == "async"
        else world.session.get(world.Chat, chat.id)
    )
    loaded.context = replay.context()
    await world.call(loaded.ask, "How big is it?")
    model_turn = replay.seen[1].body["contents"][1]
    assert model_turn["role"] == "model"
    inline = [p["inline_data"] for p in model_turn["parts"] if "inline_data" in p]
    assert inline == [{"mime_type": "image/png", "data": base64.b64encode(PNG).decode()}]
