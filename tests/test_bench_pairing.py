"""How ``bench/bench_peers.py`` pairs sa_llm with the limit and judges a target.

* The chats of several systems run their turns interleaved in one process (turn 1 of each,
  then turn 2 of each in the other order, ...), each system's time the sum of its own turns.
* A round's worker runs sa_llm, the limit and the plain chat together, every peer alone.
* The median's interval is the distribution-free one (order statistics, binomial confidence),
  and a verdict says whether the run settles it.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Any

import pytest

from test_bench_plots import load

bench_peers = load("bench_peers")  # puts bench/ on sys.path
workloads = importlib.import_module("peers.workloads")
common = importlib.import_module("peers.common")
Conversation: Any = common.Conversation
System: Any = common.System

#: The systems whose turn ran, in the order they ran.
CALLS: list[str] = []


class _Chat(Conversation):  # type: ignore[misc]
    def __init__(self, name: str) -> None:
        self.name = name

    def ask(self, text: str, on_chunk: Any = None) -> str:
        CALLS.append(self.name)
        return "ok"

    async def aask(self, text: str, on_chunk: Any = None) -> str:
        if on_chunk is not None:
            on_chunk(f"{self.name}: {text}")
        return self.ask(text)


def _system(name: str) -> Any:
    class Fake(System):  # type: ignore[misc]
        closed = False

        def open(self) -> None:
            pass

        def close(self) -> None:
            type(self).closed = True

        def new_chat(self, key: str, *, tools: bool = False) -> _Chat:
            return _Chat(name)

        def rows(self) -> dict[str, int]:
            return {"messages": 100}

        def journal(self) -> str:
            return "delete"

        def db_bytes(self) -> int:
            return 0

        async def aopen(self, url: str, schema: str | None) -> None:
            pass

        async def anew_chat(self, key: str) -> _Chat:
            return _Chat(name)

        async def aclose(self) -> None:
            type(self).closed = True

        async def ajournal(self) -> str:
            return "delete"

    # The workloads these tests do not run.
    for method in ("check_tools", "inspect_failure", "rebuild", "resume", "seed"):
        setattr(Fake, method, lambda *args, **kwargs: None)
    Fake.__abstractmethods__ = frozenset()
    return Fake


def test_the_chats_of_two_systems_run_turn_by_turn_each_in_turn_first(tmp_path: Path) -> None:
    CALLS.clear()
    classes = {"a": _system("a"), "b": _system("b")}
    found = workloads.run_chats(classes, tmp_path, "http://127.0.0.1:9", "w1", 0)
    names = list(CALLS)
    turns = workloads.TURNS
    assert len(names) == 2 * turns
    # Turn 1: a then b; turn 2: b then a; ...: every pair holds both systems once.
    pairs = [names[i : i + 2] for i in range(0, len(names), 2)]
    assert pairs == [["a", "b"] if turn % 2 else ["b", "a"] for turn in range(1, turns + 1)]
    for name in classes:
        run = found[name]
        assert len(run["turn_ms"]) == len(run["turn_cpu_ms"]) == turns
        assert run["wall_s"] == pytest.approx(sum(run["turn_ms"]) / 1000)
        assert run["cpu_s"] == pytest.approx(sum(run["turn_cpu_ms"]) / 1000)
        assert run["journal"] == "delete" and run["rows"] == {"messages": 100}
        assert classes[name].closed


def test_the_async_chats_take_turns_too(tmp_path: Path) -> None:
    classes = {"a": _system("a"), "b": _system("b")}
    CALLS.clear()
    found = workloads.run_chats_async(classes, tmp_path, "http://127.0.0.1:9", 0)
    turns = workloads.TURNS
    # One first turn each (reading the empty history, not timed), then the interleaved turns.
    assert CALLS[:2] == ["a", "b"]
    pairs = [CALLS[i : i + 2] for i in range(2, len(CALLS), 2)]
    assert pairs == [["a", "b"] if turn % 2 else ["b", "a"] for turn in range(1, turns + 1)]
    for name in classes:
        run = found[name]
        assert len(run["turn_ms"]) == turns
        assert run["wall_s"] == pytest.approx(sum(run["turn_ms"]) / 1000)
        assert classes[name].closed


def test_async_streamed_chats_record_each_timed_turns_first_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """W3 async: the untimed first turn streams too, and its exchange is not paired with a
    timed turn's callback."""
    served: dict[str, list[dict[str, Any]]] = {}

    def exchanges(base_url: str) -> list[dict[str, Any]]:
        # The server wrote each turn's first delta at 1 µs, 2 µs, ...; a non-streamed exchange
        # in between does not count.
        log = [{"stream": True, "first_content_ns": 1000 * (i + 1)} for i in range(turns + 1)]
        served[base_url] = log
        return [log[0], {"stream": False, "first_content_ns": None}, *log[1:]]

    turns = workloads.TURNS
    monkeypatch.setattr(workloads, "exchanges", exchanges)
    monkeypatch.setattr(workloads, "perf_counter_ns", lambda: 1_000_000)
    classes = {"a": _system("a"), "b": _system("b")}
    CALLS.clear()
    found = workloads.run_chats_async(classes, tmp_path, "http://127.0.0.1:9", 0, "w3a")
    assert len(CALLS) == 2 * (turns + 1)
    for name in classes:
        run = found[name]
        assert "callback_ns" not in run
        # Turn k's callback (at 1 ms) against the server's write of turn k (k µs), not k - 1.
        assert run["first_chunk_us"] == [1000 - (k + 1) for k in range(1, turns + 1)]
        assert len(run["writes_per_reply"]) == turns
    assert len(served) == 2 and all("/w3a-" in url for url in served)


def test_a_round_runs_sa_llm_the_limit_and_the_plain_chat_together_and_the_peers_alone() -> None:
    names = ["langchain", "sa_llm", "baseline", "plain", "agents"]
    together = ["sa_llm", "baseline", "plain"]
    assert bench_peers._order(names, 0) == [together, ["langchain"], ["agents"]]
    assert bench_peers._order(names, 1) == [together[::-1], ["langchain"], ["agents"]]
    assert bench_peers._order(["agents", "plain"], 0) == [["plain"], ["agents"]]


def _binomial_confidence(n: int, j: int) -> float:
    return 1 - 2 * sum(math.comb(n, i) for i in range(j)) / (1 << n)


@pytest.mark.parametrize("n", [2, 3, 5, 6, 8, 11, 20, 50])
def test_the_median_interval_is_the_narrowest_order_statistics_pair_at_95_percent(
    n: int,
) -> None:
    values = [float(v) for v in range(n, 0, -1)]  # unsorted on purpose
    interval = bench_peers.median_interval(values)
    j = int(interval.low)  # the values are 1..n, so the j-th smallest is j
    assert interval.high == n + 1 - j
    assert interval.confidence == pytest.approx(_binomial_confidence(n, j))
    if j > 1:
        assert interval.confidence >= 0.95
    narrower = j + 1
    assert narrower > n // 2 or _binomial_confidence(n, narrower) < 0.95


def test_the_median_interval_of_eleven_rounds_and_of_five() -> None:
    eleven = bench_peers.median_interval([0.65, 1.08, 1.08, 1.16, 1.22, 1.26, 1.28, 1.45, 2.35,
                                          1.47, 1.28])  # fmt: skip
    assert (eleven.low, eleven.high) == (1.08, 1.47)
    assert eleven.confidence == pytest.approx(1 - 24 / 2048)
    five = bench_peers.median_interval([3.0, 1.0, 2.0, 5.0, 4.0])
    assert (five.low, five.high, five.confidence) == (1.0, 5.0, pytest.approx(0.9375))
    assert bench_peers.median_interval([1.0]) is None


def _spread(values: list[float]) -> Any:
    return bench_peers.spread(values)


def test_a_verdict_says_whether_the_run_settles_it() -> None:
    above = _spread([1.2, 1.25, 1.3, 1.22, 1.28, 1.26, 1.24, 1.21, 1.29, 1.27, 1.23])
    assert bench_peers.verdict(above, 1.15).startswith("**missed** (9% over); settled")
    assert "above 1.15x" in bench_peers.verdict(above, 1.15)
    below = _spread([1.0, 1.05, 1.02, 1.04, 1.01, 1.03, 1.06, 0.99, 1.0, 1.02, 1.01])
    assert bench_peers.verdict(below, 1.15) == (
        "met; settled (the median's interval is below 1.15x)"
    )
    straddling = _spread([1.0, 1.3, 1.1, 1.2, 1.12, 1.18, 1.05, 1.25, 1.14, 1.16, 1.13])
    assert bench_peers.verdict(straddling, 1.15).startswith("met; **not settled**")
    assert bench_peers.verdict(_spread([1.3]), 1.15).endswith("one round: not settled")
    assert bench_peers.verdict(None, 1.15) == "not measured"
