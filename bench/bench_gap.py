"""The per-turn gap to the fair limit: a turn's Python calls by layer, and its wall time by piece.

Run from the repository root with ``python bench/bench_gap.py`` (``nox -s bench`` runs it); it
prints markdown tables and writes them to ``bench/results/gap.md``, and every round's numbers to
``bench/results/gap.json`` (the plot's data; ``--json-only``: that file alone, ``--no-write``:
neither). Nothing touches the network: both systems talk to the fake server in its own process.

Method (the functions are ``bench/profile_turn.py``'s, which explains them in full):

* **Calls by layer** (``profile_turn.py --layers``): W1 and W3, ``CHATS`` chats of ``--turns``
  turns per system under ``sys.setprofile``; each Python call counts for the layer of the
  innermost frame of the system's own code (the request, the database steps, the turn's flow).
  A count, so the machine's load does not change it.
* **Wall time by piece** (``profile_turn.py --pieces``): W1, ``--rounds`` rounds in each SQLite
  journal mode (``--journal``, both by default), sa_llm and the limit alternating; a
  ``perf_counter`` around what both systems do (the model call, opening a transaction, the
  statements, the commits), and the rest of each turn, which is the system's own Python. Each
  piece's median per turn, and the per-round difference sa_llm - limit with its range.

docs/benchmarks.md's section "The per-turn gap to the limit, by layer" cites this benchmark's
tables in the run report (``bench/results/run-<start>.md``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import bench_peers  # noqa: E402
import profile_turn  # noqa: E402
import results_json  # noqa: E402
from peers.common import JOURNAL_ENV, JOURNAL_MODES  # noqa: E402
from peers.workloads import TURNS  # noqa: E402

RESULTS = BENCH / "results" / "gap.md"
#: The workloads whose calls are counted by layer: (name, streamed).
LAYER_WORKLOADS = (("w1", False), ("w3", True))


def measure(turns: int, rounds: int, journals: Sequence[str]) -> dict[str, Any]:
    """Calls by layer (W1, W3) and the pieces' rounds per journal mode."""
    layers: dict[str, Any] = {}
    pieces: dict[str, Any] = {}
    saved = os.environ.get(JOURNAL_ENV)
    with tempfile.TemporaryDirectory() as tmp, bench_peers.ServerProcess() as root:
        for workload, stream in LAYER_WORKLOADS:
            print(f"calls by layer: {workload}", file=sys.stderr, flush=True)
            layers[workload] = profile_turn.layer_counts(root, Path(tmp), stream, turns)
        try:
            for journal in journals:
                print(f"pieces: {journal} journal", file=sys.stderr, flush=True)
                os.environ[JOURNAL_ENV] = journal
                pieces[journal] = profile_turn.piece_rounds(root, Path(tmp), rounds, turns)
        finally:
            if saved is None:
                os.environ.pop(JOURNAL_ENV, None)
            else:
                os.environ[JOURNAL_ENV] = saved
    return {"layers": layers, "pieces": pieces}


def report(found: dict[str, Any], turns: int) -> list[str]:
    lines: list[str] = []
    for workload, stream in LAYER_WORKLOADS:
        lines += [*profile_turn.layers_table(found["layers"][workload], stream, turns), ""]
    for journal, per_round in found["pieces"].items():
        lines += [*profile_turn.pieces_table(per_round, journal), ""]
    return lines


def rest_difference(found: dict[str, Any], journal: str) -> float:
    """The median per-round difference in the system's own Python (for the summary line)."""
    own_python = profile_turn.PIECE_LABELS[-1]
    return statistics.median(profile_turn.differences(found["pieces"][journal], own_python))


def payload(meta: dict[str, Any], found: dict[str, Any], turns: int) -> dict[str, Any]:
    """What ``bench/results/gap.json`` holds (``bench/plot.py`` draws ``bench-gap.png``)."""
    return {
        "meta": meta,
        "turns": turns,
        "chats": profile_turn.CHATS,
        "layers": {
            workload: {
                name: {layer: round(calls, 1) for layer, calls in counts.items()}
                for name, counts in systems.items()
            }
            for workload, systems in found["layers"].items()
        },
        "labels": list(profile_turn.PIECE_LABELS),
        "pieces": {
            journal: {
                name: [{label: round(row[label], 4) for label in row} for row in rows]
                for name, rows in per_round.items()
            }
            for journal, per_round in found["pieces"].items()
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--turns", type=int, default=TURNS, help="turns per chat")
    parser.add_argument("--rounds", type=int, default=10, help="rounds of the pieces per journal")
    parser.add_argument(
        "--journal", default=",".join(JOURNAL_MODES), help="SQLite journal modes for the pieces"
    )
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS}")
    parser.add_argument("--json-only", action="store_true", help="write only gap.json")
    args = parser.parse_args(argv)
    journals = [mode.strip().lower() for mode in args.journal.split(",") if mode.strip()]
    meta = results_json.run_meta("gap")
    found = measure(args.turns, args.rounds, journals)
    lines = report(found, args.turns)
    lines.append(
        "The rest of a W1 turn, the library's own Python, over the limit's: "
        + ", ".join(f"{rest_difference(found, j):+.3f} ms ({j})" for j in journals)
        + " per turn (median of the per-round differences)."
    )
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        path = results_json.write("gap", payload(meta, found, args.turns))
        print(f"written to {path}", file=sys.stderr)
    if not args.no_write and not args.json_only:
        RESULTS.write_text(
            "# The per-turn gap to the limit\n\n"
            "Written by `python bench/bench_gap.py` (see its docstring for the method).\n\n"
            + table
            + "\n",
            encoding="utf-8",
        )
        print(f"written to {RESULTS.relative_to(BENCH.parent)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
