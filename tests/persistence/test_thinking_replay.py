"""Recorded thinking of every thinking-capable provider, replayed through persisted chats: the
reply's reasoning blocks are stored, the chat row is loaded anew (the next turn rebuilds its
history from the rows) and the next request re-sends every block byte for byte as the provider
sent it (signatures, redacted blocks, encrypted reasoning, thinking parts). SQLite and
PostgreSQL, sync and async, whole and streamed recordings.

What was received and what was re-sent are read here from the wire JSON, independently of
sa_llm's codecs. A recording with one model call serves it twice (the second answer does not
matter: the second *request* is what is checked).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from faults_support import events
from persisted import World
from sa_llm.testing import Replay
from sa_llm.testing.faults import RecordedReply

WIRE = Path(__file__).parents[1] / "fixtures" / "wire"
BEDROCK = {
    "bedrock_region": "us-east-1",
    "bedrock_access_key_id": "AKIDEXAMPLE",
    "bedrock_secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
}


@pytest.fixture
def world_settings() -> dict[str, Any]:
    return {"max_retries": 0}


# -- what a reply carried, read from the wire ------------------------------------------------------


def _payloads(reply: RecordedReply) -> list[Any]:
    return [payload for _, payload in events(reply)]


def anthropic_received(reply: RecordedReply) -> list[Any]:
    """Thinking and redacted-thinking blocks, whole or rebuilt from the stream's events."""
    if not reply.streamed:
        body = json.loads(reply.body)
        return [b for b in body["content"] if b["type"] in ("thinking", "redacted_thinking")]
    blocks: dict[int, dict[str, Any]] = {}
    for event in _payloads(reply):
        if event.get("type") == "content_block_start":
            block = event["content_block"]
            if block["type"] in ("thinking", "redacted_thinking"):
                blocks[event["index"]] = dict(block)
        elif event.get("type") == "content_block_delta" and event["index"] in blocks:
            delta, block = event["delta"], blocks[event["index"]]
            if delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] += delta["signature"]
    return [blocks[index] for index in sorted(blocks)]


def anthropic_sent(body: dict[str, Any]) -> list[Any]:
    (reply,) = [m for m in body["messages"] if m["role"] == "assistant"][:1]
    return [b for b in reply["content"] if b["type"] in ("thinking", "redacted_thinking")]


def bedrock_received(reply: RecordedReply) -> list[Any]:
    """``reasoningContent`` blocks that may go back (signed text, redacted content)."""
    if not reply.streamed:
        content = json.loads(reply.body)["output"]["message"]["content"]
        blocks = [b["reasoningContent"] for b in content if "reasoningContent" in b]
    else:
        assembled: dict[int, dict[str, Any]] = {}
        for kind, payload in events(reply):
            piece = (payload.get("delta") or {}).get("reasoningContent")
            if kind != "contentBlockDelta" or piece is None:
                continue
            index = payload["contentBlockIndex"]
            if "redactedContent" in piece:
                assembled[index] = {"redactedContent": piece["redactedContent"]}
                continue
            text = assembled.setdefault(index, {"reasoningText": {}})["reasoningText"]
            for key in ("text", "signature"):
                if key in piece:
                    text[key] = text.get(key, "") + piece[key]
        blocks = [assembled[index] for index in sorted(assembled)]
    return [
        b for b in blocks if "redactedContent" in b or b.get("reasoningText", {}).get("signature")
    ]


def bedrock_sent(body: dict[str, Any]) -> list[Any]:
    reply = next(m for m in body["messages"] if m["role"] == "assistant")
    return [b["reasoningContent"] for b in reply["content"] if "reasoningContent" in b]


def gemini_received(reply: RecordedReply) -> list[Any]:
    """The thought text and the text signature (Gemini's replay data)."""
    thought, signature = "", None
    for payload in _payloads(reply):
        for part in payload["candidates"][0]["content"].get("parts", []):
            if part.get("thought"):
                thought += part.get("text", "")
            if part.get("thoughtSignature") and "functionCall" not in part:
                signature = part["thoughtSignature"]
    return [{"thought": True, "text": thought, "thoughtSignature": signature}]


def gemini_sent(body: dict[str, Any]) -> list[Any]:
    reply = next(c for c in body["contents"] if c["role"] == "model")
    return [p for p in reply["parts"] if p.get("thought") or p.get("thoughtSignature")]


def responses_received(reply: RecordedReply) -> list[Any]:
    """Summary and encrypted content of every reasoning item, as received."""
    if not reply.streamed:
        items = [i for i in json.loads(reply.body)["output"] if i["type"] == "reasoning"]
    else:
        items = [
            p["item"]
            for p in _payloads(reply)
            if p.get("type") == "response.output_item.done" and p["item"]["type"] == "reasoning"
        ]
    return [[item.get("summary"), item.get("encrypted_content")] for item in items]


def responses_sent(body: dict[str, Any]) -> list[Any]:
    items = [i for i in body["input"] if i.get("type") == "reasoning"]
    return [[item.get("summary"), item.get("encrypted_content")] for item in items]


def field_received(key: str) -> Callable[[RecordedReply], list[Any]]:
    """A Chat Completions reply's reasoning field (text), whole or joined from deltas."""

    def read(reply: RecordedReply) -> list[Any]:
        value = ""
        for payload in _payloads(reply):
            choice = payload["choices"][0] if payload.get("choices") else {}
            part = choice.get("message") or choice.get("delta") or {}
            value += part.get(key) or ""
        return [value]

    return read


def field_sent(key: str) -> Callable[[dict[str, Any]], list[Any]]:
    def read(body: dict[str, Any]) -> list[Any]:
        return [next(m for m in body["messages"] if m["role"] == "assistant").get(key)]

    return read


def openrouter_received(reply: RecordedReply) -> list[Any]:
    """The reply's ``reasoning_details``, as they came."""
    return list(json.loads(reply.body)["choices"][0]["message"]["reasoning_details"])


def openrouter_sent(body: dict[str, Any]) -> list[Any]:
    reply = next(m for m in body["messages"] if m["role"] == "assistant")
    return list(reply["reasoning_details"])


def mistral_received(reply: RecordedReply) -> list[Any]:
    """The ``thinking`` parts: whole, or stream pieces joined as a whole reply has them."""
    parts: list[dict[str, Any]] = []
    open_part = False
    for payload in _payloads(reply):
        choice = payload["choices"][0] if payload.get("choices") else {}
        content = (choice.get("message") or choice.get("delta") or {}).get("content")
        if not isinstance(content, list):
            open_part = open_part and not content
            continue
        for part in content:
            if part["type"] != "thinking":
                open_part = False
                continue
            if not reply.streamed:
                parts.append(part)
                continue
            if not open_part:
                parts.append({"type": "thinking", "thinking": [{"type": "text", "text": ""}]})
                open_part = True
            parts[-1]["thinking"][0]["text"] += part["thinking"][0]["text"]
            if "closed" in part:
                parts[-1]["closed"] = part["closed"]
    return parts


def mistral_sent(body: dict[str, Any]) -> list[Any]:
    reply = next(m for m in body["messages"] if m["role"] == "assistant")
    return [p for p in reply["content"] if p["type"] == "thinking"]


# -- the cases -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    provider: str
    file: str
    received: Callable[[RecordedReply], list[Any]]
    sent: Callable[[dict[str, Any]], list[Any]]
    settings: dict[str, Any] | None = None
    turn: int = 1  # the model call (0-based) whose request starts the second turn
    # The reply has nothing that may go back (Nova's unsigned text; a gpt-5.4 reply without a
    # reasoning item): the next request must carry none either.
    nothing: bool = False


def _name(kind: str, provider: str, model: str, what: str) -> str:
    return f"chat_with_extended_thinking_{provider}_{model}_{what}"


PRESERVES = "preserves_thinking_signatures_between_turns_when_provided"
STREAMS = "streams_thinking_content_when_available"
RETURNS = "returns_thinking_when_available"

CASES = [
    Case("anthropic", _name("", "anthropic", "claude-haiku-4-5", PRESERVES),
         anthropic_received, anthropic_sent),
    Case("anthropic", _name("", "anthropic", "claude-haiku-4-5", STREAMS),
         anthropic_received, anthropic_sent),
    Case("bedrock", _name("", "bedrock", "claude-haiku-4-5", RETURNS),
         bedrock_received, bedrock_sent, BEDROCK),
    Case("bedrock", _name("", "bedrock", "claude-haiku-4-5", STREAMS),
         bedrock_received, bedrock_sent, BEDROCK),
    Case("bedrock", "chat_bedrock_nova_2_reasoning_returns_reasoning_content_blocks",
         bedrock_received, bedrock_sent, BEDROCK, nothing=True),
    Case("gemini", _name("", "gemini", "gemini-3-flash-preview", PRESERVES),
         gemini_received, gemini_sent),
    Case("gemini", _name("", "gemini", "gemini-3-flash-preview", STREAMS),
         gemini_received, gemini_sent),
    Case("openai", _name("", "openai", "gpt-5_4", PRESERVES), responses_received, responses_sent,
         nothing=True),
    Case("openai", _name("", "openai", "gpt-5_4", STREAMS), responses_received, responses_sent),
    Case("xai", _name("", "xai", "grok-3-mini", PRESERVES), responses_received, responses_sent),
    Case("xai", _name("", "xai", "grok-3-mini", STREAMS), responses_received, responses_sent),
    Case("deepseek", _name("", "deepseek", "deepseek-reasoner", PRESERVES),
         field_received("reasoning_content"), field_sent("reasoning_content")),
    Case("ollama", _name("", "ollama", "qwen3", PRESERVES),
         field_received("reasoning"), field_sent("reasoning")),
    Case("ollama", _name("", "ollama", "qwen3", STREAMS),
         field_received("reasoning"), field_sent("reasoning")),
    Case("mistral", "chat_mistral_hybrid_reasoning_separates_thinking_from_final_content",
         mistral_received, mistral_sent),
    Case("mistral", "chat_mistral_hybrid_reasoning_streams_thinking_separately_from_content",
         mistral_received, mistral_sent),
    Case("openrouter",
         "chat_openrouter_reasoning_details_round-trip_replays_reasoning_details_across_tool_"
         "calls_and_turns",
         openrouter_received, openrouter_sent, turn=2),
    Case("openrouter", _name("", "openrouter", "claude-haiku-4-5", RETURNS),
         openrouter_received, openrouter_sent),
]  # fmt: skip


def _model(provider: str, request: dict[str, Any]) -> str:
    if provider == "bedrock":
        return str(request["url"]).split("/model/", 1)[1].rsplit("/", 1)[0]
    if provider == "gemini":
        return str(request["url"]).split("/models/", 1)[1].split(":", 1)[0]
    return str(request["body"]["model"])


def reasoning_weather(city: str) -> str:
    """Gets the weather of a city, reasoning first."""
    return f"Current weather in {city}: 15°C, cloudy"


@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{case.provider}-{case.file[-40:]}")
async def test_thinking_blocks_are_replayed_byte_for_byte_from_the_rows(
    world: World, case: Case
) -> None:
    recording = json.loads((WIRE / case.provider / f"{case.file}.json").read_text("utf-8"))
    calls = [i for i in recording["interactions"] if i["request"]["method"] == "POST"]
    first = RecordedReply.from_interaction(calls[0])
    if len(calls) == 1:
        calls = [calls[0], copy.deepcopy(calls[0])]
    replay = Replay({"interactions": calls})
    ctx = replay.context(**(case.settings or {}))
    model = _model(case.provider, calls[0]["request"])
    stream = first.streamed
    options = {"on_chunk": lambda chunk: None} if stream else {}

    chat = world.Chat(model=model, provider=case.provider, assume_model_exists=True, context=ctx)
    await world.add(chat)
    if case.turn > 1:
        chat.with_tool(reasoning_weather)
    await world.call(chat.ask, "What is 5 + 3?", **options)

    # Another instance of the row (another request): its history is read from the rows.
    key = chat.id
    world.session.expunge(chat)
    loaded = (
        await world.session.get(world.Chat, key)
        if world.mode == "async"
        else world.session.get(world.Chat, key)
    )
    loaded.context = ctx
    await world.call(loaded.ask, "Now multiply that by 2", **options)

    received = case.received(first)
    sent = case.sent(replay.seen[case.turn].body)
    assert any(received) != case.nothing, "the recording carries reasoning to replay"
    # Byte for byte: the same JSON, keys in the order they came (blocks rebuilt from a
    # stream's deltas have no order of their own: there, sorted).
    assert json.dumps(sent, sort_keys=stream) == json.dumps(received, sort_keys=stream)


def test_every_thinking_provider_is_covered() -> None:
    thinking = {"anthropic", "bedrock", "gemini", "openai", "xai", "deepseek", "mistral",
                "ollama", "openrouter"}  # fmt: skip
    assert {case.provider for case in CASES} == thinking


# -- several blocks in one reply -------------------------------------------------------------------


def _several_anthropic(body: dict[str, Any]) -> None:
    thinking = next(b for b in body["content"] if b["type"] == "thinking")
    second = {**thinking, "thinking": "Then check it twice.", "signature": "c2lnLTI="}
    redacted = {"type": "redacted_thinking", "data": "RVJST1JfUkVEQUNURUQ="}
    text = [b for b in body["content"] if b["type"] == "text"]
    body["content"] = [thinking, redacted, second, *text]


def _several_bedrock(body: dict[str, Any]) -> None:
    content = body["output"]["message"]["content"]
    signed = next(b for b in content if "reasoningContent" in b)
    second = {"reasoningContent": {"reasoningText": {"signature": "c2lnLTI=", "text": "Twice."}}}
    redacted = {"reasoningContent": {"redactedContent": "RVJST1JfUkVEQUNURUQ="}}
    text = [b for b in content if "text" in b]
    body["output"]["message"]["content"] = [signed, redacted, second, *text]


def _several_responses(body: dict[str, Any]) -> None:
    item = next(i for i in body["output"] if i["type"] == "reasoning")
    second = {
        **item,
        "id": "rs_second",
        "summary": [
            {"text": "A second thought.", "type": "summary_text"},
            {"text": "And a third.", "type": "summary_text"},
        ],
        "encrypted_content": "ZW5jcnlwdGVkLTI=",
    }
    others = [i for i in body["output"] if i["type"] != "reasoning"]
    body["output"] = [item, second, *others]


def _several_mistral(body: dict[str, Any]) -> None:
    message = body["choices"][0]["message"]
    first = next(p for p in message["content"] if p["type"] == "thinking")
    second = {
        "type": "thinking",
        "thinking": [{"type": "text", "text": "Checked."}],
        "closed": True,
    }
    text = [p for p in message["content"] if p["type"] == "text"]
    message["content"] = [first, second, *text]


SEVERAL = [
    (CASES[0], _several_anthropic),
    (CASES[2], _several_bedrock),
    (CASES[9], _several_responses),
    (CASES[14], _several_mistral),
]


@pytest.mark.parametrize(("case", "edit"), SEVERAL, ids=[case.provider for case, _ in SEVERAL])
async def test_every_block_of_a_reply_is_kept(
    world: World, case: Case, edit: Callable[[dict[str, Any]], None]
) -> None:
    """Thinking and redacted thinking (Anthropic), several signed and redacted reasoning blocks
    (Bedrock), several reasoning items (OpenAI Responses, here xAI's), several thinking parts
    (Mistral): a recorded reply edited to carry them, every one re-sent as it came, in order."""
    recording = json.loads((WIRE / case.provider / f"{case.file}.json").read_text("utf-8"))
    call = next(i for i in recording["interactions"] if i["request"]["method"] == "POST")
    body = json.loads(call["response"]["body"])
    edit(body)
    call["response"]["body"] = json.dumps(body)
    replay = Replay({"interactions": [call, copy.deepcopy(call)]})
    ctx = replay.context(**(case.settings or {}))
    model = _model(case.provider, call["request"])
    chat = world.Chat(model=model, provider=case.provider, assume_model_exists=True, context=ctx)
    await world.add(chat)
    await world.call(chat.ask, "What is 5 + 3?")
    world.session.expunge(chat)
    loaded = (
        await world.session.get(world.Chat, chat.id)
        if world.mode == "async"
        else world.session.get(world.Chat, chat.id)
    )
    loaded.context = ctx
    await world.call(loaded.ask, "Now multiply that by 2")
    received = case.received(RecordedReply.from_interaction(call))
    assert len(received) >= 2
    assert json.dumps(case.sent(replay.seen[1].body)) == json.dumps(received)
