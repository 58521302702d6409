"""The benchmarks' plots: one PNG per workload, ``docs/img/bench-<workload>.png``, drawn from the
raw samples the benchmarks keep in ``bench/results/<name>.json`` (never from their markdown).

Run on its own it redraws every plot whose JSON file is present (a missing one is skipped with a
message); ``bench/run.py`` calls :func:`draw_all` after the benchmarks ran::

    python bench/plot.py            # every workload
    python bench/plot.py w1 sse     # some of them (see WORKLOADS)

What every plot shows is the spread, not only a median: a box spans the interquartile range,
its line is the median, its whiskers reach the smallest and the largest sample (no sample is
left out as an outlier), and where there are few samples (rounds, processes, trials) each one is
a dot. Where a workload has a reference (the limit, the plain chat, the default transport,
OpenAI's parser, the plain ask, ledger and tracing off), the ratio to it is drawn next to the
absolute numbers, per round where the benchmark pairs the runs, with the target as a dashed red
line. The caption under each figure names the run (its report), the machine, the load average
when the run started and the git revision. matplotlib (the ``bench`` dependency group) draws
with its Agg backend: no display needed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
IMAGES = ROOT / "docs" / "img"

#: Short names of bench_peers' systems (axis labels have little room).
SHORT = {
    "sa_llm": "sa_llm",
    "baseline": "limit",
    "plain": "plain Chat",
    "agents": "Agents SDK",
    "langchain": "LangChain",
    "llm": "llm",
}
COLORS = {
    "sa_llm": "#1f77b4",
    "baseline": "#555555",
    "plain": "#9ecae1",
    "agents": "#ff7f0e",
    "langchain": "#2ca02c",
    "llm": "#d62728",
    "openai": "#ff7f0e",
    "reference": "#999999",
}
MODE_HATCH = {0: "", 1: "//"}  # the first journal mode plain, the second hatched
TARGET = {"color": "#d62728", "linestyle": "--", "linewidth": 1.2}
REFERENCE = {"color": "#777777", "linestyle": ":", "linewidth": 1.0}
FEW = 40  # up to this many samples in a box, each is drawn as a dot too

try:  # the peers' constants (the fake server's latency in W6, W3's time to first token)
    sys.path.insert(0, str(ROOT / "bench"))
    from peers.workloads import W3_GAP, W6_LATENCY
except Exception:  # pragma: no cover - sa_llm missing: the defaults of bench/peers/workloads.py
    W3_GAP, W6_LATENCY = 0.02, 0.1


# -- helpers -----------------------------------------------------------------------------------


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _present(values: Sequence[float | None] | None) -> list[float]:
    return [float(v) for v in values or () if v is not None]


def _median(values: Sequence[float | None] | None) -> float | None:
    found = _present(values)
    return statistics.median(found) if found else None


def _orientation(horizontal: bool) -> dict[str, Any]:
    """``boxplot``'s orientation: ``orientation`` since matplotlib 3.10, ``vert`` before."""
    import matplotlib

    major, minor = (int(x) for x in matplotlib.__version__.split(".")[:2])
    if (major, minor) >= (3, 10):
        return {"orientation": "horizontal" if horizontal else "vertical"}
    return {"vert": not horizontal}


def boxes(
    ax: Any,
    groups: Sequence[Sequence[float]],
    positions: Sequence[float],
    colors: Sequence[str],
    *,
    width: float = 0.6,
    horizontal: bool = False,
    hatches: Sequence[str] | None = None,
    dots: bool = True,
) -> None:
    """Box plots with the whiskers at min and max, and each sample as a dot when there are few."""
    kept = [
        (list(g), p, c, (hatches or [""] * len(groups))[i])
        for i, (g, p, c) in enumerate(zip(groups, positions, colors, strict=True))
        if g
    ]
    if not kept:
        return
    drawn = ax.boxplot(
        [g for g, _, _, _ in kept],
        positions=[p for _, p, _, _ in kept],
        widths=width,
        whis=(0, 100),
        showfliers=False,
        patch_artist=True,
        **_orientation(horizontal),
        medianprops={"color": "black", "linewidth": 1.5},
        manage_ticks=False,
    )
    for patch, (_, _, color, hatch) in zip(drawn["boxes"], kept, strict=True):
        patch.set_facecolor(color)
        patch.set_alpha(0.45)
        patch.set_hatch(hatch)
    if not dots:
        return
    for values, position, color, _ in kept:
        if len(values) > FEW:
            continue
        n = len(values)
        offsets = [(i - (n - 1) / 2) / max(n - 1, 1) * width * 0.5 for i in range(n)]
        along = [position + o for o in offsets]
        xs, ys = (values, along) if horizontal else (along, values)
        ax.scatter(xs, ys, s=12, color=color, edgecolor="black", linewidth=0.4, zorder=3)


def target_line(
    ax: Any, value: float, label: str | None = None, *, horizontal: bool = True, **style: Any
) -> None:
    line = {**TARGET, **style}
    if horizontal:
        ax.axhline(value, label=label, **line)
    else:
        ax.axvline(value, label=label, **line)


def segment(ax: Any, value: float, center: float, half: float = 0.45, **style: Any) -> None:
    """A target over one category only (a dashed red segment across its boxes)."""
    ax.hlines(value, center - half, center + half, **{**TARGET, **style})


def categories(
    ax: Any, labels: Sequence[str], *, horizontal: bool = False, rotate: int = 0, size: int = 8
) -> None:
    ticks = list(range(len(labels)))
    if horizontal:
        ax.set_yticks(ticks, labels, fontsize=size + 1)
        ax.set_ylim(-0.7, len(labels) - 0.3)
        ax.invert_yaxis()
    else:
        ax.set_xticks(
            ticks, labels, rotation=rotate, ha="right" if rotate else "center", fontsize=size
        )
        ax.set_xlim(-0.7, len(labels) - 0.3)


def headroom(ax: Any, *values: float) -> None:
    """Extend the y axis from 0 to above the largest of the data and ``values`` (lines that
    autoscaling ignores)."""
    _, high = ax.get_ylim()
    ax.set_ylim(0, max([high, *values]) * 1.08)


def caption(figure: Any, meta: dict[str, Any] | None, source: str | None = None) -> None:
    """The run under the figure: its report, the machine, the load at its start, git."""
    meta = meta or {}
    name = source or meta.get("run") or f"{meta.get('benchmark', 'bench')}-{meta.get('stamp', '?')}"
    parts = [f"run {name}"]
    if meta.get("started"):
        parts.append(f"started {meta['started']}")
    machine = ", ".join(
        str(x)
        for x in (meta.get("cpu"), f"{meta['cores']} cores" if meta.get("cores") else None)
        if x
    )
    if machine:
        parts.append(machine)
    load = meta.get("load_at_start")
    if load:
        parts.append("load " + " / ".join(f"{x:.2f}" for x in load) + " at start")
    if meta.get("python"):
        parts.append(f"Python {meta['python']}")
    if meta.get("git"):
        parts.append(f"git {meta['git']}")
    figure.text(0.005, 0.005, " · ".join(parts), fontsize=7, color="#555555", ha="left")


def finish(plt: Any, figure: Any, path: Path, title: str, meta: Any, source: str | None) -> Path:
    figure.suptitle(title, fontsize=11)
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    caption(figure, meta, source)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def _legend_patches(items: Sequence[tuple[str, str, str]]) -> list[Any]:
    from matplotlib.patches import Patch

    return [
        Patch(facecolor=c, alpha=0.45, hatch=h, label=t, edgecolor="black") for t, c, h in items
    ]


# -- bench_peers: W1, W2, W3, W6 ---------------------------------------------------------------


def _peers_source(data: dict[str, Any]) -> str:
    return f"peers-{data.get('meta', {}).get('stamp', '?')}"


def _rounds(data: dict[str, Any], mode: str) -> list[dict[str, Any]]:
    rounds = (data.get("chats") or {}).get(mode) or []
    return [r for r in rounds if isinstance(r, dict)]


def _run(round_: dict[str, Any], name: str, workload: str) -> dict[str, Any] | None:
    value = round_.get(name)
    if isinstance(value, dict) and "error" not in value and isinstance(value.get(workload), dict):
        found: dict[str, Any] = value[workload]
        return found
    return None


def _systems(data: dict[str, Any], mode: str, workload: str) -> list[str]:
    seen: list[str] = []
    for round_ in _rounds(data, mode):
        for name in round_:
            if name not in seen and _run(round_, name, workload):
                seen.append(name)
    order = list(SHORT)
    return sorted(seen, key=lambda n: order.index(n) if n in order else len(order))


def _per_turn_ms(run: dict[str, Any]) -> float:
    return float(run["wall_s"]) * 1000 / max(len(run.get("turn_ms") or ()), 1)


def _paired(
    data: dict[str, Any],
    mode: str,
    name: str,
    reference: str,
    workload: str,
    value: Callable[[dict[str, Any]], float | None],
    reference_workload: str | None = None,
) -> list[float]:
    """Per-round ratios of ``name``'s value over ``reference``'s in the same round."""
    ratios = []
    for round_ in _rounds(data, mode):
        mine = _run(round_, name, workload)
        theirs = _run(round_, reference, reference_workload or workload)
        if mine is None or theirs is None:
            continue
        a, b = value(mine), value(theirs)
        if a is not None and b:
            ratios.append(a / b)
    return ratios


def _mode_legend(ax: Any, modes: list[str], loc: str) -> None:
    """Which hatch is which SQLite journal mode."""
    patches = [
        (f"{m.upper()} journal", "#cccccc", MODE_HATCH.get(i, "..")) for i, m in enumerate(modes)
    ]
    ax.legend(handles=_legend_patches(patches), fontsize=8, loc=loc)


RatioCase = tuple[str, str, str, Callable[[dict[str, Any]], float | None], str, float | None]


def _ratio_panel(
    ax: Any, data: dict[str, Any], modes: list[str], cases: list[RatioCase], ylabel: str
) -> None:
    """Per-round ratios, a box per case and journal mode: each case is (system, workload,
    reference system, the value read from a run, label, target or ``None``)."""
    step = 0.8 / max(len(modes), 1)
    for index, mode in enumerate(modes):
        boxes(
            ax,
            [
                _paired(data, mode, name, ref, workload, value)
                for name, workload, ref, value, _, _ in cases
            ],
            [row - 0.4 + step * (index + 0.5) for row in range(len(cases))],
            [COLORS.get(case[0], "#888888") for case in cases],
            width=step * 0.85,
            hatches=[MODE_HATCH.get(index, "..")] * len(cases),
        )
    for row, case in enumerate(cases):
        if case[5] is not None:
            segment(ax, case[5], row)
    ax.axhline(1.0, **REFERENCE)
    categories(ax, [case[4] for case in cases])
    ax.set_ylabel(ylabel)


def draw_w1(plt: Any, data: dict[str, Any], path: Path) -> Path | None:
    """W1: ms per turn over the rounds per system, the per-round ratios to the limit (wall and
    CPU, sync and async) in each journal mode, and the time per turn against the history."""
    modes = list(data.get("chats") or {})
    if not modes or not _systems(data, modes[0], "w1"):
        return None
    figure, (times, ratios, curve) = plt.subplots(
        1, 3, figsize=(17, 5.2), dpi=100, gridspec_kw={"width_ratios": [1.25, 1, 1.15]}
    )
    # (a) ms per turn, every system, each journal mode side by side; async rows after.
    rows: list[tuple[str, str, str]] = [
        (n, "w1", SHORT.get(n, n)) for n in _systems(data, modes[0], "w1")
    ]
    rows += [(n, "w1a", f"{SHORT.get(n, n)} async") for n in _systems(data, modes[0], "w1a")]
    step = 0.8 / max(len(modes), 1)
    for index, mode in enumerate(modes):
        groups, positions, colors = [], [], []
        for row, (name, workload, _) in enumerate(rows):
            runs = [_run(r, name, workload) for r in _rounds(data, mode)]
            groups.append([_per_turn_ms(r) for r in runs if r])
            positions.append(row - 0.4 + step * (index + 0.5))
            colors.append(COLORS.get(name, "#888888"))
        boxes(
            times,
            groups,
            positions,
            colors,
            width=step * 0.85,
            hatches=[MODE_HATCH.get(index, "..")] * len(groups),
        )
    categories(times, [text for _, _, text in rows], rotate=30)
    times.set_yscale("log")
    times.set_ylabel("ms per turn (wall time / 50 turns, log scale)")
    times.set_title("ms per turn, one sample per round")
    _mode_legend(times, modes, "upper left")
    # (b) per-round ratios to the limit.
    cases = [
        ("sa_llm", "w1", "wall_s", "sa_llm\nwall", 1.15),
        ("sa_llm", "w1", "cpu_s", "sa_llm\nCPU", None),
        ("sa_llm", "w1a", "wall_s", "async\nwall", 1.15),
        ("sa_llm", "w1a", "cpu_s", "async\nCPU", None),
        ("plain", "w1", "wall_s", "plain\nwall", None),
    ]

    def reader(key: str) -> Callable[[dict[str, Any]], float | None]:
        return lambda run: run.get(key)

    shown: list[RatioCase] = [
        (name, workload, "baseline", reader(key), label, target)
        for name, workload, key, label, target in cases
    ]
    shown = [c for c in shown if any(_paired(data, m, c[0], c[2], c[1], c[3]) for m in modes)]
    _ratio_panel(ratios, data, modes, shown, "ratio to the limit in the same round (x)")
    ratios.set_title("sa_llm's per-round ratio to the limit (dashed: 1.15x target)")
    # (c) time per turn against the history (first mode): W1's turns, then W2's histories.
    mode = modes[0]
    for name in _systems(data, mode, "w1"):
        if name == "plain":
            continue
        found = (_run(x, name, "w1") for x in _rounds(data, mode))
        turn_ms = [r["turn_ms"] for r in found if r is not None]
        per_turn = list(zip(*turn_ms, strict=False))
        xs = [2 * i for i in range(len(per_turn))][1:]
        meds = [statistics.median(t) for t in per_turn][1:]
        lows = [min(t) for t in per_turn][1:]
        highs = [max(t) for t in per_turn][1:]
        color = COLORS.get(name, "#888888")
        curve.plot(xs, meds, color=color, label=SHORT.get(name, name), linewidth=1.2)
        curve.fill_between(xs, lows, highs, color=color, alpha=0.15, linewidth=0)
        build = ((data.get("other") or {}).get(name) or {}).get("w2_build") or {}
        sizes = sorted(int(k) for k in build if k.isdigit() and build[k].get("turn_ms"))
        for size in sizes:
            values = build[str(size)]["turn_ms"]
            mid = statistics.median(values)
            curve.errorbar(
                [size],
                [mid],
                yerr=[[mid - min(values)], [max(values) - mid]],
                fmt="o",
                color=color,
                capsize=3,
                markersize=4,
            )
    curve.set_xscale("log")
    curve.set_yscale("log")
    curve.set_xlabel("messages already in the chat (log scale)")
    curve.set_ylabel("ms per turn (log scale)")
    curve.set_title(
        f"Per turn against the history ({mode.upper()}): median, min-max band;\n"
        "dots: turns on W2's 100- and 1,000-message histories",
        fontsize=10,
    )
    curve.grid(True, which="both", alpha=0.25)
    curve.legend(fontsize=8, loc="upper left")
    title = "W1: a 50-turn chat, not streamed (boxes: IQR and median, whiskers min-max)"
    return finish(plt, figure, path, title, data.get("meta"), _peers_source(data))


def draw_w2(plt: Any, data: dict[str, Any], path: Path) -> Path | None:
    """W2: rebuild times (first and warm) next to the raw SELECT, and warm / raw per process."""
    other = {
        n: v for n, v in (data.get("other") or {}).items() if isinstance(v, dict) and v.get("w2")
    }
    if not other:
        return None
    order = list(SHORT)
    names = sorted(other, key=lambda n: order.index(n) if n in order else len(order))
    sizes = sorted({int(k) for n in names for p in other[n]["w2"] for k in p}, reverse=True)
    figure, axes = plt.subplots(1, len(sizes) + 1, figsize=(6 * len(sizes) + 5, 5), dpi=100)
    for ax, size in zip(axes, sizes, strict=False):
        key = str(size)
        for row, name in enumerate(names):
            samples = [p[key] for p in other[name]["w2"] if key in p]
            warm = [v for s in samples for v in s.get("warm_ms", [])]
            raw = [v for s in samples for v in s.get("raw_ms", [])]
            boxes(
                ax,
                [warm, raw],
                [row - 0.18, row + 0.18],
                [COLORS.get(name, "#888888"), COLORS["reference"]],
                width=0.32,
                hatches=["", "//"],
            )
            cold = [s["cold_ms"] for s in samples if s.get("cold_ms") is not None]
            ax.scatter([row - 0.18] * len(cold), cold, marker="v", color="black", s=22, zorder=4)
            raw_cold = [c.get(key) for c in other[name].get("w2_raw_cold") or [] if c.get(key)]
            ax.scatter(
                [row + 0.18] * len(raw_cold), raw_cold, marker="v", color="#777777", s=22, zorder=4
            )
        categories(ax, [SHORT.get(n, n) for n in names], rotate=20)
        ax.set_yscale("log")
        ax.set_ylabel("ms per load (log scale)")
        ax.set_title(f"{size:,}-message history")
        ax.legend(
            handles=[
                *_legend_patches(
                    [
                        ("warm load", "#cccccc", ""),
                        ("raw SELECT of its rows", COLORS["reference"], "//"),
                    ]
                ),
                plt.Line2D(
                    [],
                    [],
                    marker="v",
                    color="black",
                    linestyle="",
                    label="first load in a fresh process",
                ),
            ],
            fontsize=7,
            loc="upper left",
        )
    ratio_ax = axes[-1]
    step = 0.8 / max(len(sizes), 1)
    for index, size in enumerate(sizes):
        groups, positions, colors = [], [], []
        for row, name in enumerate(names):
            found = []
            for process in other[name]["w2"]:
                sample = process.get(str(size))
                warm_ms = _median(sample.get("warm_ms")) if sample else None
                raw_ms = _median(sample.get("raw_ms")) if sample else None
                if warm_ms is not None and raw_ms:
                    found.append(warm_ms / raw_ms)
            groups.append(found)
            positions.append(row - 0.4 + step * (index + 0.5))
            colors.append(COLORS.get(name, "#888888"))
        boxes(
            ratio_ax,
            groups,
            positions,
            colors,
            width=step * 0.85,
            hatches=[MODE_HATCH.get(index, "..")] * len(groups),
        )
    ratio_ax.axhline(2.0, label="target for sa_llm: 2x", **TARGET)
    ratio_ax.axhline(1.0, **REFERENCE)
    categories(ratio_ax, [SHORT.get(n, n) for n in names], rotate=20)
    ratio_ax.set_yscale("log")
    ratio_ax.set_ylabel("warm load / raw SELECT, one dot per process (log)")
    ratio_ax.set_title("Warm load over the raw SELECT, per process")
    ratio_ax.legend(
        handles=[
            *_legend_patches(
                [
                    (f"{s:,} messages", "#cccccc", MODE_HATCH.get(i, ".."))
                    for i, s in enumerate(sizes)
                ]
            ),
            plt.Line2D([], [], label="target for sa_llm: 2x", **TARGET),
        ],
        fontsize=7,
        loc="upper left",
    )
    title = "W2: rebuilding a history in a fresh process (boxes: IQR and median, whiskers min-max)"
    return finish(plt, figure, path, title, data.get("meta"), _peers_source(data))


def draw_w3(plt: Any, data: dict[str, Any], path: Path) -> Path | None:
    """W3: the first chunk (server write to callback) without and with a time to first token,
    and the per-round ratios (to the plain chat, to the limit) in each journal mode."""
    modes = list(data.get("chats") or {})
    if not modes or not _systems(data, modes[0], "w3"):
        return None
    figure, (chunks, ratios) = plt.subplots(
        1, 2, figsize=(15, 5.2), dpi=100, gridspec_kw={"width_ratios": [1.2, 1]}
    )
    mode = modes[0]
    names = _systems(data, mode, "w3")
    gap = f"{W3_GAP * 1000:.0f} ms"
    for row, name in enumerate(names):
        groups = []
        for workload in ("w3", "w3g"):
            runs = [_run(r, name, workload) for r in _rounds(data, mode)]
            groups.append([v for r in runs if r for v in _present(r.get("first_chunk_us"))])
        boxes(
            chunks,
            groups,
            [row - 0.2, row + 0.2],
            [COLORS.get(name, "#888888")] * 2,
            width=0.36,
            hatches=["", "//"],
        )
    categories(chunks, [SHORT.get(n, n) for n in names], rotate=20)
    chunks.set_yscale("log")
    chunks.set_ylabel("µs from the server's write to the callback (log scale)")
    chunks.set_title(f"First chunk, every turn of every round ({mode.upper()} journal)")
    chunks.legend(
        handles=_legend_patches(
            [
                ("first delta with the headers (no gap)", "#cccccc", ""),
                (f"{gap} time to first token", "#cccccc", "//"),
            ]
        ),
        fontsize=8,
        loc="upper left",
    )

    def first(run: dict[str, Any]) -> float | None:
        return _median(run.get("first_chunk_us"))

    def wall(run: dict[str, Any]) -> float | None:
        return float(run["wall_s"])

    cases: list[RatioCase] = [
        ("sa_llm", "w3g", "plain", first, f"first chunk / plain\n{gap} gap", 1.2),
        ("sa_llm", "w3", "plain", first, "first chunk / plain\nno gap", None),
        ("sa_llm", "w3", "baseline", wall, "50 turns / limit", 1.15),
        ("sa_llm", "w3a", "baseline", wall, "async 50 turns\n/ async limit", 1.15),
        ("baseline", "w3", "plain", first, "limit's first chunk\n/ plain, no gap", None),
    ]
    _ratio_panel(ratios, data, modes, cases, "ratio in the same round (x)")
    ratios.set_title("Per-round ratios (dashed: the targets, 1.2x and 1.15x)")
    _mode_legend(ratios, modes, "upper right")
    title = "W3: a 50-turn chat streamed in 50 deltas (boxes: IQR and median, whiskers min-max)"
    return finish(plt, figure, path, title, data.get("meta"), _peers_source(data))


def draw_w6(plt: Any, data: dict[str, Any], path: Path) -> Path | None:
    """W6: wall time, client CPU per turn and the per-round ratio to the limit on the same
    transport, for every (system, transport) that ran."""
    rounds = data.get("w6")
    if not isinstance(rounds, list) or not rounds:
        return None
    keys: list[str] = []
    for round_ in rounds:
        keys += [k for k in round_ if k not in keys]
    order = list(SHORT)
    keys.sort(
        key=lambda k: (
            k.split("/")[1] != "httpx",
            k.split("/")[1],
            order.index(k.split("/")[0]) if k.split("/")[0] in order else 99,
        )
    )

    def runs(key: str) -> list[dict[str, Any] | None]:
        return [
            r.get(key) if isinstance(r.get(key), dict) and "error" not in r[key] else None
            for r in rounds
        ]

    labels = [f"{SHORT.get(k.split('/')[0], k)}\n{k.split('/')[1]}" for k in keys]
    colors = [COLORS.get(k.split("/")[0], "#888888") for k in keys]
    hatches = ["" if k.endswith("/httpx") else "//" for k in keys]
    figure, (wall, cpu, ratio) = plt.subplots(1, 3, figsize=(17, 5), dpi=100)
    walls = [[r["wall_s"] for r in runs(k) if r] for k in keys]
    boxes(wall, walls, range(len(keys)), colors, hatches=hatches)
    first = next((r for k in keys for r in runs(k) if r), {})
    floor = (first.get("turns") or 5) * W6_LATENCY
    wall.axhline(floor, label=f"floor: {floor:.1f} s of server latency", **REFERENCE)
    wall.set_ylim(bottom=0)
    wall.set_ylabel("wall time of the 200 chats (s)")
    wall.set_title("Wall time, one dot per round")
    wall.legend(fontsize=8, loc="upper right")
    categories(wall, labels)
    cpus = [
        [r["cpu_s"] * 1000 / max(r.get("completed") or 1, 1) for r in runs(k) if r] for k in keys
    ]
    boxes(cpu, cpus, range(len(keys)), colors, hatches=hatches)
    cpu.set_ylim(bottom=0)
    cpu.set_ylabel("client CPU ms per turn")
    cpu.set_title("Client CPU per turn")
    categories(cpu, labels)
    shown = [k for k in keys if not k.startswith("baseline/")]
    groups = []
    for key in shown:
        transport = key.split("/")[1]
        found = []
        for mine, limit in zip(runs(key), runs(f"baseline/{transport}"), strict=True):
            if mine and limit and limit["wall_s"]:
                found.append(mine["wall_s"] / limit["wall_s"])
        groups.append(found)
    boxes(
        ratio,
        groups,
        range(len(shown)),
        [COLORS.get(k.split("/")[0], "#888888") for k in shown],
        hatches=["" if k.endswith("/httpx") else "//" for k in shown],
    )
    for row, key in enumerate(shown):
        if key.startswith("sa_llm/"):
            segment(ratio, 1.2, row)
    ratio.axhline(1.0, **REFERENCE)
    categories(ratio, [labels[keys.index(k)] for k in shown])
    ratio.set_ylabel("wall time / the limit's on the same transport (x)")
    ratio.set_title("Per-round ratio to the limit (dashed: the 1.2x target)")
    title = "W6: 200 concurrent async chats x 5 turns on PostgreSQL, 100 ms latency"
    return finish(plt, figure, path, title, data.get("meta"), _peers_source(data))


# -- bench_transports ---------------------------------------------------------------------------

TRANSPORT_LABELS = {
    "httpx": "httpx default\n(200 / 50 kept)",
    "httpx-keepalive200": "httpx\n200 / 200 kept",
    "httpx-unlimited": "httpx\nno limits",
    "httpx-50": "httpx\n50 / 50 kept",
    "httpx2": "httpx2's\ntransport",
    "aiohttp": "aiohttp",
}


def draw_transports(plt: Any, data: dict[str, Any], path: Path) -> Path | None:
    """W6 for sa_llm on each async transport: wall, CPU, per-round ratio to the default, and
    where the client's CPU goes (profile shares)."""
    rounds = [r for r in data.get("rounds") or [] if isinstance(r, dict)]
    if not rounds:
        return None
    names = [t for t in TRANSPORT_LABELS if any(t in r for r in rounds)]
    names += [t for r in rounds for t in r if t not in names]

    def ok(run: Any) -> dict[str, Any] | None:
        return run if isinstance(run, dict) and "error" not in run else None

    labels = [TRANSPORT_LABELS.get(t, t) for t in names]
    colors = ["#1f77b4" if t.startswith("httpx") and t != "httpx2" else "#2ca02c" for t in names]
    figure, axes = plt.subplots(2, 2, figsize=(14, 9), dpi=100)
    wall, cpu, ratio, profile = axes[0][0], axes[0][1], axes[1][0], axes[1][1]
    boxes(
        wall,
        [[r["wall_s"] for r in (ok(x.get(t)) for x in rounds) if r] for t in names],
        range(len(names)),
        colors,
    )
    wall.set_ylim(bottom=0)
    wall.set_ylabel("wall time of the 200 chats (s)")
    wall.set_title("Wall time, one dot per round")
    categories(wall, labels)
    boxes(
        cpu,
        [
            [
                r["cpu_s"] * 1000 / max(r.get("completed") or 1, 1)
                for r in (ok(x.get(t)) for x in rounds)
                if r
            ]
            for t in names
        ],
        range(len(names)),
        colors,
    )
    cpu.set_ylim(bottom=0)
    cpu.set_ylabel("client CPU ms per turn")
    cpu.set_title("Client CPU per turn")
    categories(cpu, labels)
    groups = []
    for transport in names:
        found = []
        for round_ in rounds:
            mine, default = ok(round_.get(transport)), ok(round_.get("httpx"))
            if mine and default and default["wall_s"]:
                found.append(mine["wall_s"] / default["wall_s"])
        groups.append(found)
    boxes(ratio, groups, range(len(names)), colors)
    ratio.axhline(1.0, **REFERENCE)
    ratio.set_ylabel("wall time / the default's in the same round (x)")
    ratio.set_title("Per-round ratio to httpx with sa_llm's default limits")
    categories(ratio, labels)
    profiles = {
        t: p["profile"]
        for t, p in (data.get("profiles") or {}).items()
        if ok(p) and p.get("profile")
    }
    if profiles:
        packages: list[str] = []
        for values in profiles.values():
            total = sum(values.values()) or 1.0
            packages += [
                k
                for k, v in values.items()
                if v / total >= 0.02 and k not in packages and k != "other"
            ]
        packages.sort()
        columns = list(profiles)
        cmap = plt.get_cmap("tab20")
        left = [0.0] * len(columns)
        for index, package in enumerate([*packages, "other"]):
            shares = []
            for transport in columns:
                values = profiles[transport]
                total = sum(values.values()) or 1.0
                own = (
                    sum(v for k, v in values.items() if k not in packages)
                    if package == "other"
                    else values.get(package, 0.0)
                )
                shares.append(100 * own / total)
            profile.barh(
                range(len(columns)),
                shares,
                left=left,
                color=cmap(index % 20),
                label=package,
                edgecolor="white",
                linewidth=0.5,
            )
            left = [a + b for a, b in zip(left, shares, strict=True)]
        profile.set_yticks(range(len(columns)), [TRANSPORT_LABELS.get(t, t) for t in columns])
        profile.invert_yaxis()
        profile.set_xlim(0, 100)
        profile.set_xlabel("share of the profiled client CPU (%), one cProfile run")
        profile.set_title("Where the client's CPU goes (own time per package)")
        profile.legend(fontsize=7, ncol=6, loc="upper center", bbox_to_anchor=(0.5, -0.13))
    else:
        profile.set_axis_off()
    title = (
        "Many concurrent chats: sa_llm's W6 on each HTTP transport (boxes: IQR, median, min-max)"
    )
    source = f"transports-{data.get('meta', {}).get('stamp', '?')}"
    return finish(plt, figure, path, title, data.get("meta"), source)


# -- the small benchmarks -------------------------------------------------------------------------


def draw_first_chunk(plt: Any, data: dict[str, Any], path: Path) -> Path | None:
    """The library's overhead from the transport's first chunk to ``on_chunk``, every run."""
    rows = [r for r in data.get("rows") or [] if r.get("us")]
    if not rows:
        return None
    figure, ax = plt.subplots(figsize=(11, 0.55 * len(rows) + 2), dpi=100)
    colors = [
        ("#1f77b4" if "persisted" in r["label"] else COLORS["plain"])
        if r.get("on_path")
        else COLORS["reference"]
        for r in rows
    ]
    boxes(ax, [r["us"] for r in rows], range(len(rows)), colors, horizontal=True)
    target = data.get("target_us")
    if target:
        target_line(ax, float(target), f"target on the path: < {target:.0f} µs", horizontal=False)
    ax.set_xscale("log")
    ax.set_xlabel(f"µs (log scale), {data.get('runs', '?')} runs per row")
    categories(
        ax,
        [
            r["label"] + ("" if r.get("on_path") else "\n(at stream open, not on the path)")
            for r in rows
        ],
        horizontal=True,
    )
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(True, axis="x", which="both", alpha=0.25)
    title = f"First chunk to callback: library overhead (SQLite {data.get('db', '')})"
    return finish(plt, figure, path, title, data.get("meta"), None)


def draw_persistence(plt: Any, data: dict[str, Any], path: Path) -> Path | None:
    """Time per ask for each kind of turn (sync, async); rebuilding N messages against the raw
    SELECT; the paired ratio of each rebuild run."""
    turns = data.get("turns") or []
    history = data.get("history") or []
    if not turns and not history:
        return None
    figure, (asks, rebuild, ratio) = plt.subplots(
        1, 3, figsize=(17, 5.2), dpi=100, gridspec_kw={"width_ratios": [1.3, 1, 0.8]}
    )
    kinds = list(dict.fromkeys(t["turn"] for t in turns))
    modes = list(dict.fromkeys(t["mode"] for t in turns))
    step = 0.8 / max(len(modes), 1)
    for index, mode in enumerate(modes):
        groups, positions = [], []
        for row, kind in enumerate(kinds):
            found = [t["ms"] for t in turns if t["turn"] == kind and t["mode"] == mode]
            groups.append(found[0] if found else [])
            positions.append(row - 0.4 + step * (index + 0.5))
        boxes(
            asks,
            groups,
            positions,
            ["#1f77b4"] * len(groups),
            width=step * 0.85,
            hatches=[MODE_HATCH.get(index, "..")] * len(groups),
        )
    categories(asks, [_short_turn(k) for k in kinds])
    asks.set_ylim(bottom=0)
    asks.set_ylabel("ms per ask (fake model, SQLite in memory)")
    asks.set_title("Time per ask, one dot per ask")
    asks.legend(
        handles=_legend_patches(
            [(m, "#cccccc", MODE_HATCH.get(i, "..")) for i, m in enumerate(modes)]
        ),
        fontsize=8,
    )
    sizes = [h["size"] for h in history]
    series = (
        ("to_llm_ms", "`to_llm()`", "#1f77b4", ""),
        ("raw_ms", "raw SELECT of the messages", COLORS["reference"], "//"),
        ("raw_with_calls_ms", "raw messages + tool calls", "#cccccc", ".."),
    )
    width = 0.8 / len(series)
    for index, (key, _, color, hatch) in enumerate(series):
        boxes(
            rebuild,
            [h.get(key) or [] for h in history],
            [row - 0.4 + width * (index + 0.5) for row in range(len(history))],
            [color] * len(history),
            width=width * 0.85,
            hatches=[hatch] * len(history),
        )
    categories(rebuild, [f"N = {s:,}" for s in sizes])
    rebuild.set_yscale("log")
    rebuild.set_ylabel("ms per rebuild (log scale)")
    rebuild.set_title("Rebuilding a history in a fresh Session")
    rebuild.legend(handles=_legend_patches([(t, c, h) for _, t, c, h in series]), fontsize=8)
    pairs = []
    for h in history:
        pairs.append(
            [
                a / b
                for a, b in zip(h.get("to_llm_ms") or [], h.get("raw_ms") or [], strict=False)
                if b
            ]
        )
    boxes(ratio, pairs, range(len(history)), ["#1f77b4"] * len(history))
    target = data.get("ratio_target")
    if target:
        target_line(ratio, float(target), f"target: {target:g}x")
    ratio.axhline(1.0, **REFERENCE)
    categories(ratio, [f"N = {s:,}" for s in sizes])
    ratio.set_ylim(bottom=0)
    ratio.set_ylabel("`to_llm` / raw SELECT, same iteration (x)")
    ratio.set_title("Paired ratio per rebuild")
    ratio.legend(fontsize=8)
    title = (
        "Persistence: time per ask and history rebuild (boxes: IQR and median, whiskers min-max)"
    )
    return finish(plt, figure, path, title, data.get("meta"), None)


def _short_turn(kind: str) -> str:
    """``ask, streamed, 10 chunks`` -> ``streamed,\n10 chunks`` (the axis has little room)."""
    if kind.startswith("first ask"):
        return "first ask,\nnew chat"
    text = kind.removeprefix("ask, ").removeprefix("ask with ").replace(", not streamed", "")
    return text.replace(", ", ",\n")


def _throughput_rows(
    plt: Any, data: dict[str, Any], path: Path, title: str, per_run: str
) -> Path | None:
    rows = [r for r in data.get("rows") or [] if r.get("ms")]
    if not rows:
        return None
    figure, ax = plt.subplots(figsize=(11, 0.6 * len(rows) + 2), dpi=100)
    size = float(data.get("bytes") or 0)
    if per_run == "MB/s" and size:
        groups = [[size / (ms / 1e3) / 1e6 for ms in r["ms"] if ms] for r in rows]
        ax.set_xlabel(f"MB/s (log scale; higher is faster), {len(rows[0]['ms'])} runs per row")
    else:
        groups = [list(r["ms"]) for r in rows]
        ax.set_xlabel(
            f"ms per stream (log scale; lower is faster), {len(rows[0]['ms'])} runs per row"
        )
    colors = [COLORS["sa_llm"] if r.get("library") == "sa_llm" else COLORS["openai"] for r in rows]
    boxes(ax, groups, range(len(rows)), colors, horizontal=True)
    ax.set_xscale("log")
    categories(
        ax,
        [f"{r['label'].replace('`', '')}\n{r['path'].replace('`', '')}" for r in rows],
        horizontal=True,
    )
    ax.legend(
        handles=_legend_patches(
            [("sa_llm", COLORS["sa_llm"], ""), ("openai", COLORS["openai"], "")]
        ),
        fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
    )
    ax.grid(True, axis="x", which="both", alpha=0.25)
    events = data.get("events")
    detail = (
        f" ({events:,} events, {size / 1e3:,.0f} KB, {data.get('chunk', '?')} B pieces)"
        if events
        else ""
    )
    return finish(plt, figure, path, title + detail, data.get("meta"), None)


def draw_sse(plt: Any, data: dict[str, Any], path: Path) -> Path | None:
    """SSE decoding throughput of each decoder and path, every run."""
    return _throughput_rows(plt, data, path, "SSE decoding throughput", "MB/s")


def draw_stream_path(plt: Any, data: dict[str, Any], path: Path) -> Path | None:
    """The whole streaming path, sa_llm against the openai SDK, every run."""
    return _throughput_rows(plt, data, path, "Streaming a reply, whole path", "ms")


def draw_provider_streams(plt: Any, data: dict[str, Any], path: Path) -> Path | None:
    """Every provider's per-event parsing cost, every run, against OpenAI's (and 2x of it)."""
    providers = [p for p in data.get("providers") or [] if p.get("us_per_event")]
    if not providers:
        return None
    figure, ax = plt.subplots(figsize=(12, 5), dpi=100)
    baseline = next((p for p in providers if p["name"] == data.get("baseline", "openai")), None)
    colors = [COLORS["reference"] if p is baseline else COLORS["sa_llm"] for p in providers]
    boxes(ax, [p["us_per_event"] for p in providers], range(len(providers)), colors)
    if baseline is not None:
        reference = statistics.median(baseline["us_per_event"])
        ax.axhline(reference, label=f"OpenAI's median: {reference:.2f} µs", **REFERENCE)
        target = float(data.get("target") or 2.0)
        target_line(ax, target * reference, f"target: {target:g}x OpenAI's median")
        for row, p in enumerate(providers):
            high = max(p["us_per_event"])
            ax.annotate(
                f"{statistics.median(p['us_per_event']) / reference:.2f}x",
                (row, high),
                xytext=(0, 4),
                textcoords="offset points",
                ha="center",
                fontsize=8,
            )
    categories(ax, [f"{p['name']}\n{p.get('bytes', 0) / 1e3:,.0f} KB" for p in providers])
    ax.set_ylim(bottom=0)
    ax.set_ylabel(f"µs per event ({data.get('repeats', '?')} runs per provider)")
    ax.legend(fontsize=8, loc="upper left")
    events = data.get("events")
    title = (
        f"Provider stream parsers: {events:,} events per stream, {data.get('piece', '?')} B pieces"
    )
    return finish(plt, figure, path, title, data.get("meta"), None)


def draw_attachments(plt: Any, data: dict[str, Any], path: Path) -> Path | None:
    """Peak memory of each attachment scenario, every run, against the file and the plain ask."""
    scenarios = [s for s in data.get("scenarios") or [] if s.get("peak_bytes")]
    if not scenarios:
        return None
    mib = 1024 * 1024
    figure, ax = plt.subplots(figsize=(11, 0.55 * len(scenarios) + 2.2), dpi=100)
    baseline = next((s for s in scenarios if s["name"] == data.get("baseline")), None)
    colors = [COLORS["reference"] if s is baseline else "#1f77b4" for s in scenarios]
    boxes(
        ax,
        [[v / mib for v in s["peak_bytes"]] for s in scenarios],
        range(len(scenarios)),
        colors,
        horizontal=True,
    )
    size = float(data.get("file_bytes") or 0) / mib
    if size:
        ax.axvline(size, label=f"the file: {size:.0f} MiB", **REFERENCE)
    if baseline is not None and size:
        plain = statistics.median(baseline["peak_bytes"]) / mib
        target_line(
            ax,
            plain + size,
            f"plain ask + one copy: {plain + size:.0f} MiB (target)",
            horizontal=False,
        )
    ax.set_xlim(left=0)
    ax.set_xlabel(
        f"peak traced memory above the start (MiB), {len(scenarios[0]['peak_bytes'])} runs"
    )
    categories(ax, [s["name"] for s in scenarios], horizontal=True)
    ax.legend(fontsize=8, loc="center")
    return finish(plt, figure, path, f"Attachments: a {size:.0f} MiB file", data.get("meta"), None)


def draw_usage(plt: Any, data: dict[str, Any], path: Path) -> Path | None:
    """The ledger and tracing: ms per turn per configuration (one median per round), and the
    paired ratios per round."""
    configs = [c for c in data.get("configs") or [] if c.get("turn_ms")]
    if not configs:
        return None
    medians = {c["label"]: [statistics.median(r) for r in c["turn_ms"] if r] for c in configs}
    figure, (times, ratios) = plt.subplots(1, 2, figsize=(14, 5), dpi=100)
    colors = ["#9ecae1", "#1f77b4", "#c7e9c0", "#2ca02c"][: len(configs)]
    boxes(times, list(medians.values()), range(len(configs)), colors)
    categories(times, [label.replace(", ", ",\n") for label in medians])
    times.set_ylim(bottom=0)
    times.set_ylabel("ms per turn (the round's median turn)")
    times.set_title(f"Time per turn, one dot per round ({data.get('turns', '?')} turns each)")
    pairs = [
        r
        for r in data.get("ratios") or []
        if r["numerator"] in medians and r["denominator"] in medians
    ]
    groups = [
        [
            a / b
            for a, b in zip(medians[r["numerator"]], medians[r["denominator"]], strict=False)
            if b
        ]
        for r in pairs
    ]
    boxes(
        ratios,
        groups,
        range(len(pairs)),
        ["#1f77b4" if r["label"].startswith("ledger") else "#2ca02c" for r in pairs],
    )
    for row, r in enumerate(pairs):
        if r["label"].startswith("ledger"):
            segment(ratios, float(data.get("target") or 1.05), row)
    ratios.axhline(1.0, **REFERENCE)
    categories(ratios, [r["label"].replace(" (", "\n(") for r in pairs])
    ratios.set_ylabel("ratio in the same round (x)")
    ratios.set_title("Paired ratios per round (dashed: the ledger's 1.05x target)")
    return finish(plt, figure, path, "Usage ledger and tracing", data.get("meta"), None)


def draw_gap(plt: Any, data: dict[str, Any], path: Path) -> Path | None:
    """The per-turn gap to the limit: calls per turn by layer (W1, W3; sa_llm next to the
    limit, stacked by layer), and each piece's per-round difference in ms (sa_llm - limit) per
    journal mode (hatched: the second)."""
    layers = data.get("layers") or {}
    pieces = data.get("pieces") or {}
    labels = [label for label in data.get("labels") or [] if label != "the turn"]
    if not layers and not pieces:
        return None
    figure, (calls, times) = plt.subplots(
        1, 2, figsize=(15, 5.2), dpi=100, gridspec_kw={"width_ratios": [1, 1.6]}
    )
    shades = ["#6baed6", "#fd8d3c", "#74c476"]
    names = [("sa_llm", "sa_llm"), ("baseline", "limit")]
    ticks: list[str] = []
    legend: dict[str, Any] = {}
    for w, (workload, systems) in enumerate(sorted(layers.items())):
        for s_, (name, short) in enumerate(names):
            counts = systems.get(name) or {}
            x = w * 2.6 + s_
            ticks.append(f"{workload.upper()}\n{short}")
            bottom = 0.0
            for shade, layer in zip(shades, (k for k in counts if k != "all"), strict=False):
                bar = calls.bar(x, counts[layer], bottom=bottom, color=shade, edgecolor="black")
                legend.setdefault(layer, bar)
                bottom += counts[layer]
    calls.set_xticks([w * 2.6 + s_ for w in range(len(layers)) for s_ in range(2)], ticks)
    calls.set_ylabel("Python calls per turn")
    calls.set_title(
        f"Calls by layer ({data.get('chats', '?')} chats x {data.get('turns', '?')} turns)"
    )
    if legend:
        calls.legend(list(legend.values()), list(legend), fontsize=8, loc="upper left")
    headroom(calls)
    modes = list(pieces)
    groups, positions, colors, hatches = [], [], [], []
    for i, label in enumerate(labels):
        for m, mode in enumerate(modes):
            per_round = pieces[mode]
            diff = [
                a[label] - b[label]
                for a, b in zip(
                    per_round.get("sa_llm") or [], per_round.get("baseline") or [], strict=False
                )
                if label in a and label in b
            ]
            groups.append(diff)
            positions.append(i + (m - (len(modes) - 1) / 2) * 0.38)
            colors.append(COLORS["sa_llm"])
            hatches.append(MODE_HATCH.get(m, ""))
    boxes(times, groups, positions, colors, width=0.32, hatches=hatches)
    times.axhline(0.0, **REFERENCE)
    categories(times, [textwrap.fill(label, 18) for label in labels])
    times.set_ylabel("sa_llm - limit, ms per turn (per round)")
    times.set_title("W1: where the extra wall time is, per round (dotted: no difference)")
    if modes:
        _mode_legend(times, modes, "upper left")
    return finish(plt, figure, path, "The per-turn gap to the limit", data.get("meta"), None)


def draw_ui(plt: Any, data: dict[str, Any], path: Path) -> Path | None:
    """The chat UI: chunk-to-viewer latency per setup (every delta of every viewer), and the
    events and commits of each streamed reply against their bounds."""
    latency = [r for r in data.get("latency") or [] if r.get("ms")]
    events = [e for e in data.get("events") or [] if e.get("replies")]
    if not latency and not events:
        return None
    panels = (1 if latency else 0) + (2 if events else 0)
    ratios = [2.2, 1, 1][-panels:] if latency else [1, 1]
    figure, axes = plt.subplots(
        1, panels, figsize=(5 * panels + 4, 5.2), dpi=100, gridspec_kw={"width_ratios": ratios}
    )
    axes = list(axes) if panels > 1 else [axes]
    if latency:
        ax = axes.pop(0)
        colors = ["#1f77b4" if "SQLite" in r["setup"] else "#2ca02c" for r in latency]
        boxes(ax, [r["ms"] for r in latency], range(len(latency)), colors)
        interval = data.get("event_interval_s")
        if interval:
            ax.axhline(
                interval * 1000, label=f"one event interval: {interval * 1000:.0f} ms", **REFERENCE
            )
            ax.legend(fontsize=8, loc="upper left")
        ax.set_yscale("log")
        ax.set_ylabel("ms from the provider's chunk to the viewer (log scale)")
        ax.set_title("Chunk to viewer, every delta of every viewer")
        categories(ax, [f"{r['setup']}\n{r['viewers']} {r['kind']}" for r in latency], rotate=25)
    if events:
        count_ax, commit_ax = axes
        names = [e["database"] for e in events]
        colors = ["#1f77b4" if "SQLite" in n else "#2ca02c" for n in names]
        boxes(
            count_ax,
            [[r["events"] for r in e["replies"]] for e in events],
            range(len(events)),
            colors,
        )
        boxes(
            commit_ax,
            [[r["commits_per_s"] for r in e["replies"]] for e in events],
            range(len(events)),
            colors,
        )
        interval, heartbeat = data.get("event_interval_s"), data.get("heartbeat_s")
        if interval:
            seconds = statistics.median(r["seconds"] for e in events for r in e["replies"])
            target_line(
                count_ax,
                seconds / interval + 5,
                f"bound: {seconds:.1f} s / {interval * 1000:.0f} ms + 5 others",
            )
            headroom(count_ax, seconds / interval + 5)
            if heartbeat:
                bound = 1 / interval + 1 / heartbeat
                target_line(
                    commit_ax, bound, f"bound: 1 / {interval * 1000:.0f} ms + 1 / {heartbeat:g} s"
                )
                headroom(commit_ax, bound)
        for ax, what in (
            (count_ax, "events per streamed reply"),
            (commit_ax, "commits per second of streaming"),
        ):
            categories(ax, names)
            headroom(ax)
            ax.set_ylabel(what)
            ax.set_title(what.capitalize() + ", one dot per reply", fontsize=10)
            ax.legend(fontsize=8, loc="lower right")
    memory = data.get("memory_kib_per_stream")
    title = "Chat UI: streaming to the browser"
    if memory is not None:
        title += f" (memory per open event stream: {memory:.1f} KiB)"
    return finish(plt, figure, path, title, data.get("meta"), None)


def draw_turns(plt: Any, data: dict[str, Any], path: Path) -> Path | None:
    """Durable turns: wait-to-start latency per setup (every trial), partial-output flushes
    against their bound, and W1 before/after the lease per round (when it ran)."""
    waits = [w for w in data.get("waits") or [] if w.get("ms")]
    flushes = data.get("flushes") or []
    w1 = data.get("w1") or {}
    if not waits and not flushes and not w1:
        return None
    panels = [p for p, present in (("waits", waits), ("flushes", flushes)) if present]
    panels += ["w1 times", "w1 ratios"] if w1 else []
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels) + 1, 5), dpi=100)
    axes = dict(zip(panels, list(axes) if len(panels) > 1 else [axes], strict=True))
    if waits:
        ax = axes["waits"]
        boxes(
            ax,
            [w["ms"] for w in waits],
            range(len(waits)),
            ["#2ca02c" if "NOTIFY" in w["label"] else "#1f77b4" for w in waits],
        )
        target = data.get("wait_target_ms")
        if target:
            target_line(ax, float(target), f"target (PostgreSQL, NOTIFY): {target:g} ms")
            ax.legend(fontsize=8)
        ax.set_ylim(bottom=0)
        ax.set_ylabel("ms from the release to the next turn's start")
        ax.set_title("Wait-to-start, one dot per trial")
        categories(ax, [w["label"].replace(", ", ",\n") for w in waits])
    if flushes:
        ax = axes["flushes"]
        xs = range(len(flushes))
        ax.bar(
            [x - 0.2 for x in xs],
            [f["flushes"] for f in flushes],
            width=0.4,
            color="#1f77b4",
            label="flushes",
        )
        ax.bar(
            [x + 0.2 for x in xs],
            [f["bound"] for f in flushes],
            width=0.4,
            color="#cccccc",
            hatch="//",
            label="bound: duration / interval + 1",
        )
        ax.set_ylabel("UPDATEs of the reply during the stream")
        ax.set_title("Partial-output flushes per streamed reply")
        categories(ax, [f"{f['chunks']} chunks\n{f['interval_s']:g} s" for f in flushes])
        ax.legend(fontsize=8)
    if w1:
        before_after(axes["w1 times"], axes["w1 ratios"], w1, 1.1)
        earlier = data.get("w1_meta")
        if earlier:  # W1 kept from the run that measured it (bench/run.py cannot run it)
            for panel in ("w1 times", "w1 ratios"):
                ax = axes[panel]
                ax.set_title(f"{ax.get_title()}\n(run {earlier.get('started', '?')})", fontsize=10)
    return finish(plt, figure, path, "Durable turns", data.get("meta"), None)


def before_after(times: Any, ratios: Any, w1: dict[str, Any], target: float | None) -> None:
    """W1 between two versions: each round's median wall and CPU ms per turn of each version,
    and the per-round ratios (second over first) against ``target``."""
    labels = w1.get("labels") or ["before", "after"]
    rows = [("wall", "before_ms", "after_ms"), ("CPU", "before_cpu_ms", "after_cpu_ms")]
    rows = [r for r in rows if w1.get(r[1]) and w1.get(r[2])]
    groups, positions, colors, hatches = [], [], [], []
    for row, (_, first, second) in enumerate(rows):
        groups += [w1[first], w1[second]]
        positions += [row - 0.2, row + 0.2]
        colors += [COLORS["reference"], "#1f77b4"]
        hatches += ["", "//"]
    boxes(times, groups, positions, colors, width=0.36, hatches=hatches)
    categories(times, [f"{kind} ms / turn" for kind, _, _ in rows])
    times.set_ylim(bottom=0)
    times.set_ylabel("the round's median ms per turn, one dot per round")
    times.set_title("W1 per turn, each version")
    times.legend(
        handles=_legend_patches(
            [(labels[0], COLORS["reference"], ""), (labels[1], "#1f77b4", "//")]
        ),
        fontsize=8,
    )
    pairs = [
        [a / b for a, b in zip(w1[second], w1[first], strict=False) if b]
        for _, first, second in rows
    ]
    boxes(ratios, pairs, range(len(rows)), ["#2ca02c"] * len(rows))
    if target is not None:
        target_line(ratios, target, f"target: {target:g}x")
        ratios.legend(fontsize=8)
    ratios.axhline(1.0, **REFERENCE)
    categories(ratios, [f"{kind}: second / first" for kind, _, _ in rows])
    ratios.set_ylabel("ratio in the same round (x)")
    ratios.set_title("Paired ratio per round")


def draw_restructure(plt: Any, data: dict[str, Any], path: Path) -> Path | None:
    """W1 before and after a restructure (``bench_turns.py --restructure``), per round."""
    w1 = data.get("w1") or {}
    if not w1.get("before_ms"):
        return None
    figure, (times, ratios) = plt.subplots(1, 2, figsize=(12, 5), dpi=100)
    before_after(times, ratios, w1, data.get("target"))
    title = f"W1 before and after the restructure ({data.get('rounds', '?')} rounds)"
    return finish(plt, figure, path, title, data.get("meta"), None)


#: workload -> (the JSON file it is drawn from, the function that draws it)
WORKLOADS: dict[str, tuple[str, Callable[[Any, dict[str, Any], Path], Path | None]]] = {
    "w1": ("peers", draw_w1),
    "w2": ("peers", draw_w2),
    "w3": ("peers", draw_w3),
    "w6": ("peers", draw_w6),
    "transports": ("transports", draw_transports),
    "first-chunk": ("first_chunk", draw_first_chunk),
    "persistence": ("persistence", draw_persistence),
    "sse": ("sse", draw_sse),
    "stream-path": ("stream_path", draw_stream_path),
    "provider-streams": ("provider_streams", draw_provider_streams),
    "attachments": ("attachments", draw_attachments),
    "usage": ("usage", draw_usage),
    "ui": ("ui", draw_ui),
    "turns": ("turns", draw_turns),
    "restructure": ("restructure", draw_restructure),
    "gap": ("gap", draw_gap),
}


def image(workload: str, out: Path = IMAGES) -> Path:
    return out / f"bench-{workload}.png"


def draw(workload: str, data: dict[str, Any], out: Path = IMAGES) -> Path | None:
    """Draw one workload's plot from its JSON's data; None when there is nothing to draw or
    matplotlib is missing."""
    plt = _pyplot()
    if plt is None:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return None
    return WORKLOADS[workload][1](plt, data, image(workload, out))


def draw_results(source: str, data: dict[str, Any], out: Path = IMAGES) -> dict[str, Path]:
    """Draw every workload of one results file (``peers``: W1, W2, W3, W6); what was drawn."""
    drawn = {}
    for workload, (name, _) in WORKLOADS.items():
        if name == source:
            found = draw(workload, data, out)
            if found is not None:
                drawn[workload] = found
    return drawn


def draw_all(
    results: Path = RESULTS, out: Path = IMAGES, only: Sequence[str] = ()
) -> dict[str, Path]:
    """Draw every workload whose JSON is in ``results`` into ``out``; skip the others with a
    message. Returns what was drawn."""
    if _pyplot() is None:
        print(
            "matplotlib is not installed (the `bench` dependency group): no plots", file=sys.stderr
        )
        return {}
    drawn: dict[str, Path] = {}
    loaded: dict[str, dict[str, Any] | None] = {}
    for workload, (name, _) in WORKLOADS.items():
        if only and workload not in only:
            continue
        if name not in loaded:
            path = results / f"{name}.json"
            loaded[name] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
        data = loaded[name]
        if data is None:
            print(f"{workload}: no {name}.json in {results}: skipped", file=sys.stderr)
            continue
        found = draw(workload, data, out)
        if found is None:
            print(f"{workload}: nothing to draw in {name}.json: skipped", file=sys.stderr)
            continue
        drawn[workload] = found
        print(f"{workload}: {_shown(found)}", file=sys.stderr)
    return drawn


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("workloads", nargs="*", help=f"some of: {', '.join(WORKLOADS)}")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON files are")
    parser.add_argument("--out", type=Path, default=IMAGES, help="where the PNGs go")
    args = parser.parse_args(argv)
    unknown = [w for w in args.workloads if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s): {', '.join(unknown)}")
    if _pyplot() is None:
        print("matplotlib is not installed (the `bench` dependency group)", file=sys.stderr)
        return 1
    draw_all(args.results, args.out, args.workloads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
