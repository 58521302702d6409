"""The event log of a chat whose turn parks for approval: the turn ends ``awaiting_approval``
(naming the calls), decisions are events, and the resumed round's results follow."""

from __future__ import annotations

from typing import Any

import pytest

import sa_llm
from persisted import World, default_models
from sa_llm.events import read_events
from sa_llm.testing import FakeLLM


@pytest.fixture
def world_models() -> dict[str, Any]:
    return default_models("ChatEvent")


@pytest.fixture
def world_settings() -> dict[str, Any]:
    return {"max_retries": 0}


class Refund(sa_llm.Tool):
    """Refunds an order."""

    requires_approval = True

    def execute(self, order_id: str) -> str:
        return f"refunded {order_id}"


async def test_parking_and_deciding_are_events(world: World, fake: FakeLLM) -> None:
    chat = world.Chat(model="fake-model", provider="fake")
    await world.add(chat)
    fake.tool_call("refund", {"order_id": "42"}, id="call_1")
    await world.call(chat.with_tool(Refund).ask, "Refund order 42")
    events = read_events(world.sync_engine, world.Chat, chat.id).events
    assert events[-1].kind == "turn.ended"
    assert dict(events[-1].data) == {"outcome": "awaiting_approval", "tool_calls": ["call_1"]}

    await world.call(chat.approve, "call_1", by="alice")
    decided = read_events(world.sync_engine, world.Chat, chat.id, after=events[-1].seq).events
    assert [(e.kind, e.data.get("approval"), e.data.get("decided_by")) for e in decided] == [
        ("tool_call.decided", "approved", "alice")
    ]

    fake.reply("Refunded.")
    await world.call(chat.complete)
    after = read_events(world.sync_engine, world.Chat, chat.id, after=decided[-1].seq).events
    completed = [(e.data.get("role"), e.data.get("content")) for e in after
                 if e.kind == "message.completed"]  # fmt: skip
    assert completed == [("tool", "refunded 42"), ("assistant", "Refunded.")]
    assert after[-1].kind == "turn.ended" and after[-1].data["outcome"] == "complete"
