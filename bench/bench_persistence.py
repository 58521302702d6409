"""Persistence cost: SQL statements per turn, and rebuilding a long history (``to_llm``).

Run from the repository root with ``python bench/bench_persistence.py``; it prints markdown
tables and writes them to ``bench/results/persistence.md``, and every run's time and statement
counts to ``bench/results/persistence.json`` (the plots' data; ``--json-only``: that file alone,
``--no-write``: neither). Nothing touches the network: the
model is sa_llm's scripted fake (provider ``"fake"``), which runs the real transport, SSE
decoding and tool loop. The database is SQLite in memory; the models are the standard mixins,
declared as ``tests/persisted.py`` declares them; the strategy is the default (commit per step).

1. **Statements per turn.** A ``before_cursor_execute`` listener counts statements by verb
   (plus the engine's ``commit`` events) during one ``ask`` on a chat that has already had one
   turn (steady state), sync (``Session``) and async (``AsyncSession`` over aiosqlite): a
   non-streamed reply, streamed replies of 10, 50 and 200 chunks (``reply(text, chunks=n)``),
   and one tool round. The first ``ask`` on a brand-new chat row is shown too (it resolves the
   model). The counts must not grow with the number of chunks. Median ms per ask is the whole
   turn, fake HTTP included.
2. **Rebuilding history.** A chat of N messages (N = 10, 100, 1000; a quarter of them assistant
   messages with a tool call, a quarter tool results) is written with Core bulk inserts. In a
   fresh ``Session`` the chat row is loaded (untimed), then ``chat.to_llm()`` is timed against a
   raw ``session.execute(select(Message.__table__).where(chat_id == ...)).all()`` of the same
   rows, alternating, in their own fresh sessions; the ratio is the median of ``to_llm`` over
   the median of the raw read (target <= 2x). The SELECTs ``to_llm`` runs must be constant in N
   (target <= 3).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from time import perf_counter_ns
from typing import Annotated, Any, cast

import results_json
from sqlalchemy import Engine, Table, create_engine, event, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import StaticPool

import sa_llm
from sa_llm.declarative import acts_as_chat, acts_as_message, acts_as_model, acts_as_tool_call
from sa_llm.mixins import ChatMixin, MessageMixin, ModelMixin, ToolCallMixin
from sa_llm.testing import FakeLLM, fake_llm
from sa_llm.types import Chunk

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "persistence.md"
MODEL = "bench-model"
PROVIDER = "fake"
REPLY = "The capital of France is Paris, a city on the Seine with about two million people. " * 4
HISTORY_SIZES = (10, 100, 1000)
RATIO_TARGET = 2.0
SELECT_TARGET = 3


# -- models (as tests/persisted.py declares them) --------------------------------------------------


class Base(DeclarativeBase):
    pass


@acts_as_chat()
class ChatRow(ChatMixin, Base):
    __tablename__ = "chats"
    title: Mapped[str | None] = mapped_column(default=None)


@acts_as_message(chat="chat", chat_class="ChatRow")
class Message(MessageMixin, Base):
    __tablename__ = "messages"


@acts_as_tool_call()
class ToolCall(ToolCallMixin, Base):
    __tablename__ = "tool_calls"


@acts_as_model(chat_class="ChatRow")
class Model(ModelMixin, Base):
    __tablename__ = "models"


MESSAGES = cast(Table, Message.__table__)
TOOL_CALLS = cast(Table, ToolCall.__table__)


class Weather(sa_llm.Tool):
    """Gets the current weather for a city."""

    def execute(self, city: Annotated[str, "The city"]) -> str:
        return f"{city}: 15°C"


FIRST = "first ask on a new chat, not streamed"


def settle() -> None:
    """Collect garbage before a timed run, outside the timed window.

    The first call also freezes what is alive then (``gc.freeze()``: the registry, modules,
    the engine), so that the later collections only walk what the runs made and stay cheap.
    """
    global _frozen
    if not _frozen:
        gc.collect()
        gc.freeze()
        _frozen = True
    gc.collect()


_frozen = False


# -- statement counting ----------------------------------------------------------------------------

VERBS = ("SELECT", "INSERT", "UPDATE", "DELETE")


class StatementCounter:
    """Counts an engine's statements by verb, and its commits."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.verbs: list[str] = []
        self.commits = 0
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "commit", self._commit)

    def _statement(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.verbs.append(statement.strip().split(None, 1)[0].upper())

    def _commit(self, conn: Any) -> None:
        self.commits += 1

    def reset(self) -> None:
        self.verbs.clear()
        self.commits = 0

    def snapshot(self) -> tuple[int, ...]:
        """(SELECT, INSERT, UPDATE, DELETE, other statements, COMMITs)."""
        counts = [self.verbs.count(verb) for verb in VERBS]
        other = len(self.verbs) - sum(counts)
        return (*counts, other, self.commits)

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._statement)
        event.remove(self.engine, "commit", self._commit)


# -- 1. statements per turn ------------------------------------------------------------------------


@dataclass
class Scenario:
    """One kind of turn: how to script the fake, and whether to stream."""

    name: str
    script: Callable[[FakeLLM], object]
    stream: bool = False
    tools: bool = False


def _streamed(chunks: int) -> Scenario:
    def script(fake: FakeLLM) -> object:
        return fake.reply(REPLY, chunks=chunks)

    return Scenario(f"ask, streamed, {chunks} chunks", script, stream=True)


SCENARIOS = [
    Scenario("ask, not streamed", lambda fake: fake.reply(REPLY)),
    *(_streamed(n) for n in (10, 50, 200)),
    Scenario(
        "ask with 1 tool round, not streamed",
        lambda fake: fake.tool_call("weather", {"city": "Berlin"}).reply(REPLY),
        tools=True,
    ),
]


@dataclass
class TurnResult:
    counts: set[tuple[int, ...]] = field(default_factory=set)
    times_ns: list[int] = field(default_factory=list)


def _ignore(chunk: Chunk) -> None:
    pass


def _new_chat(tools: bool) -> ChatRow:
    chat = ChatRow(model=MODEL, provider=PROVIDER)
    if tools:
        chat.with_tool(Weather)
    return chat


def turns_sync(engine: Engine, repeats: int) -> dict[str, TurnResult]:
    counter = StatementCounter(engine)
    results: dict[str, TurnResult] = {}
    with fake_llm(echo=False) as fake, Session(engine) as session:
        for index, scenario in enumerate([SCENARIOS[0], *SCENARIOS]):
            first = index == 0
            key = FIRST if first else scenario.name
            result = results.setdefault(key, TurnResult())
            on_chunk = _ignore if scenario.stream else None
            for _ in range(repeats):
                chat = _new_chat(scenario.tools)
                session.add(chat)
                session.commit()
                if not first:
                    fake.reply("warm-up")
                    chat.ask("Hello")
                scenario.script(fake)
                settle()
                counter.reset()
                start = perf_counter_ns()
                chat.ask("What is the capital of France?", on_chunk=on_chunk)
                result.times_ns.append(perf_counter_ns() - start)
                result.counts.add(counter.snapshot())
    counter.close()
    return results


async def turns_async(engine: AsyncEngine, repeats: int) -> dict[str, TurnResult]:
    counter = StatementCounter(engine.sync_engine)
    results: dict[str, TurnResult] = {}
    async with fake_llm(echo=False) as fake, AsyncSession(engine, expire_on_commit=False) as s:
        for index, scenario in enumerate([SCENARIOS[0], *SCENARIOS]):
            first = index == 0
            key = FIRST if first else scenario.name
            result = results.setdefault(key, TurnResult())
            on_chunk = _ignore if scenario.stream else None
            for _ in range(repeats):
                chat = _new_chat(scenario.tools)
                s.add(chat)
                await s.commit()
                if not first:
                    fake.reply("warm-up")
                    await chat.aask("Hello")
                scenario.script(fake)
                settle()
                counter.reset()
                start = perf_counter_ns()
                await chat.aask("What is the capital of France?", on_chunk=on_chunk)
                result.times_ns.append(perf_counter_ns() - start)
                result.counts.add(counter.snapshot())
    counter.close()
    return results


# -- 2. rebuilding history -------------------------------------------------------------------------


def build_chat(session: Session, size: int, first_ids: tuple[int, int]) -> int:
    """A chat of ``size`` messages written with Core bulk inserts; returns its id.

    The rounds are: user, assistant asking for one tool, the tool result, assistant answer
    (a chat whose size ends a round early ends on an answer: a rebuild leaves out a tool call
    that has no result yet).
    ``first_ids`` are the first free message and tool-call ids.
    """
    chat = ChatRow(model=MODEL, provider=PROVIDER)
    session.add(chat)
    session.commit()
    chat_id = chat.id
    model_id = chat.model_id
    message_id, call_id = first_ids
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    messages: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for i in range(size):
        kind = i % 4
        if kind == 1 and i + 1 == size:
            kind = 3  # no room for the call's result: an unanswered call is not history
        row: dict[str, Any] = {
            "id": message_id + i,
            "chat_id": chat_id,
            "created_at": start + timedelta(seconds=i),
            "updated_at": start + timedelta(seconds=i),
            "content": None,
            "tool_call_id": None,
            "model_id": None,
            "input_tokens": None,
            "output_tokens": None,
        }
        if kind == 0:
            row.update(role="user", content=f"Question {i}: what is the weather in city {i}?")
        elif kind == 1:
            row.update(role="assistant", model_id=model_id, input_tokens=40, output_tokens=12)
            calls.append(
                {
                    "id": call_id,
                    "message_id": message_id + i,
                    "tool_call_id": f"call_{i}",
                    "name": "weather",
                    "arguments": {"city": f"City {i}"},
                    "created_at": start + timedelta(seconds=i),
                }
            )
            call_id += 1
        elif kind == 2:
            row.update(role="tool", content=f"City {i - 1}: 15°C", tool_call_id=call_id - 1)
        else:
            row.update(
                role="assistant",
                content=REPLY,
                model_id=model_id,
                input_tokens=60,
                output_tokens=40,
            )
        messages.append(row)
    session.execute(insert(MESSAGES), messages)
    if calls:
        session.execute(insert(TOOL_CALLS), calls)
    session.commit()
    return chat_id


@dataclass
class HistoryResult:
    size: int
    to_llm_ns: list[int] = field(default_factory=list)
    raw_ns: list[int] = field(default_factory=list)
    raw_with_calls_ns: list[int] = field(default_factory=list)
    counts: set[tuple[int, ...]] = field(default_factory=set)
    messages: int = 0


def history(engine: Engine, repeats: int) -> list[HistoryResult]:
    messages_table = MESSAGES
    calls_table = TOOL_CALLS
    chat_ids: dict[int, int] = {}
    with Session(engine) as session:
        next_ids = (1, 1)
        for size in HISTORY_SIZES:
            chat_ids[size] = build_chat(session, size, next_ids)
            next_ids = (next_ids[0] + size, next_ids[1] + size)
    counter = StatementCounter(engine)
    results = []
    for size in HISTORY_SIZES:
        chat_id = chat_ids[size]
        result = HistoryResult(size)
        where = messages_table.c.chat_id == chat_id
        raw_messages = select(messages_table).where(where)
        raw_calls = (
            select(calls_table)
            .join(messages_table, calls_table.c.message_id == messages_table.c.id)
            .where(where)
        )
        runs = repeats if size < 1000 else max(5, repeats // 3)
        for _ in range(runs + 2):  # the first two are warm-up
            # to_llm in a fresh session
            with Session(engine) as session:
                chat = session.get(ChatRow, chat_id)
                assert chat is not None
                settle()
                counter.reset()
                start = perf_counter_ns()
                llm = chat.to_llm()
                elapsed = perf_counter_ns() - start
                result.counts.add(counter.snapshot())
                result.messages = len(llm.messages)
                result.to_llm_ns.append(elapsed)
            # the raw read of the same rows, in a fresh session in the same state
            with Session(engine) as session:
                session.get(ChatRow, chat_id)
                settle()
                start = perf_counter_ns()
                rows = session.execute(raw_messages).all()
                result.raw_ns.append(perf_counter_ns() - start)
                assert len(rows) == size
            with Session(engine) as session:
                session.get(ChatRow, chat_id)
                settle()
                start = perf_counter_ns()
                session.execute(raw_messages).all()
                session.execute(raw_calls).all()
                result.raw_with_calls_ns.append(perf_counter_ns() - start)
        for samples in (result.to_llm_ns, result.raw_ns, result.raw_with_calls_ns):
            del samples[:2]
        results.append(result)
    counter.close()
    return results


# -- report ----------------------------------------------------------------------------------------


def _ms(samples: Sequence[int]) -> float:
    return statistics.median(samples) / 1e6


def _counts(counts: set[tuple[int, ...]]) -> list[str]:
    """One cell per column; a column whose count varied between repeats shows its range."""
    cells = []
    for column in zip(*counts, strict=True):
        low, high = min(column), max(column)
        cells.append(str(low) if low == high else f"{low}-{high}")
    return cells


def report_turns(results: dict[str, dict[str, TurnResult]], repeats: int) -> list[str]:
    lines = [
        f"Statements per `ask` (SQLite in memory, fake model, default strategy); "
        f"steady state: the chat had one turn before; median of {repeats} asks.",
        "",
        "| Turn | Mode | SELECT | INSERT | UPDATE | DELETE | other | COMMIT | ms / ask |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    names = list(results["sync"])
    for name in names:
        for mode in ("sync", "async"):
            result = results[mode][name]
            cells = " | ".join(_counts(result.counts))
            lines.append(f"| {name} | {mode} | {cells} | {_ms(result.times_ns):.2f} |")
    return lines


def report_history(results: list[HistoryResult], repeats: int) -> list[str]:
    lines = [
        f"Rebuilding history: `chat.to_llm()` in a fresh `Session` against a raw "
        f"`session.execute(select(Message.__table__).where(chat_id == ...)).all()`; median of "
        f"{repeats} runs (a third of them for N = 1000), alternating.",
        "",
        "| N messages | `to_llm` SELECTs | `to_llm` other stmts | `to_llm` COMMITs "
        "| `to_llm` ms | raw messages ms | ratio (target <= 2x) "
        "| raw messages + tool calls ms | ratio |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in results:
        selects, inserts, updates, deletes, other, commits = (
            "/".join(sorted({str(c[i]) for c in result.counts})) for i in range(6)
        )
        writes = [f"{n} {verb}" for n, verb in ((inserts, "INSERT"), (updates, "UPDATE"))]
        others = ", ".join(w for w in writes if not w.startswith("0 ")) or "0"
        if deletes != "0" or other != "0":
            others += f", {deletes} DELETE, {other} other"
        to_llm, raw, both = (
            _ms(result.to_llm_ns),
            _ms(result.raw_ns),
            _ms(result.raw_with_calls_ns),
        )
        ratio = to_llm / raw
        ok_ratio = "" if ratio <= RATIO_TARGET else " **over**"
        ok_select = "" if selects.isdigit() and int(selects) <= SELECT_TARGET else " **over**"
        assert result.messages == result.size, (result.messages, result.size)
        lines.append(
            f"| {result.size:,} | {selects}{ok_select} | {others} | {commits} | {to_llm:.2f} "
            f"| {raw:.2f} | {ratio:.1f}x{ok_ratio} | {both:.2f} | {to_llm / both:.1f}x |"
        )
    return lines


def payload(
    meta: dict[str, Any],
    turns: dict[str, dict[str, TurnResult]],
    rebuilt: list[HistoryResult],
    repeats: int,
    history_repeats: int,
) -> dict[str, Any]:
    """``bench/results/persistence.json``: every ask's and every rebuild's time (ms), and the
    statement counts seen ((SELECT, INSERT, UPDATE, DELETE, other, COMMIT) tuples). The three
    timings of a rebuild run (``to_llm`` and the two raw reads) come from the same iteration:
    their ratio is paired."""
    return {
        "meta": meta,
        "repeats": repeats,
        "history_repeats": history_repeats,
        "ratio_target": RATIO_TARGET,
        "select_target": SELECT_TARGET,
        "count_columns": [*VERBS, "other", "COMMIT"],
        "turns": [
            {
                "turn": name,
                "mode": mode,
                "ms": [results_json.ms(ns) for ns in result.times_ns],
                "counts": sorted(list(c) for c in result.counts),
            }
            for name in turns["sync"]
            for mode, results in turns.items()
            if name in results
            for result in (results[name],)
        ],
        "history": [
            {
                "size": result.size,
                "messages": result.messages,
                "to_llm_ms": [results_json.ms(ns) for ns in result.to_llm_ns],
                "raw_ms": [results_json.ms(ns) for ns in result.raw_ns],
                "raw_with_calls_ms": [results_json.ms(ns) for ns in result.raw_with_calls_ns],
                "counts": sorted(list(c) for c in result.counts),
            }
            for result in rebuilt
        ],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=25, help="asks per turn kind")
    parser.add_argument("--history-repeats", type=int, default=30)
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS}")
    parser.add_argument("--json-only", action="store_true", help="write only persistence.json")
    args = parser.parse_args(argv)
    meta = results_json.run_meta("persistence")

    sync_engine = create_engine("sqlite://", poolclass=StaticPool)
    Base.metadata.create_all(sync_engine)
    turns = {"sync": turns_sync(sync_engine, args.repeats)}

    async def run_async() -> dict[str, TurnResult]:
        engine = create_async_engine("sqlite+aiosqlite://", poolclass=StaticPool)
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        try:
            return await turns_async(engine, args.repeats)
        finally:
            await engine.dispose()

    turns["async"] = asyncio.run(run_async())
    sync_engine.dispose()

    history_engine = create_engine("sqlite://", poolclass=StaticPool)
    Base.metadata.create_all(history_engine)
    rebuilt = history(history_engine, args.history_repeats)
    history_engine.dispose()

    table = "\n".join(
        [*report_turns(turns, args.repeats), "", *report_history(rebuilt, args.history_repeats)]
    )
    print(table)
    if not args.no_write:
        found = payload(meta, turns, rebuilt, args.repeats, args.history_repeats)
        print(f"written to {results_json.write('persistence', found)}", file=sys.stderr)
    if not args.no_write and not args.json_only:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(
            "# Persistence\n\n"
            "Written by `python bench/bench_persistence.py` (see its docstring for the method).\n\n"
            + table
            + "\n"
        )
        print(f"\nwritten to {RESULTS.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
