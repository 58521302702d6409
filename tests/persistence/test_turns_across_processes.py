"""Turns on one chat from real OS processes (turn_worker.py), on SQLite and PostgreSQL.

Several worker processes ask on one chat at once against a fake OpenAI server with latency in
this process: the stored history strictly alternates turn by turn, every tool call is followed
by its result, and no request the server received carried a blank or unanswered message. A
worker killed with SIGKILL mid-stream or mid-tool-run is taken over by the next turn once its
lease expires; a cancel from this process stops a worker's stream.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

import sa_llm
from persisted import default_models
from sa_llm.testing.server import FakeOpenAIServer, Plan, Received

WORKER = Path(__file__).with_name("turn_worker.py")
SHORT_LEASE = {"turn_lease_seconds": 1.0, "turn_poll_interval": 0.1}


@pytest.fixture
def database(db_url: str) -> Iterator[tuple[Any, dict[str, Any]]]:
    models = default_models()
    engine = create_engine(db_url)
    models["Base"].metadata.create_all(engine)
    yield engine, models
    engine.dispose()


def new_chat(engine: Any, models: dict[str, Any]) -> int:
    with Session(engine) as session:
        chat = models["Chat"](model="gpt-4.1-nano")
        session.add(chat)
        session.commit()
        return int(chat.id)


class Worker:
    """One worker process: started with a job, read line by line."""

    def __init__(self, job: dict[str, Any]) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        env.update(job.pop("env", {}))
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER), json.dumps(job)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.process.stdout is not None
        ready = json.loads(self.process.stdout.readline() or "{}")
        assert ready == {"ready": True}, self.process.stderr.read() if self.process.stderr else ""

    def results(self, timeout: float = 120) -> list[dict[str, Any]]:
        out, err = self.process.communicate(timeout=timeout)
        assert self.process.returncode == 0, err
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)


def job(
    db_url: str, async_db_url: str, chat_id: int, server: FakeOpenAIServer, **extra: Any
) -> dict[str, Any]:
    return {
        "db_url": db_url,
        "async_db_url": async_db_url,
        "chat_id": chat_id,
        "server": server.url,
        "mode": "sync",
        "asks": 1,
        "label": "w",
        **extra,
    }


def start_together(jobs: list[dict[str, Any]], tmp_path: Path) -> list[Worker]:
    """Start the workers, let each get ready, then release them at once."""
    go = tmp_path / "go"
    workers = [Worker({**spec, "ready_file": str(go)}) for spec in jobs]
    go.write_text("go")
    return workers


def stored_turns(engine: Any, models: dict[str, Any], chat_id: int) -> list[list[Any]]:
    """The chat's rows, grouped into turns (each starting with a user message)."""
    Message, ToolCall = models["Message"], models["ToolCall"]
    with Session(engine) as session:
        messages = session.scalars(
            select(Message)
            .where(Message.chat_id == chat_id)
            .order_by(Message.created_at, Message.id)
        ).all()
        calls = {
            m.id: [
                c.id for c in session.scalars(select(ToolCall).where(ToolCall.message_id == m.id))
            ]
            for m in messages
        }
        turns: list[list[Any]] = []
        for m in messages:
            if m.role == "user":
                turns.append([])
            turns[-1].append((m.role, m.status, calls[m.id], m.tool_call_id, m.content))
    return turns


def assert_turns_alternate(turns: list[list[Any]]) -> None:
    """user, then (assistant with calls, a result per call)*, then a plain assistant reply."""
    for turn in turns:
        assert turn[0][0] == "user"
        position = 1
        while True:
            role, status, calls, _, content = turn[position]
            assert role == "assistant" and status == "complete", turn
            position += 1
            if not calls:
                assert content, turn
                break
            answered = [row[3] for row in turn[position : position + len(calls)]]
            assert answered == calls, turn  # each call followed by its result
            assert all(row[0] == "tool" for row in turn[position : position + len(calls)])
            position += len(calls)
        assert position == len(turn), turn


def assert_requests_valid(server: FakeOpenAIServer) -> None:
    """No request carried a blank assistant message or a tool call without its result."""
    for body in server.bodies():
        messages = body["messages"]
        for index, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            calls = message.get("tool_calls") or []
            assert message.get("content") or calls, messages
            following = [
                m.get("tool_call_id") for m in messages[index + 1 : index + 1 + len(calls)]
            ]
            assert following == [call["id"] for call in calls], messages


# -- several processes, one chat -------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("variant", ["whole", "streamed", "tools"])
def test_processes_take_turns_on_one_chat(
    db_url: str, async_db_url: str, database: Any, tmp_path: Path, mode: str, variant: str
) -> None:
    engine, models = database
    chat_id = new_chat(engine, models)
    tools = variant == "tools"
    with FakeOpenAIServer(
        latency=0.1, chunks=4, chunk_interval=0.01, tool_turns=(lambda turn: True) if tools else ()
    ) as server:
        jobs = [
            job(
                db_url, async_db_url, chat_id, server, mode=mode, asks=2, label=f"p{n}",
                stream=variant == "streamed", tools=tools,
            )
            for n in range(3)
        ]  # fmt: skip
        results = [
            result for worker in start_together(jobs, tmp_path) for result in worker.results()
        ]
    assert all("ok" in result for result in results), results
    turns = stored_turns(engine, models, chat_id)
    assert len(turns) == 6
    assert_turns_alternate(turns)
    assert_requests_valid(server)


def test_raise_mode_refuses_the_losers(
    db_url: str, async_db_url: str, database: Any, tmp_path: Path
) -> None:
    engine, models = database
    chat_id = new_chat(engine, models)
    with FakeOpenAIServer(latency=1.5) as server:
        jobs = [
            job(db_url, async_db_url, chat_id, server, label=f"p{n}",
                settings={"concurrent_turns": "raise"})
            for n in range(3)
        ]  # fmt: skip
        results = [
            result for worker in start_together(jobs, tmp_path) for result in worker.results()
        ]
    outcomes = sorted("ok" if "ok" in result else result["error"] for result in results)
    assert outcomes.count("ok") >= 1 and "ChatBusyError" in outcomes, outcomes
    assert set(outcomes) <= {"ok", "ChatBusyError"}
    turns = stored_turns(engine, models, chat_id)
    assert len(turns) == outcomes.count("ok")  # the losers wrote nothing
    assert_turns_alternate(turns)


# -- a process killed mid-turn ---------------------------------------------------------------------


def wait_for(predicate: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def placeholder(engine: Any, models: dict[str, Any], chat_id: int) -> tuple[Any, Any] | None:
    Message = models["Message"]
    with Session(engine) as session:
        row = session.execute(
            select(Message.status, Message.content).where(
                Message.chat_id == chat_id, Message.role == "assistant"
            )
        ).first()
        return (row[0], row[1]) if row is not None else None


def quick_after_the_crash(received: Received, plan: Plan) -> Plan:
    """Slow streams for the worker; a quick reply for the question asked after the crash."""
    if "after the crash" in json.dumps(received.body):
        return replace(plan, chunk_interval=0.0, chunks=2, tool_calls=())
    return plan


def ask_here(engine: Any, models: dict[str, Any], chat_id: int, server: FakeOpenAIServer) -> str:
    """The next turn, in this process (another one than the dead worker's)."""
    sa_llm.configure(
        openai_base_url=server.url, openai_api_key="k", openai_api="chat_completions",
        max_retries=0, turn_wait_timeout=60,
    )  # fmt: skip
    try:
        with Session(engine) as session:
            chat: Any = session.get(models["Chat"], chat_id)
            return str(chat.ask("after the crash: are you there?").text)
    finally:
        sa_llm.reset_config()


@pytest.mark.parametrize("keep_partial", [False, True], ids=["default", "keep_partial_output"])
def test_a_process_killed_mid_stream_is_taken_over(
    db_url: str, async_db_url: str, database: Any, keep_partial: bool
) -> None:
    engine, models = database
    chat_id = new_chat(engine, models)
    with FakeOpenAIServer(chunks=2000, chunk_interval=0.01, plan=quick_after_the_crash) as server:
        settings = {**SHORT_LEASE, "partial_output_interval": 0.05}
        worker = Worker(
            job(db_url, async_db_url, chat_id, server, stream=True, keep_partial=keep_partial,
                settings=settings)
        )  # fmt: skip

        def streaming() -> bool:
            found = placeholder(engine, models, chat_id)
            return (
                found is not None
                and found[0] == "streaming"
                and (bool(found[1]) or not keep_partial)
            )

        wait_for(streaming)
        worker.kill()
        assert ask_here(engine, models, chat_id, server)
    turns = stored_turns(engine, models, chat_id)
    assert [row[0] for row in turns[0]] == (["user", "assistant"] if keep_partial else ["user"])
    if keep_partial:
        (_, status, _, _, text) = turns[0][1]
        assert status == "interrupted" and text  # the streamed text survived the crash
    assert_turns_alternate(turns[1:])
    assert_requests_valid(server)
    sent = server.bodies()[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "user"]  # the interrupted reply is not sent


def test_a_process_killed_mid_tool_run_is_taken_over(
    db_url: str, async_db_url: str, database: Any, tmp_path: Path
) -> None:
    engine, models = database
    chat_id = new_chat(engine, models)
    started = tmp_path / "tool-started"
    with FakeOpenAIServer(tool_turns={1}, plan=quick_after_the_crash) as server:
        worker = Worker(
            job(db_url, async_db_url, chat_id, server, tools=True, settings=SHORT_LEASE,
                env={"SA_LLM_TOOL_SLEEP": "60", "SA_LLM_TOOL_STARTED": str(started)})
        )  # fmt: skip
        wait_for(started.exists)
        worker.kill()
        assert ask_here(engine, models, chat_id, server)
    assert_requests_valid(server)
    sent = server.bodies()[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "user"]
    assert "interrupted" in sent[2]["content"]  # the call that never returned is closed
    turns = stored_turns(engine, models, chat_id)
    # The dead turn: its question, the call, the result that closes it (no reply came).
    assert [(row[0], row[1]) for row in turns[0]] == [
        ("user", "complete"), ("assistant", "complete"), ("tool", "complete"),
    ]  # fmt: skip
    assert_turns_alternate(turns[1:])


# -- cancel from another process -------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_cancel_from_another_process_stops_the_stream(
    db_url: str, async_db_url: str, database: Any, mode: str
) -> None:
    engine, models = database
    chat_id = new_chat(engine, models)
    with FakeOpenAIServer(chunks=3000, chunk_interval=0.01) as server:
        worker = Worker(
            job(db_url, async_db_url, chat_id, server, mode=mode, stream=True,
                settings={"turn_poll_interval": 0.2})
        )  # fmt: skip
        wait_for(lambda: (placeholder(engine, models, chat_id) or ("",))[0] == "streaming")
        with Session(engine) as session:
            assert models["Chat"].cancel_turn(session, chat_id) is True
        cancelled_at = time.monotonic()
        (result,) = worker.results()
        stopped_after = time.monotonic() - cancelled_at
    assert result["error"] == "TurnCancelledError"
    # The worker noticed within its heartbeat (0.2 s here) and closed the stream: well before
    # its 30 s end.
    assert stopped_after < 1.5
    assert server.exchanges[-1].finished is False
    status, _ = placeholder(engine, models, chat_id) or (None, None)
    assert status == "cancelled"
    with Session(engine) as session:
        chat: Any = session.get(models["Chat"], chat_id)
        assert (chat.turn_token, chat.cancel_requested_at) == (None, None)
