"""Per-event stream parsing cost of every provider, side by side with OpenAI's parser.

Run from the repository root with ``python bench/bench_provider_streams.py``; it prints a
markdown table and writes it to ``bench/results/provider_streams.md``, and every run's time to
``bench/results/provider_streams.json`` (the plot's data; ``--json-only``: that file alone,
``--no-write``: neither).

For each provider the recorded ``chat_streaming_responses_*`` stream in
``tests/fixtures/wire/<provider>/`` is stretched to the same length (1,000 events): its middle
event, a text delta, is repeated, and the recording's opening and closing events are kept, so
every parser sees a well-formed stream of equal length. Bedrock's binary event-stream frames
are stretched the same way (the frames carry their own CRCs, so a repeated frame stays valid).
The bytes are fed in 1 KiB pieces, about what a TLS read hands over, to a fresh
``provider.stream_parser()``; its ``close()`` is called at the end. What is timed is
decoding, JSON parsing and chunk building: no HTTP, no accumulation.

Target (issue 5): every provider within 2x of the OpenAI parser's cost per event.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import struct
import sys
import time
from pathlib import Path
from typing import Any

import results_json

import sa_llm
from sa_llm.providers import create_provider
from sa_llm.testing.replay import _body_bytes

ROOT = Path(__file__).resolve().parent.parent
WIRE = ROOT / "tests" / "fixtures" / "wire"
RESULTS = ROOT / "bench" / "results" / "provider_streams.md"
PROVIDERS = (
    "openai", "anthropic", "gemini", "bedrock", "openrouter", "deepseek", "mistral", "ollama",
    "xai",
)  # fmt: skip
EVENTS = 1_000
PIECE = 1024
TARGET = 2.0
_DELTA = re.compile(rb'output_text\.delta|text_delta|contentBlockDelta|"delta":\{"content":"[^"]')
_GEMINI_TEXT = re.compile(rb'"text": ?"[^"]')


def recorded_stream(provider: str) -> bytes | None:
    """The first recorded streamed reply of ``provider``'s ``chat_streaming_responses`` files."""
    for path in sorted((WIRE / provider).glob("chat_streaming_responses_*.json")):
        for item in json.loads(path.read_text(encoding="utf-8"))["interactions"]:
            response = item["response"]
            kind = response["headers"].get("content-type", "")
            if response["status"] == 200 and ("event-stream" in kind or "eventstream" in kind):
                return _body_bytes(response)
    return None


def split_events(stream: bytes) -> list[bytes]:
    """SSE events (up to and including their blank line) or AWS event-stream frames."""
    if stream[:1] in (b"e", b"d", b":", b"\n", b"\r", b"i"):
        normalised = stream.replace(b"\r\n", b"\n")
        return [block + b"\n\n" for block in normalised.split(b"\n\n") if block.strip()]
    frames = []
    offset = 0
    while offset < len(stream):
        (length,) = struct.unpack_from(">I", stream, offset)
        frames.append(stream[offset : offset + length])
        offset += length
    return frames


def stretch(stream: bytes, events: int) -> tuple[bytes, bytes]:
    """The stream with its middle event repeated until it holds ``events`` events."""
    blocks = split_events(stream)
    # A text delta, the event a long reply is made of: each API's own marker first, then
    # Gemini's (whose chunks are whole responses holding a text part).
    for marker in (_DELTA, _GEMINI_TEXT):
        deltas = [i for i, block in enumerate(blocks) if marker.search(block)]
        if deltas:
            break
    else:
        raise ValueError("the recorded stream has no text delta")
    middle = deltas[len(deltas) // 2]
    head, unit, tail = blocks[:middle], blocks[middle], blocks[middle + 1 :]
    body = [unit] * max(1, events - len(head) - len(tail))
    return b"".join(head + body + tail), unit


def parse_all(provider: Any, pieces: list[bytes]) -> int:
    parser = provider.stream_parser()
    count = 0
    for piece in pieces:
        count += len(parser.feed(piece))
    count += len(parser.close())
    return count


def measure(provider: Any, stream: bytes, repeats: int) -> list[float]:
    """Seconds to parse ``stream`` once, for each of ``repeats`` runs."""
    pieces = [stream[i : i + PIECE] for i in range(0, len(stream), PIECE)]
    parse_all(provider, pieces)  # warm up (and fail loudly if the stream does not parse)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        parse_all(provider, pieces)
        times.append(time.perf_counter() - start)
    return times


def config() -> sa_llm.Config:
    return sa_llm.get_config().replace(
        **{f"{p}_api_key": "bench" for p in PROVIDERS if p != "bedrock"},
        bedrock_region="us-east-1",
        bedrock_access_key_id="AKIDBENCH",
        bedrock_secret_access_key="bench-secret",
    )


def describe(unit: bytes) -> str:
    """A short name for the repeated event: its type, or what it carries."""
    text = unit.decode("utf-8", "replace")
    for marker in ('"type":"', "event: ", ":event-type"):
        if marker in text:
            rest = text[text.index(marker) + len(marker) :]
            rest = rest[next((i for i, ch in enumerate(rest) if ch.isalpha()), 0) :]
            word = ""
            for ch in rest[:48]:
                if not (ch.isalnum() or ch in "._"):
                    break
                word += ch
            if word:
                return word
    if '"candidates"' in text:
        return "candidates text part"
    return "choices delta"


def payload(
    meta: dict[str, Any],
    repeats: int,
    rows: list[tuple[str, float | None, int | None, str]],
    samples: dict[str, list[float]],
) -> dict[str, Any]:
    """``bench/results/provider_streams.json``: every run's µs per event, per provider."""
    providers: list[dict[str, Any]] = []
    for name, cost, size, what in rows:
        if cost is None:
            providers.append({"name": name, "missing": what})
            continue
        us = [round(seconds / EVENTS * 1e6, 4) for seconds in samples[name]]
        providers.append({"name": name, "event": what, "bytes": size, "us_per_event": us})
    return {
        "meta": meta,
        "events": EVENTS,
        "piece": PIECE,
        "repeats": repeats,
        "target": TARGET,
        "baseline": "openai",
        "providers": providers,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--json-only", action="store_true", help="write only the JSON")
    args = parser.parse_args()
    meta = results_json.run_meta("provider_streams")

    cfg = config()
    rows: list[tuple[str, float | None, int | None, str]] = []
    samples: dict[str, list[float]] = {}
    baseline = None
    for name in PROVIDERS:
        recorded = recorded_stream(name)
        if recorded is None:
            rows.append((name, None, None, "no recorded stream"))
            continue
        try:
            provider = create_provider(name, cfg, None)
        except Exception as exc:  # a provider that is not built yet: say so, do not hide it
            rows.append((name, None, None, f"not available: {type(exc).__name__}"))
            continue
        stream, unit = stretch(recorded, EVENTS)
        samples[name] = measure(provider, stream, args.repeats)
        per_event = statistics.median(samples[name]) / EVENTS * 1e6
        if name == "openai":
            baseline = per_event
        rows.append((name, per_event, len(stream), describe(unit)))

    lines = [
        f"Per-event stream parsing cost, {EVENTS:,} events per stream, fed in {PIECE} B pieces "
        f"(median of {args.repeats}).",
        "",
        "| provider | repeated event | stream bytes | µs per event | vs OpenAI | within 2x |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    worst = 0.0
    for name, cost, size, what in rows:
        if cost is None:
            lines.append(f"| {name} | {what} | — | — | — | — |")
            continue
        ratio = cost / baseline if baseline else float("nan")
        worst = max(worst, ratio)
        ok = "yes" if ratio <= TARGET else "**no**"
        lines.append(f"| {name} | `{what}` | {size or 0:,} | {cost:.2f} | {ratio:.2f}x | {ok} |")
    report = "\n".join(lines) + "\n"
    print("## Provider stream parsers\n")
    print(report)
    if not args.no_write and not args.json_only:
        RESULTS.write_text("# Provider stream parsers\n\n" + report, encoding="utf-8")
    if not args.no_write:
        path = results_json.write("provider_streams", payload(meta, args.repeats, rows, samples))
        print(f"written to {path}", file=sys.stderr)
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
