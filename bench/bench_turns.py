"""Durable turns: what the turn lease costs and how fast a waiting turn starts.

Run from the repository root with ``python bench/bench_turns.py`` (``--before-src PATH`` adds the
first table; PostgreSQL rows need ``SA_LLM_TEST_POSTGRES_URL``). It prints markdown tables and
writes them to ``bench/results/turns.md``, and every round's and trial's numbers to
``bench/results/turns.json`` (the plot's data; ``--json-only``: that file alone, ``--no-write``:
neither; with ``--restructure``, ``restructure.md`` and ``restructure.json``). Without
``--before-src`` (as ``bench/run.py`` runs it) the file keeps the W1 rounds of the last run that
measured them, with that run's meta (``w1_meta``), and the plot names it.

1. **W1 per turn, before and after the lease** (``--before-src``: the ``src`` directory of a
   checkout without the lease, e.g. ``git worktree add /tmp/before <commit>``). 50 non-streamed
   asks on one chat, sync, SQLite file in the default (DELETE) journal, the scripted fake model
   in process; each version runs in a fresh process of its own, alternating, 7 rounds. Reported:
   the median ms per turn of each, the per-round paired ratio (after / before) with its min and
   max, and statements and commits per turn (a ``before_cursor_execute`` listener and the
   engine's ``commit`` events, on a warm chat).
2. **Wait-to-start latency.** A worker process holds the chat (a turn whose provider answers
   after 300 ms); a second worker, started meanwhile, waits for it. The latency is the wall
   time from the first turn's release (its ``ask`` returned) to the second turn's start (its
   ``on_new_message``, right after the commit that claimed the chat), both on this host's
   clock. PostgreSQL with ``LISTEN``/``NOTIFY``, PostgreSQL polling only (the listener off),
   and SQLite (polling). 20 trials each; median, p95 and max. Target: <= 50 ms after release on
   PostgreSQL with NOTIFY.
3. **Partial-output flush writes.** A streamed reply of ~1 s (the fake OpenAI server sends N
   chunks at an even pace) with ``keep_partial_output``: ``UPDATE messages`` statements during
   the reply, against the bound ``duration / partial_output_interval + 1`` (flushes are timed,
   never per chunk).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import results_json

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "turns.md"
sys.path.insert(0, str(ROOT / "tests"))

TURNS = 50
ROUNDS = 7
TRIALS = 20


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


# -- 1. W1 before and after ------------------------------------------------------------------------


def w1_worker(db_path: str) -> dict[str, Any]:
    """Runs in a fresh process with one version of sa_llm on sys.path."""
    from sqlalchemy import create_engine, event
    from sqlalchemy.orm import Session

    import sa_llm
    from persisted import default_models
    from sa_llm.testing import fake_llm

    models = default_models()
    engine = create_engine(f"sqlite:///{db_path}")
    models["Base"].metadata.create_all(engine)
    sa_llm.configure(max_retries=0)
    statements: list[str] = []
    commits: list[int] = []
    with fake_llm(echo=True), Session(engine) as session:
        chat = models["Chat"](model="fake-model", provider="fake")
        session.add(chat)
        session.commit()
        chat.ask("warm up")
        event.listen(engine, "before_cursor_execute", lambda c, cu, s, *a: statements.append(s))
        event.listen(engine, "commit", lambda c: commits.append(1))
        chat.ask("counted")
        counted = (len(statements), len(commits))
        times, cpu = [], []
        for turn in range(TURNS):
            started, started_cpu = time.perf_counter_ns(), time.process_time_ns()
            chat.ask(f"question {turn}")
            times.append((time.perf_counter_ns() - started) / 1e6)
            cpu.append((time.process_time_ns() - started_cpu) / 1e6)
    engine.dispose()
    return {
        "median_ms": statistics.median(times),
        "cpu_median_ms": statistics.median(cpu),
        "statements": counted[0],
        "commits": counted[1],
    }


def _run_w1(src: Path, tmp: Path, label: str, round_: int) -> dict[str, Any]:
    db = tmp / f"w1-{label}-{round_}.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(ROOT / "tests")])}
    out = subprocess.run(
        [sys.executable, __file__, "--w1-worker", str(db)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _w1_row(label: str, times: list[float], cpu: list[float], counts: tuple[int, int]) -> str:
    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"

    return f"| {label} | {cell(times)} | {cell(cpu)} | {counts[0]} | {counts[1]} |"


def bench_w1(
    before_src: Path,
    tmp: Path,
    after_src: Path = ROOT / "src",
    labels: tuple[str, str] = ("before the lease", "with the lease"),
    title: str = "W1 per turn, before and after the lease",
    target: str = " (target <= 1.1x)",
    rounds: int = ROUNDS,
    found: dict[str, Any] | None = None,
) -> list[str]:
    """The W1 table; ``found`` (when given) receives every round's numbers."""
    befores, afters, ratios, cpu_ratios = [], [], [], []
    cpu: dict[str, list[float]] = {"before": [], "after": []}
    counts: dict[str, Any] = {}
    for round_ in range(rounds):
        order = [("before", before_src), ("after", after_src)]
        if round_ % 2:
            order.reverse()
        result = {label: _run_w1(src, tmp, label, round_) for label, src in order}
        befores.append(result["before"]["median_ms"])
        afters.append(result["after"]["median_ms"])
        ratios.append(result["after"]["median_ms"] / result["before"]["median_ms"])
        for label in cpu:
            cpu[label].append(result[label]["cpu_median_ms"])
        cpu_ratios.append(cpu["after"][-1] / cpu["before"][-1])
        counts = {label: (r["statements"], r["commits"]) for label, r in result.items()}
    if found is not None:
        found.update(
            labels=list(labels),
            before_ms=befores,
            after_ms=afters,
            before_cpu_ms=cpu["before"],
            after_cpu_ms=cpu["after"],
            statements={k: list(v) for k, v in counts.items()},
        )
    return [
        f"## {title}",
        "",
        f"{TURNS} non-streamed asks per round, sync, SQLite file (DELETE journal), fake model in "
        f"process; {rounds} rounds, each version in a fresh process, alternating. CPU is the "
        "process's CPU time per turn (waits for the disk's fsync and for the machine's other "
        "work are out of it), the figure a busy machine blurs least.",
        "",
        "| | median ms / turn (min-max over rounds) | CPU ms / turn (min-max) "
        "| statements / turn | commits / turn |",
        "| --- | --- | --- | --- | --- |",
        _w1_row(labels[0], befores, cpu["before"], counts["before"]),
        _w1_row(labels[1], afters, cpu["after"], counts["after"]),
        "",
        f"Paired ratio (second / first), per round: median **{statistics.median(ratios):.2f}x**, "
        f"min {min(ratios):.2f}x, max {max(ratios):.2f}x{target}; "
        f"CPU per turn: median **{statistics.median(cpu_ratios):.2f}x**, "
        f"min {min(cpu_ratios):.2f}x, max {max(cpu_ratios):.2f}x.",
        "",
    ]


# -- 2. wait-to-start ------------------------------------------------------------------------------


def wait_worker(job: dict[str, Any]) -> None:
    """One turn on the chat; prints when it started and when it ended (this host's clock)."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    import sa_llm
    from persisted import default_models

    if job.get("no_listen"):
        import sa_llm._persisted.wakeups as wakeups

        wakeups.listen = lambda bind: None
    sa_llm.configure(
        openai_base_url=job["server"], openai_api_key="k", max_retries=0, turn_wait_timeout=60
    )
    models = default_models()
    engine = create_engine(job["db_url"])
    started: list[float] = []
    with Session(engine) as session:
        chat = session.get(models["Chat"], job["chat_id"])
        assert chat is not None
        chat.on_new_message(lambda: started.append(time.time()))
        print(json.dumps({"ready": True}), flush=True)
        sys.stdin.readline()  # go
        chat.ask("hello")
        ended = time.time()
    engine.dispose()
    print(json.dumps({"started": started[0], "ended": ended}), flush=True)


def _worker(job: dict[str, Any]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")])}
    process = subprocess.Popen(
        [sys.executable, __file__, "--wait-worker", json.dumps(job)],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    assert json.loads(process.stdout.readline()) == {"ready": True}
    return process


def _go(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.write("go\n")
    process.stdin.flush()


def _done(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = process.communicate(timeout=120)
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def bench_wait(db_url: str, label: str, *, no_listen: bool = False) -> tuple[str, list[float]]:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from persisted import default_models
    from sa_llm.testing.server import FakeOpenAIServer

    models = default_models()
    engine = create_engine(db_url)
    models["Base"].metadata.drop_all(engine)
    models["Base"].metadata.create_all(engine)
    latencies = []
    with FakeOpenAIServer(latency=0.3) as server:
        for _ in range(TRIALS):
            with Session(engine) as session:
                chat = models["Chat"](model="gpt-4.1-nano")
                session.add(chat)
                session.commit()
                chat_id = chat.id
            job = {"db_url": db_url, "chat_id": chat_id, "server": server.url}
            first = _worker({**job, "no_listen": no_listen})
            second = _worker({**job, "no_listen": no_listen})
            _go(first)
            time.sleep(0.1)  # the first turn holds the chat; the second one waits for it
            _go(second)
            one, two = _done(first), _done(second)
            latencies.append((two["started"] - one["ended"]) * 1000)
    models["Base"].metadata.drop_all(engine)
    engine.dispose()
    return label, latencies


def wait_table(rows: list[tuple[str, list[float]]]) -> list[str]:
    lines = [
        "## Wait-to-start latency of a queued second turn",
        "",
        f"{TRIALS} trials each: ms from the first turn's release (its ask returned) to the second "
        "turn's start (its claim committed), two worker processes, this host's clock.",
        "",
        "| database, wake-up | median ms | p95 ms | max ms |",
        "| --- | --- | --- | --- |",
    ]
    for label, values in rows:
        lines.append(
            f"| {label} | {statistics.median(values):.1f} | {_percentile(values, 0.95):.1f} | "
            f"{max(values):.1f} |"
        )
    return [*lines, "", "Target: <= 50 ms after release on PostgreSQL with NOTIFY.", ""]


# -- 3. partial-output flushes -----------------------------------------------------------------


def bench_flushes(db_url: str, found: list[dict[str, Any]] | None = None) -> list[str]:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    import sa_llm
    from persisted import StatementCounter, default_models
    from sa_llm.testing.server import FakeOpenAIServer

    lines = [
        "## Partial-output flushes per streamed reply",
        "",
        "A streamed reply of N chunks sent over ~1 s; `UPDATE messages` during the turn, less the "
        "completion's one, against `duration / partial_output_interval + 1`.",
        "",
        "| chunks | interval s | duration s | flushes | bound |",
        "| --- | --- | --- | --- | --- |",
    ]
    models = default_models()
    engine = create_engine(db_url)
    models["Base"].metadata.create_all(engine)
    for chunks in (100, 1000):
        for interval in (0.05, 0.2):
            with FakeOpenAIServer(chunks=chunks, chunk_interval=1.0 / chunks) as server:
                sa_llm.configure(
                    openai_base_url=server.url, openai_api_key="k", max_retries=0,
                    keep_partial_output=True, partial_output_interval=interval,
                )  # fmt: skip
                with Session(engine) as session:
                    chat = models["Chat"](model="gpt-4.1-nano")
                    session.add(chat)
                    session.commit()
                    chat.ask("warm up")
                    counter = StatementCounter(engine)
                    started = time.perf_counter()
                    chat.ask("stream", on_chunk=lambda chunk: None)
                    duration = time.perf_counter() - started
                    counter.close()
                sa_llm.reset_config()
            flushes = counter.count("UPDATE messages") - 1
            bound = int(duration / interval) + 1
            lines.append(f"| {chunks} | {interval} | {duration:.2f} | {flushes} | {bound} |")
            if found is not None:
                found.append(
                    {
                        "chunks": chunks,
                        "interval_s": interval,
                        "duration_s": round(duration, 4),
                        "flushes": flushes,
                        "bound": bound,
                    }
                )
    engine.dispose()
    return [*lines, ""]


def restructure_payload(
    meta: dict[str, Any], w1: dict[str, Any], sources: tuple[str, str], rounds: int
) -> dict[str, Any]:
    """``bench/results/restructure.json``: W1's rounds between two ``src`` trees."""
    return {"meta": meta, "turns": TURNS, "rounds": rounds, "src": list(sources), "w1": w1,
            "target": 1.0}  # fmt: skip


def payload(
    meta: dict[str, Any],
    w1: dict[str, Any] | None,
    waits: list[tuple[str, list[float]]],
    flushes: list[dict[str, Any]],
    w1_meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``bench/results/turns.json``: W1's rounds (when run; ``w1_meta`` names the run they come
    from when it is an earlier one), every wait-to-start trial (ms) per setup, and the flush
    counts against their bounds."""
    return {
        "meta": meta,
        "turns": TURNS,
        "w1": w1,
        "w1_meta": w1_meta,
        "wait_target_ms": 50.0,
        "waits": [{"label": label, "ms": [round(v, 3) for v in values]} for label, values in waits],
        "flushes": flushes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--before-src", type=Path, default=None)
    parser.add_argument(
        "--restructure",
        nargs=2,
        type=Path,
        metavar=("BEFORE_SRC", "AFTER_SRC"),
        default=None,
        help="only W1, between two src trees (issue 13: before and after the restructure); "
        "writes bench/results/restructure.md",
    )
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="W1 rounds (default 7)")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS}")
    parser.add_argument("--json-only", action="store_true", help="write only turns.json")
    parser.add_argument("--w1-worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--wait-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.w1_worker:
        print(json.dumps(w1_worker(args.w1_worker)))
        return
    if args.wait_worker:
        wait_worker(json.loads(args.wait_worker))
        return
    import tempfile

    meta = results_json.run_meta("turns")
    load = os.getloadavg()
    if args.restructure is not None:
        before, after = (path.resolve() for path in args.restructure)
        found: dict[str, Any] = {}
        with tempfile.TemporaryDirectory() as tmp:
            rows = bench_w1(
                before, Path(tmp), after, ("before the restructure", "after the restructure"),
                "W1 per turn, before and after the restructure (issue 13)", " (target: 1.0x)",
                args.rounds, found,
            )  # fmt: skip
        text = "\n".join(
            [
                "# The restructure, before and after",
                "",
                f"Run {time.strftime('%Y-%m-%d %H:%M:%S')} on {os.cpu_count()} CPUs, load average "
                f"at start {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}. `python "
                f"bench/bench_turns.py --restructure {before} {after} --rounds {args.rounds}`.",
                "",
                *rows,
            ]
        )
        print(text)
        if not args.no_write and not args.json_only:
            (RESULTS.parent / "restructure.md").write_text(text + "\n")
        if not args.no_write:
            data = restructure_payload(meta, found, (str(before), str(after)), args.rounds)
            print(f"written to {results_json.write('restructure', data)}", file=sys.stderr)
        return
    report = [
        "# Durable turns",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M:%S')} on {os.cpu_count()} CPUs, load average at "
        f"start {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}. `python bench/bench_turns.py`.",
        "",
    ]
    w1: dict[str, Any] | None = None
    flushes: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.before_src is not None:
            w1 = {}
            report += bench_w1(args.before_src.resolve(), Path(tmp), rounds=args.rounds, found=w1)
        waits = [bench_wait(f"sqlite:///{Path(tmp) / 'wait.db'}", "SQLite, polling")]
        postgres = os.environ.get("SA_LLM_TEST_POSTGRES_URL")
        if postgres:
            waits.append(bench_wait(postgres, "PostgreSQL, LISTEN/NOTIFY"))
            waits.append(bench_wait(postgres, "PostgreSQL, polling only", no_listen=True))
        report += wait_table(waits)
        report += bench_flushes(f"sqlite:///{Path(tmp) / 'flush.db'}", flushes)
    text = "\n".join(report)
    print(text)
    if not args.no_write and not args.json_only:
        RESULTS.write_text(text + "\n")
    if not args.no_write:
        w1_meta = None
        if w1 is None:
            # Without a tree to compare with (``bench/run.py`` has none) W1 did not run: keep
            # the last W1 that did, named by its own run, rather than drop it from the plot.
            w1, w1_meta = earlier_w1(results_json.results_dir() / "turns.json")
        found = payload(meta, w1, waits, flushes, w1_meta)
        print(f"written to {results_json.write('turns', found)}", file=sys.stderr)


def earlier_w1(path: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The W1 rounds of an earlier ``turns.json`` and the meta of the run that measured them
    (``None, None`` when there are none)."""
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None
    w1 = earlier.get("w1") or None
    if w1 is None:
        return None, None
    return w1, earlier.get("w1_meta") or earlier.get("meta")


if __name__ == "__main__":
    main()
