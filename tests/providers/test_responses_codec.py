"""The Responses API codec on replies that break the protocol's shapes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sa_llm.config import Config
from sa_llm.providers.base import HttpResponse
from sa_llm.providers.openai import OpenAI
from sa_llm.streaming import Accumulator
from sa_llm.types import Message


def parse(body: dict[str, Any]) -> Message:
    codec = OpenAI(Config(openai_api_key="test-key"))
    accumulator = Accumulator("openai")
    for chunk in codec.parse_response(HttpResponse(200, {}, json.dumps(body).encode())):
        accumulator.add(chunk)
    return accumulator.message()


def stream(events: list[dict[str, Any]]) -> Message:
    parser = OpenAI(Config(openai_api_key="test-key")).stream_parser()
    accumulator = Accumulator("openai")
    data = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()
    for chunk in [*parser.feed(data), *parser.close()]:
        accumulator.add(chunk)
    return accumulator.message()


GARBAGE = [True, 1, "text", {"text": "x"}]


@pytest.mark.parametrize("garbage", GARBAGE)
def test_garbled_parts_are_no_parts(garbage: Any) -> None:
    """A ``content`` or ``summary`` that is not a list (found by the fuzzer: ``true``) holds no
    parts: the rest of the reply is read, instead of a TypeError escaping the codec."""
    body = {
        "model": "gpt-5-nano",
        "status": "completed",
        "output": [
            {"type": "reasoning", "summary": garbage, "content": garbage},
            {"type": "message", "role": "assistant", "content": garbage},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Paris"}],
            },
        ],
        "usage": {"input_tokens": 3, "output_tokens": 1},
    }
    message = parse(body)
    assert message.text == "Paris"
    assert message.thinking is None or not message.thinking.text
    assert message.output_tokens == 1


@pytest.mark.parametrize("garbage", GARBAGE)
def test_garbled_reasoning_in_a_stream_is_read_as_empty(garbage: Any) -> None:
    item = {"type": "reasoning", "summary": garbage, "content": garbage}
    completed = {
        "model": "gpt-5-nano",
        "status": "completed",
        "output": [],
        "usage": {"input_tokens": 3, "output_tokens": 1},
    }
    message = stream(
        [
            {"type": "response.output_item.done", "output_index": 0, "item": item},
            {"type": "response.output_text.delta", "output_index": 1, "delta": "Paris"},
            {"type": "response.completed", "response": completed},
        ]
    )
    assert message.text == "Paris"
    assert message.output_tokens == 1
