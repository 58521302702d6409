"""sa_llm side by side with its Python peers and a hand-written limit, on six workloads.

Run from the repository root with ``python bench/bench_peers.py`` (``nox -s bench`` runs it with
the peers installed from the ``bench`` dependency group). It prints markdown tables; with
``--docs`` it also rewrites the part of ``docs/benchmarks.md`` between ``<!-- peers:start -->``
and ``<!-- peers:end -->``, draws ``docs/img/peers.png`` (``bench/plot.py``) and keeps the raw
numbers in ``bench/results/peers.json``.

Systems (``bench/peers/``): sa_llm (a persisted chat row in a sync ``Session`` on a SQLite file;
an ``AsyncSession`` on PostgreSQL for W6), the OpenAI Agents SDK's ``SQLAlchemySession``,
LangChain's ``SQLChatMessageHistory`` with ``ChatOpenAI``, simonw/llm with ``log_to_db``, and the
limit: raw httpx plus sa_llm's row writes in SQLAlchemy Core. All of them talk HTTP to one
:class:`sa_llm.testing.server.FakeOpenAIServer` running in a child process on 127.0.0.1 (so its
work does not share the client's interpreter), each system in its own worker processes. W1 and
W3 run in rounds (one chat of each per system per round, the systems in turn), so that a change
in the load of the shared machine falls on every system alike.

Workloads (``bench/peers/workloads.py``): W1 a 50-turn chat; W2 rebuilding 100- and
1,000-message histories (a tool round every fifth turn) in fresh processes; W3 a 50-turn chat
streamed in 50 deltas per reply; W4 HTTP 500 at turn 25; W5 a tool call every fifth turn; W6
200 concurrent async chats x 5 turns against 100 ms latency on PostgreSQL (needs
``SA_LLM_TEST_POSTGRES_URL``; skipped without it). Every system runs with its client's retries
off, so the failure of W4 reaches it.
"""

from __future__ import annotations

import argparse
import compileall
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib import metadata
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

from peers import SYSTEMS, label, load  # noqa: E402
from peers.workloads import (  # noqa: E402
    CHUNKS,
    FAILING_TURN,
    HISTORY_SIZES,
    TURNS,
    W6_CHATS,
    W6_LATENCY,
    W6_TURNS,
    BenchPlanner,
    build_histories,
    run_chat,
    run_concurrent,
    run_failure,
    run_tools,
    time_raw_cold,
    time_rebuild,
    warm_up,
)

DOCS = ROOT / "docs" / "benchmarks.md"
IMAGE = ROOT / "docs" / "img" / "peers.png"
RESULTS = BENCH / "results" / "peers.json"
START, END = "<!-- peers:start -->", "<!-- peers:end -->"
POSTGRES_ENV = "SA_LLM_TEST_POSTGRES_URL"
PACKAGES = (
    "sa-llm",
    "sqlalchemy",
    "httpx",
    "openai",
    "openai-agents",
    "langchain-community",
    "langchain-openai",
    "langchain-core",
    "llm",
    "sqlite-utils",
    "aiosqlite",
    "asyncpg",
)


# -- the fake server in its own process ---------------------------------------------------------


def _serve(pipe: Connection) -> None:
    from sa_llm.testing.server import FakeOpenAIServer

    server = FakeOpenAIServer(
        plan=BenchPlanner(),
        keep_bodies=False,
        max_requests=1_000_000,
        idle_timeout=300,
        max_seconds=1800,
    )
    with server:
        pipe.send(f"http://127.0.0.1:{server.port}")
        while not server.wait_stopped(0.2):
            if pipe.poll():
                break


class ServerProcess:
    """The fake server in a child process; ``root`` is its ``http://127.0.0.1:<port>``."""

    def __enter__(self) -> str:
        context: Any = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
        self.pipe, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child,), daemon=True)
        self.process.start()
        if not self.pipe.poll(30):
            raise RuntimeError("the fake server did not start")
        root: str = self.pipe.recv()
        return root

    def __exit__(self, *exc: object) -> None:
        self.pipe.send("stop")
        self.process.join(10)
        if self.process.is_alive():
            self.process.terminate()


# -- worker processes ---------------------------------------------------------------------------


def chat_round(name: str, root: str, tmp: Path, round_: int) -> dict[str, Any]:
    """One W1 chat and one W3 chat (the rounds alternate the systems, so that a change in the
    machine's load falls on all of them alike)."""
    cls = load(name)
    warm_up(cls, tmp, root, f"{name}-{round_}")
    return {
        workload: run_chat(cls, tmp, root, name, workload, 1, first=round_)
        for workload in ("w1", "w3")
    }


def worker(name: str, root: str, tmp: Path, w6_repeats: int) -> dict[str, Any]:
    """Every workload but W1 and W3 (see :func:`chat_round`)."""
    cls = load(name)
    began = time.perf_counter()

    def log(what: str) -> None:
        print(
            f"  {name}: {what} ({time.perf_counter() - began:.0f} s)", file=sys.stderr, flush=True
        )

    results: dict[str, Any] = {"api": cls.api, "unsupported": dict(cls.unsupported)}
    warm_up(cls, tmp, root, name)
    log("w4")
    results["w4"] = run_failure(cls, tmp, root, name)
    log("w5")
    results["w5"] = run_tools(cls, tmp, root, name)
    log("w2 (building histories)")
    results["w2_build"] = build_histories(cls, tmp, root, name)
    postgres = os.environ.get(POSTGRES_ENV)
    if "W6" in cls.unsupported:
        results["w6"] = None
    elif not postgres:
        results["w6"] = f"skipped: {POSTGRES_ENV} is not set"
    else:
        variants = {"w6": False}
        if hasattr(cls, "new_async_client"):
            variants["w6_aiohttp"] = True
        for key, aiohttp_transport in variants.items():
            log(key)
            try:
                results[key] = run_concurrent(
                    cls, root, name, postgres, w6_repeats, aiohttp_transport=aiohttp_transport
                )
            except Exception as exc:  # one failed workload must not lose the others
                results[key] = f"failed: {type(exc).__name__}: {str(exc)[:160]}"
    log("done")
    return results


def worker_env() -> dict[str, str]:
    """The workers' environment: Python may cache bytecode, as for any installed package."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def compile_sources() -> None:
    """Bytecode for sa_llm's sources and the adapters, as ``pip install`` writes for a wheel
    and for the peers' packages: no system compiles its own source in a fresh process."""
    for folder in (ROOT / "src", BENCH):
        compileall.compile_dir(str(folder), quiet=1)


def run_worker(args: list[str], timeout: float) -> tuple[dict[str, Any] | None, str]:
    done = subprocess.run(
        [sys.executable, __file__, *args],
        cwd=ROOT,
        env=worker_env(),
        stdout=subprocess.PIPE,
        stderr=None,  # progress goes straight to the terminal
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        return None, f"exit status {done.returncode}"
    return json.loads(done.stdout.strip().splitlines()[-1]), ""


# -- statistics and formatting -------------------------------------------------------------------


def median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def p95(values: Sequence[float | None]) -> float | None:
    present = sorted(v for v in values if v is not None)
    if not present:
        return None
    return present[min(len(present) - 1, round(0.95 * (len(present) - 1)))]


def fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def ratio(value: float | None, reference: float | None) -> str:
    if value is None or not reference:
        return "n/a"
    return f"{value / reference:.2f}x"


def per_turn(counts: list[dict[str, int]], verb: str) -> float:
    return statistics.median(c.get(verb, 0) for c in counts)


def steady(counts: list[dict[str, int]]) -> list[dict[str, int]]:
    """Turns after the first (which also creates the chat's model row and the like)."""
    return counts[1:] if len(counts) > 1 else counts


def versions() -> str:
    found = []
    for package in PACKAGES:
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            found.append(f"{package} (not installed)")
    return ", ".join(found)


def machine() -> list[str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return [
        f"Machine: {cpu}, {os.cpu_count()} cores, load {load} at the start; Python "
        f"{platform.python_version()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        f"Versions: {versions()}.",
    ]


# -- the report -----------------------------------------------------------------------------------


class Report:
    def __init__(self, results: dict[str, Any], repeats: int, w6_repeats: int) -> None:
        self.results = results
        self.repeats = repeats
        self.w6_repeats = w6_repeats

    def ok(self, name: str) -> dict[str, Any] | None:
        value = self.results.get(name)
        return value if isinstance(value, dict) and "error" not in value else None

    def names(self) -> list[str]:
        return list(self.results)

    def failed_rows(self, columns: int) -> list[str]:
        rows = []
        for name in self.names():
            value = self.results[name]
            if isinstance(value, dict) and "error" in value:
                rows.append(f"| {label(name)} | failed: {value['error']} |" + " |" * (columns - 2))
        return rows

    # W1 / W3

    def chat_stats(self, name: str, workload: str) -> dict[str, Any] | None:
        result = self.ok(name)
        if result is None:
            return None
        runs = result[workload]
        counts = [c for run in runs for c in steady(run["stmts"])]
        return {
            "wall_ms": statistics.median(run["wall_s"] * 1000 for run in runs),
            "turn_ms": statistics.median(t for run in runs for t in run["turn_ms"]),
            "counts": counts,
            "rows": runs[-1]["rows"],
            "db_bytes": runs[-1]["db_bytes"],
            "runs": runs,
        }

    def w1(self) -> list[str]:
        limit = self.chat_stats("baseline", "w1")
        lines = [
            f"### W1: a {TURNS}-turn chat, not streamed",
            "",
            f"Median of {self.repeats} chats (each a fresh SQLite file); statements are per turn "
            "after the first (median), COMMITs included in neither column.",
            "",
            "| system | API | 50 turns ms | ms / turn | vs limit | SELECT | INSERT | UPDATE | "
            "other | COMMIT | rows | DB KiB |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name in self.names():
            stats = self.chat_stats(name, "w1")
            if stats is None:
                continue
            counts = stats["counts"]
            other = statistics.median(
                sum(
                    n
                    for verb, n in c.items()
                    if verb not in ("SELECT", "INSERT", "UPDATE", "COMMIT", "BEGIN")
                )
                for c in counts
            )
            lines.append(
                f"| {label(name)} | {self.results[name]['api']} | {fmt(stats['wall_ms'], 0)} "
                f"| {fmt(stats['turn_ms'], 2)} "
                f"| {ratio(stats['wall_ms'], limit['wall_ms'] if limit else None)} "
                f"| {per_turn(counts, 'SELECT'):g} | {per_turn(counts, 'INSERT'):g} "
                f"| {per_turn(counts, 'UPDATE'):g} | {other:g} | {per_turn(counts, 'COMMIT'):g} "
                f"| {sum(stats['rows'].values()):,} | {stats['db_bytes'] / 1024:,.0f} |"
            )
        return lines + self.failed_rows(12)

    def w3(self) -> list[str]:
        limit = self.chat_stats("baseline", "w3")
        lines = [
            f"### W3: a {TURNS}-turn chat streamed in {CHUNKS} deltas per reply",
            "",
            "First chunk: from the moment the fake server writes the event with the first text "
            "delta (its clock, `perf_counter_ns`, is system-wide) to the user's callback "
            "receiving it; median and p95 over all turns of all runs. *Transport*: from the "
            "client's own httpx transport yielding those bytes to the callback (only where the "
            "benchmark can wrap the transport). Writes: INSERT + UPDATE + DELETE per reply.",
            "",
            "| system | 50 turns ms | vs limit | first chunk median µs | p95 µs "
            "| transport → callback median µs | writes / reply |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name in self.names():
            stats = self.chat_stats(name, "w3")
            if stats is None:
                continue
            runs = stats["runs"]
            first = [v for run in runs for v in run["first_chunk_us"]]
            transport = [v for run in runs for v in run["transport_us"]]
            writes = sorted({w for run in runs for w in run["writes_per_reply"][1:]})
            lines.append(
                f"| {label(name)} | {fmt(stats['wall_ms'], 0)} "
                f"| {ratio(stats['wall_ms'], limit['wall_ms'] if limit else None)} "
                f"| {fmt(median(first), 0)} | {fmt(p95(first), 0)} "
                f"| {fmt(median(transport), 0)} "
                f"| {_span(writes)} |"
            )
        return lines + self.failed_rows(7)

    # W2

    def w2(self) -> list[str]:
        lines = [
            "### W2: rebuilding a history in a fresh process",
            "",
            "The histories were written through each system (a tool round every fifth turn). A "
            "new process opens the database and loads each history as the library does before "
            "its next request (sa_llm: `chat.to_llm()` on the chat row; Agents SDK: "
            "`session.get_items()`; LangChain: `SQLChatMessageHistory(...).messages`; llm: "
            "`load_conversation`; limit: two Core SELECTs turned into the request's input list). "
            "*First* is the first load in that process; *warm* the median of the next ones. "
            "The raw SELECT is a plain `SELECT` of the system's own rows for that chat (the "
            "messages and the tool calls, in SQLAlchemy Core); *first raw* is that SELECT as "
            "the first thing a fresh process does, timed in processes of its own. Medians over "
            "the fresh processes.",
            "",
            "| system | messages | statements (first) | statements (warm) | first ms | warm ms "
            "| first raw ms | raw SELECT ms | first / first raw | warm / raw |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name in self.names():
            result = self.ok(name)
            if result is None or not result.get("w2"):
                continue
            for size in (str(s) for s in sorted(HISTORY_SIZES, reverse=True)):
                samples = [proc[size] for proc in result["w2"] if size in proc]
                if not samples:
                    continue
                first_stmts = sorted({_stmts(s["stmts"][0]) for s in samples})
                warm_stmts = sorted({_stmts(c) for s in samples for c in s["stmts"][1:]})
                warm = median([v for s in samples for v in s["warm_ms"]])
                raw = median([v for s in samples for v in s["raw_ms"]])
                first = median([s["cold_ms"] for s in samples])
                first_raw = self.first_raw(name, size)
                lines.append(
                    f"| {label(name)} | {samples[0]['length']:,} | {_span(first_stmts)} "
                    f"| {_span(warm_stmts)} | {fmt(first, 2)} "
                    f"| {fmt(warm, 2)} | {fmt(first_raw, 2)} | {fmt(raw, 2)} "
                    f"| {ratio(first, first_raw)} | {ratio(warm, raw)} |"
                )
        return lines + self.failed_rows(8)

    def first_raw(self, name: str, size: str) -> float | None:
        result = self.ok(name)
        if result is None:
            return None
        cold = result.get("w2_raw_cold", [])
        return median([p[size] for p in cold if p.get(size) is not None])

    # W4, W5

    def w4(self) -> list[str]:
        lines = [
            f"### W4: HTTP 500 at turn {FAILING_TURN}",
            "",
            "30 turns; the first request of turn 25 gets a 500 in OpenAI's error format. Then "
            "the stored rows are inspected. *Empty*: assistant rows without content or tool "
            "calls. *Orphans*: tool calls without a result, or rows pointing at nothing.",
            "",
            "| system | error raised | user turn 25 kept | empty rows | orphans | later turns "
            "| what is stored |",
            "| --- | --- | :---: | ---: | ---: | :---: | --- |",
        ]
        for name in self.names():
            result = self.ok(name)
            if result is None:
                continue
            w4 = result["w4"]
            report = w4["report"]
            errors = w4["errors"]
            raised = errors.get(str(FAILING_TURN), "none")
            later = "ok" if all(int(t) == FAILING_TURN for t in errors) else f"failed: {errors}"
            lines.append(
                f"| {label(name)} | {raised} | {'yes' if report['user_turn_kept'] else 'no'} "
                f"| {report['empty_rows']} | {report['orphans']} | {later} | {report['detail']} |"
            )
        return lines + self.failed_rows(7)

    def w5(self) -> list[str]:
        lines = [
            "### W5: a tool call every fifth turn",
            "",
            "30 turns; turns 5, 10, ... 30 ask for `weather(city)` and get the answer after the "
            "tool result. *Linked*: results stored with a reference to the call they answer.",
            "",
            "| system | tool calls stored | results stored | linked | replies right | how |",
            "| --- | ---: | ---: | ---: | ---: | --- |",
        ]
        for name in self.names():
            result = self.ok(name)
            if result is None:
                continue
            w5 = result["w5"]
            report = w5["report"]
            expected = w5["expected"]
            lines.append(
                f"| {label(name)} | {report['calls']} / {expected} | {report['results']} / "
                f"{expected} | {report['linked']} / {expected} | {w5['replies_ok']} / "
                f"{w5['turns']} | {report['detail']} |"
            )
        return lines + self.failed_rows(6)

    # W6

    def w6_stats(self, name: str, key: str = "w6") -> dict[str, Any] | str | None:
        result = self.ok(name)
        if result is None or key not in result:
            return None
        runs = result[key]
        if runs is None:
            return str(result["unsupported"].get("W6", "not supported"))
        if isinstance(runs, str):
            return runs
        cpu = [r["cpu_s"] for r in runs if r.get("cpu_s") is not None]
        return {
            "wall_s": statistics.median(r["wall_s"] for r in runs),
            "cpu_ms_per_turn": statistics.median(cpu) * 1000 / (W6_CHATS * W6_TURNS)
            if cpu
            else None,
            "errors": {
                k: sum(r["errors"].get(k, 0) for r in runs) for r in runs for k in r["errors"]
            },
            "completed": min(r["completed"] for r in runs),
            "pool_peak": max((r["pool_peak"] or 0) for r in runs),
        }

    def w6(self) -> list[str]:
        floor = W6_TURNS * W6_LATENCY
        limit = self.w6_stats("baseline")
        lines = [
            f"### W6: {W6_CHATS} concurrent async chats x {W6_TURNS} turns, "
            f"{W6_LATENCY * 1000:.0f} ms latency, PostgreSQL",
            "",
            f"asyncpg, each system's default pool (SQLAlchemy: 5 + 10 overflow); every chat "
            f"starts new and asks {W6_TURNS} questions. The floor is {W6_TURNS} x "
            f"{W6_LATENCY * 1000:.0f} ms = {floor:.1f} s. Median of {self.w6_repeats} runs "
            "(after a small warm-up run).",
            "",
            "| system | wall s | vs floor | vs limit | client CPU ms / turn | turns done | errors "
            "| peak connections |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
        ]
        rows = [(name, "w6", async_label(name)) for name in self.names()]
        rows += [
            (name, "w6_aiohttp", f"{async_label(name)}, {AIOHTTP_VARIANT.get(name, AIOHTTP)}")
            for name in self.names()
        ]
        for name, key, title in rows:
            stats = self.w6_stats(name, key)
            if stats is None:
                continue
            if isinstance(stats, str):
                lines.append(f"| {title} | n/a: {stats} | | | | | | |")
                continue
            errors = ", ".join(f"{k} x{v}" for k, v in stats["errors"].items()) or "none"
            limit_wall = limit["wall_s"] if isinstance(limit, dict) else None
            lines.append(
                f"| {title} | {stats['wall_s']:.2f} | {stats['wall_s'] / floor:.2f}x "
                f"| {ratio(stats['wall_s'], limit_wall)} | {fmt(stats['cpu_ms_per_turn'], 2)} "
                f"| {stats['completed']:,} / {W6_CHATS * W6_TURNS:,} | {errors} "
                f"| {stats['pool_peak']} |"
            )
        floor_cpu = floor * 1.5 * 1000 / (W6_CHATS * W6_TURNS)
        lines += [
            "",
            "*Client CPU*: the CPU time of the process running the 200 chats, per turn. The "
            "chats share one event loop, so the wall time cannot be lower than the client's CPU "
            f"time: 1.5x the floor needs at most {floor_cpu:.2f} ms of CPU per turn, with the "
            "fake server and PostgreSQL on the same two cores. The last rows send through "
            'aiohttp: sa_llm with its `async_http_backend="aiohttp"` setting (the `aiohttp` '
            "extra), the limit with the same kind of transport under its `httpx.AsyncClient` "
            "(`bench/peers/aiohttp_transport.py`). With 200 requests in flight httpcore's async "
            "pool scans every connection for every request (its cost grows with requests x "
            "connections); aiohttp's connector does not.",
        ]
        return lines + self.failed_rows(7)

    # the targets

    def targets(self) -> list[str]:
        rows: list[tuple[str, str, str]] = []
        w1 = self.chat_stats("sa_llm", "w1")
        limit = self.chat_stats("baseline", "w1")
        if w1 and limit:
            times = {
                name: stats["wall_ms"]
                for name in self.names()
                if name not in ("sa_llm", "baseline")
                and (stats := self.chat_stats(name, "w1")) is not None
            }
            within = w1["wall_ms"] / limit["wall_ms"]
            fastest_peer = min(times.values()) if times else None
            faster = fastest_peer is None or w1["wall_ms"] < fastest_peer
            rows.append(
                (
                    "W1 within 1.3x of the limit, faster than every peer",
                    f"{within:.2f}x the limit; the fastest peer takes "
                    f"{ratio(fastest_peer, w1['wall_ms'])} sa_llm's time",
                    _status(within <= 1.3 and faster, f"{within / 1.3 - 1:.0%} over 1.3x"),
                )
            )
        result = self.ok("sa_llm")
        if result and result.get("w2"):
            by_size = {
                size: [proc[size] for proc in result["w2"] if size in proc]
                for size in (str(s) for s in HISTORY_SIZES)
            }
            counts = {
                _stmts(c) for samples in by_size.values() for s in samples for c in s["stmts"]
            }
            big = by_size[str(max(HISTORY_SIZES))]
            warm = median([v for s in big for v in s["warm_ms"]])
            raw = median([v for s in big for v in s["raw_ms"]])
            first = median([s["cold_ms"] for s in big])
            first_raw = self.first_raw("sa_llm", str(max(HISTORY_SIZES)))
            ok = len(counts) == 1 and warm is not None and raw is not None and warm <= 2 * raw
            cold_ok = first is not None and first_raw is not None and first <= 2 * first_raw
            status = _status(ok, "over")
            if ok and not cold_ok:
                status = "met when warm; **missed** by the first load in a new process"
            rows.append(
                (
                    "W2 constant queries for any length, within 2x of a raw SELECT",
                    f"{'/'.join(str(c) for c in sorted(counts))} statements at "
                    f"{' and '.join(str(s) for s in HISTORY_SIZES)} messages; at "
                    f"{max(HISTORY_SIZES):,}: {ratio(warm, raw)} the raw SELECT warm, "
                    f"{ratio(first, first_raw)} the first raw SELECT in a new process",
                    status,
                )
            )
        w3 = self.chat_stats("sa_llm", "w3")
        if w3:
            runs = w3["runs"]
            most = max(w for run in runs for w in run["writes_per_reply"][1:])
            transport = median([v for run in runs for v in run["transport_us"]])
            ok = most <= 3 and transport is not None and transport <= 1000
            rows.append(
                (
                    "W3 at most 3 writes per reply; first chunk within 1 ms of the transport",
                    f"{most} writes; transport → callback {fmt(transport, 0)} µs (median)",
                    _status(
                        ok,
                        f"{(transport or 0) / 1000 - 1:.0%} over 1 ms" if most <= 3 else "over",
                    ),
                )
            )
        if result:
            report = result["w4"]["report"]
            ok = report["user_turn_kept"] and not report["empty_rows"] and not report["orphans"]
            rows.append(
                (
                    "W4 zero empty or orphaned rows, user turn kept",
                    f"{report['empty_rows']} empty, {report['orphans']} orphaned, user turn "
                    f"{'kept' if report['user_turn_kept'] else 'lost'}",
                    _status(ok, "missed"),
                )
            )
        w6 = self.w6_stats("sa_llm")
        if isinstance(w6, dict):
            floor = W6_TURNS * W6_LATENCY
            within = w6["wall_s"] / floor
            limit6 = self.w6_stats("baseline")
            limit_wall = limit6["wall_s"] if isinstance(limit6, dict) else None
            ok = within <= 1.5 and not w6["errors"]
            rows.append(
                (
                    "W6 within 1.5x of the latency floor, no errors, no pool exhaustion",
                    f"{within:.1f}x the floor ({ratio(w6['wall_s'], limit_wall)} the limit); "
                    f"errors: {sum(w6['errors'].values())}; at most {w6['pool_peak']} "
                    "connections of the default 15",
                    _status(ok, f"{within / 1.5:.1f}x over"),
                )
            )
        lines = [
            "### sa_llm against the targets",
            "",
            "| target | this run | status |",
            "| --- | --- | --- |",
        ]
        return lines + [f"| {target} | {value} | {status} |" for target, value, status in rows]

    def markdown(self, image: str | None) -> list[str]:
        body = [
            "## Side by side with the Python peers",
            "",
            "Written by `python bench/bench_peers.py --docs` (`nox -s bench`); the method is in "
            "its docstring and in `bench/peers/`. Every system talks HTTP to the same fake "
            "OpenAI server (`sa_llm.testing.server`) in another process on 127.0.0.1, with no "
            "latency except in W6; each runs in its own process with its defaults (sa_llm, the "
            "Agents SDK and the limit use the Responses API, LangChain and llm Chat "
            "Completions). sa_llm and the limit use SQLite's default journal; the Agents SDK "
            "switches its file to WAL.",
            "",
            *machine(),
            "",
            *self.targets(),
            "",
            *ANALYSIS,
            "",
            *self.w1(),
            "",
        ]
        if image:
            body += [
                f"![Time per turn against history length]({image})",
                "",
                "Left: W1's 50 turns (median over the runs). Right: the same on a log scale, "
                "with the two turns each system ran on top of W2's 100- and 1,000-message "
                "histories.",
                "",
            ]
        body += [*self.w2(), "", *self.w3(), "", *self.w4(), "", *self.w5(), "", *self.w6()]
        return body


#: Where sa_llm misses a target and why: from profiles (pyinstrument) of these workloads.
ANALYSIS = [
    "Where the time goes (cProfile and pyinstrument profiles of the workloads on this machine; "
    "the numbers in the tables are this run's):",
    "",
    "* **W1.** Per turn sa_llm runs the limit's three row writes in two transactions (the user "
    "message and the empty reply row together, then the reply), plus one aggregate `SELECT` "
    "that checks the history it kept from the last turn is still the table's (D9); the limit "
    "commits three times and keeps its history in memory without checking. What is left of "
    "sa_llm's time above the limit is the ORM's unit of work (about 70 µs more than a Core "
    "statement per write; it keeps mapper events, validators and `session.new` working for "
    "your models) and turning the reply into a `Message`.",
    "* **W2.** Warm, the rebuild is within 2x of the raw `SELECT` at 1,000 messages; at 100 "
    "the fixed part (the chat's model row, the step's commit: ~1 ms) dominates. The first load "
    "in a new process also pays what any ORM application pays once: SQLAlchemy configuring "
    "the mappers on the first ORM query (~9 ms here) and compiling the statements; "
    "`@acts_as_chat` imports the persistence modules when the models are declared, so their "
    "import is not on the first request. `sqlalchemy.orm.configure_mappers()` at start-up "
    "moves the mapper configuration off it too.",
    "* **W3.** The streamed reply's row is written when the stream opens, before its first "
    "chunk is read (D8), so the path from the transport's first chunk to the callback is the "
    "parsing alone; the limit writes its row on the first chunk and pays the commit there.",
    "* **W6.** Nothing reaches 1.5x of 5 x 100 ms on this machine: the chats share one event "
    "loop, so the wall time cannot be lower than the client's CPU time, and every system's "
    "client needs several times the CPU per turn the floor allows (see *client CPU*), with the "
    "fake server and PostgreSQL on the same two cores. With httpx's own pool, httpcore's "
    "connection scans take about half of the client's CPU in a profile (its cost grows with "
    "requests in flight x connections) and the wall time varies by seconds between runs. The "
    "`aiohttp` backend removes that and halves sa_llm's time: it is the setting for many "
    "concurrent async chats. What sa_llm spends above the limit there (~1 ms of CPU per turn) "
    "is the ORM's unit of work and `AsyncSession.run_sync`'s greenlet switches, and the send "
    "syscalls to PostgreSQL, which on two cores wake its backend on the client's core. There "
    "were no errors and the default database pool (5 + 10) was never exhausted.",
]


def async_label(name: str) -> str:
    """W6 runs sa_llm's async API: its row says so."""
    return "sa_llm (`AsyncSession`)" if name == "sa_llm" else label(name)


AIOHTTP = "httpx on an aiohttp transport"
AIOHTTP_VARIANT = {"sa_llm": '`async_http_backend="aiohttp"`'}


def _status(met: bool, miss: str) -> str:
    return "met" if met else f"**missed** ({miss})"


def _stmts(counts: dict[str, int]) -> int:
    return sum(n for verb, n in counts.items() if verb not in ("BEGIN", "COMMIT"))


def _span(values: list[int]) -> str:
    if not values:
        return "n/a"
    return str(values[0]) if values[0] == values[-1] else f"{values[0]}-{values[-1]}"


def write_docs(lines: list[str]) -> None:
    text = DOCS.read_text(encoding="utf-8")
    section = "\n".join([START, *lines, END])
    if START in text and END in text:
        before, _, rest = text.partition(START)
        _, _, after = rest.partition(END)
        text = before + section + after
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    DOCS.write_text(text, encoding="utf-8")


# -- main -----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of W1 and W3 chats")
    parser.add_argument("--w6-repeats", type=int, default=2)
    parser.add_argument("--processes", type=int, default=3, help="fresh processes per W2 system")
    parser.add_argument("--warm", type=int, default=5, help="warm rebuilds per W2 process")
    parser.add_argument("--docs", action="store_true", help=f"update {DOCS.name} and the plot")
    parser.add_argument("--no-write", action="store_true", help="write nothing but stdout")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per worker")
    # internal: the worker processes
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--rebuild", help=argparse.SUPPRESS)
    parser.add_argument("--raw-cold", help=argparse.SUPPRESS)
    parser.add_argument("--chat-round", help=argparse.SUPPRESS)
    parser.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--server", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(args.worker, args.server, Path(args.tmp), args.w6_repeats)))
        return 0
    if args.chat_round:
        rounds = chat_round(args.chat_round, args.server, Path(args.tmp), args.round)
        print(json.dumps(rounds))
        return 0
    if args.raw_cold:
        spec = json.loads(args.spec)
        cold = time_raw_cold(
            load(args.raw_cold), Path(spec["db"]), spec["base_url"], spec["handles"]
        )
        print(json.dumps(cold))
        return 0
    if args.rebuild:
        spec = json.loads(args.spec)
        rebuilt = time_rebuild(
            load(args.rebuild), Path(spec["db"]), spec["base_url"], spec["handles"], args.warm
        )
        print(json.dumps(rebuilt))
        return 0

    names = [name.strip() for name in args.systems.split(",") if name.strip()]
    compile_sources()
    result: dict[str, Any] | None
    results: dict[str, Any] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sa-llm-peers-") as tmp, ServerProcess() as root:
        common = ["--server", root, "--tmp", tmp]
        chats: dict[str, dict[str, list[Any]]] = {name: {"w1": [], "w3": []} for name in names}
        for round_ in range(args.repeats):
            for name in names:
                print(f"{name}: W1 and W3, round {round_ + 1}", file=sys.stderr, flush=True)
                try:
                    runs, _ = run_worker(
                        ["--chat-round", name, "--round", str(round_), *common], args.timeout
                    )
                except subprocess.TimeoutExpired:
                    runs = None
                for workload, found in (runs or {}).items():
                    chats[name][workload] += found
        for name in names:
            print(f"{name} ...", file=sys.stderr, flush=True)
            try:
                result, error = run_worker(
                    ["--worker", name, *common, "--w6-repeats", str(args.w6_repeats)],
                    args.timeout,
                )
            except subprocess.TimeoutExpired:
                result, error = None, f"timed out after {args.timeout:.0f} s"
            if result is None or not all(chats[name].values()):
                results[name] = {"error": error or "W1/W3 failed"}
                continue
            result.update(chats[name])
            build = result["w2_build"]
            spec = json.dumps({k: build[k] for k in ("db", "base_url", "handles")})
            result["w2"] = []
            for _ in range(args.processes):
                process, _ = run_worker(
                    ["--rebuild", name, "--spec", spec, "--warm", str(args.warm)], args.timeout
                )
                if process is not None:
                    result["w2"].append(process)
            result["w2_raw_cold"] = []
            for size, handle in build["handles"].items():
                # One size per process: each timing is the first query that process runs.
                only = json.dumps({**json.loads(spec), "handles": {size: handle}})
                for _ in range(args.processes):
                    process, _ = run_worker(["--raw-cold", name, "--spec", only], args.timeout)
                    if process is not None:
                        result["w2_raw_cold"].append(process)
            results[name] = result
    elapsed = time.perf_counter() - started

    report = Report(results, args.repeats, args.w6_repeats)
    image = None
    if args.docs and not args.no_write:
        from plot import draw

        if draw(results, IMAGE):
            image = IMAGE.relative_to(DOCS.parent).as_posix()
    lines = report.markdown(image)
    print("\n".join(lines))
    print(f"\n({elapsed:.0f} s)", file=sys.stderr)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, separators=(",", ":")) + "\n", encoding="utf-8")
        if args.docs:
            write_docs(lines)
    return 0 if all("error" not in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
