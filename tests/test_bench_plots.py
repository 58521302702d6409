"""The benchmarks' plots (``bench/plot.py``) and the JSON files they are drawn from.

* Every workload's plot is drawn from small synthetic JSON files of the shape each benchmark
  writes, into a temporary directory, and each is a valid PNG; a missing JSON file is skipped.
* The synthetic files are that shape: the cheap benchmarks run in a tiny mode in a subprocess
  (``--json-only``, their JSON moved to a temporary directory by ``SA_LLM_BENCH_RESULTS``) and
  every key the synthetic file has, the benchmark wrote, with the same kind of value; the
  expensive ones are checked through the function that builds their JSON (``bench_ui``,
  ``bench_turns``) or against the run committed in ``bench/results`` (the peers, the
  transports), which is also drawn.

The drawing tests skip when matplotlib (the ``bench`` dependency group) is not installed; the
benchmarks that need the openai SDK skip without it.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PNG = b"\x89PNG\r\n\x1a\n"


def load(name: str, alias: str | None = None) -> ModuleType:
    """A module of ``bench/`` (which is not a package), with ``bench/`` on ``sys.path``;
    ``alias``: the name it gets in ``sys.modules`` (``name`` by default)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    key = alias or name
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def plot() -> ModuleType:
    pytest.importorskip("matplotlib")
    return load("plot")


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG, f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 100 and height > 100, (path.name, width, height)


# -- synthetic results, one per JSON file ------------------------------------------------------


def meta(benchmark: str) -> dict[str, Any]:
    return {
        "benchmark": benchmark,
        "started": "2026-12-07 12:00:00 UTC",
        "stamp": "20261207T120000Z",
        "run": "run-20261207T120000Z",
        "load_at_start": [0.5, 0.4, 0.3],
        "cpu": "Test CPU",
        "cores": 2,
        "python": "3.11.7",
        "git": "abc1234",
    }


def series(start: float, n: int, step: float = 0.1) -> list[float]:
    return [round(start + step * (i % 7), 4) for i in range(n)]


def chat_run(
    ms: float, streamed: bool = False, stored: bool = True, rows: dict[str, int] | None = None
) -> dict[str, Any]:
    stmts = {"SELECT": 1, "INSERT": 2, "UPDATE": 1, "COMMIT": 2} if stored else {}
    run: dict[str, Any] = {
        "turn_ms": series(ms, 50),
        "stmts": [stmts] * 50,
        "wall_s": ms * 50 / 1000,
        "cpu_s": ms * 30 / 1000,
        "rows": rows or ({"chats": 1, "messages": 100} if stored else {}),
        "journal": "delete" if stored else "none",
        "db_bytes": 86016 if stored else 0,
    }
    if streamed:
        run.update(
            first_chunk_us=series(700 * ms / 5, 50, 20),
            transport_us=series(20, 50),
            writes_per_reply=[3 if stored else 0] * 50,
        )
    return run


def async_run(ms: float, streamed: bool = False) -> dict[str, Any]:
    run: dict[str, Any] = {
        "turn_ms": series(ms, 50),
        "stmts": [{"SELECT": 1, "INSERT": 2, "UPDATE": 1, "COMMIT": 2}] * 50,
        "wall_s": ms * 50 / 1000,
        "cpu_s": ms * 30 / 1000,
        "journal": "delete",
    }
    if streamed:
        run.update(first_chunk_us=series(700 * ms / 5, 50, 20), writes_per_reply=[3] * 50)
    return run


def chat_round(scale: float, peers: bool) -> dict[str, Any]:
    round_: dict[str, Any] = {
        "sa_llm": {
            "w1": chat_run(5 * scale),
            "w3": chat_run(9 * scale, True),
            "w3g": chat_run(30 * scale, True),
            "w1a": async_run(8 * scale),
            "w3a": async_run(11 * scale, streamed=True),
        },
        "baseline": {
            "w1": chat_run(3 * scale),
            "w3": chat_run(7 * scale, True),
            "w3g": chat_run(28 * scale, True),
            "w1a": async_run(7 * scale),
            "w3a": async_run(9 * scale, streamed=True),
        },
        "plain": {
            "w1": chat_run(1 * scale, stored=False),
            "w3": chat_run(3 * scale, True, stored=False),
            "w3g": chat_run(25 * scale, True, stored=False),
        },
    }
    if peers:
        rows = {"agent_sessions": 1, "agent_messages": 100}
        round_["agents"] = {
            "w1": chat_run(40 * scale, rows=rows),
            "w3": chat_run(50 * scale, True, rows=rows),
            "w3g": chat_run(60 * scale, True, rows=rows),
        }
    return round_


def rebuild(cold: float) -> dict[str, Any]:
    return {
        "cold_ms": cold,
        "warm_ms": series(cold / 3, 5),
        "raw_ms": series(cold / 6, 5),
        "stmts": [{"SELECT": 3}] * 6,
        "length": 1004,
    }


def other(scale: float) -> dict[str, Any]:
    build = {"turn_ms": [10 * scale, 11 * scale], "stmts": [{"SELECT": 3, "COMMIT": 3}] * 2}
    return {
        "api": "responses",
        "unsupported": {},
        "w2_build": {
            "db": "/tmp/w2.db",
            "base_url": "http://127.0.0.1:1/v1",
            "handles": {"100": "a", "1000": "b"},
            "100": build,
            "1000": {**build, "turn_ms": [20 * scale, 24 * scale]},
        },
        "w2": [{"1000": rebuild(25 * scale), "100": rebuild(4 * scale)} for _ in range(3)],
        "w2_raw_cold": [{"100": 3.0 * scale}, {"1000": 20.0 * scale}],
    }


def w6_run(wall: float, cpu: float, profile: dict[str, float] | None = None) -> dict[str, Any]:
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "chats": 200,
        "turns": 5,
        "completed": 1000,
        "errors": {},
        "pool_peak": 15,
        "stmts": {"SELECT": 1614, "INSERT": 2215, "UPDATE": 1000, "COMMIT": 2400},
        "profile": profile,
    }


def synthetic() -> dict[str, dict[str, Any]]:
    """One small results file per benchmark, keyed by the file's name."""
    peers_meta = {
        **{k: v for k, v in meta("peers").items() if k not in ("benchmark", "run")},
        "journal_modes": ["delete", "wal"],
        "rounds": 3,
    }
    peers = {
        "meta": peers_meta,
        "systems": {n: {"api": "responses", "unsupported": {}} for n in ("sa_llm", "agents")},
        "chats": {
            "delete": [chat_round(1 + i / 10, peers=i < 2) for i in range(3)],
            "wal": [chat_round(0.8 + i / 10, peers=False) for i in range(3)],
        },
        "other": {"sa_llm": other(1), "baseline": other(0.8), "agents": other(3)},
        "w6": [
            {
                "sa_llm/httpx": w6_run(12 + i, 8 + i),
                "baseline/httpx": w6_run(10 + i, 6 + i),
                "sa_llm/aiohttp": w6_run(6 + i, 5 + i),
                "baseline/aiohttp": w6_run(4 + i, 3 + i),
            }
            for i in range(3)
        ],
        "checks": [],
    }
    transports_meta = {
        k: meta("transports")[k] for k in ("started", "stamp", "load_at_start", "git")
    }
    profile = {"httpcore": 2.0, "sqlalchemy": 4.0, "sa_llm": 1.0, "other": 3.0}
    aiohttp = {"aiohttp": 0.5, "sqlalchemy": 4.0, "sa_llm": 1.0, "other": 3.0}
    transports = {
        "meta": {**transports_meta, "rounds": 3},
        "rounds": [
            {
                "httpx": w6_run(12 + i, 9),
                "httpx-50": w6_run(14 + i, 10),
                "aiohttp": w6_run(8 + i, 6),
            }
            for i in range(3)
        ],
        "profiles": {"httpx": w6_run(14, 13, profile), "aiohttp": w6_run(9, 8, aiohttp)},
        "missing": [],
    }
    first_chunk = {
        "meta": meta("first_chunk"),
        "runs": 5,
        "warmup": 1,
        "db": "in memory",
        "target_us": 500.0,
        "rows": [
            {"label": "plain `Chat`, sync", "on_path": True, "us": series(9, 5)},
            {"label": "persisted, sync", "on_path": True, "us": series(14, 5)},
            {"label": "placeholder INSERT + COMMIT, sync", "on_path": False, "us": series(400, 5)},
        ],
    }
    persistence = {
        "meta": meta("persistence"),
        "repeats": 3,
        "history_repeats": 3,
        "ratio_target": 2.0,
        "select_target": 3,
        "count_columns": ["SELECT", "INSERT", "UPDATE", "DELETE", "other", "COMMIT"],
        "turns": [
            {"turn": t, "mode": m, "ms": series(2 + i, 3), "counts": [[1, 2, 1, 0, 0, 2]]}
            for i, t in enumerate(("ask, not streamed", "ask, streamed, 10 chunks"))
            for m in ("sync", "async")
        ],
        "history": [
            {
                "size": size,
                "messages": size,
                "to_llm_ms": series(size / 150 + 1, 3),
                "raw_ms": series(size / 350 + 0.2, 3),
                "raw_with_calls_ms": series(size / 280 + 0.3, 3),
                "counts": [[3, 0, 0, 0, 0, 1]],
            }
            for size in (10, 100, 1000)
        ],
    }

    def rows(key: str, library: str, ms: float) -> dict[str, Any]:
        return {
            "label": f"{library} {key}",
            "path": "MockTransport",
            "library": library,
            "ms": series(ms, 3),
        }

    sse = {
        "meta": meta("sse"),
        "events": 1000,
        "bytes": 262246,
        "chunk": 1024,
        "rows": [rows("iter_sse", "sa_llm", 1.3), rows("SSEDecoder", "openai", 5.3)],
    }
    stream_path = {
        "meta": meta("stream_path"),
        "events": 1000,
        "bytes": 262246,
        "chunk": 1024,
        "rows": [
            {**rows("ask", "sa_llm", 7.0), "key": "sa_llm sync"},
            {**rows("responses.create", "openai", 90.0), "key": "sdk sync"},
        ],
    }
    provider_streams = {
        "meta": meta("provider_streams"),
        "events": 1000,
        "piece": 1024,
        "repeats": 3,
        "target": 2.0,
        "baseline": "openai",
        "providers": [
            {"name": "openai", "event": "delta", "bytes": 262106, "us_per_event": series(5, 3)},
            {"name": "gemini", "event": "part", "bytes": 398000, "us_per_event": series(9, 3)},
            {"name": "xai", "missing": "no recorded stream"},
        ],
    }
    mib = 1024 * 1024
    attachments = {
        "meta": meta("attachments"),
        "file_bytes": 20 * mib,
        "base64_bytes": 28 * mib,
        "baseline": "plain ask, no database (baseline)",
        "scenarios": [
            {"name": "store only (create_user_message, sync)", "peak_bytes": [2 * mib, 3 * mib]},
            {"name": "plain ask, no database (baseline)", "peak_bytes": [100 * mib, 101 * mib]},
            {"name": "persisted ask from a path (sync)", "peak_bytes": [100 * mib, 102 * mib]},
        ],
    }
    names = ["ledger off, tracing off", "ledger on, tracing off"]
    usage = {
        "meta": meta("usage"),
        "turns": 3,
        "warmup": 5,
        "rounds": 3,
        "target": 1.05,
        "statements": {
            "off": {"commits": 6.0, "statements": 11.0},
            "on": {"commits": 6.0, "statements": 13.0},
        },
        "configs": [
            {
                "ledger": bool(ledger),
                "tracing": False,
                "label": names[ledger],
                "turn_ms": [series(3 + r + ledger * 0.2, 3) for r in range(3)],
            }
            for ledger in (0, 1)
        ],
        "ratios": [
            {
                "label": "ledger on / off (tracing off)",
                "numerator": names[1],
                "denominator": names[0],
            },
        ],
    }
    ui = {
        "meta": meta("ui"),
        "chunks": 120,
        "interval_s": 0.025,
        "event_interval_s": 0.075,
        "heartbeat_s": 0.5,
        "events": [
            {
                "database": "SQLite (file)",
                "replies": [
                    {"events": 46, "commits_per_s": 15.0 + i / 10, "seconds": 3.1} for i in range(3)
                ],
            }
        ],
        "latency": [
            {
                "setup": "SQLite, 1 process",
                "viewers": 1,
                "kind": "browser pages",
                "ms": series(70, 50, 5),
            },
            {
                "setup": "SQLite, 1 process",
                "viewers": 100,
                "kind": "raw SSE clients",
                "ms": series(400, 80, 50),
            },
        ],
        "memory_kib_per_stream": 4.1,
        "post_ms": [58.2, 61.0, 107.4],
    }
    w1 = {
        "labels": ["before the lease", "with the lease"],
        "before_ms": series(6, 3),
        "after_ms": series(6.2, 3),
        "before_cpu_ms": series(4, 3),
        "after_cpu_ms": series(4.1, 3),
        "statements": {"before": [4, 2], "after": [6, 2]},
    }
    restructure = {
        "meta": meta("turns"),
        "turns": 50,
        "rounds": 3,
        "src": ["/tmp/before/src", "/tmp/after/src"],
        "w1": w1,
        "target": 1.0,
    }
    turns = {
        "meta": meta("turns"),
        "turns": 50,
        "w1": w1,
        "w1_meta": meta("turns"),  # W1 kept from an earlier run (bench/run.py has no tree for it)
        "wait_target_ms": 50.0,
        "waits": [{"label": "SQLite, polling", "ms": series(70, 5, 5)}],
        "flushes": [
            {"chunks": 100, "interval_s": 0.05, "duration_s": 1.1, "flushes": 21, "bound": 23}
        ],
    }
    piece_labels = [
        "the turn",
        "the model call (HTTP)",
        "opening a transaction",
        "the statements",
        "the commits (and the connection's return)",
        "the rest: the system's own Python",
    ]

    def piece_rows(base: float) -> list[dict[str, float]]:
        return [{label: base + i * 0.1 + r * 0.01 for i, label in enumerate(piece_labels)}
                for r in range(3)]  # fmt: skip

    layer_counts = {"request (HTTP, wire format)": 2000.0, "database steps": 1800.0}
    gap = {
        "meta": meta("gap"),
        "turns": 50,
        "chats": 2,
        "layers": {
            workload: {
                "sa_llm": {**layer_counts, "turn flow": 360.0, "all": 4160.0},
                "baseline": {**layer_counts, "turn flow": 11.0, "all": 3811.0},
            }
            for workload in ("w1", "w3")
        },
        "labels": piece_labels,
        "pieces": {
            mode: {"sa_llm": piece_rows(1.2), "baseline": piece_rows(1.0)}
            for mode in ("delete", "wal")
        },
    }
    return {
        "peers": peers,
        "transports": transports,
        "first_chunk": first_chunk,
        "persistence": persistence,
        "sse": sse,
        "stream_path": stream_path,
        "provider_streams": provider_streams,
        "attachments": attachments,
        "usage": usage,
        "ui": ui,
        "turns": turns,
        "restructure": restructure,
        "gap": gap,
    }


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def assert_within(sample: Any, written: Any, where: str = "") -> None:
    """Every key of ``sample`` is in ``written`` with the same kind of value (recursively; a
    list is compared by its first item; None on either side matches anything)."""
    if sample is None or written is None:
        return
    assert kind(sample) == kind(written), f"{where}: {kind(sample)} != {kind(written)}"
    if isinstance(sample, dict):
        for key, value in sample.items():
            assert key in written, f"{where}: no {key!r} in what the benchmark wrote"
            assert_within(value, written[key], f"{where}.{key}")
    elif isinstance(sample, list) and sample and written:
        assert_within(sample[0], written[0], f"{where}[0]")


# -- drawing -----------------------------------------------------------------------------------


def test_every_workload_is_drawn_from_synthetic_results(tmp_path: Path, plot: ModuleType) -> None:
    results, out = tmp_path / "results", tmp_path / "img"
    results.mkdir()
    for name, payload in synthetic().items():
        (results / f"{name}.json").write_text(json.dumps(payload), encoding="utf-8")
    drawn = plot.draw_all(results, out)
    assert set(drawn) == set(plot.WORKLOADS)
    for workload, path in drawn.items():
        assert path == out / f"bench-{workload}.png"
        assert_png(path)
    assert {p.name for p in out.iterdir()} == {f"bench-{w}.png" for w in plot.WORKLOADS}


def test_a_missing_results_file_is_skipped(
    tmp_path: Path, plot: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "sse.json").write_text(json.dumps(synthetic()["sse"]), encoding="utf-8")
    drawn = plot.draw_all(results, tmp_path / "img")
    assert set(drawn) == {"sse"}
    err = capsys.readouterr().err
    assert "w1: no peers.json" in err and "skipped" in err
    assert "turns: no turns.json" in err


@pytest.mark.parametrize("name", ["peers", "transports"])
def test_the_committed_runs_have_the_synthetic_shape_and_draw(
    tmp_path: Path, plot: ModuleType, name: str
) -> None:
    committed = BENCH / "results" / f"{name}.json"
    if not committed.exists():
        pytest.skip(f"no committed {committed.name}")
    written = json.loads(committed.read_text(encoding="utf-8"))
    assert_within(synthetic()[name], written, name)
    drawn = plot.draw_results(name, written, tmp_path)
    assert drawn
    for path in drawn.values():
        assert_png(path)


# -- what the benchmarks write -------------------------------------------------------------------


def test_the_runner_has_every_benchmark_write_its_results() -> None:
    """``bench/run.py`` passes each benchmark ``--docs`` or ``--json-only`` (so that the plots
    it draws afterwards come from this run), and ``--no-write`` when told to write nothing."""
    run = load("run", "bench_run")
    scripts = sorted(BENCH.glob("bench_*.py"))
    assert scripts
    for script in scripts:
        assert run.flags_for(script, True)[0] in ("--docs", "--json-only"), script.name
        assert run.flags_for(script, False) == ["--no-write"], script.name
        assert run.takes(script, "--no-write"), script.name


def test_a_failed_benchmark_keeps_its_own_frames_in_the_report() -> None:
    """A traceback deeper than a screen still shows where in the benchmark it failed."""
    run = load("run", "bench_run")
    library = [f'  File "/site-packages/httpx/_client.py", line {n}, in send' for n in range(40)]
    stderr = "\n".join(
        [
            "warming up",
            "Traceback (most recent call last):",
            '  File "/repo/bench/bench_ui.py", line 206, in measure_viewers',
            *library,
            "httpx.ReadTimeout: timed out",
        ]
    )
    outcome = run.Outcome("bench_ui.py", 1.0, 1, "", stderr)
    report = "\n".join(run.section(outcome))
    assert "**Failed: exit status 1**" in report
    assert 'bench/bench_ui.py", line 206, in measure_viewers' in report
    assert report.rstrip().endswith("httpx.ReadTimeout: timed out\n```")
    assert "warming up" not in report  # what came before the traceback
    quiet = run.Outcome("bench_x.py", 1.0, 2, "", "\n".join(f"line {n}" for n in range(30)))
    assert "line 9\n" not in "\n".join(run.section(quiet))  # no traceback: the last 20 lines


#: benchmark -> (its tiny mode, the modules it needs beyond the test dependencies)
TINY = {
    "sse": (["--events", "60", "--repeats", "2"], ("openai", "httpx2")),
    "stream_path": (["--events", "60", "--repeats", "2"], ("openai", "httpx2")),
    "provider_streams": (["--repeats", "1"], ()),
    "first_chunk": (["--runs", "3", "--warmup", "1"], ()),
    "persistence": (["--repeats", "1", "--history-repeats", "1"], ()),
    "attachments": (["--size-mib", "1", "--repeats", "1"], ()),
    "usage": (["--rounds", "1", "--turns", "2"], ("opentelemetry.sdk",)),
    "gap": (["--turns", "3", "--rounds", "2", "--journal", "delete,wal"], ()),
}


@pytest.mark.parametrize("name", list(TINY))
def test_a_benchmark_writes_what_the_plot_reads(tmp_path: Path, name: str) -> None:
    args, needs = TINY[name]
    for module in needs:
        pytest.importorskip(module)
    env = {**os.environ, "SA_LLM_BENCH_RESULTS": str(tmp_path), "SA_LLM_BENCH_RUN": "run-test"}
    done = subprocess.run(
        [sys.executable, str(BENCH / f"bench_{name}.py"), *args, "--json-only"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # provider_streams exits 1 when a parser misses its target: the JSON is written either way.
    path = tmp_path / f"{name}.json"
    assert done.returncode in (0, 1) and path.exists(), done.stderr[-3000:]
    written = json.loads(path.read_text(encoding="utf-8"))
    assert written["meta"]["run"] == "run-test"
    assert set(written) == set(synthetic()[name]), name
    assert_within(synthetic()[name], written, name)
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        return  # the shape is checked; the drawing needs matplotlib
    drawn = load("plot").draw_results(name, written, tmp_path / "img")
    assert drawn, f"nothing drawn from {name}.json"
    for path in drawn.values():
        assert_png(path)


def test_the_ui_benchmark_writes_what_the_plot_reads() -> None:
    bench_ui = load("bench_ui")
    reply = {"events": 46, "commits_per_s": 15.0, "seconds": 3.1}
    events = [("SQLite (file)", {"replies": [reply]})]
    latency = [("SQLite, 1 process", 1, "browser pages", [70.123, 80.5])]
    bench_ui.POSTS_MS[:] = [58.234, 107.4]  # the form POSTs' answers the run timed
    written = bench_ui.payload(meta("ui"), events, latency, 4.1)
    written = json.loads(json.dumps(written))
    assert set(written) == set(synthetic()["ui"])
    assert_within(synthetic()["ui"], written, "ui")
    assert written["post_ms"] == [58.23, 107.4]


def test_the_turns_benchmark_writes_what_the_plot_reads() -> None:
    bench_turns = load("bench_turns")
    w1 = {
        "labels": ["before", "after"],
        "before_ms": [6.0, 6.1],
        "after_ms": [6.2, 6.0],
        "before_cpu_ms": [4.0, 4.1],
        "after_cpu_ms": [4.2, 4.0],
        "statements": {"before": [4, 2], "after": [6, 2]},
    }
    flushes = [{"chunks": 100, "interval_s": 0.05, "duration_s": 1.1, "flushes": 21, "bound": 23}]
    written = bench_turns.payload(meta("turns"), w1, [("SQLite, polling", [70.0])], flushes)
    written = json.loads(json.dumps(written))
    assert set(written) == set(synthetic()["turns"])
    assert_within(synthetic()["turns"], written, "turns")
    restructure = bench_turns.restructure_payload(meta("turns"), w1, ("/a/src", "/b/src"), 2)
    restructure = json.loads(json.dumps(restructure))
    assert set(restructure) == set(synthetic()["restructure"])
    assert_within(synthetic()["restructure"], restructure, "restructure")


def test_a_turns_run_without_w1_keeps_the_last_w1_with_its_run(tmp_path: Path) -> None:
    """``bench/run.py`` runs ``bench_turns.py`` without a tree to compare with: the W1 rounds of
    the last run that measured them stay in turns.json, named by that run, and are drawn."""
    bench_turns = load("bench_turns")
    first = synthetic()["turns"] | {"w1_meta": None}
    first["meta"] = first["meta"] | {"started": "2026-12-07 15:20:00 UTC"}
    path = tmp_path / "turns.json"
    path.write_text(json.dumps(first), encoding="utf-8")
    w1, w1_meta = bench_turns.earlier_w1(path)
    assert w1 == first["w1"] and w1_meta == first["meta"]
    # Carried over twice, it still names the run that measured it.
    path.write_text(json.dumps(bench_turns.payload(meta("turns"), w1, [], [], w1_meta)))
    assert bench_turns.earlier_w1(path) == (first["w1"], first["meta"])
    assert bench_turns.earlier_w1(tmp_path / "missing.json") == (None, None)
    path.write_text(json.dumps(first | {"w1": None}), encoding="utf-8")
    assert bench_turns.earlier_w1(path) == (None, None)
