"""Server-sent events decoding throughput: sa_llm's decoder against the official openai SDK's.

Run from the repository root with ``python bench/bench_sse.py``; it prints a markdown table and
writes it to ``bench/results/sse.md``, and every run's time to ``bench/results/sse.json`` (the
plot's data; ``--json-only``: that file alone, ``--no-write``: neither). Nothing touches the
network: every HTTP response comes from an in-process ``MockTransport``.

The stream is a recorded OpenAI Responses stream (``tests/fixtures/sse/openai_responses.txt``)
whose ``response.output_text.delta`` events are repeated until it holds 1,000 events, with the
recording's opening and closing events kept at both ends so the SDK sees a well-formed stream.
It is served in ~1 KiB chunks, about what a TLS connection hands over per read.

What is timed (median of the repeats, each run decoding all 1,000 events):

* decoders alone, no HTTP, no JSON: ``sa_llm.providers.sse.iter_sse`` and the SDK's
  ``openai._streaming.SSEDecoder().iter_bytes`` over the same list of chunks;
* through the transport, with JSON: each library's own HTTP client (the SDK is built on
  ``httpx2``, sa_llm on ``httpx``; sa_llm is also timed on ``httpx2``) streams the response
  from a ``MockTransport``, and every event's data goes through ``json.loads``: the same work
  for both decoders, so the ratio is decoder against decoder;
* the full SDK: ``client.responses.create(..., stream=True)`` iterated to the end, which
  also builds a typed event object per event (what a user of the SDK pays).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import httpx2
import openai
import results_json
from openai._streaming import SSEDecoder as OpenAISSEDecoder

from sa_llm.providers.sse import iter_sse

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "sse" / "openai_responses.txt"
RESULTS = ROOT / "bench" / "results" / "sse.md"
URL = "https://api.openai.invalid/v1/responses"
HEADERS = {"content-type": "text/event-stream; charset=utf-8"}
DELTA = b"event: response.output_text.delta\n"


def build_stream(events: int) -> bytes:
    """The recorded stream with its text deltas repeated until it has ``events`` events."""
    blocks = [block + b"\n\n" for block in FIXTURE.read_bytes().split(b"\n\n") if block.strip()]
    first = next(i for i, block in enumerate(blocks) if block.startswith(DELTA))
    last = max(i for i, block in enumerate(blocks) if block.startswith(DELTA))
    head, deltas, tail = blocks[:first], blocks[first : last + 1], blocks[last + 1 :]
    body = [deltas[i % len(deltas)] for i in range(events - len(head) - len(tail))]
    return b"".join(head + body + tail)


def chunked(stream: bytes, size: int) -> list[bytes]:
    return [stream[i : i + size] for i in range(0, len(stream), size)]


def run_seconds(run: Callable[[], int], expected: int, repeats: int) -> list[float]:
    """Wall time of each run of ``run`` (after one warm-up), checking it saw every event."""
    assert run() == expected
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        seen = run()
        times.append(time.perf_counter() - start)
        assert seen == expected, (seen, expected)
    return times


def payload(
    meta: dict[str, Any],
    events: int,
    size: int,
    chunk: int,
    rows: list[tuple[str, str, str]],
    samples: dict[str, list[float]],
) -> dict[str, Any]:
    """``bench/results/sse.json``: every run's ms per row; ``rows``: (label, path, library)."""
    return {
        "meta": meta,
        "events": events,
        "bytes": size,
        "chunk": chunk,
        "rows": [
            {
                "label": name,
                "path": path,
                "library": library,
                "ms": [round(s * 1e3, 4) for s in samples[name + path]],
            }
            for name, path, library in rows
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--chunk", type=int, default=1024, help="bytes per chunk")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS}")
    parser.add_argument("--json-only", action="store_true", help="write only sse.json")
    args = parser.parse_args()
    meta = results_json.run_meta("sse")

    stream = build_stream(args.events)
    chunks = chunked(stream, args.chunk)
    n = args.events

    def serve_httpx2(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers=HEADERS, content=iter(chunks))

    def serve_httpx(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=HEADERS, content=iter(chunks))

    http2_client = httpx2.Client(transport=httpx2.MockTransport(serve_httpx2))
    http_client = httpx.Client(transport=httpx.MockTransport(serve_httpx))
    sdk = openai.OpenAI(
        api_key="sk-bench",
        base_url="https://api.openai.invalid/v1",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(serve_httpx2)),
    )

    def sa_llm_decoder() -> int:
        return sum(1 for _ in iter_sse(chunks))

    def openai_decoder() -> int:
        return sum(1 for _ in OpenAISSEDecoder().iter_bytes(iter(chunks)))

    def sa_llm_httpx() -> int:
        with http_client.stream("POST", URL) as response:
            return sum(1 for event in iter_sse(response.iter_bytes()) if json.loads(event.data))

    def sa_llm_httpx2() -> int:
        with http2_client.stream("POST", URL) as response:
            return sum(1 for event in iter_sse(response.iter_bytes()) if json.loads(event.data))

    def openai_decoder_httpx2() -> int:
        with http2_client.stream("POST", URL) as response:
            events = OpenAISSEDecoder().iter_bytes(response.iter_bytes())
            return sum(1 for event in events if event.json())

    def openai_sdk() -> int:
        events = sdk.responses.create(model="gpt-5-nano", input="Count", stream=True)
        return sum(1 for _ in events)

    rows: list[tuple[str, str, Callable[[], int]]] = [
        ("sa_llm `iter_sse`", "decoder only, 1 KiB chunks", sa_llm_decoder),
        ("openai `SSEDecoder.iter_bytes`", "decoder only, 1 KiB chunks", openai_decoder),
        ("sa_llm `iter_sse` + `json.loads`", "httpx `MockTransport`", sa_llm_httpx),
        ("sa_llm `iter_sse` + `json.loads`", "httpx2 `MockTransport`", sa_llm_httpx2),
        ("openai `SSEDecoder` + `json.loads`", "httpx2 `MockTransport`", openai_decoder_httpx2),
        ("openai SDK `responses.create(stream=True)`", "httpx2 `MockTransport`", openai_sdk),
    ]
    samples = {name + path: run_seconds(run, n, args.repeats) for name, path, run in rows}
    timings = {key: statistics.median(times) for key, times in samples.items()}

    def per_second(name: str, path: str) -> tuple[float, float]:
        seconds = timings[name + path]
        return n / seconds, len(stream) / seconds / 1e6

    lines = [
        f"SSE decoding: {n:,} events, {len(stream):,} bytes ({len(stream) / n:.0f} B/event) "
        f"from a recorded OpenAI Responses stream, in {len(chunks)} chunks of "
        f"{args.chunk:,} B; median of {args.repeats} runs.",
        "",
        "| Decoder | Path | ms / run | events/s | MB/s |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for name, path, _ in rows:
        events_s, mb_s = per_second(name, path)
        ms = timings[name + path] * 1e3
        lines.append(f"| {name} | {path} | {ms:.2f} | {events_s:,.0f} | {mb_s:.1f} |")

    def ratio(ours: int, theirs: int) -> float:
        return timings[rows[theirs][0] + rows[theirs][1]] / timings[rows[ours][0] + rows[ours][1]]

    lines += [
        "",
        "| sa_llm throughput relative to openai | ratio |",
        "| --- | ---: |",
        f"| decoder against decoder (no HTTP, no JSON) | {ratio(0, 1):.2f}x |",
        f"| decoder + JSON through the same httpx2 `MockTransport` | {ratio(3, 4):.2f}x |",
        f"| sa_llm on httpx against the openai SDK's decoder on httpx2 | {ratio(2, 4):.2f}x |",
        f"| sa_llm on httpx against the full openai SDK stream | {ratio(2, 5):.2f}x |",
        "",
        f"Python {platform.python_version()} ({platform.machine()}), openai {openai.__version__}, "
        f"httpx {httpx.__version__}, httpx2 {httpx2.__version__}.",
    ]
    for client in (sdk, http_client, http2_client):
        client.close()
    table = "\n".join(lines)
    print(table)
    if not args.no_write and not args.json_only:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(
            "# Server-sent events decoding\n\n"
            "Written by `python bench/bench_sse.py` (see its docstring for what is timed).\n\n"
            + table
            + "\n"
        )
        print(f"\nwritten to {RESULTS.relative_to(ROOT)}", file=sys.stderr)
    if not args.no_write:
        libraries = [("sa_llm" if name.startswith("sa_llm") else "openai") for name, _, _ in rows]
        described = [
            (name, path, lib) for (name, path, _), lib in zip(rows, libraries, strict=True)
        ]
        written = results_json.write(
            "sse", payload(meta, n, len(stream), args.chunk, described, samples)
        )
        print(f"written to {written}", file=sys.stderr)


if __name__ == "__main__":
    main()
