"""The fake OpenAI server's time-to-first-token gap (``first_token_delay``).

A streamed reply sends its headers and opening events at once, then waits ``first_token_delay``
seconds before the first text delta, as a model does before its first token. Tests read the
stream with httpx on loopback and check the order and a lower bound of the gap only (never an
upper bound: the machine may be busy).
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

import httpx
import pytest

import sa_llm
from sa_llm.testing.server import FakeOpenAIServer, Plan, Received
from sa_llm.types import Chunk

MODEL = "gpt-4.1-nano"
DELAY = 0.3


def _first_delta_after_open(server: FakeOpenAIServer, path: str, body: dict[str, object]) -> float:
    """Seconds from the stream's headers to the first event that carries text (the whole
    stream is read, so the server finishes its reply)."""
    first: float | None = None
    with (
        httpx.Client(timeout=10) as client,
        client.stream("POST", f"{server.url}{path}", json={**body, "stream": True}) as response,
    ):
        assert response.status_code == 200
        opened = time.monotonic()
        for line in response.iter_lines():
            if first is not None or not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            choices = event.get("choices") or [{}]
            if event.get("type") == "response.output_text.delta" or choices[0].get("delta", {}).get(
                "content"
            ):
                first = time.monotonic() - opened
    assert first is not None, "no text delta in the stream"
    return first


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/responses", {"model": MODEL, "input": "Hi"}),
        ("/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}),
    ],
    ids=["responses", "chat_completions"],
)
def test_the_first_text_delta_waits_after_the_stream_opens(
    path: str, body: dict[str, object]
) -> None:
    with FakeOpenAIServer(chunks=3, first_token_delay=DELAY) as server:
        gap = _first_delta_after_open(server, path, body)
        (exchange,) = server.exchanges
    assert gap >= DELAY * 0.9
    assert exchange.plan.first_token_delay == DELAY
    assert exchange.finished


def test_a_plan_hook_sets_the_gap_per_request_and_the_reply_is_whole() -> None:
    def plan(received: Received, default: Plan) -> Plan:
        return replace(default, first_token_delay=DELAY if received.turn == 2 else 0.0)

    with FakeOpenAIServer(chunks=4, reply="one two three four", plan=plan) as server:
        ctx = sa_llm.context(openai_base_url=server.url, openai_api_key="x", max_retries=0)
        chat = ctx.chat(MODEL)
        chunks: list[Chunk] = []
        chat.ask("first", on_chunk=chunks.append)
        started = time.monotonic()
        reply = chat.ask("second", on_chunk=chunks.append)
        elapsed = time.monotonic() - started
        delays = [exchange.plan.first_token_delay for exchange in server.exchanges]
    assert reply.text == "one two three four"
    assert "".join(c.content or "" for c in chunks) == "one two three four" * 2
    assert delays == [0.0, DELAY]
    assert elapsed >= DELAY * 0.9


def test_whole_json_replies_ignore_the_gap() -> None:
    with FakeOpenAIServer(first_token_delay=DELAY, reply="Paris.") as server:
        ctx = sa_llm.context(openai_base_url=server.url, openai_api_key="x", max_retries=0)
        reply = ctx.chat(MODEL).ask("Capital of France?")
        (exchange,) = server.exchanges
    assert reply.text == "Paris."
    assert exchange.first_content_ns is None
    assert exchange.finished
