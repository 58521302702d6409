"""The workloads W1-W6, run the same way against any :class:`~peers.common.System`.

Every run gets its own database file and its own base URL path prefix on the shared fake server
(``/<workload>-<system>-<repeat>/v1``); :class:`BenchPlanner`, the server's plan hook, reads the
workload from that prefix, so one server process answers every run:

* ``w1`` (and ``w1a``, its async twin) plain replies; ``w3`` (and ``w3a``, its async twin) 50
  text deltas per streamed reply;
  ``w3g`` the same with a time-to-first-token gap (:data:`W3_GAP` between the stream's opening
  events and its first delta); ``w4`` HTTP 500 on the first request of turn 25 (once per run);
  ``w2`` and ``w5`` a tool call on every fifth turn; ``w6`` 100 ms latency before each reply;
  ``parity`` a tool call on every third turn (the statement check of :func:`parity_traces`).

Each ``run_*`` function returns JSON-ready results; ``bench_peers.py`` aggregates and prints
them. Example::

    runs = run_chats({"sa_llm": SaLLMSync}, tmp_dir, server_root, "w1", repeat=0)
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter, perf_counter_ns, process_time
from typing import Any

from peers.common import (
    TOOL_EVERY,
    AsyncConversation,
    Conversation,
    System,
    journal_mode,
    question,
    reply_text,
    tool_city,
    writes,
)
from sa_llm.testing.server import EXCHANGES_PATH, Plan, PlannedToolCall, Received, Usage

TURNS = 50
FAILING_TURN = 25
FAILURE_TURNS = 30
TOOL_TURNS = 30
CHUNKS = 50
W6_CHATS = 200
W6_TURNS = 5
W6_LATENCY = 0.1
#: The time to first token of ``w3g`` (seconds): longer than a commit on a busy machine, much
#: shorter than a real model's (hundreds of ms), which would only make the runs longer.
W3_GAP = 0.02
PARITY_TURNS = 6
PROFILE_TURNS = 2
PARITY_TOOL_EVERY = 3
HISTORY_SIZES = (100, 1000)
USAGE = Usage(cached_tokens=32)


def turns_for(messages: int) -> int:
    """User turns (a tool round every fifth) whose chat holds at least ``messages`` messages."""
    turns = 0
    count = 0
    while count < messages:
        turns += 1
        count += 4 if turns % TOOL_EVERY == 0 else 2
    return turns


# -- the server's side --------------------------------------------------------------------------


@dataclass(frozen=True)
class Script:
    chunks: int = 1
    latency: float = 0.0
    tool_every: int = 0
    fail_turn: int = 0
    first_token_delay: float = 0.0


SCRIPTS = {
    "warm": Script(chunks=5, tool_every=2),
    "w1": Script(),
    "w1a": Script(),
    "w3a": Script(chunks=CHUNKS),
    "w2": Script(tool_every=TOOL_EVERY),
    "w3": Script(chunks=CHUNKS),
    "w3g": Script(chunks=CHUNKS, first_token_delay=W3_GAP),
    "w4": Script(fail_turn=FAILING_TURN),
    "w5": Script(tool_every=TOOL_EVERY),
    "w6": Script(latency=W6_LATENCY),
    "parity": Script(chunks=5, tool_every=PARITY_TOOL_EVERY),
}


class BenchPlanner:
    """The fake server's plan hook: the workload comes from the path prefix of the request."""

    def __init__(self) -> None:
        self.failed: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, received: Received, default: Plan) -> Plan:
        run = received.path.strip("/").split("/", 1)[0]
        script = SCRIPTS.get(run.split("-", 1)[0], Script())
        turn = received.turn
        new_turn = not received.after_tool_result
        if new_turn and turn == script.fail_turn:
            with self.lock:
                first = run not in self.failed
                self.failed.add(run)
            if first:
                return Plan(status=500, latency=script.latency)
        if new_turn and script.tool_every and turn % script.tool_every == 0:
            call = PlannedToolCall("weather", {"city": tool_city(turn)})
            return Plan(text=None, tool_calls=(call,), latency=script.latency, usage=USAGE)
        return Plan(
            text=reply_text(turn),
            chunks=script.chunks,
            latency=script.latency,
            first_token_delay=script.first_token_delay,
            usage=USAGE,
        )


def exchanges(base_url: str) -> list[dict[str, Any]]:
    """The server's log of the requests made under ``base_url``'s prefix."""
    root, _, prefix = base_url.partition("//")[2].partition("/")
    with urllib.request.urlopen(f"http://{root}{EXCHANGES_PATH}", timeout=30) as response:
        log: list[dict[str, Any]] = json.loads(response.read())["exchanges"]
    wanted = "/" + prefix + "/"
    return [entry for entry in log if entry["path"].startswith(wanted)]


# -- helpers ------------------------------------------------------------------------------------

SystemClass = Callable[[Path, str], System]


def _open(cls: SystemClass, tmp: Path, root: str, run: str) -> System:
    system = cls(tmp / f"{run}.db", f"{root}/{run}/v1")
    system.open()
    return system


class _TurnLog:
    """What :func:`_turn` records of each turn of one chat: ms, CPU ms, statements by verb,
    first-delta callback and transport times."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.cpu: list[float] = []
        self.counts: list[dict[str, int]] = []
        self.callback_ns: list[int | None] = []
        self.transport_ns: list[int | None] = []

    def add(
        self,
        system: System,
        start: float,
        cpu: float,
        callback_ns: int | None,
        transport_ns: int | None,
    ) -> None:
        """Record the turn that began at ``perf_counter()`` ``start`` and ``process_time()``
        ``cpu`` and has just ended: its CPU and wall ms, statements and first-delta times."""
        self.cpu.append((process_time() - cpu) * 1000)
        self.times.append((perf_counter() - start) * 1000)
        self.counts.append(system.counter.snapshot())
        self.callback_ns.append(callback_ns)
        self.transport_ns.append(transport_ns)

    def result(self) -> dict[str, Any]:
        return {
            "turn_ms": self.times,
            "turn_cpu_ms": self.cpu,
            "stmts": self.counts,
            "callback_ns": self.callback_ns,
            "transport_ns": self.transport_ns,
        }

    def totals(self) -> dict[str, float]:
        """The chat's wall and CPU time: the sums over its turns (seconds)."""
        return {"wall_s": sum(self.times) / 1000, "cpu_s": sum(self.cpu) / 1000}


def _interleaved(names: list[str]) -> Iterator[tuple[int, str]]:
    """(turn, system) of a workload's turns taken in turn: turn 1 of each system, then turn 2
    of each in the other order, and so on."""
    for turn in range(1, TURNS + 1):
        for name in names if turn % 2 else names[::-1]:
            yield turn, name


class _FirstDelta:
    """A chunk callback that keeps when the first text arrived (``perf_counter_ns``)."""

    __slots__ = ("ns",)

    def __init__(self) -> None:
        self.ns: int | None = None

    def __call__(self, text: str) -> None:
        if self.ns is None and text:
            self.ns = perf_counter_ns()


def _turn(system: System, chat: Conversation, turn: int, stream: bool, log: _TurnLog) -> None:
    """One turn of ``chat``, recorded in ``log``."""
    first = _FirstDelta()
    system.counter.reset()
    start, cpu = perf_counter(), process_time()
    chat.ask(question(turn), first if stream else None)
    log.add(system, start, cpu, first.ns, chat.transport_first_ns)


async def _aturn(
    system: System, chat: AsyncConversation, turn: int, stream: bool, log: _TurnLog
) -> None:
    """:func:`_turn` through the system's async API."""
    first = _FirstDelta()
    system.counter.reset()
    start, cpu = perf_counter(), process_time()
    await chat.aask(question(turn), first if stream else None)
    log.add(system, start, cpu, first.ns, None)


def _turns(
    system: System,
    chat: Conversation,
    count: int,
    *,
    stream: bool = False,
    first: int = 1,
) -> dict[str, Any]:
    """Runs ``count`` turns; per turn: ms, CPU ms, statements by verb, first-delta callback
    times."""
    log = _TurnLog()
    for turn in range(first, first + count):
        _turn(system, chat, turn, stream, log)
    return log.result()


def warm_up(cls: SystemClass, tmp: Path, root: str, name: str) -> None:
    """A few turns of every kind first, so imports and first-use costs stay out of the runs."""
    system = _open(cls, tmp, root, f"warm-{name}")
    try:
        chat = system.new_chat("warm", tools=True)
        _turns(system, chat, 4)
        _turns(system, chat, 2, stream=True, first=5)
    finally:
        system.close()


# -- W1, W3: a 50-turn chat -----------------------------------------------------------------------

STREAMED = ("w3", "w3g")


def run_chats(
    classes: Mapping[str, SystemClass], tmp: Path, root: str, workload: str, repeat: int
) -> dict[str, dict[str, Any]]:
    """W1 (not streamed), W3 or W3 with a first-token gap (``w3g``, streamed): a fresh 50-turn
    chat of each system of ``classes``, in this process, their turns interleaved: turn 1 of
    every chat, then turn 2 of every chat (in the other order), and so on. A change in the
    shared machine's load (another process, the disk's latency) then falls on every system
    alike, turn by turn, where chats run one after the other each see a different stretch of
    it. ``repeat`` numbers the run (each needs its own path prefix on the server). Each
    system's run records its wall and CPU time (the sums over its turns), per-turn times and
    statements, and the journal mode its own connection reports."""
    stream = workload in STREAMED
    systems: dict[str, System] = {}
    chats: dict[str, Conversation] = {}
    logs = {name: _TurnLog() for name in classes}
    results: dict[str, dict[str, Any]] = {}
    try:
        for name, cls in classes.items():
            # The journal mode in the name: each mode's runs get their own files and server log.
            run = f"{workload}-{name}-{journal_mode()}-{repeat}"
            system = systems[name] = _open(cls, tmp, root, run)
            if stream and hasattr(system, "observe_transport"):
                system.observe_transport = True
            chats[name] = system.new_chat(run)
        gc.collect()
        for turn, name in _interleaved(list(classes)):
            _turn(systems[name], chats[name], turn, stream, logs[name])
        for name, system in systems.items():
            result = {**logs[name].result(), **logs[name].totals()}
            result["rows"] = system.rows()
            result["journal"] = system.journal()
            results[name] = result
    finally:
        for system in systems.values():
            system.close()
    for name, result in results.items():
        system = systems[name]
        result["db_bytes"] = system.db_bytes()
        if stream:
            _first_chunks(result, system.base_url)
            result["transport_us"] = [
                (cb - tr) / 1000 if cb is not None and tr is not None else None
                for cb, tr in zip(result["callback_ns"], result["transport_ns"], strict=False)
            ]
        del result["callback_ns"], result["transport_ns"]
    return results


def _first_chunks(result: dict[str, Any], base_url: str, skip: int = 0) -> None:
    """A streamed run's first chunk per turn (µs from the server's write of the first delta,
    in its log, to the callback) and writes per reply; ``skip``: untimed streamed turns first."""
    log = [entry for entry in exchanges(base_url) if entry["stream"]][skip:]
    served = [entry["first_content_ns"] for entry in log]
    result["first_chunk_us"] = [
        (cb - sv) / 1000 if cb is not None and sv is not None else None
        for cb, sv in zip(result["callback_ns"], served, strict=False)
    ]
    result["writes_per_reply"] = [writes(c) for c in result["stmts"]]


def run_chats_async(
    classes: Mapping[str, SystemClass],
    tmp: Path,
    root: str,
    repeat: int,
    workload: str = "w1a",
) -> dict[str, dict[str, Any]]:
    """W1 async (``w1a``) or W3 async (``w3a``, streamed): a fresh 50-turn chat of each system
    through its async API on a SQLite file (aiosqlite), in one event loop, the turns
    interleaved as in :func:`run_chats`. A streamed run also records the first chunk per turn
    and the writes per reply, as W3's."""
    stream = workload == "w3a"
    systems = {}
    for name, cls in classes.items():
        run = f"{workload}-{name}-{journal_mode()}-{repeat}"
        systems[name] = (run, cls(tmp / f"{run}.db", f"{root}/{run}/v1"))

    def ignore(text: str) -> None:
        pass

    async def go() -> dict[str, dict[str, Any]]:
        chats: dict[str, AsyncConversation] = {}
        opened: list[System] = []
        try:
            for name, (run, system) in systems.items():
                await system.aopen(f"sqlite+aiosqlite:///{system.db_path}", None)
                opened.append(system)
                chats[name] = await system.anew_chat(run)
                # The first turn reads the (empty) history; not timed.
                await chats[name].aask(question(0), ignore if stream else None)
            logs = {name: _TurnLog() for name in systems}
            gc.collect()
            for turn, name in _interleaved(list(systems)):
                await _aturn(systems[name][1], chats[name], turn, stream, logs[name])
            return {
                name: {
                    **logs[name].result(),
                    **logs[name].totals(),
                    "journal": await system.ajournal(),
                }
                for name, (_, system) in systems.items()
            }
        finally:
            for system in opened:
                await system.aclose()

    results = asyncio.run(go())
    for name, result in results.items():
        if stream:
            _first_chunks(result, systems[name][1].base_url, skip=1)
        del result["callback_ns"], result["transport_ns"]
    return results


# -- the statement check: sa_llm and the limit must run the same SQL -------------------------------


def parity_traces(
    cls: SystemClass, tmp: Path, root: str, name: str, postgres_url: str | None
) -> dict[str, list[list[str]]]:
    """The statements and COMMITs of each turn of small chats (not streamed, streamed, a tool
    call every third turn; async on aiosqlite, not streamed and streamed, and, with
    ``postgres_url``, on PostgreSQL),
    captured with ``before_cursor_execute`` and ``commit`` listeners: what ``bench_peers.py``
    compares between sa_llm and the limit."""
    traces: dict[str, list[list[str]]] = {}
    for label, stream in (("sync", False), ("sync streamed", True)):
        run = f"parity-{name}-{label.replace(' ', '_')}"
        system = _open(cls, tmp, root, run)
        try:
            chat = system.new_chat(run, tools=True)
            turns: list[list[str]] = []
            for turn in range(1, PARITY_TURNS + 1):
                system.counter.start_trace()
                chat.ask(question(turn), (lambda text: None) if stream else None)
                turns.append(system.counter.take_trace())
            traces[label] = turns
        finally:
            system.close()
    if not hasattr(cls, "ajournal"):
        return traces
    targets: list[tuple[str, str, str | None, bool]] = [
        ("async sqlite", f"sqlite+aiosqlite:///{tmp / f'parity-{name}-async.db'}", None, False),
        (
            "async sqlite streamed",
            f"sqlite+aiosqlite:///{tmp / f'parity-{name}-async-streamed.db'}",
            None,
            True,
        ),
    ]
    admin = None
    if postgres_url:
        from sqlalchemy import create_engine, text

        admin_url = bench_database(postgres_url)
        schema = f"parity_{name}_{int(time.time())}"
        admin = create_engine(admin_url)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        async_url = admin_url.set(drivername="postgresql+asyncpg").render_as_string(False)
        targets.append(("async postgresql", async_url, schema, False))
    try:
        for label, url, schema_name, streamed in targets:
            # "w1a" and "w3a" runs get no tool calls: the async chats are offered no tools.
            run = f"{'w3a' if streamed else 'w1a'}-parity-{name}-{label.replace(' ', '_')}"
            system = cls(tmp / "unused.db", f"{root}/{run}/v1")
            traces[label] = asyncio.run(_async_trace(system, url, schema_name, run, streamed))
    finally:
        if admin is not None:
            from sqlalchemy import text

            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
    return traces


async def _async_trace(
    system: System, url: str, schema: str | None, key: str, stream: bool
) -> list[list[str]]:
    await system.aopen(url, schema)
    turns: list[list[str]] = []
    try:
        chat = await system.anew_chat(key)
        for turn in range(1, 4):
            system.counter.start_trace()
            await chat.aask(question(turn), (lambda text: None) if stream else None)
            turns.append(system.counter.take_trace())
    finally:
        await system.aclose()
    return turns


# -- W4: HTTP 500 at turn 25 -----------------------------------------------------------------------


def run_failure(cls: SystemClass, tmp: Path, root: str, name: str) -> dict[str, Any]:
    run = f"w4-{name}-0"
    system = _open(cls, tmp, root, run)
    errors: dict[int, str] = {}
    try:
        chat = system.new_chat(run)
        for turn in range(1, FAILURE_TURNS + 1):
            try:
                chat.ask(question(turn))
            except Exception as exc:
                errors[turn] = type(exc).__name__
        report = system.inspect_failure(run, question(FAILING_TURN))
        rows = system.rows()
    finally:
        system.close()
    return {"errors": errors, "report": report.as_dict(), "rows": rows}


# -- W5: a tool call every fifth turn -------------------------------------------------------------


def run_tools(cls: SystemClass, tmp: Path, root: str, name: str) -> dict[str, Any]:
    run = f"w5-{name}-0"
    system = _open(cls, tmp, root, run)
    try:
        chat = system.new_chat(run, tools=True)
        replies = [chat.ask(question(turn)) for turn in range(1, TOOL_TURNS + 1)]
        report = system.check_tools(run)
        rows = system.rows()
    finally:
        system.close()
    answered = sum(1 for turn, text in enumerate(replies, 1) if text == reply_text(turn))
    return {
        "expected": TOOL_TURNS // TOOL_EVERY,
        "report": report.as_dict(),
        "replies_ok": answered,
        "turns": TOOL_TURNS,
        "rows": rows,
    }


# -- W2: long histories, rebuilt in fresh processes ------------------------------------------------

CONTINUE_TURNS = 2


def build_histories(cls: SystemClass, tmp: Path, root: str, name: str) -> dict[str, Any]:
    """Chats of 100 and 1,000 messages written through each system's storage API, then two
    more turns on top of each through the system (their time per turn goes in the plot)."""
    run = f"w2-{name}-0"
    system = _open(cls, tmp, root, run)
    handles: dict[str, str] = {}
    built: dict[str, Any] = {}
    try:
        for size in HISTORY_SIZES:
            turns = turns_for(size)
            handle = system.seed(f"{run}-{size}", turns)
            handles[str(size)] = handle
            chat = system.resume(handle)
            result = _turns(system, chat, CONTINUE_TURNS, first=turns + 1)
            built[str(size)] = {"turn_ms": result["turn_ms"], "stmts": result["stmts"]}
    finally:
        system.close()
    return {"db": str(system.db_path), "base_url": system.base_url, "handles": handles, **built}


def time_rebuild(
    cls: SystemClass, db: Path, base_url: str, handles: dict[str, str], warm: int
) -> dict[str, Any]:
    """In this (fresh) process: the first rebuild of each history, then ``warm`` more each."""
    system = cls(db, base_url)
    system.open()
    results: dict[str, Any] = {}
    try:
        for size, handle in sorted(handles.items(), key=lambda item: -int(item[0])):
            samples: list[float] = []
            raw: list[float] = []
            counts: list[dict[str, int]] = []
            length = 0
            for _ in range(warm + 1):
                gc.collect()
                system.counter.reset()
                start = perf_counter()
                length = system.rebuild(handle)
                samples.append((perf_counter() - start) * 1000)
                counts.append(system.counter.snapshot())
                try:
                    start = perf_counter()
                    system.raw_rows(handle)
                    raw.append((perf_counter() - start) * 1000)
                except NotImplementedError:
                    pass
            results[size] = {
                "cold_ms": samples[0],
                "warm_ms": samples[1:],
                "raw_ms": raw[1:],
                "stmts": counts,
                "length": length,
            }
    finally:
        system.close()
    return results


def time_raw_cold(
    cls: SystemClass, db: Path, base_url: str, handles: dict[str, str]
) -> dict[str, float | None]:
    """In this (fresh) process, first thing: the raw SELECT of each history, once."""
    system = cls(db, base_url)
    system.open()
    found: dict[str, float | None] = {}
    try:
        for size, handle in sorted(handles.items(), key=lambda item: -int(item[0])):
            try:
                start = perf_counter()
                system.raw_rows(handle)
                found[size] = (perf_counter() - start) * 1000
            except NotImplementedError:
                found[size] = None
    finally:
        system.close()
    return found


# -- W6: 200 concurrent async chats on PostgreSQL ------------------------------------------------


def run_concurrent(
    cls: SystemClass,
    root: str,
    name: str,
    postgres_url: str,
    repeat: int,
    *,
    transport: str = "httpx",
    profile: bool = False,
) -> dict[str, Any]:
    """One W6 run (after a small warm-up run in the same process): 200 new chats x 5 turns at
    once, each in a fresh schema; ``transport`` names the async HTTP transport
    (:mod:`peers.transports`). With ``profile`` the measured run runs under cProfile and its
    result carries the CPU time by package (:func:`cpu_by_package`)."""
    from sqlalchemy import create_engine, text

    admin_url = bench_database(postgres_url)
    async_url = admin_url.set(drivername="postgresql+asyncpg")
    admin = create_engine(admin_url, pool_pre_ping=True)
    result: dict[str, Any] = {}
    try:
        for warm in (True, False):
            run = f"w6-{name}-{transport}-{repeat}{'-warm' if warm else ''}"
            schema = f"bench_{name}_{repeat}_{'w' if warm else 'm'}_{int(time.time())}"
            schema = schema.replace("-", "_")
            with admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            try:
                chats, turns = (20, 2) if warm else (W6_CHATS, W6_TURNS)
                if profile and not warm:
                    # The profiler slows the run; the shares need the 200 chats in flight,
                    # not all their turns.
                    turns = PROFILE_TURNS
                system = cls(Path("unused.db"), f"{root}/{run}/v1")
                system.async_transport = transport  # type: ignore[attr-defined]
                result = asyncio.run(
                    _concurrent(
                        system,
                        async_url.render_as_string(False),
                        schema,
                        chats,
                        turns,
                        profile and not warm,
                    )
                )
            finally:
                with admin.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()
    return result


BENCH_DATABASE = "sa_llm_bench"


def bench_database(postgres_url: str) -> Any:
    """The URL of a database of the benchmark's own on that server (created when missing):
    other users of a shared test server may terminate the connections of theirs."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    server = make_url(postgres_url).set(drivername="postgresql+psycopg")
    engine = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": BENCH_DATABASE}
            ).scalar()
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{BENCH_DATABASE}"'))
    finally:
        engine.dispose()
    return server.set(database=BENCH_DATABASE)


async def _concurrent(
    system: System, url: str, schema: str, chats: int, turns: int, profile: bool = False
) -> dict[str, Any]:
    await system.aopen(url, schema)
    # CPU time, not wall time: the share of the client's CPU, not of its waiting.
    profiler = cProfile.Profile(process_time) if profile else None
    errors: dict[str, int] = {}
    completed = 0

    async def one(index: int) -> None:
        nonlocal completed
        chat = await system.anew_chat(f"w6-{index}")
        for turn in range(1, turns + 1):
            await chat.aask(question(turn))
            completed += 1

    gc.collect()
    system.counter.reset()
    try:
        if profiler is not None:
            profiler.enable()
        start, cpu = perf_counter(), process_time()
        outcomes = await asyncio.gather(*(one(i) for i in range(chats)), return_exceptions=True)
        wall, cpu = perf_counter() - start, process_time() - cpu
        if profiler is not None:
            profiler.disable()
    finally:
        await system.aclose()
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            kind = type(outcome).__name__
            errors[kind] = errors.get(kind, 0) + 1
    return {
        "wall_s": wall,
        "cpu_s": cpu,  # this (the client's) process: the floor needs it below wall / 1 core
        "chats": chats,
        "turns": turns,
        "completed": completed,
        "errors": errors,
        "pool_peak": system.pool_peak(),
        "stmts": system.counter.snapshot(),
        "profile": cpu_by_package(profiler) if profiler is not None else None,
    }


#: Where the client's CPU goes, by the package a function's file belongs to.
PACKAGES = (
    "httpcore2",
    "httpcore",
    "httpx2",
    "httpx",
    "h11",
    "anyio",
    "aiohttp",
    "sqlalchemy",
    "asyncpg",
    "greenlet",
    "sa_llm",
    "asyncio",
    "json",
    "ssl",
)


def cpu_by_package(profiler: cProfile.Profile) -> dict[str, float]:
    """Seconds of own CPU time (``tottime``) by package, from a cProfile run; built-in socket
    methods are ``socket calls``; the rest is ``other`` (the benchmark, the standard library
    outside asyncio, other built-ins)."""
    import pstats

    stats = pstats.Stats(profiler)
    found: dict[str, float] = {}
    for (path, _, function), row in stats.stats.items():  # type: ignore[attr-defined]
        own = row[2]
        package = "other"
        parts = Path(path).parts
        for name in PACKAGES:
            if name in parts:
                package = name
                break
        else:
            if function.startswith("<method") and "socket" in function:
                package = "socket calls"
        found[package] = found.get(package, 0.0) + own
    return found
