"""Run every benchmark (``bench/bench_*.py``) and collect their tables in one report.

``python bench/run.py`` (or ``nox -s bench``) runs each ``bench_*.py`` in its own subprocess,
one after the other so that they do not compete for cores, prints a markdown report headed by
the machine it ran on (CPU, cores, the load average and the time read when the run starts,
Python and library versions, git commit), and writes it to ``bench/results/latest.md`` and to
``bench/results/run-<time>.md`` (``<time>``: the start, UTC; the file the docs' target rows
cite). Every ``bench_*.py`` must print its tables as markdown on stdout and accept
``--no-write``. Benchmarks that own a section of ``docs/benchmarks.md`` accept ``--docs``
(``bench_peers.py``: the peers section and the plots of W1, W2, W3 and W6;
``bench_transports.py``: the concurrent chats' transports and their plot), which the runner
passes; the others accept ``--json-only``, which the runner passes so that they write their raw
samples (``bench/results/<name>.json``, see ``bench/results_json.py``) and leave their own
markdown alone (run one benchmark on its own to refresh its ``bench/results/<name>.md``); a
benchmark that takes neither gets ``--no-write``. The benchmarks run with ``SA_LLM_BENCH_RUN``
set to the report's name (``run-<time>``), which their JSON records. After the benchmarks, the
runner draws every workload's plot from those JSON files (``bench/plot.py``: the plots
``docs/benchmarks.md`` embeds, ``docs/img/bench-<workload>.png``). With ``--no-write`` every
benchmark gets ``--no-write`` and nothing is drawn.

Options: ``-k TEXT`` runs only the benchmarks whose file name contains TEXT; ``--no-write``
leaves the results and the docs alone; ``--journal MODES`` (``delete``, ``wal`` or both,
comma-separated; default both) is passed to the benchmarks that take it (``bench_peers.py``);
``--timeout`` is the budget for the whole run (default 2,400 s). Exits non-zero when a
benchmark fails or runs out of time.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from results_json import cpu_model, git_revision

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
LATEST = BENCH / "results" / "latest.md"
VERSIONS = (
    "sqlalchemy",
    "httpx",
    "aiosqlite",
    "openai",
    "httpx2",
    "openai-agents",
    "langchain-openai",
    "llm",
)
DOCS_FLAG = "--docs"
JSON_FLAG = "--json-only"
JOURNAL_FLAG = "--journal"
RUN_ENV = "SA_LLM_BENCH_RUN"  # results_json.RUN_ENV


@dataclass
class Outcome:
    name: str
    seconds: float
    returncode: int | None  # None: timed out
    stdout: str
    stderr: str


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine(started: datetime) -> list[str]:
    cores = os.cpu_count() or 0
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = cores
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    versions = ", ".join(f"{name} {version(name)}" for name in VERSIONS)
    return [
        "| | |",
        "| --- | --- |",
        f"| started | {started:%Y-%m-%d %H:%M:%S} UTC |",
        f"| CPU | {cpu_model()} |",
        f"| cores | {cores} ({usable} usable) |",
        f"| load average (1, 5, 15 min) at start | {load} |",
        f"| Python | {platform.python_version()} ({platform.python_implementation()}, "
        f"{platform.system()} {platform.machine()}) |",
        f"| libraries | sa_llm {version('sa-llm')}, {versions} |",
        f"| git | {git_revision()} |",
    ]


def takes(script: Path, flag: str) -> bool:
    """Whether the benchmark accepts ``flag`` (its source names it as an option)."""
    return f'"{flag}"' in script.read_text(encoding="utf-8")


def flags_for(script: Path, write: bool, journal: str | None = None) -> list[str]:
    """What the runner passes a benchmark: ``--docs`` or ``--json-only`` when the run writes
    (whichever it takes), ``--no-write`` otherwise; and the journal modes if it takes them."""
    flags = ["--no-write"]
    if write and takes(script, DOCS_FLAG):
        flags = [DOCS_FLAG]
    elif write and takes(script, JSON_FLAG):
        flags = [JSON_FLAG]
    if journal is not None and takes(script, JOURNAL_FLAG):
        flags += [JOURNAL_FLAG, journal]
    return flags


def run(
    script: Path,
    timeout: float,
    docs: bool = False,
    journal: str | None = None,
    name: str | None = None,
) -> Outcome:
    start = time.perf_counter()
    flags = flags_for(script, docs, journal)
    env = {**os.environ, RUN_ENV: name} if name else None
    try:
        done = subprocess.run(
            [sys.executable, str(script), *flags],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=max(timeout, 1.0),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        return Outcome(script.name, time.perf_counter() - start, None, out, err)
    return Outcome(
        script.name, time.perf_counter() - start, done.returncode, done.stdout, done.stderr
    )


def section(outcome: Outcome) -> list[str]:
    lines = [f"## {outcome.name} ({outcome.seconds:.1f} s)", ""]
    if outcome.returncode == 0:
        return [*lines, outcome.stdout.strip(), ""]
    status = "timed out" if outcome.returncode is None else f"exit status {outcome.returncode}"
    # A benchmark that missed a target exits non-zero after printing its tables: keep them.
    lines += [f"**Failed: {status}** (a target missed, or an error).", ""]
    if outcome.stdout.strip():
        lines += [outcome.stdout.strip(), ""]
    tail = "\n".join(error_tail(outcome.stderr))
    return [*lines, "```", tail, "```", ""] if tail else lines


def error_tail(stderr: str, limit: int = 80) -> list[str]:
    """What a failed benchmark's report keeps of its stderr: its last traceback whole (the
    benchmark's own frames tell where it failed; a library's frames alone do not), at most
    ``limit`` lines from its end; without a traceback, the last 20 lines."""
    lines = stderr.strip().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call")]
    if not starts:
        return lines[-20:]
    return lines[max(starts[-1], len(lines) - limit) :]


def draw_plots() -> bool:
    """Every workload's plot from the JSON files in ``bench/results``; false if it failed."""
    try:
        from plot import draw_all

        drawn = draw_all()
    except Exception:  # a plot that fails must not lose the report; say so and fail the run
        import traceback

        traceback.print_exc()
        return False
    print(f"{len(drawn)} plot(s) drawn into docs/img", file=sys.stderr)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("-k", dest="only", default="", help="run benchmarks whose name has this")
    parser.add_argument(
        "--no-write", action="store_true", help=f"write nothing ({LATEST}, results, plots)"
    )
    parser.add_argument(
        JOURNAL_FLAG, default=None, help="SQLite journal modes for the peers (default: both)"
    )
    parser.add_argument("--timeout", type=float, default=2400.0, help="seconds for the run")
    args = parser.parse_args(argv)
    started = datetime.now(timezone.utc)  # with the load average: before any work
    header_lines = machine(started)

    scripts = sorted(p for p in BENCH.glob("bench_*.py") if args.only in p.name)
    if not scripts:
        print(f"no bench/bench_*.py matches {args.only!r}", file=sys.stderr)
        return 2
    header = ["# sa_llm benchmarks", "", "Written by `python bench/run.py`.", "", *header_lines, ""]
    print("\n".join(header), flush=True)
    deadline = time.monotonic() + args.timeout
    outcomes = []
    name = f"run-{started:%Y%m%dT%H%M%SZ}"
    for script in scripts:
        print(f"running {script.name} ...", file=sys.stderr, flush=True)
        outcome = run(
            script,
            deadline - time.monotonic(),
            docs=not args.no_write,
            journal=args.journal,
            name=name,
        )
        outcomes.append(outcome)
        print("\n".join(section(outcome)), flush=True)
    total = sum(o.seconds for o in outcomes)
    footer = f"Total: {total:.1f} s for {len(outcomes)} benchmark(s)."
    print(footer)
    if not args.no_write:
        body = [*header, *(line for o in outcomes for line in section(o)), footer]
        LATEST.parent.mkdir(parents=True, exist_ok=True)
        LATEST.write_text("\n".join(body) + "\n")
        stamped = LATEST.with_name(f"{name}.md")
        stamped.write_text("\n".join(body) + "\n")
        print(f"\nwritten to {LATEST.relative_to(ROOT)} and {stamped.name}", file=sys.stderr)
        plotted = draw_plots()
    else:
        plotted = True
    return 0 if plotted and all(o.returncode == 0 for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
