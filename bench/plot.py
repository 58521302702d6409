"""Time per turn against history length, for every system of ``bench/bench_peers.py``.

``draw(results, path)`` writes a PNG with two panels. Left: W1's 50-turn chat, the median of
its runs turn by turn (in the run's first journal mode), against the number of messages already
in the chat. Right: the same on log scales, extended by the two turns each system ran on top of
W2's 100- and 1,000-message histories. Run on its own it redraws ``docs/img/peers.png`` from
``bench/results/peers.json``::

    python bench/plot.py
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from peers import label  # noqa: E402


def w1_curve(runs: list[dict[str, Any]]) -> tuple[list[int], list[float]]:
    """(messages before each turn, median ms of that turn over the runs)."""
    per_turn = [
        statistics.median(times) for times in zip(*(r["turn_ms"] for r in runs), strict=False)
    ]
    return [2 * index for index in range(len(per_turn))], per_turn


def long_points(build: dict[str, Any]) -> tuple[list[int], list[float]]:
    """(history size, median ms of the turns run on top of it) for W2's histories."""
    sizes = sorted(int(key) for key in build if key.isdigit())
    return sizes, [statistics.median(build[str(size)]["turn_ms"]) for size in sizes]


def _by_system(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per system: its W1 runs in the run's first journal mode, and its W2 histories."""
    chats = results.get("chats") or {}
    rounds: list[dict[str, Any]] = next(iter(chats.values()), [])
    found: dict[str, dict[str, Any]] = {}
    for round_ in rounds:
        for name, value in round_.items():
            if isinstance(value, dict) and "w1" in value:
                found.setdefault(name, {"w1": [], "w2_build": {}})["w1"].append(value["w1"])
    for name, other in (results.get("other") or {}).items():
        if name in found and isinstance(other, dict):
            found[name]["w2_build"] = other.get("w2_build") or {}
    return found


def draw(results: dict[str, Any], path: Path) -> bool:
    """Draw the figure; false when matplotlib is missing or there is nothing to draw."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return False
    figure, (short, long) = plt.subplots(1, 2, figsize=(12, 4.8), dpi=110)
    drawn = False
    for name, result in _by_system(results).items():
        if name == "plain":  # stores nothing: not a point of this comparison
            continue
        xs, ys = w1_curve(result["w1"])
        (line,) = short.plot(xs, ys, label=label(name))
        sizes, times = long_points(result.get("w2_build") or {})
        tail = ys[-10:]
        long.plot(
            [max(1, xs[-5]), *sizes],
            [statistics.median(tail), *times],
            marker="o",
            color=line.get_color(),
            label=label(name),
        )
        drawn = True
    if not drawn:
        plt.close(figure)
        return False
    short.set_title("W1: a 50-turn chat (median of the runs)")
    short.set_ylabel("ms per turn")
    long.set_title("Longer histories (W1's last turns, then W2's 100 and 1,000)")
    long.set_xscale("log")
    long.set_yscale("log")
    long.set_ylabel("ms per turn (log)")
    for axes in (short, long):
        axes.set_xlabel("messages already in the chat")
        axes.grid(True, which="both", alpha=0.3)
    short.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return True


def main() -> int:
    results = json.loads((ROOT / "bench" / "results" / "peers.json").read_text())
    out = ROOT / "docs" / "img" / "peers.png"
    if not draw(results, out):
        return 1
    print(f"written to {out.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
