"""Library overhead from the transport yielding the first chunk to the user's ``on_chunk``.

Run from the repository root with ``python bench/bench_first_chunk.py``; it prints a markdown
table and writes it to ``bench/results/first_chunk.md``, and every run's time to
``bench/results/first_chunk.json`` (the plot's data; ``--json-only``: that file alone,
``--no-write``: neither). Nothing touches the network.

Method. A custom httpx transport (sync and async) serves a recorded OpenAI Responses stream
(``tests/fixtures/wire/openai/chat_streaming_responses_...json``, the first interaction) one SSE
event per piece, as a server flushes them. The byte stream records ``time.perf_counter_ns()``
just before it yields each piece. The chat is
``sa_llm.context(http_client=..., async_http_client=..., openai_api_key="x", max_retries=0)
.chat("gpt-5-nano", provider="openai")`` (or a persisted chat row with that context), and
``ask(..., on_chunk=cb)`` where ``cb`` records ``perf_counter_ns()`` at the first chunk whose
``content`` is non-empty. The overhead of one run is ``cb time - time the transport yielded the
piece holding that event``: httpx's byte iterators, the SSE decoder, JSON, the Responses codec,
the accumulator, the flow driver and the callback dispatch.

The persisted chat (SQLite in memory, the standard mixins) writes the empty assistant row
(INSERT + COMMIT) when the stream opens, before its first chunk is read (decision D8), so that
write is not on the measured path. It is timed on its own with a
:class:`~sa_llm.persistence.PersistenceStrategy` subclass that timestamps ``run_step``: the table
shows the first chunk's path and, for reference, what the placeholder step costs where it runs.

Before every run (outside the timed window) ``gc.collect()`` runs, so that a collection
triggered by garbage of an earlier run does not land in a later one's measurement; the objects
alive after the warm-up are moved out of the collector's sight first (``gc.freeze()``), so that
collection is cheap.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter_ns
from typing import Any, TypeVar

import httpx
import results_json
from sqlalchemy import Engine, create_engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import StaticPool

import sa_llm
from sa_llm.chat import Chat
from sa_llm.declarative import acts_as_chat, acts_as_message, acts_as_model, acts_as_tool_call
from sa_llm.mixins import ChatMixin, MessageMixin, ModelMixin, ToolCallMixin
from sa_llm.persistence import PersistenceStrategy, Turn, use_strategy
from sa_llm.types import Chunk

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = (
    ROOT
    / "tests"
    / "fixtures"
    / "wire"
    / "openai"
    / "chat_streaming_responses_openai_gpt-5-nano_reports_consistent_token_counts_compared_to"
    "_non-streaming.json"
)
RESULTS = ROOT / "bench" / "results" / "first_chunk.md"
MODEL = "gpt-5-nano"
TARGET_US = 500.0

T = TypeVar("T")


# -- the recorded stream and the timing transport --------------------------------------------------


def load_stream(path: Path) -> tuple[list[bytes], dict[str, str], int]:
    """The first event-stream body of a recording, split one SSE event per piece; the headers;
    and the index of the piece holding the first non-empty text delta."""
    recording = json.loads(path.read_text(encoding="utf-8"))
    for interaction in recording["interactions"]:
        response = interaction["response"]
        headers = dict(response.get("headers") or {})
        if "text/event-stream" in headers.get("content-type", ""):
            body = response["body"].encode("utf-8")
            break
    else:
        raise SystemExit(f"{path.name}: no text/event-stream response")
    pieces = [block + b"\n\n" for block in body.split(b"\n\n") if block.strip()]
    for index, piece in enumerate(pieces):
        data = piece.split(b"data: ", 1)[1]
        event = json.loads(data)
        if event.get("type") == "response.output_text.delta" and event.get("delta"):
            return pieces, headers, index
    raise SystemExit(f"{path.name}: no text delta in the stream")


class _TimedPieces(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body yielded piece by piece, stamping the time just before each yield."""

    def __init__(self, pieces: Sequence[bytes], stamps: list[int]) -> None:
        self.pieces = pieces
        self.stamps = stamps

    def __iter__(self) -> Iterator[bytes]:
        stamps = self.stamps
        for piece in self.pieces:
            stamps.append(perf_counter_ns())
            yield piece

    async def __aiter__(self) -> AsyncIterator[bytes]:
        stamps = self.stamps
        for piece in self.pieces:
            stamps.append(perf_counter_ns())
            yield piece


class RecordedTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Answers every request with the recorded stream; ``stamps`` are the last response's."""

    def __init__(self, pieces: Sequence[bytes], headers: dict[str, str]) -> None:
        self.pieces = pieces
        self.headers = headers
        self.stamps: list[int] = []

    def _response(self) -> httpx.Response:
        self.stamps = []
        return httpx.Response(
            200, headers=self.headers, stream=_TimedPieces(self.pieces, self.stamps)
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        return self._response()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        return self._response()


# -- persisted models (as tests/persisted.py declares them) ----------------------------------------


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


class TimedStrategy(PersistenceStrategy):
    """The default strategy, timing the step that writes the placeholder row."""

    def __init__(self) -> None:
        self._placeholder = False
        self.placeholder_ns: tuple[int, int] | None = None

    def persist_new_message(self, session: Session, turn: Turn) -> Any:
        self._placeholder = True
        return super().persist_new_message(session, turn)

    def run_step(self, session: Session, step: Callable[[], T], *, keep: Sequence[Any] = ()) -> T:
        self._placeholder = False
        start = perf_counter_ns()
        try:
            return super().run_step(session, step, keep=keep)
        finally:
            if self._placeholder:
                self.placeholder_ns = (start, perf_counter_ns())


# -- runs ------------------------------------------------------------------------------------------


@dataclass
class Series:
    """Samples (ns) of one configuration."""

    total: list[int] = field(default_factory=list)
    placeholder: list[int] = field(default_factory=list)

    def add(self, total: int, placeholder: int | None = None) -> None:
        self.total.append(total)
        if placeholder is not None:
            self.placeholder.append(placeholder)


class FirstChunk:
    """The ``on_chunk`` callback: the time of the first chunk with content."""

    def __init__(self) -> None:
        self.at: int | None = None

    def __call__(self, chunk: Chunk) -> None:
        if self.at is None and chunk.content:
            self.at = perf_counter_ns()


def _settle(run: int, warmup: int) -> None:
    """Collect garbage before a run; after the warm-up, freeze what is alive (see docstring)."""
    if run == warmup:
        gc.collect()
        gc.freeze()
    gc.collect()


def _overhead(callback: FirstChunk, transport: RecordedTransport, index: int) -> int:
    assert callback.at is not None, "no chunk with content reached the callback"
    return callback.at - transport.stamps[index]


def _placeholder(strategy: TimedStrategy) -> int:
    assert strategy.placeholder_ns is not None, "no placeholder step was timed"
    start, end = strategy.placeholder_ns
    strategy.placeholder_ns = None
    return end - start


def bench_plain_sync(
    ctx: sa_llm.Context, transport: RecordedTransport, index: int, runs: int, warmup: int
) -> Series:
    series = Series()
    chat = ctx.chat(MODEL, provider="openai")
    for run in range(warmup + runs):
        chat.reset_messages()
        callback = FirstChunk()
        _settle(run, warmup)
        chat.ask("Count to 3", on_chunk=callback)
        if run >= warmup:
            series.add(_overhead(callback, transport, index))
    return series


async def bench_plain_async(
    ctx: sa_llm.Context, transport: RecordedTransport, index: int, runs: int, warmup: int
) -> Series:
    series = Series()
    chat: Chat = ctx.chat(MODEL, provider="openai")
    for run in range(warmup + runs):
        chat.reset_messages()
        callback = FirstChunk()
        _settle(run, warmup)
        await chat.aask("Count to 3", on_chunk=callback)
        if run >= warmup:
            series.add(_overhead(callback, transport, index))
    return series


def bench_persisted_sync(
    ctx: sa_llm.Context,
    transport: RecordedTransport,
    index: int,
    runs: int,
    warmup: int,
    engine: Engine,
) -> Series:
    series = Series()
    strategy = TimedStrategy()
    with Session(engine) as session:
        use_strategy(session, strategy)
        for run in range(warmup + runs):
            chat = ChatRow(model=MODEL, provider="openai", context=ctx)
            session.add(chat)
            session.commit()
            callback = FirstChunk()
            _settle(run, warmup)
            chat.ask("Count to 3", on_chunk=callback)
            if run >= warmup:
                series.add(_overhead(callback, transport, index), _placeholder(strategy))
    return series


async def bench_persisted_async(
    ctx: sa_llm.Context,
    transport: RecordedTransport,
    index: int,
    runs: int,
    warmup: int,
    engine: AsyncEngine,
) -> Series:
    series = Series()
    strategy = TimedStrategy()
    async with AsyncSession(engine, expire_on_commit=False) as session:
        use_strategy(session, strategy)
        for run in range(warmup + runs):
            chat = ChatRow(model=MODEL, provider="openai", context=ctx)
            session.add(chat)
            await session.commit()
            callback = FirstChunk()
            _settle(run, warmup)
            await chat.aask("Count to 3", on_chunk=callback)
            if run >= warmup:
                series.add(_overhead(callback, transport, index), _placeholder(strategy))
    return series


# -- report ----------------------------------------------------------------------------------------


def _us(samples: Sequence[int]) -> tuple[float, float]:
    """Median and p95 in microseconds."""
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered) / 1e3, p95 / 1e3


def _row(label: str, mode: str, samples: Sequence[int], target: bool) -> str:
    median, p95 = _us(samples)
    verdict = ("yes" if median < TARGET_US else "**no**") if target else "n/a"
    return f"| {label} | {mode} | {median:,.1f} | {p95:,.1f} | {verdict} |"


def report(
    results: dict[str, Series], pieces: Sequence[bytes], index: int, runs: int, db: str
) -> str:
    lines = [
        f"First-chunk overhead: transport yields the piece with the first text delta -> "
        f"`on_chunk` receives it. Recorded OpenAI Responses stream ({FIXTURE.name[:60]}...), "
        f"{len(pieces)} pieces (one SSE event each, {sum(map(len, pieces)):,} B); the first "
        f"text delta is piece {index + 1}. {runs} runs per row (after warm-up); microseconds. "
        f"Persisted: SQLite {db}, default strategy (commit per step).",
        "",
        f"| Chat | Mode | median µs | p95 µs | < {TARGET_US:.0f} µs |",
        "| --- | --- | ---: | ---: | :---: |",
    ]
    for mode in ("sync", "async"):
        lines.append(_row("plain `Chat`", mode, results[f"plain {mode}"].total, True))
    for mode in ("sync", "async"):
        series = results[f"persisted {mode}"]
        lines.append(_row("persisted", mode, series.total, True))
        lines.append(
            _row(
                "persisted: the placeholder step, at stream open (not on this path)",
                mode,
                series.placeholder,
                False,
            )
        )
    return "\n".join(lines)


#: The rows of the table and the plot: (key of the series, samples, label, on the path).
SERIES = (
    ("plain sync", "total", "plain `Chat`, sync", True),
    ("plain async", "total", "plain `Chat`, async", True),
    ("persisted sync", "total", "persisted, sync", True),
    ("persisted async", "total", "persisted, async", True),
    ("persisted sync", "placeholder", "placeholder INSERT + COMMIT, sync", False),
    ("persisted async", "placeholder", "placeholder INSERT + COMMIT, async", False),
)


def payload(
    meta: dict[str, Any], results: dict[str, Series], runs: int, warmup: int, db: str
) -> dict[str, Any]:
    """``bench/results/first_chunk.json``: every run's µs per row."""
    return {
        "meta": meta,
        "runs": runs,
        "warmup": warmup,
        "db": db,
        "target_us": TARGET_US,
        "rows": [
            {
                "label": label,
                "on_path": on_path,
                "us": [round(ns / 1e3, 3) for ns in getattr(results[key], samples)],
            }
            for key, samples, label, on_path in SERIES
            if key in results
        ],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument(
        "--sqlite-file", action="store_true", help="persist to a temporary file, not in memory"
    )
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS}")
    parser.add_argument("--json-only", action="store_true", help="write only first_chunk.json")
    args = parser.parse_args(argv)
    meta = results_json.run_meta("first_chunk")

    pieces, headers, index = load_stream(FIXTURE)
    transport = RecordedTransport(pieces, headers)
    ctx = sa_llm.context(
        http_client=httpx.Client(transport=transport),
        async_http_client=httpx.AsyncClient(transport=transport),
        openai_api_key="x",
        max_retries=0,
    )

    with tempfile.TemporaryDirectory() as tmp:
        if args.sqlite_file:
            db = "file"
            path = Path(tmp) / "bench.sqlite3"
            sync_engine = create_engine(f"sqlite:///{path}")
            async_engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
        else:
            db = "in memory"
            sync_engine = create_engine("sqlite://", poolclass=StaticPool)
            async_engine = create_async_engine("sqlite+aiosqlite://", poolclass=StaticPool)

        async def setup_async() -> None:
            async with async_engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)

        Base.metadata.create_all(sync_engine)
        results = {
            "plain sync": bench_plain_sync(ctx, transport, index, args.runs, args.warmup),
            "persisted sync": bench_persisted_sync(
                ctx, transport, index, args.runs, args.warmup, sync_engine
            ),
        }

        async def run_async() -> None:
            await setup_async()
            results["plain async"] = await bench_plain_async(
                ctx, transport, index, args.runs, args.warmup
            )
            results["persisted async"] = await bench_persisted_async(
                ctx, transport, index, args.runs, args.warmup, async_engine
            )
            await async_engine.dispose()

        asyncio.run(run_async())
        sync_engine.dispose()

    gc.unfreeze()
    table = report(results, pieces, index, args.runs, db)
    print(table)
    if not args.no_write:
        path = results_json.write("first_chunk", payload(meta, results, args.runs, args.warmup, db))
        print(f"written to {path}", file=sys.stderr)
    if not args.no_write and not args.json_only:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(
            "# First-chunk overhead\n\n"
            "Written by `python bench/bench_first_chunk.py` (see its docstring for the method).\n\n"
            + table
            + "\n"
        )
        print(f"\nwritten to {RESULTS.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
