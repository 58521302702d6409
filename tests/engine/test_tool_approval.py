"""Tool approval on the plain chat (decisions kept in memory), sync and async: a marked tool or
a policy parks the round before any of its calls runs; approve/deny decide; the next
``complete()`` runs approved calls, answers denied ones with an error result and asks the model
again; a new question while parked raises (or, by option, denies); a decision about other
arguments is refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

import sa_llm
from sa_llm.approval import arguments_hash
from sa_llm.testing import FakeLLM
from sa_llm.types import Message

pytestmark = pytest.mark.usefixtures("no_retries")


async def run(chat: sa_llm.Chat, mode: str, name: str, *args: Any) -> Message:
    if mode == "sync":
        return getattr(chat, name)(*args)  # type: ignore[no-any-return]
    return await getattr(chat, "a" + name)(*args)  # type: ignore[no-any-return]


RAN: list[str] = []


class Refund(sa_llm.Tool):
    """Refunds an order."""

    requires_approval = True

    def execute(self, order_id: str) -> str:
        RAN.append(f"refund {order_id}")
        return f"refunded {order_id}"


class Lookup(sa_llm.Tool):
    """Looks an order up."""

    def execute(self, order_id: str) -> str:
        RAN.append(f"lookup {order_id}")
        return f"order {order_id}: 2 items"


@pytest.fixture(autouse=True)
def _ran() -> Iterator[None]:
    RAN.clear()
    yield
    RAN.clear()


def round_of(fake: FakeLLM, *calls: tuple[str, str, str]) -> None:
    fake.reply(
        tool_calls=[
            {"id": call_id, "name": name, "arguments": {"order_id": order}}
            for call_id, name, order in calls
        ]
    )


async def test_a_marked_tool_parks_the_round_before_any_call_runs(mode: str, fake: FakeLLM) -> None:
    round_of(fake, ("c1", "lookup", "42"), ("c2", "refund", "42"))
    chat = sa_llm.chat("fake-model", provider="fake").with_tools(Lookup, Refund)
    reply = await run(chat, mode, "ask", "Refund order 42")
    assert [call.id for call in reply.tool_calls] == ["c1", "c2"]
    assert RAN == []  # the lookup needed no approval, but the round waits as a whole
    assert [call.id for call in chat.pending_approvals()] == ["c2"]
    assert len(fake.requests) == 1

    chat.approve("c2", by="alice")
    fake.reply("Done: refunded.")
    final = await run(chat, mode, "complete")
    assert final.text == "Done: refunded."
    assert RAN == ["lookup 42", "refund 42"]
    sent = fake.requests[-1]["messages"]
    results = [(m["role"], m.get("tool_call_id")) for m in sent[-2:]]
    assert results == [("tool", "c1"), ("tool", "c2")]
    assert sent[-1]["content"] == "refunded 42"
    assert chat.pending_approvals() == []


async def test_a_denied_call_never_runs_and_the_model_reads_why(mode: str, fake: FakeLLM) -> None:
    round_of(fake, ("c1", "refund", "7"))
    chat = sa_llm.chat("fake-model", provider="fake").with_tool(Refund)
    await run(chat, mode, "ask", "Refund order 7")
    decision = chat.deny("c1", "Over the limit", by="bob")
    assert (decision.state, decision.decided_by) == ("denied", "bob")
    assert decision.reason == "Over the limit"
    fake.reply("I could not refund it.")
    await run(chat, mode, "complete")
    assert RAN == []
    result = fake.requests[-1]["messages"][-1]
    assert result["role"] == "tool"
    assert "denied" in json.loads(result["content"])["error"]
    assert "Over the limit" in json.loads(result["content"])["error"]


async def test_complete_refuses_while_a_call_waits(mode: str, fake: FakeLLM) -> None:
    round_of(fake, ("c1", "refund", "7"))
    chat = sa_llm.chat("fake-model", provider="fake").with_tool(Refund)
    await run(chat, mode, "ask", "Refund order 7")
    with pytest.raises(sa_llm.ApprovalPendingError) as caught:
        await run(chat, mode, "complete")
    assert caught.value.tool_call_ids == ("c1",)
    assert len(fake.requests) == 1


async def test_a_new_question_while_parked_raises_or_denies(mode: str, fake: FakeLLM) -> None:
    round_of(fake, ("c1", "refund", "7"))
    chat = sa_llm.chat("fake-model", provider="fake").with_tool(Refund)
    await run(chat, mode, "ask", "Refund order 7")
    with pytest.raises(sa_llm.ApprovalPendingError):
        await run(chat, mode, "ask", "Never mind, what is 2 + 2?")
    chat.with_approval(None, on_new_question="deny")
    fake.reply("4")
    assert (await run(chat, mode, "ask", "Never mind, what is 2 + 2?")).text == "4"
    assert RAN == []
    sent = fake.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "user"]
    assert chat.pending_approvals() == []


async def test_a_policy_picks_calls_of_unmarked_tools(mode: str, fake: FakeLLM) -> None:
    round_of(fake, ("c1", "lookup", "1"), ("c2", "lookup", "999"))
    chat = sa_llm.chat("fake-model", provider="fake").with_tool(Lookup)
    chat.with_approval(lambda call: call.arguments["order_id"] == "999")
    await run(chat, mode, "ask", "Look up 1 and 999")
    assert [call.id for call in chat.pending_approvals()] == ["c2"]
    chat.approve("c2")
    fake.reply("Both found.")
    await run(chat, mode, "complete")
    assert RAN == ["lookup 1", "lookup 999"]


def test_a_decision_about_other_arguments_is_refused(fake: FakeLLM) -> None:
    round_of(fake, ("c1", "refund", "7"))
    chat = sa_llm.chat("fake-model", provider="fake").with_tool(Refund)
    chat.ask("Refund order 7")
    with pytest.raises(sa_llm.StaleApprovalError):
        chat.approve("c1", arguments_hash=arguments_hash({"order_id": "8"}))
    chat.approve("c1", arguments_hash=arguments_hash({"order_id": "7"}))
    with pytest.raises(sa_llm.ConfigurationError):
        chat.approve("no-such-call")


def test_approval_hash_ignores_key_order_not_values() -> None:
    assert arguments_hash({"a": 1, "b": [1, 2]}) == arguments_hash({"b": [1, 2], "a": 1})
    assert arguments_hash({"a": 1}) != arguments_hash({"a": 2})
