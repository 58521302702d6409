"""The raw samples a benchmark keeps next to its markdown: ``bench/results/<name>.json``.

Every benchmark that owns a workload writes its per-run samples (every repetition, not only
the medians its tables show) with :func:`write`, under a ``meta`` block from :func:`run_meta`
saying which machine and which run they come from. ``bench/plot.py`` draws the docs' plots from
these files, never from the markdown.

A benchmark writes its markdown and its JSON unless given ``--no-write``; with ``--json-only``
it writes the JSON alone. ``bench/run.py`` passes ``--json-only`` (so that a run refreshes the
plots' data and leaves the benchmarks' own markdown alone) and sets ``SA_LLM_BENCH_RUN`` to its
report's name (``run-<start>``), which :func:`run_meta` records so that a plot's caption names
the report its numbers come from. ``SA_LLM_BENCH_RESULTS`` moves the JSON files elsewhere (the
tests write them into a temporary directory).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
RUN_ENV = "SA_LLM_BENCH_RUN"
RESULTS_ENV = "SA_LLM_BENCH_RESULTS"


def results_dir() -> Path:
    """Where the JSON files go: ``bench/results``, or ``$SA_LLM_BENCH_RESULTS``."""
    override = os.environ.get(RESULTS_ENV)
    return Path(override) if override else RESULTS


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_revision() -> str:
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() or "unknown"


def run_meta(benchmark: str) -> dict[str, Any]:
    """What the run is, read when it starts (call it before any work: the load average)."""
    started = datetime.now(timezone.utc)
    return {
        "benchmark": benchmark,
        "started": started.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "stamp": started.strftime("%Y%m%dT%H%M%SZ"),
        "run": os.environ.get(RUN_ENV) or None,
        "load_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "git": git_revision(),
    }


def write(name: str, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (with its ``meta``) to ``<results>/<name>.json``; return the path."""
    assert "meta" in payload, "a results file says which run it comes from"
    path = results_dir() / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, separators=(",", ":")) + "\n", encoding="utf-8")
    return path


def ms(ns: int | float) -> float:
    """Nanoseconds as milliseconds, rounded to 0.1 µs (the JSON stays small)."""
    return round(ns / 1e6, 4)
