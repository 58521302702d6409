"""OpenRouter's ``reasoning_details``: folded from a stream, kept on the reply, sent back.

The recorded streamed reply sends each detail in pieces (text growing, the signature last);
the reply must end with the same details a non-streamed reply carries whole, and a reply whose
details were not kept (a stored row has only thinking text and signature) must still send back
a detail the model can verify.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sa_llm
from sa_llm.providers import create_provider
from sa_llm.testing import Replay
from sa_llm.types import Message, Thinking

WIRE = Path(__file__).parents[1] / "fixtures" / "wire" / "openrouter"
STREAMED = WIRE / (
    "chat_with_extended_thinking_openrouter_claude-haiku-4-5_streams_thinking_content_when_available.json"
)


def streamed_details(body: str) -> list[dict[str, Any]]:
    """The details of a recorded stream, merged by index (read independently of the parser)."""
    merged: dict[int, dict[str, Any]] = {}
    for line in body.splitlines():
        if not line.startswith("data: {"):
            continue
        for choice in json.loads(line[6:]).get("choices") or []:
            for piece in (choice.get("delta") or {}).get("reasoning_details") or []:
                target = merged.setdefault(piece["index"], {})
                for key, value in piece.items():
                    target[key] = target.get(key, "") + value if key == "text" else value
    return [merged[i] for i in sorted(merged)]


def test_streamed_reasoning_details_are_merged_and_signed() -> None:
    recording = json.loads(STREAMED.read_text(encoding="utf-8"))
    body = recording["interactions"][0]["request"]["body"]
    expected = streamed_details(recording["interactions"][0]["response"]["body"])
    chat = Replay(recording).context().chat(body["model"], provider="openrouter")
    chat.with_thinking(effort="medium")
    reply = chat.ask(body["messages"][0]["content"], on_chunk=lambda chunk: None)
    assert reply.thinking is not None
    assert reply.thinking.extra["reasoning_details"] == expected
    assert reply.thinking.text == "".join(d.get("text", "") for d in expected)
    assert reply.thinking.signature == expected[-1]["signature"]


def test_stored_thinking_is_sent_back_as_a_detail() -> None:
    provider = create_provider("openrouter", sa_llm.get_config())
    reply = Message(
        role="assistant",
        content="Paris.",
        model_id="anthropic/claude-haiku-4.5",
        thinking=Thinking(text="The capital of France...", signature="sig-1"),
    )
    wire = provider.format_message(reply)  # type: ignore[attr-defined]
    assert wire[0]["reasoning_details"] == [
        {
            "type": "reasoning.text",
            "format": "anthropic-claude-v1",
            "index": 0,
            "text": "The capital of France...",
            "signature": "sig-1",
        }
    ]


def test_unsigned_thinking_is_not_sent_back() -> None:
    provider = create_provider("openrouter", sa_llm.get_config())
    reply = Message(role="assistant", content="Hi", thinking=Thinking(text="musing"))
    assert "reasoning_details" not in provider.format_message(reply)[0]  # type: ignore[attr-defined]
