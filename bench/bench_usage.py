"""The usage ledger and tracing: commits per turn, and time per turn with each on and off.

Run from the repository root with ``python bench/bench_usage.py``. It prints markdown tables and
writes them to ``bench/results/usage.md``, and every round's times to
``bench/results/usage.json`` (the plot's data; ``--json-only``: that file alone, ``--no-write``:
neither). ``--rounds`` and ``--turns`` shrink the run.

1. **Commits and statements per turn**, ledger off and on: a warm chat, one non-streamed ask
   with a tool round (two provider calls), counted with the engine's ``commit`` events and a
   ``before_cursor_execute`` listener. The ledger's rows must ride in the turn's own commits.
2. **Time per turn**, four configurations in the same process and the same run: ledger off/on
   x tracing off/on. Tracing on is a context with an SDK ``TracerProvider`` (a
   ``BatchSpanProcessor`` into an exporter that drops the spans) and a ``MeterProvider`` with an
   in-memory reader: what a production setup pays, minus the network; off is
   ``telemetry=False``. Each round gives each configuration its own chat on its own SQLite file
   (``synchronous=OFF``: fsync's variance on a shared machine exceeds what is measured, and the
   ledger adds no commit, so no fsync) and interleaves their turns (turn 1 of each, then turn 2
   of each, the order rotating): 5 warm-up turns, then 40 timed non-streamed asks against the
   scripted fake model in process, sync. 11 rounds. Reported: the median over rounds of each
   configuration's median ms per turn, and the per-round paired ratios against ledger off /
   tracing off with their median, min and max. Targets: ledger on within 1.05x; tracing's
   cost reported.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import results_json

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "usage.md"
sys.path.insert(0, str(ROOT / "tests"))

TURNS = 40
WARMUP = 5
ROUNDS = 11
TARGET = 1.05
CONFIGS = [(False, False), (True, False), (False, True), (True, True)]  # (ledger, tracing)
NAMES = {
    (False, False): "ledger off, tracing off",
    (True, False): "ledger on, tracing off",
    (False, True): "ledger off, tracing on",
    (True, True): "ledger on, tracing on",
}
#: The paired ratios: (label, numerator, denominator), each per round.
RATIOS = (
    ("ledger on / off (tracing off)", (True, False), (False, False)),
    ("ledger on / off (tracing on)", (True, True), (False, True)),
    ("tracing on / off (ledger off)", (False, True), (False, False)),
    ("tracing on / off (ledger on)", (True, True), (True, False)),
)


def _models(ledger: bool) -> dict[str, Any]:
    from persisted import default_models
    from usage_support import ledger_models

    return ledger_models() if ledger else default_models()


def _tracing() -> tuple[Any, Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Dropping(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Dropping()))
    return tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()])


def clock() -> str:
    """The time."""
    return "12:00"


def _statements(ledger: bool) -> dict[str, float]:
    """Commits and statements of one warm turn with a tool round."""
    from sqlalchemy import create_engine, event
    from sqlalchemy.orm import Session

    import sa_llm
    from sa_llm.testing import fake_llm

    models = _models(ledger)
    with tempfile.TemporaryDirectory() as folder, fake_llm(echo=False) as fake:
        engine = create_engine(f"sqlite:///{folder}/bench.sqlite3")
        models["Base"].metadata.create_all(engine)
        counts = {"commits": 0, "statements": 0}
        event.listen(
            engine, "commit", lambda c: counts.__setitem__("commits", counts["commits"] + 1)
        )
        event.listen(
            engine,
            "before_cursor_execute",
            lambda *a: counts.__setitem__("statements", counts["statements"] + 1),
        )
        with Session(engine) as session:
            chat = models["Chat"](model="gpt-4.1-nano", provider="fake")
            session.add(chat)
            session.commit()
            chat.with_tool(clock)
            fake.reply("warm")
            chat.ask("warm up")
            fake.tool_call("clock").reply("noon", tokens=sa_llm.Tokens(input=9, output=3))
            counts.update(commits=0, statements=0)
            chat.ask("What time is it?")
        engine.dispose()
        return {k: float(v) for k, v in counts.items()}


def _round(providers: tuple[Any, Any], turns: int = TURNS) -> dict[tuple[bool, bool], list[float]]:
    """One round: a chat per configuration, each on its own SQLite file; the configurations'
    turns interleaved (turn 1 of each, then turn 2 of each, ...). The ms of each timed turn."""
    from sqlalchemy import create_engine, event
    from sqlalchemy.orm import Session

    import sa_llm
    from sa_llm.testing import fake_llm

    timings: dict[tuple[bool, bool], list[float]] = {config: [] for config in CONFIGS}
    with tempfile.TemporaryDirectory() as folder, fake_llm(echo=False) as fake:
        chats = {}
        sessions = []
        for number, (ledger, tracing) in enumerate(CONFIGS):
            models = _models(ledger)
            engine = create_engine(f"sqlite:///{folder}/bench{number}.sqlite3")
            event.listen(engine, "connect", _no_sync)
            models["Base"].metadata.create_all(engine)
            settings: dict[str, Any] = (
                {"tracer_provider": providers[0], "meter_provider": providers[1]}
                if tracing
                else {"telemetry": False}
            )
            session = Session(engine)
            sessions.append((session, engine))
            chat = models["Chat"](
                model="gpt-4.1-nano", provider="fake", context=sa_llm.context(**settings)
            )
            session.add(chat)
            session.commit()
            chats[(ledger, tracing)] = chat
        for turn in range(WARMUP + turns):
            order = CONFIGS[turn % len(CONFIGS) :] + CONFIGS[: turn % len(CONFIGS)]
            for config in order:
                fake.reply("Paris", tokens=sa_llm.Tokens(input=12, output=1))
                started = time.perf_counter()
                chats[config].ask("What is the capital of France?")
                if turn >= WARMUP:
                    timings[config].append((time.perf_counter() - started) * 1000)
        for session, engine in sessions:
            session.close()
            engine.dispose()
    return timings


def _no_sync(dbapi_connection: Any, record: Any) -> None:
    # fsync's variance on a shared machine is larger than what is measured; the ledger adds no
    # commit (section 1), so no fsync either.
    dbapi_connection.execute("PRAGMA synchronous = OFF")


def _ratio_row(label: str, ratios: list[float]) -> str:
    return f"| {label} | {statistics.median(ratios):.3f} | {min(ratios):.3f} | {max(ratios):.3f} |"


def payload(
    meta: dict[str, Any],
    statements: dict[str, dict[str, float]],
    turn_ms: dict[tuple[bool, bool], list[list[float]]],
    turns: int,
) -> dict[str, Any]:
    """``bench/results/usage.json``: every timed turn's ms, per configuration and round (the
    rounds in the same order for every configuration: a round's ratios are paired)."""
    return {
        "meta": meta,
        "turns": turns,
        "warmup": WARMUP,
        "rounds": len(next(iter(turn_ms.values()), [])),
        "target": TARGET,
        "statements": statements,
        "configs": [
            {
                "ledger": ledger,
                "tracing": tracing,
                "label": NAMES[(ledger, tracing)],
                "turn_ms": [[round(v, 4) for v in values] for values in turn_ms[(ledger, tracing)]],
            }
            for ledger, tracing in CONFIGS
        ],
        "ratios": [
            {"label": label, "numerator": NAMES[a], "denominator": NAMES[b]}
            for label, a, b in RATIOS
        ],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--turns", type=int, default=TURNS, help="timed turns per round")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS}")
    parser.add_argument("--json-only", action="store_true", help="write only usage.json")
    args = parser.parse_args(argv)
    meta = results_json.run_meta("usage")
    lines = ["# Usage ledger and tracing", ""]
    off, on = _statements(False), _statements(True)
    lines += [
        "## Commits and statements per turn (a tool round: two provider calls)",
        "",
        "| ledger | commits | statements |",
        "| --- | ---: | ---: |",
        f"| off | {off['commits']:.0f} | {off['statements']:.0f} |",
        f"| on | {on['commits']:.0f} | {on['statements']:.0f} |",
        "",
    ]
    providers = _tracing()
    turn_ms: dict[tuple[bool, bool], list[list[float]]] = {config: [] for config in CONFIGS}
    for _ in range(args.rounds):
        for config, values in _round(providers, args.turns).items():
            turn_ms[config].append(values)
    providers[0].shutdown()
    medians = {config: [statistics.median(r) for r in rounds] for config, rounds in turn_ms.items()}
    lines += [
        f"## Time per turn ({args.turns} warm non-streamed asks per round, {args.rounds} rounds)",
        "",
        "| configuration | ms per turn (median) | min round | max round |",
        "| --- | ---: | ---: | ---: |",
    ]
    for config in CONFIGS:
        values = medians[config]
        lines.append(
            f"| {NAMES[config]} | {statistics.median(values):.3f} | {min(values):.3f} "
            f"| {max(values):.3f} |"
        )

    def paired(a: tuple[bool, bool], b: tuple[bool, bool]) -> list[float]:
        return [x / y for x, y in zip(medians[a], medians[b], strict=True)]

    lines += [
        "",
        "## Paired ratios (per round, same run)",
        "",
        "| ratio | median | min | max |",
        "| --- | ---: | ---: | ---: |",
        *(_ratio_row(label, paired(a, b)) for label, a, b in RATIOS),
        "",
        f"Python {sys.version.split()[0]}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write and not args.json_only:
        RESULTS.write_text(text, encoding="utf-8")
    if not args.no_write:
        found = payload(meta, {"off": off, "on": on}, turn_ms, args.turns)
        print(f"written to {results_json.write('usage', found)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
