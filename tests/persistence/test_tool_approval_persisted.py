"""Tool approval on persisted chats (SQLite and PostgreSQL, sync and async): a parked round is
rows (tool calls ``approval = pending`` with their arguments' hash, the chat released), decisions
are recorded with who and when, the next ``complete()`` runs approved calls and answers denied
ones, a new question is refused (or denies the round), a decision never applies to changed
arguments, and a parked round survives clean-ups. Across real processes: park in one, approve
in a second, complete in a third."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import JSON, DateTime, ForeignKey, String, create_engine, update
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import sa_llm
from persisted import World, default_models
from sa_llm.approval import arguments_hash
from sa_llm.declarative import acts_as_tool_call
from sa_llm.mixins import ToolCallRecord
from sa_llm.persistence import repair_chats
from sa_llm.testing import FakeLLM
from sa_llm.testing.server import FakeOpenAIServer, PlannedToolCall


@pytest.fixture
def world_settings() -> dict[str, Any]:
    return {"max_retries": 0}


RAN: list[str] = []


@pytest.fixture(autouse=True)
def _ran() -> Iterator[None]:
    RAN.clear()
    yield
    RAN.clear()


class Refund(sa_llm.Tool):
    """Refunds an order."""

    requires_approval = True

    def execute(self, order_id: str) -> str:
        RAN.append(order_id)
        return f"refunded {order_id}"


async def parked_chat(world: World, fake: FakeLLM, order: str = "42") -> Any:
    chat = world.Chat(model="fake-model", provider="fake")
    await world.add(chat)
    fake.tool_call("refund", {"order_id": order}, id="call_1")
    reply = await world.call(chat.with_tool(Refund).ask, f"Refund order {order}")
    assert [call.id for call in reply.tool_calls] == ["call_1"]
    return chat


async def test_a_parked_round_is_rows_and_the_chat_is_free(world: World, fake: FakeLLM) -> None:
    chat = await parked_chat(world, fake)
    assert RAN == []
    assert [(m.role, m.status) for m in world.messages()] == [
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    (call,) = world.rows(world.ToolCall)
    assert (call.approval, call.approval_arguments_hash) == (
        "pending",
        arguments_hash({"order_id": "42"}),
    )
    (row,) = world.rows(world.Chat)
    assert row.turn_token is None  # the lease was released: any process may take the chat
    pending = await world.call(chat.pending_approvals)
    assert [p.tool_call_id for p in pending] == ["call_1"]


async def test_approve_then_complete_runs_the_call(world: World, fake: FakeLLM) -> None:
    chat = await parked_chat(world, fake)
    decision = await world.call(chat.approve, "call_1", by="alice")
    (call,) = world.rows(world.ToolCall)
    assert (call.approval, call.approval_decided_by) == ("approved", "alice")
    assert call.approval_decided_at is not None and decision.decided_at is not None
    fake.reply("Refunded.")
    reply = await world.call(chat.complete)
    assert reply.text == "Refunded."
    assert RAN == ["42"]
    sent = fake.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
    assert sent[-1]["content"] == "refunded 42"
    assert [(m.role, m.content) for m in world.messages()][-2:] == [
        ("tool", "refunded 42"),
        ("assistant", "Refunded."),
    ]
    assert await world.call(chat.pending_approvals) == []


async def test_deny_answers_with_an_error_and_never_runs(world: World, fake: FakeLLM) -> None:
    chat = await parked_chat(world, fake)
    pending = await world.call(chat.pending_approvals)
    await world.call(chat.deny, pending[0], "Over the limit", by="bob")
    assert pending[0].approval == "denied"  # the row given reads as decided
    fake.reply("I could not refund it.")
    await world.call(chat.complete)
    assert RAN == []
    result = next(m for m in world.messages() if m.role == "tool")
    assert "Over the limit" in json.loads(result.content)["error"]
    (call,) = world.rows(world.ToolCall)
    assert (call.approval, call.approval_reason, call.approval_decided_by) == (
        "denied",
        "Over the limit",
        "bob",
    )


async def test_complete_and_ask_refuse_while_a_call_waits(world: World, fake: FakeLLM) -> None:
    chat = await parked_chat(world, fake)
    with pytest.raises(sa_llm.ApprovalPendingError) as caught:
        await world.call(chat.complete)
    assert caught.value.tool_call_ids == ("call_1",)
    with pytest.raises(sa_llm.ApprovalPendingError):
        await world.call(chat.ask, "Something else")
    assert len(world.messages()) == 2  # no new question was stored
    (row,) = world.rows(world.Chat)
    assert row.turn_token is None
    assert len(fake.requests) == 1


async def test_a_new_question_can_deny_the_parked_round(world: World, fake: FakeLLM) -> None:
    chat = await parked_chat(world, fake)
    chat.with_approval(None, on_new_question="deny")
    fake.reply("4")
    assert (await world.call(chat.ask, "What is 2 + 2?")).text == "4"
    assert RAN == []
    assert [m.role for m in world.messages()] == ["user", "assistant", "tool", "user", "assistant"]
    assert [m["role"] for m in fake.requests[-1]["messages"]] == [
        "user",
        "assistant",
        "tool",
        "user",
    ]
    (call,) = world.rows(world.ToolCall)
    assert call.approval == "denied"


async def test_a_decision_never_applies_to_changed_arguments(world: World, fake: FakeLLM) -> None:
    chat = await parked_chat(world, fake)
    with pytest.raises(sa_llm.StaleApprovalError):
        await world.call(chat.approve, "call_1", arguments_hash=arguments_hash({"order_id": "9"}))
    await world.call(chat.approve, "call_1", arguments_hash=arguments_hash({"order_id": "42"}))
    with Session(world.sync_engine) as other:  # the arguments change after the approval
        other.execute(update(world.ToolCall).values(arguments={"order_id": "9999"}))
        other.commit()
    with pytest.raises(sa_llm.StaleApprovalError):
        await world.call(chat.complete)
    assert RAN == []
    (call,) = world.rows(world.ToolCall)
    assert (call.approval, call.approval_arguments_hash) == (
        "pending",
        arguments_hash({"order_id": "9999"}),
    )
    await world.call(chat.approve, "call_1", by="carol")
    fake.reply("Refunded 9999.")
    await world.call(chat.complete)
    assert RAN == ["9999"]


async def test_clean_ups_leave_a_parked_round_alone(world: World, fake: FakeLLM) -> None:
    await parked_chat(world, fake)
    with Session(world.sync_engine) as other:
        report = repair_chats(other, world.Chat)
    assert report.rows == 0
    assert [m.role for m in world.messages()] == ["user", "assistant"]
    (call,) = world.rows(world.ToolCall)
    assert call.approval == "pending"


async def test_unknown_calls_cannot_be_decided(world: World, fake: FakeLLM) -> None:
    chat = await parked_chat(world, fake)
    with pytest.raises(sa_llm.ConfigurationError):
        await world.call(chat.approve, "call_404")


def models_without_approval_columns() -> dict[str, Any]:
    class Base(DeclarativeBase):
        pass

    @acts_as_tool_call()
    class ToolCall(ToolCallRecord, Base):  # an older table: no approval columns
        __tablename__ = "tool_calls"
        id: Mapped[int] = mapped_column(primary_key=True)
        message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"))
        tool_call_id: Mapped[str] = mapped_column(String(255))
        name: Mapped[str] = mapped_column(String(255))
        arguments: Mapped[Any] = mapped_column(JSON, default=dict)
        created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=datetime.now)

    return default_models(base=Base, ToolCall=ToolCall)


def test_a_table_without_the_columns_refuses_before_any_row(db_url: str, fake: FakeLLM) -> None:
    models = models_without_approval_columns()
    engine = create_engine(db_url)
    models["Base"].metadata.create_all(engine)
    try:
        with Session(engine) as session:
            chat = models["Chat"](model="fake-model", provider="fake")
            session.add(chat)
            session.commit()
            with pytest.raises(sa_llm.ConfigurationError, match="approval"):
                chat.with_tool(Refund).ask("Refund order 1")
            assert session.query(models["Message"]).count() == 0
    finally:
        engine.dispose()


# -- across processes ------------------------------------------------------------------------------

WORKER = Path(__file__).with_name("approval_worker.py")


def run_worker(job: dict[str, Any], ran_file: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "SA_LLM_RAN_FILE": str(ran_file)}
    done = subprocess.run(
        [sys.executable, str(WORKER), json.dumps(job)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_park_approve_and_complete_in_three_processes(db_url: str, tmp_path: Path) -> None:
    models = default_models()
    engine = create_engine(db_url)
    models["Base"].metadata.create_all(engine)
    with Session(engine) as session:
        chat = models["Chat"](model="gpt-4.1-nano")
        session.add(chat)
        session.commit()
        chat_id = chat.id
    ran = tmp_path / "ran.txt"
    ran.write_text("")
    call = PlannedToolCall("refund", {"order_id": "42"}, id="call_refund")
    try:
        with FakeOpenAIServer(tool_turns={1}, tool_call=call, reply="Refunded.") as server:
            base = {"db_url": db_url, "chat_id": chat_id, "server": server.url}
            parked = run_worker({**base, "action": "park"}, ran)
            approved = run_worker({**base, "action": "approve", "by": "alice"}, ran)
            completed = run_worker({**base, "action": "complete"}, ran)
            bodies = [exchange.received.body for exchange in server.exchanges]
        assert parked["tool_calls"] == ["call_refund"]
        assert approved["decided"] == ["call_refund", "approved", "alice"]
        assert completed["text"] == "Refunded."
        assert len({parked["pid"], approved["pid"], completed["pid"]}) == 3
        # The tool ran once, in the process that completed, after the approval.
        assert ran.read_text().splitlines() == [f"{completed['pid']} refund 42"]
        assert len(bodies) == 2
        assert [m["role"] for m in bodies[1]["messages"]] == ["user", "assistant", "tool"]
        with Session(engine) as session:
            (row,) = session.query(models["ToolCall"]).all()
            assert (row.approval, row.approval_decided_by) == ("approved", "alice")
            roles = [
                m.role
                for m in session.query(models["Message"]).order_by(
                    models["Message"].created_at, models["Message"].id
                )
            ]
            assert roles == ["user", "assistant", "tool", "assistant"]
    finally:
        engine.dispose()
