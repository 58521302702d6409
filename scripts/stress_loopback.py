"""Run the loopback servers' tests again and again with every core kept busy.

``python scripts/stress_loopback.py [--runs N] [--burners N] [pytest args]`` starts one
CPU-burning process per core (plus ``--burners`` extra), then runs the fake and fault-injecting
servers' tests (``tests/testing/``) ``--runs`` times in a row, each in a fresh pytest process,
and prints one line per run and a summary. Exit status 0 only if every run passed.

These tests start real HTTP servers on 127.0.0.1 and talk to them over sockets; on a busy
machine a test that relies on timing (a connection closed "soon", a reply "before" another)
fails now and then. This is the proof that they do not: issue 15, item 13. The run used for
docs/testing.md is recorded there with its date, runs and load.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ["tests/testing/test_fault_matrix.py", "tests/testing/test_testing_server.py",
         "tests/testing/test_testing_server_ttft.py"]  # fmt: skip


def _burn(stop: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    value = 0
    while not stop.is_set():
        for _ in range(100_000):
            value = (value * 31 + 7) % 1_000_003


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--burners", type=int, default=0, help="extra burners beyond one per core")
    args, pytest_args = parser.parse_known_args(argv)
    python = ROOT / ".venv" / "bin" / "python"
    if not python.exists():
        python = Path(sys.executable)
    burners = (os.cpu_count() or 1) + args.burners
    stop = multiprocessing.Event()
    workers = [
        multiprocessing.Process(target=_burn, args=(stop,), daemon=True) for _ in range(burners)
    ]
    for worker in workers:
        worker.start()
    failed = 0
    started = time.time()
    try:
        time.sleep(1.0)  # let the burners take the cores
        print(f"{burners} CPU burners on {os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}")
        for run in range(1, args.runs + 1):
            began = time.monotonic()
            result = subprocess.run(
                [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS, *pytest_args],
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            summary = (result.stdout.strip().splitlines() or ["(no output)"])[-1]
            status = "ok" if result.returncode == 0 else f"FAILED ({result.returncode})"
            failed += result.returncode != 0
            print(
                f"run {run}: {status} in {time.monotonic() - began:.0f} s, "
                f"load {os.getloadavg()[0]:.2f}: {summary}",
                flush=True,
            )
            if result.returncode != 0:
                print(result.stdout[-4000:], result.stderr[-2000:], sep="\n")
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=5)
    print(f"{args.runs - failed} of {args.runs} runs passed in {time.time() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
