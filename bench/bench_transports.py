"""Many concurrent chats: which async HTTP transport, and where httpx's pool spends the CPU.

Run from the repository root with ``python bench/bench_transports.py`` (``nox -s bench`` runs
it; it needs ``SA_LLM_TEST_POSTGRES_URL`` and prints a note without it). It prints markdown;
with ``--docs`` it rewrites the part of ``docs/benchmarks.md`` between
``<!-- transports:start -->`` and ``<!-- transports:end -->`` and draws the plot that part
embeds (``docs/img/bench-transports.png``, ``bench/plot.py``); unless given ``--no-write`` it
keeps the report in ``bench/results/transports-<time>.md`` (the run the docs cite) and the raw
numbers in ``bench/results/transports.json``. ``--from-json bench/results/transports.json``
prints a saved run's report instead of running; with ``--docs`` it also rewrites the section
and redraws the plot from it.

Method. The concurrency workload of ``bench_peers.py`` (W6: 200 new chats x 5 turns at once,
100 ms of server latency, PostgreSQL through asyncpg) runs sa_llm's ``AsyncSession`` chats on
each async transport of :mod:`peers.transports` (httpx with sa_llm's default pool limits and
with others, httpx2's transport behind an adapter, sa_llm's ``http_library="httpx2"`` and its
aiohttp backend), one fresh worker process per run
(after a small warm-up run in it), ``--repeats`` rounds with the transports in turn (their order
reversed every other round). *vs default*: per round, the run's wall time over the default's
(httpx) in the same round. Then one more run (200 chats x 2 turns) of the default, of httpx2 and
of aiohttp runs under ``cProfile``, and the client's own CPU time is split by the package each
function belongs to (``tottime``: CPU time in the function itself; the profiler slows the run, so
only the shares are read from it).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

from bench_peers import (  # noqa: E402
    POSTGRES_ENV,
    ServerProcess,
    compile_sources,
    fmt_spread,
    run_worker,
    spread,
)
from peers.transports import ASYNC_TRANSPORTS  # noqa: E402
from peers.workloads import W6_CHATS, W6_LATENCY, W6_TURNS  # noqa: E402
from results_json import git_revision  # noqa: E402

DOCS = ROOT / "docs" / "benchmarks.md"
RESULTS = BENCH / "results" / "transports.json"
START, END = "<!-- transports:start -->", "<!-- transports:end -->"
PROFILED = ("httpx", "httpx2", "aiohttp")
LABELS = {
    "httpx": "httpx, sa_llm's default (200 connections, 50 kept alive)",
    "httpx-keepalive200": "httpx, 200 connections, 200 kept alive",
    "httpx-unlimited": "httpx, no limits",
    "httpx-50": "httpx, 50 connections, 50 kept alive",
    "httpx2": "httpx2's transport (httpcore2), default limits",
    "httpx2-library": '`http_library="httpx2"` (sa_llm\'s own httpx2 client)',
    "aiohttp": '`async_http_backend="aiohttp"`',
}
#: Packages shown in the profile table, in this order (the rest is summed up as "other").
SHOWN = (
    "httpcore",
    "httpcore2",
    "httpx",
    "httpx2",
    "h11",
    "anyio",
    "aiohttp",
    "asyncio",
    "sqlalchemy",
    "asyncpg",
    "sa_llm",
    "greenlet",
    "socket calls",
)


def available(transport: str) -> bool:
    module = {"httpx2": "httpx2", "httpx2-library": "httpx2", "aiohttp": "aiohttp"}.get(transport)
    return module is None or importlib.util.find_spec(module) is not None


def measure(repeats: int, timeout: float) -> dict[str, Any]:
    started = datetime.now(timezone.utc)
    meta = {
        "started": started.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "stamp": started.strftime("%Y%m%dT%H%M%SZ"),
        "load_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "git": git_revision(),
        "rounds": repeats,
    }
    transports = [t for t in ASYNC_TRANSPORTS if available(t)]
    rounds: list[dict[str, Any]] = []
    profiles: dict[str, Any] = {}
    compile_sources()
    with tempfile.TemporaryDirectory(prefix="sa-llm-transports-") as tmp, ServerProcess() as root:
        common = ["--server", root, "--tmp", tmp]
        for round_ in range(repeats):
            found: dict[str, Any] = {}
            order = transports if round_ % 2 == 0 else transports[::-1]
            for transport in order:
                print(f"round {round_ + 1}: {transport}", file=sys.stderr, flush=True)
                args = ["--w6", "sa_llm", "--transport", transport, "--round", str(round_)]
                run, error = run_worker([*args, *common], timeout)
                found[transport] = run if run is not None else {"error": error}
            rounds.append(found)
        for transport in PROFILED:
            if transport not in transports:
                continue
            print(f"profile: {transport}", file=sys.stderr, flush=True)
            args = ["--w6", "sa_llm", "--transport", transport, "--round", "99", "--profile"]
            run, error = run_worker([*args, *common], timeout)
            profiles[transport] = run if run is not None else {"error": error}
    missing = [t for t in ASYNC_TRANSPORTS if t not in transports]
    return {"meta": meta, "rounds": rounds, "profiles": profiles, "missing": missing}


def _ok(run: Any) -> dict[str, Any] | None:
    return run if isinstance(run, dict) and "error" not in run else None


PLOT_READING = (
    "Each transport's wall time and client CPU per turn, one dot per round (box: interquartile "
    "range and median, whiskers: min and max), each round's wall time over the default's in "
    "the same round (below 1: faster than httpx with sa_llm's default limits), and the profiled "
    "client CPU split by package."
)


def draw_plot(results: dict[str, Any]) -> str | None:
    """Draw ``docs/img/bench-transports.png``; its path from the docs page (None: not drawn)."""
    from plot import draw

    drawn = draw("transports", results)
    return drawn.relative_to(DOCS.parent).as_posix() if drawn else None


def report(results: dict[str, Any], source: str, image: str | None = None) -> list[str]:
    meta = results["meta"]
    turns = W6_CHATS * W6_TURNS
    load = meta["load_at_start"]
    load_text = ", ".join(f"{x:.2f}" for x in load) if load else "?"
    rounds = results["rounds"]
    transports = [t for t in ASYNC_TRANSPORTS if t not in results["missing"]]
    lines = [
        "## Many concurrent chats: the HTTP transport",
        "",
        f"Written by `python bench/bench_transports.py --docs` (`nox -s bench`), run "
        f"`{source}`: started {meta['started']}, load average {load_text} at the start; git "
        f"{meta['git']}. The method is in its docstring. W6 as in the peers section "
        f"({W6_CHATS} new `AsyncSession` chats x {W6_TURNS} turns at once, "
        f"{W6_LATENCY * 1000:.0f} ms of server latency, PostgreSQL), sa_llm only, on each "
        f"async transport; {len(rounds)} rounds, median [min-max].",
        "",
        "| transport | wall s | client CPU ms / turn | vs default (per round) | errors |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for transport in transports:
        runs = [_ok(r.get(transport)) for r in rounds]
        good = [r for r in runs if r is not None]
        if not good:
            lines.append(f"| {LABELS.get(transport, transport)} | failed | | | |")
            continue
        ratios = []
        for round_ in rounds:
            mine, default = _ok(round_.get(transport)), _ok(round_.get("httpx"))
            if mine and default and default["wall_s"]:
                ratios.append(mine["wall_s"] / default["wall_s"])
        errors = sum(sum(r["errors"].values()) for r in good)
        lines.append(
            f"| {LABELS.get(transport, transport)} "
            f"| {fmt_spread(spread([r['wall_s'] for r in good]), iqr=False)} "
            f"| {fmt_spread(spread([r['cpu_s'] * 1000 / turns for r in good]), iqr=False)} "
            f"| {fmt_spread(spread(ratios), unit='x', iqr=False)} | {errors} |"
        )
    for transport in results["missing"]:
        lines.append(f"| {LABELS.get(transport, transport)} | not installed | | | |")
    if image:
        lines += ["", f"![The transports: wall time, CPU, ratio to the default]({image})", ""]
        lines.append(PLOT_READING)
    profiles: dict[str, dict[str, Any]] = {}
    for transport, run in results["profiles"].items():
        found = _ok(run)
        if found is not None and found.get("profile"):
            profiles[transport] = found
    if profiles:
        lines += [
            "",
            "Where the client's CPU goes, from one run of each (200 chats x 2 turns) under "
            "cProfile (timing CPU, not wall time): the share of the profiled CPU time spent in "
            "each package's own functions; *socket calls* are the built-in socket methods, "
            "*other* the benchmark, the standard library outside asyncio and the other "
            "built-ins.",
            "",
            "| package | " + " | ".join(LABELS[t].split(",")[0] for t in profiles) + " |",
            "| --- | " + " | ".join("---:" for _ in profiles) + " |",
        ]
        totals = {t: sum(p["profile"].values()) or 1.0 for t, p in profiles.items()}
        shown = [
            package
            for package in SHOWN
            if any(p["profile"].get(package, 0) / totals[t] >= 0.005 for t, p in profiles.items())
        ]
        for package in [*shown, "other"]:
            cells = []
            for transport, found in profiles.items():
                values = found["profile"]
                if package == "other":
                    own = sum(v for k, v in values.items() if k not in shown)
                else:
                    own = values.get(package, 0.0)
                cells.append(f"{own / totals[transport]:.0%}")
            lines.append(f"| {package} | " + " | ".join(cells) + " |")
    return lines


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="rounds of every transport")
    parser.add_argument("--docs", action="store_true", help=f"update {DOCS.name}")
    parser.add_argument("--no-write", action="store_true", help="write nothing but stdout")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per run")
    parser.add_argument(
        "--from-json", type=Path, help="report a saved run (bench/results/transports.json)"
    )
    args = parser.parse_args(argv)
    if args.from_json:
        saved = json.loads(args.from_json.read_text(encoding="utf-8"))
        image = draw_plot(saved) if args.docs and not args.no_write else None
        lines = report(saved, f"bench/results/transports-{saved['meta']['stamp']}.md", image)
        print("\n".join(lines))
        if args.docs and not args.no_write:
            write_docs(lines)
        return 0
    if not os.environ.get(POSTGRES_ENV):
        print(
            f"Not run: {POSTGRES_ENV} is not set (the workload runs on PostgreSQL; "
            '`eval "$(python3 scripts/_postgres.py start)"` starts a throwaway server).'
        )
        return 0
    results = measure(args.repeats, args.timeout)
    source = f"bench/results/transports-{results['meta']['stamp']}.md"
    image = draw_plot(results) if args.docs and not args.no_write else None
    lines = report(results, source, image)
    print("\n".join(lines))
    if not args.no_write:
        RESULTS.write_text(json.dumps(results, separators=(",", ":")) + "\n", encoding="utf-8")
        (ROOT / source).write_text(
            "# Transports benchmark run\n\n" + "\n".join(lines) + "\n", encoding="utf-8"
        )
        if args.docs:
            write_docs(lines)
    failed = any(not _ok(run) for round_ in results["rounds"] for run in round_.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
