"""sa_llm side by side with its Python peers and a fair limit, on six workloads.

Run from the repository root with ``python bench/bench_peers.py`` (``nox -s bench`` runs it with
the peers installed from the ``bench`` dependency group). It prints markdown tables; with
``--docs`` it also rewrites the part of ``docs/benchmarks.md`` between ``<!-- peers:start -->``
and ``<!-- peers:end -->`` and draws the plots of W1, W2, W3 and W6
(``docs/img/bench-w<n>.png``, ``bench/plot.py``) that the section embeds; unless given
``--no-write`` it keeps the raw numbers in ``bench/results/peers.json`` and the report in
``bench/results/peers-<time>.md`` (the run the docs cite; ``<time>`` is when the run started,
UTC). ``--from-json bench/results/peers.json`` prints a saved run's report instead of running;
with ``--docs`` it also rewrites the section and redraws the plots from it.

Systems (``bench/peers/``): sa_llm (a persisted chat row in a sync ``Session`` on a SQLite file;
an ``AsyncSession`` on aiosqlite and on PostgreSQL for the async workloads), sa_llm's plain
``Chat`` (nothing stored: the reference for the first chunk), the OpenAI Agents SDK's
``SQLAlchemySession``, LangChain's ``SQLChatMessageHistory`` with ``ChatOpenAI``, simonw/llm with
``log_to_db``, and **the limit**: sa_llm's default strategy's statements and commits written by
hand in SQLAlchemy Core on sa_llm's tables, with httpx and ``json`` (``bench/peers/baseline.py``).
All of them talk HTTP to one :class:`sa_llm.testing.server.FakeOpenAIServer` in a child process
on 127.0.0.1, each system in worker processes of its own.

Fairness, checked before anything is measured and on every measured run:

* **Same SQL.** A parity run captures sa_llm's and the limit's statements and commits, turn by
  turn (``before_cursor_execute`` and ``commit`` listeners), not streamed, streamed, with tool
  rounds, sync and async (aiosqlite, not streamed and streamed; PostgreSQL when configured).
  Any difference in a statement's text or in the number of commits after the first turn stops
  the benchmark (exit status 3); on the first turn the one allowed difference is sa_llm
  refreshing the chat row that the ``commit`` creating it expired. Every measured W1/W3 run's
  statement counts per turn (sync and async) are compared again, and a difference fails the
  run.
* **Same journal.** Every system's SQLite file uses the run's journal mode (``--journal``; both
  ``delete`` and ``wal`` by default: sa_llm's, the limit's and the plain chat's W1 and W3 run
  in each; the peers' rounds, W2, W4 and W5 in the first), and each run records the mode its
  own connection reports; a system in another mode fails the run.
* **Paired ratios.** W1 and W3 run in rounds: one chat of each system per round. sa_llm's, the
  limit's and the plain chat's chats run in one process with their turns interleaved (turn 1 of
  each, then turn 2 of each in the other order, ...; their order on turn 1 is reversed every
  other round), so that a change in the shared machine's load, or in the disk's latency, falls
  on both sides of a ratio alike, turn by turn; each system's time is the sum of its own turns.
  (Run one after the other, each in its own process, their per-round ratios spread several
  times wider: docs/benchmarks.md, "Run to run".) The peers run alone, each in a process of its
  own. A ratio is taken per round (sa_llm's time over the limit's in that round) and reported
  as its median, min-max, interquartile range and the median's interval (see
  :func:`median_interval`); a target is met or missed by the median, and settled by the run
  when that interval lies wholly on one side of it. The peers run in the first
  ``--peer-repeats`` rounds (3 of 11 by default), to keep a full run within its budget. W6
  runs in rounds too (5 by default; the peers in the first ``--w6-peer-repeats``), each
  transport divided by the limit on the same transport. Why 11 and 5: with 5 and 3, a ratio
  within about 10% of its target changed its verdict from one full run to the next on this
  2-core machine (docs/benchmarks.md, "run to run"); a core system's round takes seconds, so
  the extra rounds add minutes to a full run (the peers still run 3).
* **When.** The load average and the time are read when the run starts, before any work.

Workloads (``bench/peers/workloads.py``): W1 a 50-turn chat (sync; and async for sa_llm and the
limit); W2 rebuilding 100- and 1,000-message histories (a tool round every fifth turn) in fresh
processes; W3 a 50-turn chat streamed in 50 deltas per reply, without and with a
time-to-first-token gap (the fake server's ``first_token_delay``; and async, without the gap,
for sa_llm and the limit); W4 HTTP 500 at turn 25; W5 a
tool call every fifth turn; W6 200 concurrent async chats x 5 turns against 100 ms latency on
PostgreSQL (needs ``SA_LLM_TEST_POSTGRES_URL``; skipped without it). Every system runs with its
client's retries off, so the failure of W4 reaches it.
"""

from __future__ import annotations

import argparse
import compileall
import json
import math
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

from peers import SYSTEMS, label, load  # noqa: E402
from peers.common import JOURNAL_ENV, JOURNAL_MODES  # noqa: E402
from peers.workloads import (  # noqa: E402
    CHUNKS,
    FAILING_TURN,
    HISTORY_SIZES,
    TURNS,
    W3_GAP,
    W6_CHATS,
    W6_LATENCY,
    W6_TURNS,
    BenchPlanner,
    build_histories,
    parity_traces,
    run_chats,
    run_chats_async,
    run_concurrent,
    run_failure,
    run_tools,
    time_raw_cold,
    time_rebuild,
    warm_up,
)
from results_json import cpu_model, git_revision  # noqa: E402

DOCS = ROOT / "docs" / "benchmarks.md"
IMAGES = ROOT / "docs" / "img"
RESULTS = BENCH / "results" / "peers.json"
START, END = "<!-- peers:start -->", "<!-- peers:end -->"
POSTGRES_ENV = "SA_LLM_TEST_POSTGRES_URL"
PACKAGES = (
    "sa-llm",
    "sqlalchemy",
    "httpx",
    "httpx2",
    "aiohttp",
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
#: Systems with an async API on aiosqlite for W1 and W3 async (the limit and sa_llm).
ASYNC_W1 = ("sa_llm", "baseline")
#: The async chat workloads: W1 async and W3 async (streamed), on aiosqlite.
ASYNC_WORKLOADS = ("w1a", "w3a")
#: The systems every round runs; the peers run in fewer (``--peer-repeats``), in the first
#: journal mode only, to keep a full run within its budget.
CORE = ("sa_llm", "baseline", "plain")
#: W6's (system, transport) pairs: each transport of sa_llm has the limit on the same one.
W6_PAIRS = (
    ("sa_llm", "httpx"),
    ("baseline", "httpx"),
    ("sa_llm", "aiohttp"),
    ("baseline", "aiohttp"),
    ("agents", "httpx"),
    ("langchain", "httpx"),
)
#: The targets of issue 16, as ratios in one run.
W1_TARGET = 1.15
W3_TARGET = 1.15
FIRST_CHUNK_TARGET = 1.2
W6_TARGET = 1.2
W2_TARGET = 2.0
#: The one step sa_llm may run on a chat's first turn that the limit does not: the refresh of the
#: chat row the commit that created it expired (an ORM object, not the library's work), and the
#: COMMIT that ends that read transaction (so no SQLite read lock or PostgreSQL snapshot
#: outlives it). The model it resolves is then known for every later turn.
CHAT_REFRESH = "SELECT chats.title, chats.id, chats.model_id, "


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


def chat_round(names: list[str], root: str, tmp: Path, round_: int) -> dict[str, Any]:
    """One chat of each of W1, W3 and W3 with a first-token gap (and W1 and W3 async for
    sa_llm and the limit) of each system of ``names``, in this process, in the journal mode of the
    environment; the chats of several systems run their turns interleaved
    (:func:`~peers.workloads.run_chats`). Keyed by system, each with its ``_system``."""
    classes = {name: load(name) for name in names}
    for name, cls in classes.items():
        warm_up(cls, tmp, root, f"{name}-{round_}-{os.environ.get(JOURNAL_ENV, '')}")
    found: dict[str, Any] = {
        name: {
            "_system": {
                "api": cls.api,
                "unsupported": dict(cls.unsupported),
                "chat_only": cls.chat_only,
            }
        }
        for name, cls in classes.items()
    }
    for workload in ("w1", "w3", "w3g"):
        for name, run in run_chats(classes, tmp, root, workload, round_).items():
            found[name][workload] = run
    both = {name: cls for name, cls in classes.items() if name in ASYNC_W1}
    if both:
        for workload in ASYNC_WORKLOADS:
            for name, run in run_chats_async(both, tmp, root, round_, workload).items():
                found[name][workload] = run
    return found


def worker(name: str, root: str, tmp: Path) -> dict[str, Any]:
    """W4, W5 and the histories of W2 (W1 and W3: :func:`chat_round`; W6: ``--w6``)."""
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
    log("done")
    return results


def worker_env(journal: str | None = None) -> dict[str, str]:
    """The workers' environment: Python may cache bytecode, as for any installed package."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if journal is not None:
        env[JOURNAL_ENV] = journal
    return env


def compile_sources() -> None:
    """Bytecode for sa_llm's sources and the adapters, as ``pip install`` writes for a wheel
    and for the peers' packages: no system compiles its own source in a fresh process."""
    for folder in (ROOT / "src", BENCH):
        compileall.compile_dir(str(folder), quiet=1)


def run_worker(
    args: list[str], timeout: float, journal: str | None = None
) -> tuple[Any | None, str]:
    try:
        done = subprocess.run(
            [sys.executable, __file__, *args],
            cwd=ROOT,
            env=worker_env(journal),
            stdout=subprocess.PIPE,
            stderr=None,  # progress goes straight to the terminal
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    if done.returncode != 0:
        return None, f"exit status {done.returncode}"
    return json.loads(done.stdout.strip().splitlines()[-1]), ""


# -- the statement check --------------------------------------------------------------------------


def parity_problems(
    ours: dict[str, list[list[str]]], limit: dict[str, list[list[str]]]
) -> list[str]:
    """Where the limit's statements or commits differ from sa_llm's (empty: none)."""
    problems = []
    for case, turns in ours.items():
        theirs = limit.get(case)
        if theirs is None or len(theirs) != len(turns):
            problems.append(f"{case}: the limit ran {len(theirs or [])} turns, sa_llm {len(turns)}")
            continue
        for number, (mine, other) in enumerate(zip(turns, theirs, strict=True), 1):
            if number == 1 and mine and mine[0].startswith(CHAT_REFRESH):
                mine = mine[2:] if mine[1:2] == ["COMMIT"] else mine[1:]
            if mine != other:
                first = next(
                    (i for i, (a, b) in enumerate(zip(mine, other, strict=False)) if a != b),
                    min(len(mine), len(other)),
                )
                problems.append(
                    f"{case}, turn {number}: statement {first + 1} differs: sa_llm "
                    f"{(mine[first : first + 1] or ['(none)'])[0][:160]!r}, the limit "
                    f"{(other[first : first + 1] or ['(none)'])[0][:160]!r} "
                    f"(commits: {mine.count('COMMIT')} and {other.count('COMMIT')})"
                )
    return problems


def shape(counts: dict[str, int]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((verb, n) for verb, n in counts.items() if verb != "BEGIN"))


def run_checks(results: dict[str, Any]) -> list[str]:
    """Journal modes and per-turn statement counts of the measured runs (empty: all fair)."""
    problems = []
    for mode, rounds in results["chats"].items():
        for number, round_ in enumerate(rounds, 1):
            for name, found in round_.items():
                if not isinstance(found, dict) or "error" in found:
                    continue
                for workload, run in found.items():
                    journal = run.get("journal")
                    if journal not in (mode, "none"):
                        problems.append(
                            f"{mode}, round {number}: {name} {workload} ran in journal mode "
                            f"{journal!r}"
                        )
            ours, limit = round_.get("sa_llm"), round_.get("baseline")
            if not (isinstance(ours, dict) and isinstance(limit, dict)):
                continue
            if "error" in ours or "error" in limit:
                continue
            for workload in ("w1", "w3", "w3g", *ASYNC_WORKLOADS):
                if workload not in ours or workload not in limit:
                    continue
                mine = [shape(c) for c in ours[workload]["stmts"][1:]]
                other = [shape(c) for c in limit[workload]["stmts"][1:]]
                if mine != other:
                    at = next(
                        (i for i, (a, b) in enumerate(zip(mine, other, strict=False)) if a != b),
                        min(len(mine), len(other)),
                    )
                    problems.append(
                        f"{mode}, round {number}, {workload} turn {at + 2}: sa_llm ran "
                        f"{dict(mine[at]) if at < len(mine) else None}, the limit "
                        f"{dict(other[at]) if at < len(other) else None}"
                    )
    return problems


# -- statistics and formatting -------------------------------------------------------------------


#: The confidence the median's interval aims at (:func:`median_interval`).
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """Where the median of the distribution the samples come from lies, with ``confidence``."""

    low: float
    high: float
    confidence: float


def median_interval(values: Sequence[float], level: float = CONFIDENCE) -> Interval | None:
    """A confidence interval of the median that assumes nothing about the distribution.

    Of ``n`` independent samples, the ``j``-th smallest and the ``j``-th largest hold the median
    between them unless ``j`` or more samples fall on the same side of it, so with probability
    ``1 - 2 P(Binomial(n, 1/2) < j)``. The narrowest such interval whose confidence reaches
    ``level`` is returned; with too few samples for ``level`` (5 reach 94%), the min-max with its
    own, lower confidence. ``None`` for fewer than two samples.
    """
    ordered = sorted(values)
    n = len(ordered)
    if n < 2:
        return None

    def confidence(j: int) -> float:
        return 1 - 2 * sum(math.comb(n, i) for i in range(j)) / (1 << n)

    j = 1
    while j + 1 <= n // 2 and confidence(j + 1) >= level:
        j += 1
    return Interval(ordered[j - 1], ordered[n - j], confidence(j))


@dataclass(frozen=True)
class Spread:
    """Median, extremes, interquartile range and the median's interval of some samples."""

    median: float
    low: float
    high: float
    q1: float
    q3: float
    count: int
    interval: Interval | None = None


def spread(values: Sequence[float | None]) -> Spread | None:
    present = sorted(v for v in values if v is not None)
    if not present:
        return None
    if len(present) == 1:
        q1 = q3 = present[0]
    else:
        q1, _, q3 = statistics.quantiles(present, n=4, method="inclusive")
    return Spread(
        statistics.median(present),
        present[0],
        present[-1],
        q1,
        q3,
        len(present),
        median_interval(present),
    )


def fmt_interval(found: Spread | None, digits: int = 2) -> str:
    """``the median within 1.08-1.47 (99% confidence)``, or ``""`` without an interval."""
    if found is None or found.interval is None:
        return ""
    interval = found.interval
    return (
        f"the median within {interval.low:,.{digits}f}-{interval.high:,.{digits}f} "
        f"({interval.confidence:.0%} confidence)"
    )


def fmt_ratio(found: Spread | None) -> str:
    """:func:`fmt_spread` of a ratio, with the median's interval."""
    interval = fmt_interval(found)
    return fmt_spread(found, unit="x") + (f"; {interval}" if interval else "")


def verdict(found: Spread | None, target: float) -> str:
    """Met or missed by the median (the target's definition), and whether the run settles it:
    the median's interval lies wholly on one side of the target, or straddles it."""
    if found is None:
        return "not measured"
    met = found.median <= target
    text = "met" if met else f"**missed** ({found.median / target - 1:.0%} over)"
    interval = found.interval
    if interval is None:
        return f"{text}; one round: not settled"
    if interval.high <= target:
        return f"{text}; settled (the median's interval is below {target}x)"
    if interval.low > target:
        return f"{text}; settled (the median's interval is above {target}x)"
    return f"{text}; **not settled** (the median's interval straddles {target}x)"


def fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def fmt_spread(found: Spread | None, digits: int = 2, unit: str = "", iqr: bool = True) -> str:
    """``1.47x [1.31-1.59], IQR 1.40-1.52`` (median [min-max], interquartile range)."""
    if found is None:
        return "n/a"
    d = digits
    text = f"{found.median:,.{d}f}{unit} [{found.low:,.{d}f}-{found.high:,.{d}f}]"
    if iqr and found.count >= 4:
        text += f", IQR {found.q1:,.{d}f}-{found.q3:,.{d}f}"
    return text


def median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def p95(values: Sequence[float | None]) -> float | None:
    present = sorted(v for v in values if v is not None)
    if not present:
        return None
    return present[min(len(present) - 1, round(0.95 * (len(present) - 1)))]


def per_turn(counts: list[dict[str, int]], verb: str) -> float:
    return statistics.median(c.get(verb, 0) for c in counts)


def _status(met: bool | None, miss: str) -> str:
    if met is None:
        return "not measured"
    return "met" if met else f"**missed** ({miss})"


def _stmts(counts: dict[str, int]) -> int:
    return sum(n for verb, n in counts.items() if verb not in ("BEGIN", "COMMIT"))


def _span(values: list[int]) -> str:
    if not values:
        return "n/a"
    return str(values[0]) if values[0] == values[-1] else f"{values[0]}-{values[-1]}"


def versions() -> dict[str, str]:
    found = {}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def start_meta(args: argparse.Namespace) -> dict[str, Any]:
    """What the run is, taken before it does anything: time, load, machine, versions."""
    started = datetime.now(timezone.utc)
    return {
        "started": started.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "stamp": started.strftime("%Y%m%dT%H%M%SZ"),
        "load_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "git": git_revision(),
        "versions": versions(),
        "journal_modes": args.journal,
        "rounds": args.repeats,
        "peer_rounds": min(args.peer_repeats, args.repeats),
        "w6_rounds": args.w6_repeats,
        "w6_peer_rounds": min(args.w6_peer_repeats, args.w6_repeats),
        "w2_processes": args.processes,
    }


# -- the report -----------------------------------------------------------------------------------


def async_label(name: str) -> str:
    """The async workloads run sa_llm's and the limit's async APIs: their rows say so."""
    if name == "sa_llm":
        return "sa_llm (`AsyncSession`)"
    if name == "baseline":
        return "limit: sa_llm's SQL by hand (`AsyncConnection`)"
    return label(name)


TRANSPORT_LABEL = {
    "httpx": "httpx (default)",
    "aiohttp": 'aiohttp (`async_http_backend="aiohttp"`)',
}


class Report:
    def __init__(self, results: dict[str, Any], source: str) -> None:
        self.results = results
        self.meta = results["meta"]
        self.source = source  # the file the docs cite for this run

    # -- access --

    def modes(self) -> list[str]:
        return list(self.results["chats"])

    def primary(self) -> str:
        return self.modes()[0]

    def names(self) -> list[str]:
        return list(self.results["systems"])

    def runs(self, mode: str, name: str, workload: str) -> list[dict[str, Any] | None]:
        """The system's run of ``workload`` in each round (``None``: it failed that round)."""
        found = []
        for round_ in self.results["chats"][mode]:
            value = round_.get(name)
            ok = isinstance(value, dict) and "error" not in value and workload in value
            found.append(value[workload] if ok else None)
        return found

    def ran(self, mode: str) -> list[str]:
        """The systems that ran (or failed) in at least one round of ``mode``."""
        rounds = self.results["chats"][mode]
        return [name for name in self.names() if any(name in round_ for round_ in rounds)]

    def paired(
        self, mode: str, name: str, workload: str, reference: str, key: str = "wall_s"
    ) -> Spread | None:
        """Per-round ratios of ``name``'s ``key`` over ``reference``'s in the same round."""
        ratios = []
        for mine, theirs in zip(
            self.runs(mode, name, workload), self.runs(mode, reference, workload), strict=True
        ):
            if mine is None or theirs is None:
                continue
            a, b = _value(mine, key), _value(theirs, key)
            if a is not None and b:
                ratios.append(a / b)
        return spread(ratios)

    def other(self, name: str) -> dict[str, Any] | None:
        value = self.results["other"].get(name)
        return value if isinstance(value, dict) and "error" not in value else None

    # -- W1 --

    def w1(self, mode: str) -> list[str]:
        lines = [
            f"#### W1: a {TURNS}-turn chat, not streamed ({mode.upper()} journal)",
            "",
            f"{len(self.results['chats'][mode])} rounds, a fresh SQLite file per chat. *ms / "
            "turn* and *CPU ms / turn*: median over the rounds [min-max] of the chat's wall "
            "and CPU time over 50; *vs limit*: the per-round ratio of the chat's wall time "
            "to the limit's in the same round, median [min-max] and interquartile range. "
            "Statements are per turn after the first (median), COMMITs in their own column.",
            "",
            "| system | API | ms / turn | vs limit (per round) | CPU ms / turn | CPU vs limit "
            "| SELECT | INSERT | UPDATE | other | COMMIT | rows | DB KiB |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
            "| ---: |",
        ]
        for name in self.ran(mode):
            runs = [r for r in self.runs(mode, name, "w1") if r is not None]
            if not runs:
                lines.append(f"| {label(name)} | failed |" + " |" * 11)
                continue
            counts = [c for run in runs for c in run["stmts"][1:]]
            other = statistics.median(
                sum(
                    n
                    for verb, n in c.items()
                    if verb not in ("SELECT", "INSERT", "UPDATE", "COMMIT", "BEGIN")
                )
                for c in counts
            )
            wall = spread([r["wall_s"] * 1000 / TURNS for r in runs])
            cpu = spread([r["cpu_s"] * 1000 / TURNS for r in runs])
            ratio = self.paired(mode, name, "w1", "baseline")
            lines.append(
                f"| {label(name)} | {self.results['systems'][name]['api']} "
                f"| {fmt_spread(wall, iqr=False)} | {fmt_spread(ratio, unit='x')} "
                f"| {fmt_spread(cpu, iqr=False)} "
                f"| {fmt_spread(self.paired(mode, name, 'w1', 'baseline', 'cpu_s'), unit='x')} "
                f"| {per_turn(counts, 'SELECT'):g} | {per_turn(counts, 'INSERT'):g} "
                f"| {per_turn(counts, 'UPDATE'):g} | {other:g} | {per_turn(counts, 'COMMIT'):g} "
                f"| {sum(runs[-1]['rows'].values()):,} | {runs[-1]['db_bytes'] / 1024:,.0f} |"
            )
        lines += [
            "",
            "Async (`await chat.aask(...)` on an `AsyncSession`; the limit on an "
            "`AsyncConnection`), aiosqlite, same file layout, after one first turn:",
            "",
            "| system | ms / turn | vs limit (per round) | CPU ms / turn | CPU vs limit | SELECT "
            "| INSERT | UPDATE | COMMIT |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name in ASYNC_W1:
            runs = [r for r in self.runs(mode, name, "w1a") if r is not None]
            if not runs:
                continue
            counts = [c for run in runs for c in run["stmts"]]
            wall = spread([r["wall_s"] * 1000 / TURNS for r in runs])
            cpu = spread([r["cpu_s"] * 1000 / TURNS for r in runs])
            ratio = self.paired(mode, name, "w1a", "baseline")
            lines.append(
                f"| {async_label(name)} | {fmt_spread(wall, iqr=False)} "
                f"| {fmt_spread(ratio, unit='x')} | {fmt_spread(cpu, iqr=False)} "
                f"| {fmt_spread(self.paired(mode, name, 'w1a', 'baseline', 'cpu_s'), unit='x')} "
                f"| {per_turn(counts, 'SELECT'):g} | {per_turn(counts, 'INSERT'):g} "
                f"| {per_turn(counts, 'UPDATE'):g} | {per_turn(counts, 'COMMIT'):g} |"
            )
        return lines

    # -- W3 --

    def first_chunk(
        self, mode: str, name: str, workload: str
    ) -> tuple[Spread | None, float | None]:
        """The first chunk (server write -> callback, µs) over all turns of all rounds, and the
        spread of the per-round ratio to the plain chat's median of the same round."""
        samples = [
            v for r in self.runs(mode, name, workload) if r for v in r["first_chunk_us"] if v
        ]
        return spread(samples), p95(samples)

    def first_chunk_ratio(self, mode: str, name: str, workload: str) -> Spread | None:
        return self.paired(mode, name, workload, "plain", key="first_chunk_median")

    def w3(self, mode: str) -> list[str]:
        gap = f"{W3_GAP * 1000:.0f} ms"
        lines = [
            f"#### W3: a {TURNS}-turn chat streamed in {CHUNKS} deltas per reply ({mode.upper()} "
            "journal)",
            "",
            "*First chunk* is what the user sees: from the moment the fake server writes the "
            "event with the first text delta (its clock, `perf_counter_ns`, is system-wide) to "
            "the user's callback receiving it, median (p95) over all turns of all rounds. It is "
            "measured without and with a time-to-first-token gap (the fake server's "
            f"`first_token_delay`, {gap} between the stream's opening events and its first "
            "delta, as a model takes before its first token). *vs plain*: per round, the "
            "median first chunk over sa_llm's plain `Chat`'s (nothing stored) in the same round. "
            "*50 turns* and *vs limit* are the whole chat without the gap. *Transport*: from "
            "the client's own httpx transport yielding the delta's bytes to the callback (where "
            "the benchmark can wrap the transport).",
            "",
            "| system | first chunk µs | vs plain | with the gap µs | vs plain | 50 turns ms "
            "| vs limit (per round) | transport → callback µs | writes / reply |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name in self.ran(mode):
            runs = [r for r in self.runs(mode, name, "w3") if r is not None]
            if not runs:
                lines.append(f"| {label(name)} | failed |" + " |" * 7)
                continue
            cells = []
            for workload in ("w3", "w3g"):
                found, high = self.first_chunk(mode, name, workload)
                cells.append(f"{fmt(found.median if found else None, 0)} ({fmt(high, 0)})")
                cells.append(fmt_spread(self.first_chunk_ratio(mode, name, workload), unit="x"))
            transport = median([v for r in runs for v in r["transport_us"]])
            writes = sorted({w for r in runs for w in r["writes_per_reply"][1:]})
            wall = spread([r["wall_s"] * 1000 for r in runs])
            lines.append(
                f"| {label(name)} | {' | '.join(cells)} | {fmt_spread(wall, 0, iqr=False)} "
                f"| {fmt_spread(self.paired(mode, name, 'w3', 'baseline'), unit='x')} "
                f"| {fmt(transport, 0)} | {_span(writes)} |"
            )
        lines += [
            "",
            "Async (`await chat.aask(..., on_chunk=...)` on an `AsyncSession`; the limit on an "
            "`AsyncConnection` and httpx's `AsyncClient`), aiosqlite, without the gap, after "
            "one first turn:",
            "",
            "| system | first chunk µs | 50 turns ms | vs limit (per round) | CPU ms / turn "
            "| CPU vs limit | writes / reply |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name in ASYNC_W1:
            runs = [r for r in self.runs(mode, name, "w3a") if r is not None]
            if not runs:
                continue
            found, high = self.first_chunk(mode, name, "w3a")
            writes = sorted({w for r in runs for w in r["writes_per_reply"]})
            wall = spread([r["wall_s"] * 1000 for r in runs])
            cpu = spread([r["cpu_s"] * 1000 / TURNS for r in runs])
            lines.append(
                f"| {async_label(name)} | {fmt(found.median if found else None, 0)} "
                f"({fmt(high, 0)}) | {fmt_spread(wall, 0, iqr=False)} "
                f"| {fmt_spread(self.paired(mode, name, 'w3a', 'baseline'), unit='x')} "
                f"| {fmt_spread(cpu, iqr=False)} "
                f"| {fmt_spread(self.paired(mode, name, 'w3a', 'baseline', 'cpu_s'), unit='x')} "
                f"| {_span(writes)} |"
            )
        return lines

    # -- W2 --

    def w2(self) -> list[str]:
        lines = [
            "### W2: rebuilding a history in a fresh process",
            "",
            "The histories were written through each system (a tool round every fifth turn). A "
            "new process opens the database and loads each history as the library does before "
            "its next request (sa_llm: `chat.to_llm()` on the chat row; Agents SDK: "
            "`session.get_items()`; LangChain: `SQLChatMessageHistory(...).messages`; llm: "
            "`load_conversation`; limit: sa_llm's two history SELECTs by hand, turned into the "
            "request's input list). *First* is the first load in that process; *warm* the "
            "median of the next ones. The raw SELECT is a plain `SELECT` of the system's own "
            "rows for that chat (the messages and the tool calls, in SQLAlchemy Core); *first "
            "raw* is that SELECT as the first thing a fresh process does, timed in processes of "
            "its own. *Warm / raw* is given for every process (the ratio of its warm median to "
            f"its raw median), not only their median. {self.primary().upper()} journal.",
            "",
            "| system | messages | statements (first / warm) | first ms | warm ms "
            "| first raw ms | raw SELECT ms | first / first raw | warm / raw, each process |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for name in self.names():
            result = self.other(name)
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
                each = self.warm_ratios(name, size)
                lines.append(
                    f"| {label(name)} | {samples[0]['length']:,} | {_span(first_stmts)} / "
                    f"{_span(warm_stmts)} | {fmt(first, 2)} | {fmt(warm, 2)} "
                    f"| {fmt(first_raw, 2)} | {fmt(raw, 2)} "
                    f"| {_ratio(first, first_raw)} "
                    f"| {', '.join(f'{r:.2f}x' for r in each) or 'n/a'} |"
                )
        return lines

    def warm_ratios(self, name: str, size: str) -> list[float]:
        result = self.other(name)
        ratios = []
        for proc in (result or {}).get("w2", []):
            sample = proc.get(size)
            if not sample:
                continue
            warm, raw = median(sample["warm_ms"]), median(sample["raw_ms"])
            if warm is not None and raw:
                ratios.append(warm / raw)
        return ratios

    def first_raw(self, name: str, size: str) -> float | None:
        result = self.other(name)
        if result is None:
            return None
        cold = result.get("w2_raw_cold", [])
        return median([p[size] for p in cold if p.get(size) is not None])

    # -- W4, W5 --

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
            result = self.other(name)
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
        return lines

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
            result = self.other(name)
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
        return lines

    # -- W6 --

    def w6_runs(self, name: str, transport: str) -> list[dict[str, Any] | None]:
        """The run of (system, transport) in each W6 round (``None``: failed)."""
        found: list[dict[str, Any] | None] = []
        for round_ in self.results.get("w6") or []:
            value = round_.get(f"{name}/{transport}")
            found.append(value if isinstance(value, dict) and "error" not in value else None)
        return found

    def w6_paired(self, name: str, transport: str) -> Spread | None:
        ratios = []
        for mine, limit in zip(
            self.w6_runs(name, transport), self.w6_runs("baseline", transport), strict=True
        ):
            if mine is not None and limit is not None and limit["wall_s"]:
                ratios.append(mine["wall_s"] / limit["wall_s"])
        return spread(ratios)

    def w6(self) -> list[str]:
        floor = W6_TURNS * W6_LATENCY
        turns = W6_CHATS * W6_TURNS
        rounds = self.results.get("w6")
        header = [
            f"### W6: {W6_CHATS} concurrent async chats x {W6_TURNS} turns, "
            f"{W6_LATENCY * 1000:.0f} ms latency, PostgreSQL",
            "",
        ]
        if isinstance(rounds, str) or not rounds:
            return [*header, f"Not run: {rounds or 'no rounds'}."]
        lines = [
            *header,
            f"asyncpg, each system's default database pool (SQLAlchemy: 5 + 10 overflow); every "
            f"chat starts new (sa_llm and the limit look up its model's row, as "
            f"`Chat(model=...)` does) and asks {W6_TURNS} questions. The floor is {W6_TURNS} x "
            f"{W6_LATENCY * 1000:.0f} ms = {floor:.1f} s. {len(rounds)} rounds, each system and "
            "transport in a fresh process per round (after a small warm-up run in it), sa_llm "
            "and the limit on the same transport next to each other. *vs limit*: per round, the "
            "wall time over the limit's **on the same transport** (httpx with sa_llm's default "
            "pool limits, 200 connections and 50 kept alive; or sa_llm's aiohttp transport), "
            "median [min-max]. *Client CPU*: the CPU time of the process running the 200 "
            "chats, per turn, median [min-max].",
            "",
            "| system | transport | wall s | vs floor | vs limit, same transport "
            "| client CPU ms / turn | turns done | errors | peak connections |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
        ]
        for name, transport in W6_PAIRS:
            if name not in self.names():
                continue
            runs = [r for r in self.w6_runs(name, transport) if r is not None]
            title = async_label(name)
            if not runs:
                why = self.results["systems"][name].get("unsupported", {}).get("W6", "failed")
                lines.append(f"| {title} | {transport} | n/a: {why} |" + " |" * 6)
                continue
            wall = spread([r["wall_s"] for r in runs])
            cpu = spread([r["cpu_s"] * 1000 / turns for r in runs])
            errors: dict[str, int] = {}
            for r in runs:
                for kind, count in r["errors"].items():
                    errors[kind] = errors.get(kind, 0) + count
            lines.append(
                f"| {title} | {TRANSPORT_LABEL.get(transport, transport)} "
                f"| {fmt_spread(wall, iqr=False)} "
                f"| {wall.median / floor if wall else 0:.1f}x "
                f"| {fmt_spread(self.w6_paired(name, transport), unit='x', iqr=False)} "
                f"| {fmt_spread(cpu, iqr=False)} "
                f"| {min(r['completed'] for r in runs):,} / {turns:,} "
                f"| {', '.join(f'{k} x{v}' for k, v in errors.items()) or 'none'} "
                f"| {max((r['pool_peak'] or 0) for r in runs)} |"
            )
        for name in self.names():
            if "W6" in self.results["systems"][name].get("unsupported", {}):
                why = self.results["systems"][name]["unsupported"]["W6"]
                lines.append(f"| {label(name)} | | n/a: {why} |" + " |" * 6)
        return lines

    # -- the targets --

    def targets(self) -> list[str]:
        rows: list[tuple[str, str, str]] = []
        for mode in self.modes():
            ratio = self.paired(mode, "sa_llm", "w1", "baseline")
            peers = [
                (found, label(name))
                for name in self.names()
                if name not in ("sa_llm", "baseline", "plain")
                and (found := self.paired(mode, name, "w1", "sa_llm")) is not None
            ]
            fastest = min(peers, key=lambda peer: peer[0].median, default=None)
            cpu = self.paired(mode, "sa_llm", "w1", "baseline", "cpu_s")
            peer_text = (
                f"; the fastest peer ({fastest[1]}) takes {fmt_spread(fastest[0], unit='x')} "
                "sa_llm's time"
                if fastest is not None
                else "; the peers ran in the first journal mode only"
            )
            status = verdict(ratio, W1_TARGET)
            if fastest is not None and fastest[0].median <= 1:
                status = f"**missed** ({fastest[1]} is faster); W1: {status}"
            rows.append(
                (
                    f"W1 within {W1_TARGET}x of the limit ({mode.upper()} journal), faster than "
                    "every peer",
                    f"{fmt_ratio(ratio)} (CPU: {fmt_ratio(cpu)}){peer_text}",
                    status,
                )
            )
            for workload, what, target in (
                ("w1a", f"W1 async within {W1_TARGET}x of the async limit", W1_TARGET),
                ("w3", f"W3 within {W3_TARGET}x of the limit", W3_TARGET),
                ("w3a", f"W3 async within {W3_TARGET}x of the async limit", W3_TARGET),
            ):
                ratio = self.paired(mode, "sa_llm", workload, "baseline")
                cpu = self.paired(mode, "sa_llm", workload, "baseline", "cpu_s")
                rows.append(
                    (
                        f"{what} ({mode.upper()})",
                        f"{fmt_ratio(ratio)} (CPU: {fmt_ratio(cpu)})",
                        verdict(ratio, target),
                    )
                )
            gap = self.first_chunk_ratio(mode, "sa_llm", "w3g")
            first, _ = self.first_chunk(mode, "sa_llm", "w3g")
            rows.append(
                (
                    f"W3 first chunk (server write → callback) within {FIRST_CHUNK_TARGET}x of "
                    f"a plain chat with a {W3_GAP * 1000:.0f} ms time to first token "
                    f"({mode.upper()})",
                    f"{fmt(first.median if first else None, 0)} µs; "
                    f"{fmt_ratio(gap)} (the plain chat's)",
                    verdict(gap, FIRST_CHUNK_TARGET),
                )
            )
            nogap = self.first_chunk_ratio(mode, "sa_llm", "w3")
            first, _ = self.first_chunk(mode, "sa_llm", "w3")
            rows.append(
                (
                    f"W3 first chunk without a gap, reported ({mode.upper()})",
                    f"{fmt(first.median if first else None, 0)} µs; "
                    f"{fmt_spread(nogap, unit='x')} the plain chat's",
                    "reported (no target)",
                )
            )
        big = str(max(HISTORY_SIZES))
        each = self.warm_ratios("sa_llm", big)
        if each:
            proc = (self.other("sa_llm") or {}).get("w2", [])
            firsts = [p[big]["cold_ms"] for p in proc if big in p]
            first_raw = self.first_raw("sa_llm", big)
            rows.append(
                (
                    f"W2 within {W2_TARGET:g}x of a raw SELECT at {int(big):,} messages in "
                    "every run",
                    f"warm: {', '.join(f'{r:.2f}x' for r in each)} (one per process); first load "
                    f"in a fresh process: {', '.join(f'{f:.1f}' for f in firsts)} ms against "
                    f"{fmt(first_raw, 1)} ms for the first raw SELECT "
                    f"({_ratio(median(firsts), first_raw)})",
                    _status(
                        max(each) <= W2_TARGET,
                        f"{sum(r > W2_TARGET for r in each)} of {len(each)} over",
                    ),
                )
            )
        w4 = self.other("sa_llm")
        if w4:
            report = w4["w4"]["report"]
            ok = report["user_turn_kept"] and not report["empty_rows"] and not report["orphans"]
            rows.append(
                (
                    "W4 zero empty or orphaned rows, user turn kept",
                    f"{report['empty_rows']} empty, {report['orphans']} orphaned, user turn "
                    f"{'kept' if report['user_turn_kept'] else 'lost'}",
                    _status(ok, "missed"),
                )
            )
        if isinstance(self.results.get("w6"), list):
            turns = W6_CHATS * W6_TURNS
            for transport in ("httpx", "aiohttp"):
                ratio = self.w6_paired("sa_llm", transport)
                runs = [r for r in self.w6_runs("sa_llm", transport) if r is not None]
                limit = [r for r in self.w6_runs("baseline", transport) if r is not None]
                cpu = spread([r["cpu_s"] * 1000 / turns for r in runs])
                cpu_limit = spread([r["cpu_s"] * 1000 / turns for r in limit])
                errors = sum(sum(r["errors"].values()) for r in runs)
                rows.append(
                    (
                        f"W6 within {W6_TARGET}x of the limit on the same transport "
                        f"({transport}), no errors",
                        f"{fmt_ratio(ratio)}; client CPU "
                        f"{fmt(cpu.median if cpu else None, 2)} ms / turn against "
                        f"{fmt(cpu_limit.median if cpu_limit else None, 2)}; errors: {errors}",
                        f"**missed** ({errors} errors)" if errors else verdict(ratio, W6_TARGET),
                    )
                )
        lines = [
            "### sa_llm against the targets",
            "",
            f"From the run `{self.source}`: ratios are medians of per-round ratios, "
            "[min-max] and IQR over the rounds. A target is met or missed by the median; the "
            "median's interval (the k-th smallest to the k-th largest of the per-round ratios, "
            "which hold the median of the distribution they come from with the confidence "
            f"given, whatever its shape; {CONFIDENCE:.0%} where the rounds allow) tells whether "
            "the run settles it: wholly on one side of the target, or straddling it, when "
            "another run may well end the other way.",
            "",
            "| target | this run | status |",
            "| --- | --- | --- |",
        ]
        return lines + [f"| {target} | {value} | {status} |" for target, value, status in rows]

    def header(self) -> list[str]:
        meta = self.meta
        load = meta["load_at_start"]
        load_text = ", ".join(f"{x:.2f}" for x in load) if load else "?"
        versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
        return [
            f"Run `{self.source}`: started {meta['started']} (load average {load_text} at the "
            f"start, read before any work); {meta['cpu']}, {meta['cores']} cores; Python "
            f"{meta['python']}; git {meta['git']}; journal modes "
            f"{', '.join(m.upper() for m in self.modes())}; {meta['rounds']} rounds of W1/W3 "
            f"(the peers: {meta['peer_rounds']}, in the {self.primary().upper()} journal only), "
            f"{meta['w6_rounds']} of W6 (the peers: {meta['w6_peer_rounds']}), "
            f"{meta['w2_processes']} fresh processes for W2.",
            "",
            f"Versions: {versions}.",
        ]

    def fairness(self) -> list[str]:
        parity = self.results.get("parity") or {}
        checks = self.results.get("checks") or []
        cases = ", ".join(parity.get("cases", [])) or "none"
        return [
            f"Statement check: sa_llm and the limit ran the same statements and commits, turn "
            f"by turn, in {cases} (text compared; on a chat's first turn sa_llm also refreshes "
            "the chat row its creation expired). Journal check: every system reported the "
            "run's mode on every run."
            if parity.get("ok") and not checks
            else "**Fairness checks failed:** " + "; ".join([*parity.get("problems", []), *checks])
        ]

    def markdown(self, images: dict[str, str] | None = None) -> list[str]:
        """The section; ``images``: workload (``w1``, ...) -> the path of its plot, relative to
        the docs page, for the plots that were drawn."""
        images = images or {}
        body = [
            "## Side by side with the Python peers",
            "",
            "Written by `python bench/bench_peers.py --docs` (`nox -s bench`); the method is in "
            "its docstring and in `bench/peers/`. Every system talks HTTP to the same fake "
            "OpenAI server (`sa_llm.testing.server`) in another process on 127.0.0.1, with no "
            "latency except in W6, with its defaults (sa_llm, the Agents SDK and the limit use "
            "the Responses API, LangChain and llm Chat Completions). In each round of W1 and "
            "W3, sa_llm, the limit and the plain chat run in one process, taking turns (D50); "
            "each peer runs in processes of its own, as every system does in the other "
            "workloads. The limit is sa_llm's default strategy by hand: the same statements "
            "and commits per turn (and per new chat) in SQLAlchemy Core, with httpx and `json` "
            "(`bench/peers/baseline.py`). Every system's SQLite file uses the run's journal "
            "mode (the Agents SDK's own switch to WAL is overridden).",
            "",
            *self.header(),
            "",
            *self.fairness(),
            "",
            *self.targets(),
            "",
            *ANALYSIS,
            "",
        ]
        for mode in self.modes():
            body += [f"### W1 and W3, {mode.upper()} journal", "", *self.w1(mode), ""]
            if mode == self.primary():
                body += plot(images, "w1")
            body += [*self.w3(mode), ""]
            if mode == self.primary():
                body += plot(images, "w3")
        body += [*self.w2(), "", *plot(images, "w2"), *self.w4(), "", *self.w5(), "", *self.w6()]
        body += ["", *plot(images, "w6")] if "w6" in images else []
        return body[:-1] if body and not body[-1] else body


#: How to read each plot (one sentence under it in the docs), and its alt text.
PLOTS = {
    "w1": (
        "W1: time per turn and ratios to the limit",
        "Left, each system's ms per turn, one dot per round (box: interquartile range and "
        "median, whiskers: min and max; hatched: WAL); middle, sa_llm's per-round ratio to the "
        "limit, wall and CPU, sync and async, against the 1.15x target (dashed); right, the "
        "time of each turn against the messages already in the chat (line: median over the "
        "rounds, band: min to max), with the turns run on W2's 100- and 1,000-message "
        "histories as dots.",
    ),
    "w3": (
        "W3: first chunk and per-round ratios",
        "Left, the first chunk of every turn of every round (server write to callback, log "
        "scale), without a time to first token and with it (hatched); right, the per-round "
        "ratios to the plain chat and to the limit (sync, and async to the async limit) in "
        "each journal mode (hatched: WAL), "
        "against their targets (dashed): a box above its dashed segment is a missed target.",
    ),
    "w2": (
        "W2: rebuilding a history",
        "For each history size, each system's warm loads (coloured) next to the raw SELECT of "
        "its own rows (grey, hatched), log scale, triangles the first load of a fresh process; "
        "right, each process's warm load over its raw SELECT (one dot per process), against "
        "sa_llm's 2x target.",
    ),
    "w6": (
        "W6: concurrent chats",
        "Wall time (dotted: the latency floor) and client CPU per turn of each system and "
        "transport, one dot per round (hatched: aiohttp), and each round's ratio to the limit "
        "on the same transport against the 1.2x target (dashed); a single dot is a peer that "
        "ran one round.",
    ),
}


def plot(images: dict[str, str], workload: str) -> list[str]:
    """The embed of a workload's plot and the sentence on how to read it (nothing if not
    drawn)."""
    if workload not in images:
        return []
    alt, reading = PLOTS[workload]
    return [f"![{alt}]({images[workload]})", "", reading, ""]


def draw_plots(results: dict[str, Any]) -> dict[str, str]:
    """Draw W1, W2, W3 and W6 from ``results`` into ``docs/img``; their paths from the docs."""
    from plot import draw_results

    drawn = draw_results("peers", results, IMAGES)
    return {w: p.relative_to(DOCS.parent).as_posix() for w, p in drawn.items()}


def _value(run: dict[str, Any], key: str) -> float | None:
    if key == "first_chunk_median":
        return median(run.get("first_chunk_us") or [])
    value = run.get(key)
    return float(value) if isinstance(value, int | float) else None


def _ratio(value: float | None, reference: float | None) -> str:
    if value is None or not reference:
        return "n/a"
    return f"{value / reference:.2f}x"


#: What the profiles say about where sa_llm's time goes (the numbers are the run's, above).
ANALYSIS = [
    "Where the time goes (cProfile and pyinstrument profiles of the workloads; the numbers "
    "in the tables are this run's):",
    "",
    "* **W1, W3.** sa_llm and the limit run the same statements and commits, so the waiting "
    "(the fake server, SQLite's fsync at COMMIT) is the same on both sides and the ratio is "
    "the library's own CPU (*CPU ms / turn*): the `Session`'s transaction around each step, "
    "the strategy's hooks and the ORM rows they write, the lease and history mirrors, and the "
    "turn's objects and flow (`python bench/bench_gap.py` times each piece).",
    "* **W3, first chunk.** The empty reply row is written when the stream opens (D8). When "
    "the model's first token comes later than that write takes (*with the gap*) the write "
    "overlaps it; when the first delta arrives with the headers (*no gap*: the fake server "
    "sends them together) the INSERT and COMMIT sit between the headers and the first "
    "callback, and the first chunk waits for them.",
    "* **W3 async.** The same statements and commits again. Without a gap the first chunk "
    "waits longer than in sync on both sides: the empty row's INSERT and COMMIT go through "
    "aiosqlite, which runs each call in its own worker thread. sa_llm's extra CPU per turn "
    "over the limit is larger than in W1 async because each of a reply's 50 deltas passes "
    "through the async flow's effect loop: the read of the stream, the parse and the "
    "callback are effects the driver awaits one by one (D51).",
    "* **W2.** The first load in a new process also pays what any ORM application pays once: "
    "SQLAlchemy configuring the mappers on the first ORM query and compiling the statements; "
    "`sqlalchemy.orm.configure_mappers()` at start-up moves the mapper configuration off it.",
    "* **W6.** The chats share one event loop, so the wall time cannot be lower than the "
    "client's CPU time; the fake server and PostgreSQL share the same two cores. See "
    "[many concurrent chats: the HTTP transport](#many-concurrent-chats-the-http-transport) "
    "for where httpx's pool spends its CPU and what the alternatives measure.",
]


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


#: The systems whose chats run interleaved, turn by turn, in one process: sa_llm, the limit
#: (the targets' ratios) and the plain chat (the first chunk's reference). The peers run alone,
#: each in its own process.
INTERLEAVED = ("sa_llm", "baseline", "plain")


def _order(names: list[str], round_: int) -> list[list[str]]:
    """The workers of a round: sa_llm, the limit and the plain chat together (their order on
    the first turn reversed every other round), then every other system alone."""
    together = [name for name in INTERLEAVED if name in names]
    if round_ % 2:
        together.reverse()
    alone = [[name] for name in names if name not in INTERLEAVED]
    return [together, *alone] if together else alone


def _w6_order(names: list[str], round_: int) -> list[tuple[str, str]]:
    pairs = [pair for pair in W6_PAIRS if pair[0] in names]
    if round_ % 2:
        swapped = {"sa_llm": "baseline", "baseline": "sa_llm"}
        pairs = [(swapped.get(name, name), transport) for name, transport in pairs]
        pairs = [pair for pair in pairs if pair[0] in names]
    return pairs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated")
    parser.add_argument("--repeats", type=int, default=11, help="rounds of W1 and W3 chats")
    parser.add_argument(
        "--peer-repeats", type=int, default=3, help="of those, rounds the peers run in"
    )
    parser.add_argument("--w6-repeats", type=int, default=5, help="rounds of W6")
    parser.add_argument(
        "--w6-peer-repeats", type=int, default=1, help="of those, rounds the peers run in"
    )
    parser.add_argument("--processes", type=int, default=3, help="fresh processes per W2 system")
    parser.add_argument("--warm", type=int, default=5, help="warm rebuilds per W2 process")
    parser.add_argument(
        "--journal",
        default=",".join(JOURNAL_MODES),
        help="SQLite journal modes, comma-separated (W2, W4, W5 run in the first)",
    )
    parser.add_argument("--docs", action="store_true", help=f"update {DOCS.name} and the plot")
    parser.add_argument("--no-write", action="store_true", help="write nothing but stdout")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per worker")
    parser.add_argument(
        "--from-json",
        type=Path,
        help="print the report of a saved run (bench/results/peers.json) instead of running",
    )
    # internal: the worker processes
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--rebuild", help=argparse.SUPPRESS)
    parser.add_argument("--raw-cold", help=argparse.SUPPRESS)
    parser.add_argument("--chat-round", help=argparse.SUPPRESS)
    parser.add_argument("--parity", help=argparse.SUPPRESS)
    parser.add_argument("--w6", help=argparse.SUPPRESS)
    parser.add_argument("--transport", default="httpx", help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--server", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.journal = [mode.strip().lower() for mode in args.journal.split(",") if mode.strip()]
    unknown = [mode for mode in args.journal if mode not in JOURNAL_MODES]
    if unknown or not args.journal:
        parser.error(f"--journal: expected some of {', '.join(JOURNAL_MODES)}")

    if args.worker:
        print(json.dumps(worker(args.worker, args.server, Path(args.tmp))))
        return 0
    if args.chat_round:
        runs = chat_round(args.chat_round.split(","), args.server, Path(args.tmp), args.round)
        print(json.dumps(runs))
        return 0
    if args.parity:
        postgres = os.environ.get(POSTGRES_ENV)
        traces = parity_traces(
            load(args.parity), Path(args.tmp), args.server, args.parity, postgres
        )
        print(json.dumps(traces))
        return 0
    if args.w6:
        postgres = os.environ[POSTGRES_ENV]
        concurrent = run_concurrent(
            load(args.w6),
            args.server,
            args.w6,
            postgres,
            args.round,
            transport=args.transport,
            profile=args.profile,
        )
        print(json.dumps(concurrent))
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

    if args.from_json:
        saved = json.loads(args.from_json.read_text(encoding="utf-8"))
        source = f"bench/results/peers-{saved['meta']['stamp']}.md"
        images = draw_plots(saved) if args.docs and not args.no_write else {}
        lines = Report(saved, source).markdown(images)
        print("\n".join(lines))
        if args.docs and not args.no_write and not saved.get("checks"):
            write_docs(lines)
        return 0

    meta = start_meta(args)  # first: the load and the time before this run adds to them
    names = [name.strip() for name in args.systems.split(",") if name.strip()]
    compile_sources()
    results: dict[str, Any] = {
        "meta": meta,
        "systems": {},
        "parity": None,
        "chats": {},
        "other": {},
        "w6": None,
    }
    failed = False
    started = time.perf_counter()
    primary = args.journal[0]

    def note(what: str) -> None:
        print(f"[{time.perf_counter() - started:5.0f} s] {what}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="sa-llm-peers-") as tmp, ServerProcess() as root:
        common = ["--server", root, "--tmp", tmp]
        if "sa_llm" in names and "baseline" in names:
            note("statement check: sa_llm and the limit")
            ours, error = run_worker(["--parity", "sa_llm", *common], args.timeout, primary)
            limit, error2 = run_worker(["--parity", "baseline", *common], args.timeout, primary)
            if ours is None or limit is None:
                print(f"the statement check failed to run: {error or error2}", file=sys.stderr)
                return 3
            problems = parity_problems(ours, limit)
            results["parity"] = {"ok": not problems, "problems": problems, "cases": list(ours)}
            if problems:
                print("\n*** The limit does not run sa_llm's statements: ***", file=sys.stderr)
                for problem in problems:
                    print(f"  {problem}", file=sys.stderr)
                return 3
        for mode in args.journal:
            rounds: list[dict[str, Any]] = []
            for round_ in range(args.repeats):
                found: dict[str, Any] = {}
                peers_too = mode == primary and round_ < args.peer_repeats
                for group in _order(names, round_):
                    if not peers_too and all(name not in CORE for name in group):
                        continue
                    joined = ",".join(group)
                    note(f"W1 and W3, {mode} journal, round {round_ + 1}: {joined}")
                    chats, error = run_worker(
                        ["--chat-round", joined, "--round", str(round_), *common],
                        args.timeout,
                        mode,
                    )
                    for name in group:
                        if chats is None:
                            failed = True
                            found[name] = {"error": error}
                            continue
                        results["systems"][name] = chats[name].pop("_system")
                        found[name] = chats[name]
                rounds.append(found)
            results["chats"][mode] = rounds
        for name in names:
            system = results["systems"].get(name)
            if system is None or system["chat_only"]:
                continue
            note(f"W2, W4, W5: {name}")
            result, error = run_worker(["--worker", name, *common], args.timeout, primary)
            if result is None:
                failed = True
                results["other"][name] = {"error": error}
                continue
            build = result["w2_build"]
            spec = json.dumps({k: build[k] for k in ("db", "base_url", "handles")})
            result["w2"] = []
            for _ in range(args.processes):
                process, _ = run_worker(
                    ["--rebuild", name, "--spec", spec, "--warm", str(args.warm)],
                    args.timeout,
                    primary,
                )
                if process is not None:
                    result["w2"].append(process)
            result["w2_raw_cold"] = []
            for size, handle in build["handles"].items():
                # One size per process: each timing is the first query that process runs.
                only = json.dumps({**json.loads(spec), "handles": {size: handle}})
                for _ in range(args.processes):
                    process, _ = run_worker(
                        ["--raw-cold", name, "--spec", only], args.timeout, primary
                    )
                    if process is not None:
                        result["w2_raw_cold"].append(process)
            results["other"][name] = result
        if not os.environ.get(POSTGRES_ENV):
            results["w6"] = f"skipped: {POSTGRES_ENV} is not set"
        else:
            w6_rounds: list[dict[str, Any]] = []
            for round_ in range(args.w6_repeats):
                found = {}
                for name, transport in _w6_order(names, round_):
                    if name not in CORE and round_ >= args.w6_peer_repeats:
                        continue
                    note(f"W6 round {round_ + 1}: {name} on {transport}")
                    run, error = run_worker(
                        ["--w6", name, "--transport", transport, "--round", str(round_), *common],
                        args.timeout,
                    )
                    found[f"{name}/{transport}"] = run if run is not None else {"error": error}
                    failed |= run is None
                w6_rounds.append(found)
            results["w6"] = w6_rounds
    elapsed = time.perf_counter() - started
    results["checks"] = checks = run_checks(results)
    results["meta"]["seconds"] = round(elapsed, 1)
    source = f"bench/results/peers-{meta['stamp']}.md"
    report = Report(results, source)
    images = draw_plots(results) if args.docs and not args.no_write else {}
    lines = report.markdown(images)
    print("\n".join(lines))
    print(f"\n({elapsed:.0f} s)", file=sys.stderr)
    if checks:
        print("\n*** Fairness checks failed: ***", file=sys.stderr)
        for problem in checks:
            print(f"  {problem}", file=sys.stderr)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, separators=(",", ":")) + "\n", encoding="utf-8")
        (ROOT / source).write_text(
            "# Peers benchmark run\n\nWritten by `python bench/bench_peers.py`; raw numbers in "
            "`bench/results/peers.json` (the latest run).\n\n" + "\n".join(lines) + "\n",
            encoding="utf-8",
        )
        if args.docs and not checks:
            write_docs(lines)
    return 0 if not failed and not checks else 1


if __name__ == "__main__":
    sys.exit(main())
