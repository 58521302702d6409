"""Where a turn's CPU goes: sa_llm against the fair limit, call by call.

Run from the repository root with ``python bench/profile_turn.py`` (``--stream`` for W3's
streamed turns, ``--async`` for W1 on aiosqlite, ``--top N`` for the list's length,
``--layers`` for the calls by layer, ``--pieces`` for the wall time by piece). Both
systems run the same 50-turn chats of W1 (``bench/peers/workloads.py``) against the fake server
in its own process, under ``cProfile``, after a warm-up; then it prints

* the Python function calls per turn of each (a count, so the machine's load does not blur it),
  and the CPU per turn under the profiler (``process_time``, so waits for the disk and the
  server are out; cProfile's own overhead is in, so only the ratio means anything);
* the functions sa_llm calls more often than the limit per turn, with their own time: what a
  change to the library's hot path should shrink;
* with ``--layers``, the calls per turn of each system by the layer that made them (a count
  under ``sys.setprofile``, no timing): the provider's request and reply (HTTP, the wire
  format), the database steps, and the rest (the turn's flow, its setup, the history mirror).
  A call belongs to the innermost function of the system's own code on the stack: sa_llm's
  ``providers/`` is the request layer, ``_persisted/`` and ``persistence.py`` the database
  steps; the limit's functions are sorted by name (``_call`` and what it calls for the reply
  is the request, its transactions the database);
* with ``--pieces`` (``--rounds N``, 10 by default), where a W1 turn's wall time goes, without a
  profiler: the two systems' chats alternate round by round (each a fresh chat in this process),
  and a ``perf_counter`` around the functions both systems reach times the same work on both
  sides: the model call (HTTP: the request's JSON encoded and sent, the reply's body read; both
  systems parse the reply in their own code), opening a transaction (the pool's checkout and
  ``BEGIN``: ``Session.connection`` against ``Engine.connect`` + ``Connection.begin``), each
  statement (``Connection.execute``), the commit with the connection's return to the pool
  (``Session.commit`` against the ``engine.begin()`` block's exit and ``Connection.close``).
  What is left of a turn is the system's own Python (sa_llm: the hooks, the ORM rows, the
  flow). Each piece is given per turn as the median over the rounds, with the per-round
  difference between the systems (median [min-max]). The SQLite journal is the benchmark's
  (``SA_LLM_BENCH_JOURNAL``).

The limit (``bench/peers/baseline.py``) runs sa_llm's statements and commits by hand in Core, so
the difference is the library's own work: the ORM objects it keeps coherent, the provider codec,
the flow. This is a tool for working on that difference; the numbers docs/benchmarks.md cites
come from ``bench/bench_peers.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import pstats
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_peers
from peers import load
from peers.common import question
from peers.workloads import TURNS, _open, _turns, warm_up

CHATS = 2


def _key(file: str, line: int, name: str) -> str:
    for marker in ("site-packages/", "/src/", "/bench/"):
        if marker in file:
            file = file.split(marker)[-1]
    return f"{file}:{line}({name})"


def _profile_sync(name: str, root: str, tmp: Path, stream: bool) -> cProfile.Profile:
    cls = load(name)
    warm_up(cls, tmp, root, name)
    profile = cProfile.Profile(time.process_time)
    for index in range(CHATS):
        system = _open(cls, tmp, root, f"profile-{name}-{int(stream)}-{index}")
        try:
            chat = system.new_chat(f"profile-{index}")
            profile.enable()
            _turns(system, chat, TURNS, stream=stream)
            profile.disable()
        finally:
            system.close()
    return profile


def _profile_async(name: str, root: str, tmp: Path) -> cProfile.Profile:
    cls = load(name)
    profile = cProfile.Profile(time.process_time)

    async def go(index: int) -> None:
        run = f"profile-async-{name}-{index}"
        system = cls(tmp / f"{run}.db", f"{root}/{run}/v1")
        await system.aopen(f"sqlite+aiosqlite:///{system.db_path}", None)
        try:
            chat = await system.anew_chat(run)
            await chat.aask(question(0))  # warm: the first turn reads the (empty) history
            profile.enable()
            for turn in range(1, TURNS + 1):
                await chat.aask(question(turn))
            profile.disable()
        finally:
            await system.aclose()

    for index in range(CHATS):
        asyncio.run(go(index))
    return profile


def _tally(profile: cProfile.Profile) -> tuple[collections.Counter[str], dict[str, float]]:
    calls: collections.Counter[str] = collections.Counter()
    own: dict[str, float] = collections.defaultdict(float)
    stats: Any = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    for (file, line, name), (_, ncalls, tottime, _, _) in stats.items():
        key = _key(file, line, name)
        calls[key] += ncalls
        own[key] += tottime
    return calls, own


#: The limit's functions that make its request and read its reply (the rest is its database work).
_LIMIT_REQUEST = frozenset(
    {"_call", "handle_request", "__iter__", "close", "_sse_payloads", "absorb", "body", "_item"}
)
_SA_LLM_DB = ("/_persisted/", "/persistence.py")
LAYERS = ("request (HTTP, wire format)", "database steps", "turn flow")


def _layer_of(name: str, frame: Any) -> str | None:
    """The layer of a frame of ``name``'s own code, or ``None`` for library code."""
    file = frame.f_code.co_filename
    if name == "sa_llm":
        if "/src/sa_llm/" not in file:
            return None
        if "/providers/" in file:
            return LAYERS[0]
        return LAYERS[1] if any(part in file for part in _SA_LLM_DB) else LAYERS[2]
    if not file.endswith("peers/baseline.py"):
        return None
    return LAYERS[0] if frame.f_code.co_name in _LIMIT_REQUEST else LAYERS[1]


def _layers(
    name: str, root: str, tmp: Path, stream: bool, turns: int = TURNS
) -> collections.Counter[str]:
    """Calls per layer of ``name`` over ``CHATS`` chats of ``turns`` W1 (or W3) turns."""
    cls = load(name)
    warm_up(cls, tmp, root, name)
    counts: collections.Counter[str] = collections.Counter()
    stack: list[str | None] = []

    def owner() -> str:
        return next((layer for layer in reversed(stack) if layer), LAYERS[2])

    def tally(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            stack.append(_layer_of(name, frame))
            counts[owner()] += 1
        elif event == "return":
            if stack:
                stack.pop()
        elif event == "c_call":
            counts[owner()] += 1

    for index in range(CHATS):
        system = _open(cls, tmp, root, f"layers-{name}-{int(stream)}-{index}")
        try:
            chat = system.new_chat(f"layers-{index}")
            sys.setprofile(tally)
            try:
                _turns(system, chat, turns, stream=stream)
            finally:
                sys.setprofile(None)
        finally:
            system.close()
    return counts


def layer_counts(
    root: str, tmp: Path, stream: bool, turns: int = TURNS
) -> dict[str, dict[str, float]]:
    """Calls per turn of sa_llm and the limit (``baseline``) by layer, and ``all``."""
    found: dict[str, dict[str, float]] = {}
    for name in ("sa_llm", "baseline"):
        counts = _layers(name, root, tmp, stream, turns)
        per_turn = {layer: counts[layer] / (CHATS * turns) for layer in LAYERS}
        found[name] = {**per_turn, "all": sum(counts.values()) / (CHATS * turns)}
    return found


def layers_table(found: dict[str, dict[str, float]], stream: bool, turns: int) -> list[str]:
    """:func:`layer_counts` as a markdown table, headed by the workload."""
    ours, limit = found["sa_llm"], found["baseline"]
    lines = [
        f"W{'3' if stream else '1'} {'streamed' if stream else 'sync'}, {CHATS * turns} turns each",
        "",
        "| layer | sa_llm calls / turn | the limit's | extra |",
        "| --- | --- | --- | --- |",
    ]
    for layer in (*LAYERS, "all"):
        a, b = ours[layer], limit[layer]
        lines.append(f"| {layer} | {a:,.0f} | {b:,.0f} | {a - b:+,.0f} |")
    return lines


def _print_layers(stream: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp, bench_peers.ServerProcess() as root:
        found = layer_counts(root, Path(tmp), stream)
    print("\n".join(layers_table(found, stream, TURNS)))


#: The pieces of a turn timed on both systems: (label, sa_llm's functions, the limit's).
PIECES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    # The request's bytes out and the reply's in: sa_llm's attempt builds the request from its
    # JSON and reads the body; ``Client.post`` does the same for the limit. Both parse the
    # reply's JSON in their own code (the rest).
    ("the model call (HTTP)", ("transport:_Attempt.run",), ("httpx:Client.post",)),
    (
        "opening a transaction",
        ("session:Session.connection",),
        ("engine:Engine.connect", "engine:Connection.begin"),
    ),
    ("the statements", ("engine:Connection.execute",), ("engine:Connection.execute",)),
    (
        "the commits (and the connection's return)",
        ("session:Session.commit",),
        ("util:TransactionalContext.__exit__", "engine:Connection.close"),
    ),
)


def _owner(ref: str) -> tuple[Any, str]:
    """The class and attribute a ``module:Class.attr`` reference names."""
    import httpx
    import sqlalchemy.engine.base
    import sqlalchemy.engine.util
    import sqlalchemy.orm.session
    from peers import baseline

    import sa_llm.providers._transport

    modules = {
        "transport": sa_llm.providers._transport,
        "httpx": httpx,
        "baseline": baseline,
        "session": sqlalchemy.orm.session,
        "engine": sqlalchemy.engine.base,
        "util": sqlalchemy.engine.util,
    }
    module, _, path = ref.partition(":")
    cls_name, _, attr = path.partition(".")
    return getattr(modules[module], cls_name), attr


@contextmanager
def _timed(refs: dict[str, str], totals: dict[str, float]) -> Iterator[None]:
    """Time every call of the functions in ``refs`` (reference -> piece) on this thread into
    ``totals``; an outer timed call's time includes the inner ones, so pieces must not nest."""
    thread = threading.get_ident()
    saved: list[tuple[Any, str, Any]] = []

    def timer(function: Callable[..., Any], piece: str) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() != thread:
                return function(*args, **kwargs)  # the heartbeat's thread
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                totals[piece] += time.perf_counter() - start

        return timed

    try:
        for ref, piece in refs.items():
            owner, attr = _owner(ref)
            original = owner.__dict__[attr]
            saved.append((owner, attr, original))
            setattr(owner, attr, timer(original, piece))
        yield
    finally:
        for owner, attr, original in reversed(saved):
            setattr(owner, attr, original)


#: The labels of :func:`piece_rounds`' rows, in the order of the tables.
PIECE_LABELS = (
    "the turn",
    *(label for label, *_ in PIECES),
    "the rest: the system's own Python",
)


def piece_rounds(
    root: str, tmp: Path, rounds: int, turns: int = TURNS
) -> dict[str, list[dict[str, float]]]:
    """Per system (sa_llm, the limit), per round: ms per W1 turn of each piece (see the module's
    doc). The systems alternate round by round; the journal is the benchmark's."""
    systems = ("sa_llm", "baseline")
    per_round: dict[str, list[dict[str, float]]] = {name: [] for name in systems}
    classes = {name: load(name) for name in systems}
    for name, cls in classes.items():
        warm_up(cls, tmp, root, name)
    for round_ in range(rounds):
        order = systems if round_ % 2 == 0 else systems[::-1]
        for name in order:
            side = 1 if name == "sa_llm" else 2
            refs = {ref: label for label, *names in PIECES for ref in names[side - 1]}
            totals: dict[str, float] = collections.defaultdict(float)
            run = f"pieces-{name}-{round_}-{time.monotonic_ns()}"
            system = _open(classes[name], tmp, root, run)
            try:
                chat = system.new_chat(run)
                with _timed(refs, totals):
                    found = _turns(system, chat, turns)
            finally:
                system.close()
            row = {label: totals[label] * 1000 / turns for label, *_ in PIECES}
            row["the turn"] = sum(found["turn_ms"]) / turns
            row[PIECE_LABELS[-1]] = row["the turn"] - sum(row[label] for label, *_ in PIECES)
            per_round[name].append(row)
    return per_round


def differences(per_round: dict[str, list[dict[str, float]]], label: str) -> list[float]:
    """sa_llm's ms per turn minus the limit's for the piece ``label``, round by round."""
    return [
        a[label] - b[label] for a, b in zip(per_round["sa_llm"], per_round["baseline"], strict=True)
    ]


def pieces_table(per_round: dict[str, list[dict[str, float]]], journal: str) -> list[str]:
    """:func:`piece_rounds` as a markdown table: medians, and the per-round difference."""
    rounds = len(per_round["sa_llm"])
    lines = [
        f"W1 sync, {journal} journal: ms per turn, median over {rounds} rounds",
        "",
        "| piece | sa_llm | the limit | sa_llm - limit, per round |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label in PIECE_LABELS:
        ours = [row[label] for row in per_round["sa_llm"]]
        limit = [row[label] for row in per_round["baseline"]]
        diff = differences(per_round, label)
        lines.append(
            f"| {label} | {statistics.median(ours):.3f} | {statistics.median(limit):.3f} "
            f"| {statistics.median(diff):+.3f} [{min(diff):+.3f} to {max(diff):+.3f}] |"
        )
    return lines


def _pieces(rounds: int) -> None:
    """Print where a W1 turn's wall time goes on each system (see the module's doc)."""
    from peers.common import journal_mode

    with tempfile.TemporaryDirectory() as tmp, bench_peers.ServerProcess() as root:
        per_round = piece_rounds(root, Path(tmp), rounds)
    print("\n".join(pieces_table(per_round, journal_mode())))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stream", action="store_true", help="W3: streamed turns")
    parser.add_argument("--async", dest="use_async", action="store_true", help="W1 async")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--layers", action="store_true", help="calls per turn by layer")
    parser.add_argument("--pieces", action="store_true", help="W1 wall time by piece")
    parser.add_argument("--rounds", type=int, default=10, help="rounds of --pieces")
    args = parser.parse_args(argv)
    if args.pieces:
        _pieces(args.rounds)
        return 0
    if args.layers:
        _print_layers(args.stream)
        return 0
    turns = CHATS * TURNS
    results = {}
    with tempfile.TemporaryDirectory() as tmp, bench_peers.ServerProcess() as root:
        for name in ("sa_llm", "baseline"):
            if args.use_async:
                profile = _profile_async(name, root, Path(tmp))
            else:
                profile = _profile_sync(name, root, Path(tmp), args.stream)
            results[name] = _tally(profile)
    (ours, ours_own), (limit, limit_own) = results["sa_llm"], results["baseline"]
    ours_total, limit_total = sum(ours.values()) / turns, sum(limit.values()) / turns
    ours_cpu, limit_cpu = (sum(own.values()) * 1000 / turns for own in (ours_own, limit_own))
    mode = "async (aiosqlite)" if args.use_async else ("streamed" if args.stream else "sync")
    print(f"W{'3' if args.stream else '1'} {mode}, {turns} turns each\n")
    print("| | sa_llm | the limit | ratio |\n| --- | --- | --- | --- |")
    print(
        f"| Python calls per turn | {ours_total:,.0f} | {limit_total:,.0f} "
        f"| {ours_total / limit_total:.2f}x |"
    )
    print(
        f"| CPU per turn, profiled | {ours_cpu:.2f} ms | {limit_cpu:.2f} ms "
        f"| {ours_cpu / limit_cpu:.2f}x |"
    )
    print(f"\nCalled more often by sa_llm, per turn (top {args.top}):\n")
    print("| extra calls | own time (profiled) | function |\n| --- | --- | --- |")
    extra = collections.Counter({key: ours[key] - limit.get(key, 0) for key in ours})
    for key, count in extra.most_common(args.top):
        print(f"| {count / turns:,.1f} | {ours_own[key] * 1000 / turns:.3f} ms | `{key}` |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
