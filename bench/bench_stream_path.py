"""Streaming throughput, whole path: sa_llm's ``Chat.ask(on_chunk=...)`` against the openai SDK.

Run from the repository root with ``python bench/bench_stream_path.py``; it prints a markdown
table and writes it to ``bench/results/stream_path.md``, and every run's time to
``bench/results/stream_path.json`` (the plot's data; ``--json-only``: that file alone,
``--no-write``: neither). Nothing touches the network.

``bench_sse.py`` compares the SSE decoders; this one compares what a user of each library runs
to consume a stream, over the same bytes: a 1,000-event OpenAI Responses stream (the recorded
``tests/fixtures/sse/openai_responses.txt`` with its text deltas repeated, its opening and
closing events kept) served in 1 KiB pieces by a mock transport.

* sa_llm: ``sa_llm.context(http_client=..., openai_api_key="x", max_retries=0)
  .chat("gpt-5-nano", provider="openai").ask("Count", on_chunk=cb)``: request building, httpx,
  the SSE decoder, JSON, the Responses codec, the accumulator, the final ``Message``; and the
  async twin ``aask``.
* the openai SDK (on httpx2): ``client.responses.create(model=..., input=..., stream=True)``
  iterated to the end, a typed event object per event; and ``AsyncOpenAI`` with ``async for``.
* for scale, sa_llm's ``SSEDecoder`` alone over the same pieces (no HTTP, no JSON).

Each run checks that every text delta reached the consumer. Medians of the repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from time import perf_counter_ns
from typing import Any

import httpx
import httpx2
import openai
import results_json

import sa_llm
from sa_llm.providers.sse import SSEDecoder
from sa_llm.types import Chunk

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "sse" / "openai_responses.txt"
RESULTS = ROOT / "bench" / "results" / "stream_path.md"
BASE_URL = "https://api.openai.invalid/v1"
HEADERS = {"content-type": "text/event-stream; charset=utf-8"}
DELTA = b"event: response.output_text.delta\n"
MODEL = "gpt-5-nano"


def build_stream(events: int) -> tuple[bytes, int]:
    """The recorded stream with its text deltas repeated to ``events`` events; and how many
    text deltas it holds."""
    blocks = [block + b"\n\n" for block in FIXTURE.read_bytes().split(b"\n\n") if block.strip()]
    first = next(i for i, block in enumerate(blocks) if block.startswith(DELTA))
    last = max(i for i, block in enumerate(blocks) if block.startswith(DELTA))
    head, deltas, tail = blocks[:first], blocks[first : last + 1], blocks[last + 1 :]
    body = [deltas[i % len(deltas)] for i in range(events - len(head) - len(tail))]
    count = sum(1 for block in body if block.startswith(DELTA))
    return b"".join(head + body + tail), count


class _Pieces(httpx.SyncByteStream, httpx.AsyncByteStream):
    def __init__(self, pieces: Sequence[bytes]) -> None:
        self.pieces = pieces

    def __iter__(self) -> Iterator[bytes]:
        yield from self.pieces

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece


class _Pieces2(httpx2.SyncByteStream, httpx2.AsyncByteStream):
    def __init__(self, pieces: Sequence[bytes]) -> None:
        self.pieces = pieces

    def __iter__(self) -> Iterator[bytes]:
        yield from self.pieces

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece


def time_sync(run: Callable[[], int], expected: int, repeats: int) -> list[int]:
    assert run() == expected  # warm-up, and a check
    samples = []
    for _ in range(repeats):
        start = perf_counter_ns()
        seen = run()
        samples.append(perf_counter_ns() - start)
        assert seen == expected, (seen, expected)
    return samples


async def time_async(run: Callable[[], Awaitable[int]], expected: int, repeats: int) -> list[int]:
    assert await run() == expected
    samples = []
    for _ in range(repeats):
        start = perf_counter_ns()
        seen = await run()
        samples.append(perf_counter_ns() - start)
        assert seen == expected, (seen, expected)
    return samples


#: (key, consumer, path, library) of each row, in the table's order.
ROWS = (
    ("decoder", "sa_llm `SSEDecoder.feed` alone", "no HTTP, no JSON", "sa_llm"),
    ("sa_llm sync", "sa_llm `Chat.ask(on_chunk=...)`", "sync, httpx `MockTransport`", "sa_llm"),
    (
        "sdk sync",
        "openai SDK `responses.create(stream=True)`",
        "sync, httpx2 `MockTransport`",
        "openai",
    ),
    ("sa_llm async", "sa_llm `Chat.aask(on_chunk=...)`", "async, httpx `MockTransport`", "sa_llm"),
    (
        "sdk async",
        "openai SDK `AsyncOpenAI` `responses.create(stream=True)`",
        "async, httpx2 `MockTransport`",
        "openai",
    ),
)


def payload(
    meta: dict[str, Any], events: int, size: int, chunk: int, samples: dict[str, list[int]]
) -> dict[str, Any]:
    """``bench/results/stream_path.json``: every run's ms per row."""
    return {
        "meta": meta,
        "events": events,
        "bytes": size,
        "chunk": chunk,
        "rows": [
            {
                "key": key,
                "label": label,
                "path": path,
                "library": library,
                "ms": [results_json.ms(ns) for ns in samples[key]],
            }
            for key, label, path, library in ROWS
            if key in samples
        ],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--chunk", type=int, default=1024, help="bytes per piece")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS}")
    parser.add_argument("--json-only", action="store_true", help="write only stream_path.json")
    args = parser.parse_args(argv)
    meta = results_json.run_meta("stream_path")

    stream, deltas = build_stream(args.events)
    pieces = [stream[i : i + args.chunk] for i in range(0, len(stream), args.chunk)]

    def serve(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=HEADERS, stream=_Pieces(pieces))

    def serve2(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers=HEADERS, stream=_Pieces2(pieces))

    ctx = sa_llm.context(
        http_client=httpx.Client(transport=httpx.MockTransport(serve)),
        async_http_client=httpx.AsyncClient(transport=httpx.MockTransport(serve)),
        openai_api_key="x",
        max_retries=0,
    )
    chat = ctx.chat(MODEL, provider="openai")
    sdk = openai.OpenAI(
        api_key="x",
        base_url=BASE_URL,
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(serve2)),
    )

    def decoder_only() -> int:
        decoder = SSEDecoder()
        seen = 0
        for piece in pieces:
            seen += sum(1 for event in decoder.feed(piece) if event.event == DELTA[7:-1].decode())
        return seen

    def sa_llm_ask() -> int:
        seen = 0

        def on_chunk(chunk: Chunk) -> None:
            nonlocal seen
            if chunk.content:
                seen += 1

        chat.reset_messages()
        chat.ask("Count", on_chunk=on_chunk)
        return seen

    def sdk_stream() -> int:
        events = sdk.responses.create(model=MODEL, input="Count", stream=True)
        return sum(1 for event in events if event.type == "response.output_text.delta")

    samples = {
        "decoder": time_sync(decoder_only, deltas, args.repeats),
        "sa_llm sync": time_sync(sa_llm_ask, deltas, args.repeats),
        "sdk sync": time_sync(sdk_stream, deltas, args.repeats),
    }

    async def run_async() -> None:
        async_sdk = openai.AsyncOpenAI(
            api_key="x",
            base_url=BASE_URL,
            max_retries=0,
            http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(serve2)),
        )

        async def sa_llm_aask() -> int:
            seen = 0

            def on_chunk(chunk: Chunk) -> None:
                nonlocal seen
                if chunk.content:
                    seen += 1

            chat.reset_messages()
            await chat.aask("Count", on_chunk=on_chunk)
            return seen

        async def sdk_astream() -> int:
            events = await async_sdk.responses.create(model=MODEL, input="Count", stream=True)
            seen = 0
            async for event in events:
                if event.type == "response.output_text.delta":
                    seen += 1
            return seen

        samples["sa_llm async"] = await time_async(sa_llm_aask, deltas, args.repeats)
        samples["sdk async"] = await time_async(sdk_astream, deltas, args.repeats)
        await async_sdk.close()

    asyncio.run(run_async())
    sdk.close()

    n = args.events
    timings = {key: statistics.median(runs) / 1e6 for key, runs in samples.items()}

    def row(label: str, path: str, key: str) -> str:
        ms = timings[key]
        return (
            f"| {label} | {path} | {ms:.2f} | {n / ms * 1e3:,.0f} | {len(stream) / ms / 1e3:.1f} |"
        )

    lines = [
        f"Streaming a reply, whole path: {n:,} events ({deltas:,} text deltas), "
        f"{len(stream):,} B in {len(pieces)} pieces of {args.chunk:,} B from a mock transport; "
        f"median of {args.repeats} runs.",
        "",
        "| Consumer | Path | ms / run | events/s | MB/s |",
        "| --- | --- | ---: | ---: | ---: |",
        row("sa_llm `SSEDecoder.feed` alone", "no HTTP, no JSON", "decoder"),
        row("sa_llm `Chat.ask(on_chunk=...)`", "sync, httpx `MockTransport`", "sa_llm sync"),
        row(
            "openai SDK `responses.create(stream=True)`",
            "sync, httpx2 `MockTransport`",
            "sdk sync",
        ),
        row("sa_llm `Chat.aask(on_chunk=...)`", "async, httpx `MockTransport`", "sa_llm async"),
        row(
            "openai SDK `AsyncOpenAI` `responses.create(stream=True)`",
            "async, httpx2 `MockTransport`",
            "sdk async",
        ),
        "",
        "| Ratio | value |",
        "| --- | ---: |",
        f"| sa_llm `ask` throughput / openai SDK stream, sync "
        f"| {timings['sdk sync'] / timings['sa_llm sync']:.2f}x |",
        f"| sa_llm `aask` throughput / openai SDK stream, async "
        f"| {timings['sdk async'] / timings['sa_llm async']:.2f}x |",
        f"| sa_llm `ask` time / its SSE decoder alone "
        f"| {timings['sa_llm sync'] / timings['decoder']:.1f}x |",
        "",
        f"openai {openai.__version__}, httpx {httpx.__version__}, httpx2 {httpx2.__version__}.",
    ]
    table = "\n".join(lines)
    print(table)
    if not args.no_write and not args.json_only:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(
            "# Streaming, whole path\n\n"
            "Written by `python bench/bench_stream_path.py` (see its docstring for what is "
            "timed).\n\n" + table + "\n"
        )
        print(f"\nwritten to {RESULTS.relative_to(ROOT)}", file=sys.stderr)
    if not args.no_write:
        path = results_json.write("stream_path", payload(meta, n, len(stream), args.chunk, samples))
        print(f"written to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
