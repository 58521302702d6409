"""The Anthropic codec where the recordings do not reach: caching, failures, listing, limits.

Each test drives the public chat API against a small exchange built here (or a recorded one,
cut or extended), and checks what a user would notice: the request body that went out, the
parsed reply, usage, or the error raised. Expected values come from the bodies the test builds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

import sa_llm
from sa_llm.config import Config
from sa_llm.providers import create_provider
from sa_llm.providers.base import HttpResponse
from sa_llm.testing import Replay
from sa_llm.types import Chunk, Message, RawContent, Thinking, ToolCall

WIRE = Path(__file__).parents[1] / "fixtures" / "wire" / "anthropic"
STREAMED = (
    WIRE / "chat_streaming_responses_anthropic_claude-haiku-4-5_supports_streaming_responses.json"
)
MODEL = "claude-haiku-4-5-20251001"
URL = "https://api.anthropic.com/v1/messages"


def message_body(content: Sequence[Mapping[str, Any]], **usage: int) -> dict[str, Any]:
    """A Messages reply as the API sends it."""
    stop = "tool_use" if any(b["type"] == "tool_use" for b in content) else "end_turn"
    return {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": list(content),
        "stop_reason": stop,
        "usage": {"input_tokens": 10, "output_tokens": 5, **usage},
    }


def exchange(status: int, body: Any, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    text = body if isinstance(body, str) else json.dumps(body)
    kind = "text/event-stream" if text.startswith("event:") else "application/json"
    return {
        "request": {"method": "POST", "url": URL, "headers": {}, "body": None},
        "response": {
            "status": status,
            "headers": {"content-type": kind, **(headers or {})},
            "body": text,
        },
    }


def sse(events: Sequence[Mapping[str, Any]]) -> str:
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)


def text_stream(text: str) -> str:
    """A streamed reply of one text block."""
    block = {"type": "text", "text": ""}
    delta = {"type": "text_delta", "text": text}
    return sse(
        [
            {"type": "message_start", "message": message_body([])},
            {"type": "content_block_start", "index": 0, "content_block": block},
            {"type": "content_block_delta", "index": 0, "delta": delta},
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {}},
            {"type": "message_stop"},
        ]
    )


def recorded_stream() -> str:
    recording = json.loads(STREAMED.read_text(encoding="utf-8"))
    return str(recording["interactions"][0]["response"]["body"])


def chat_for(*exchanges: Mapping[str, Any], model: str = MODEL) -> tuple[Any, Replay]:
    replay = Replay({"interactions": list(exchanges)})
    chat = replay.context().chat(model, provider="anthropic", assume_model_exists=True)
    return chat, replay


async def ask(chat: Any, mode: str, prompt: Any, **kwargs: Any) -> Message:
    if mode == "async":
        return await chat.aask(prompt, **kwargs)  # type: ignore[no-any-return]
    return chat.ask(prompt, **kwargs)  # type: ignore[no-any-return]


MODES = pytest.mark.parametrize("mode", ["sync", "async"])


# -- prompt caching and usage ---------------------------------------------------------------------


@MODES
async def test_raw_content_with_cache_control_goes_out_verbatim(mode: str) -> None:
    document = [
        {"type": "text", "text": "A long contract...", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Summarise it."},
    ]
    system = [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
    usage = {"cache_read_input_tokens": 1800, "cache_creation_input_tokens": 200}
    reply_body = message_body([{"type": "text", "text": "Short."}], **usage)
    chat, replay = chat_for(exchange(200, reply_body))
    chat.add_message(Message(role="system", content=RawContent(system)))

    reply = await ask(chat, mode, RawContent(document))

    sent = replay.seen[0].body
    assert sent["system"] == system
    assert sent["messages"] == [{"role": "user", "content": document}]
    recorded = reply_body["usage"]
    assert reply.tokens is not None
    assert reply.tokens.cached == recorded["cache_read_input_tokens"]
    assert reply.tokens.cache_creation == recorded["cache_creation_input_tokens"]
    # Anthropic counts fresh, cache-read and cache-written prompt tokens apart; input is all.
    assert reply.tokens.input == (
        recorded["input_tokens"]
        + recorded["cache_read_input_tokens"]
        + recorded["cache_creation_input_tokens"]
    )
    assert reply.tokens.output == recorded["output_tokens"]


async def test_streamed_usage_keeps_cache_counts_given_only_at_the_start() -> None:
    start_usage = {"input_tokens": 7, "cache_read_input_tokens": 90, "output_tokens": 1}
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {**message_body([]), "usage": start_usage}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 3},
        },
        {"type": "message_stop"},
    ]
    chat, _ = chat_for(exchange(200, sse(events)))
    reply = chat.ask("Hello", on_chunk=lambda chunk: None)
    assert reply.text == "Hi"
    assert reply.tokens == sa_llm.Tokens(
        input=start_usage["input_tokens"] + start_usage["cache_read_input_tokens"],
        output=3,
        cached=start_usage["cache_read_input_tokens"],
    )


# -- malformed and cut replies --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (json.dumps({"type": "message", "model": MODEL, "usage": {}}), "content"),
        (json.dumps({"type": "message", "content": "text, not blocks"}), "content"),
        ("<html>bad gateway</html>", "JSON"),
    ],
)
@MODES
async def test_malformed_reply_is_a_parse_error_naming_provider_and_field(
    body: str, named: str, mode: str
) -> None:
    chat, _ = chat_for(exchange(200, body))
    with pytest.raises(sa_llm.ResponseParseError) as caught:
        await ask(chat, mode, "Hello")
    assert caught.value.provider == "anthropic"
    assert named in str(caught.value)


@MODES
async def test_stream_cut_before_message_stop_is_interrupted(mode: str) -> None:
    whole = recorded_stream()
    cut = whole[: whole.index("event: message_delta")]
    chat, _ = chat_for(exchange(200, cut))
    received: list[Chunk] = []
    with pytest.raises(sa_llm.StreamInterruptedError) as caught:
        await ask(chat, mode, "Count from 1 to 3", on_chunk=received.append)
    assert caught.value.provider == "anthropic"
    assert any(c.content for c in received)  # what came before the cut was delivered


@MODES
async def test_stream_event_that_is_not_json_is_a_parse_error(mode: str) -> None:
    whole = recorded_stream()
    broken = whole.replace("event: ping\ndata: {", "event: ping\ndata: {{", 1)
    chat, _ = chat_for(exchange(200, broken))
    with pytest.raises(sa_llm.ResponseParseError):
        await ask(chat, mode, "Count from 1 to 3", on_chunk=lambda chunk: None)


@pytest.mark.parametrize(
    ("error_type", "expected"),
    [
        ("overloaded_error", sa_llm.OverloadedError),
        ("rate_limit_error", sa_llm.RateLimitError),
        ("api_error", sa_llm.ServerError),
        ("invalid_request_error", sa_llm.BadRequestError),
    ],
)
@MODES
async def test_error_event_mid_stream_raises_its_type(
    error_type: str, expected: type[Exception], mode: str
) -> None:
    whole = recorded_stream()
    message = f"{error_type} happened"
    error = {"type": "error", "error": {"type": error_type, "message": message}}
    at = whole.index("event: content_block_stop")
    chat, _ = chat_for(exchange(200, whole[:at] + sse([error])))
    with pytest.raises(expected) as caught:
        await ask(chat, mode, "Count from 1 to 3", on_chunk=lambda chunk: None)
    assert isinstance(caught.value, sa_llm.ProviderError)
    assert caught.value.provider == "anthropic"
    assert caught.value.message == message


# -- HTTP errors ----------------------------------------------------------------------------------


def error_body(error_type: str, message: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": "req_1",
    }


@MODES
async def test_529_is_overloaded(mode: str) -> None:
    body = error_body("overloaded_error", "Overloaded")
    chat, _ = chat_for(exchange(529, body))
    with pytest.raises(sa_llm.OverloadedError) as caught:
        await ask(chat, mode, "Hello")
    assert caught.value.status == 529
    assert caught.value.message == body["error"]["message"]
    assert caught.value.request_id == body["request_id"]  # from the body: no header here


@MODES
async def test_rate_limit_carries_retry_after(mode: str) -> None:
    headers = {"retry-after": "17"}
    chat, _ = chat_for(exchange(429, error_body("rate_limit_error", "Slow down"), headers))
    with pytest.raises(sa_llm.RateLimitError) as caught:
        await ask(chat, mode, "Hello")
    assert caught.value.retry_after == float(headers["retry-after"])


async def test_prompt_too_long_is_a_context_length_error() -> None:
    body = error_body("invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum")
    chat, _ = chat_for(exchange(400, body))
    with pytest.raises(sa_llm.ContextLengthExceededError):
        chat.ask("Hello")


# -- unsupported input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        (b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(32), "speech.wav"),
        (b"\x00\x00\x00\x18ftypmp42" + bytes(32), "clip.mp4"),
        (b"\x89HDF\r\n\x1a\n" + bytes(32), "data.h5"),
    ],
)
@MODES
async def test_unsupported_file_fails_before_any_request(
    data: bytes, filename: str, mode: str
) -> None:
    chat, replay = chat_for(exchange(200, message_body([{"type": "text", "text": "never"}])))
    file = sa_llm.Attachment.from_bytes(data, filename=filename)
    with pytest.raises(sa_llm.UnsupportedAttachmentError) as caught:
        await ask(chat, mode, "What is this?", attachments=[file])
    assert filename in str(caught.value)
    assert replay.seen == []


async def test_image_and_pdf_urls_are_sent_by_url_without_downloading() -> None:
    chat, replay = chat_for(exchange(200, message_body([{"type": "text", "text": "Two files."}])))
    urls = ["https://example.com/cat.png", "https://example.com/paper.pdf"]
    chat.ask("Describe", attachments=urls)
    assert [s.method for s in replay.seen] == ["POST"]
    blocks = replay.seen[0].body["messages"][0]["content"]
    assert [(b["type"], b.get("source")) for b in blocks] == [
        ("text", None),
        ("image", {"type": "url", "url": urls[0]}),
        ("document", {"type": "url", "url": urls[1]}),
    ]


# -- request settings -----------------------------------------------------------------------------


def answered() -> dict[str, Any]:
    return exchange(200, message_body([{"type": "text", "text": "ok"}]))


def test_max_tokens_comes_from_the_registry_and_with_params_overrides_it() -> None:
    chat, replay = chat_for(answered(), answered())
    chat.ask("Hello")
    assert (
        replay.seen[0].body["max_tokens"]
        == sa_llm.registry.find(MODEL, "anthropic").max_output_tokens
    )
    chat.with_params(max_tokens=321)
    chat.ask("Again")
    assert replay.seen[1].body["max_tokens"] == 321


def test_unknown_model_gets_the_documented_default_max_tokens() -> None:
    chat, replay = chat_for(answered(), model="claude-from-the-future")
    chat.ask("Hello")
    assert replay.seen[0].body["max_tokens"] == 4096


def test_several_system_messages_become_system_blocks_in_order() -> None:
    chat, replay = chat_for(answered())
    chat.with_instructions("First rule.").with_instructions("Second rule.", append=True)
    chat.ask("Hello")
    assert replay.seen[0].body["system"] == [
        {"type": "text", "text": "First rule."},
        {"type": "text", "text": "Second rule."},
    ]
    assert [m["role"] for m in replay.seen[0].body["messages"]] == ["user"]


def weather(city: str) -> str:
    """Current weather."""
    return f"Sunny in {city}"


@pytest.mark.parametrize(
    ("choice", "calls", "expected"),
    [
        ("weather", None, {"type": "tool", "name": "weather"}),
        ("required", "one", {"type": "any", "disable_parallel_tool_use": True}),
        (None, "one", {"type": "auto", "disable_parallel_tool_use": True}),
        ("none", "one", {"type": "none"}),
        (None, "many", None),
    ],
)
def test_tool_choice(choice: str | None, calls: Any, expected: Any) -> None:
    chat, replay = chat_for(answered())
    chat.with_tool(weather, choice=choice, calls=calls)
    chat.ask("Weather in Paris?")
    sent = replay.seen[0].body
    assert sent.get("tool_choice") == expected
    assert sent["tools"][0]["name"] == "weather"
    assert sent["tools"][0]["input_schema"]["properties"]["city"]["type"] == "string"


@pytest.mark.parametrize("effort", ["low", "medium", "high"])
def test_thinking_effort_becomes_a_budget_below_max_tokens(effort: str) -> None:
    chat, replay = chat_for(answered())
    chat.with_thinking(effort=effort).ask("Think")
    sent = replay.seen[0].body
    assert sent["thinking"]["type"] == "enabled"
    assert 1024 <= sent["thinking"]["budget_tokens"] < sent["max_tokens"]
    assert "_thinking" not in sent


def test_larger_effort_buys_a_larger_budget() -> None:
    budgets = []
    for effort in ("low", "medium", "high"):
        chat, replay = chat_for(answered())
        chat.with_thinking(effort=effort).ask("Think")
        budgets.append(replay.seen[0].body["thinking"]["budget_tokens"])
    assert budgets == sorted(budgets) and len(set(budgets)) == 3


# -- thinking replay ------------------------------------------------------------------------------


THINKING = {"type": "thinking", "thinking": "Call the tool.", "signature": "sig-abc"}
REDACTED = {"type": "redacted_thinking", "data": "EncryptedBlob=="}
CALL = {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}


def thinking_stream() -> str:
    """The same reply as ``message_body([THINKING, REDACTED, CALL])``, streamed."""
    deltas = [
        {"type": "thinking_delta", "thinking": "Call the "},
        {"type": "thinking_delta", "thinking": "tool."},
        {"type": "signature_delta", "signature": "sig-abc"},
    ]
    start = {"type": "thinking", "thinking": "", "signature": ""}
    tool = {**CALL, "input": {}}
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": message_body([])},
        {"type": "content_block_start", "index": 0, "content_block": start},
        {"type": "ping"},
        *({"type": "content_block_delta", "index": 0, "delta": d} for d in deltas),
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": REDACTED},
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2, "content_block": tool},
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": '{"city": "Paris"}'},
        },
        {"type": "content_block_stop", "index": 2},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 9},
        },
        {"type": "message_stop"},
    ]
    return sse(events)


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
@MODES
async def test_thinking_and_redacted_thinking_are_replayed_before_tool_use(
    streamed: bool, mode: str
) -> None:
    first = thinking_stream() if streamed else message_body([THINKING, REDACTED, CALL])
    final = (
        text_stream("Sunny.") if streamed else message_body([{"type": "text", "text": "Sunny."}])
    )
    chat, replay = chat_for(exchange(200, first), exchange(200, final))
    chat.with_tool(weather).with_thinking(budget=2048)
    kwargs = {"on_chunk": lambda chunk: None} if streamed else {}

    reply = await ask(chat, mode, "Weather in Paris?", **kwargs)

    assert reply.text == "Sunny."
    thought = next(m for m in chat.messages if m.role == "assistant").thinking
    assert thought is not None
    assert (thought.text, thought.signature) == (THINKING["thinking"], THINKING["signature"])
    second = replay.seen[1].body["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    assert second[1]["content"] == [THINKING, REDACTED, CALL]
    assert second[2]["content"] == [
        {
            "type": "tool_result",
            "tool_use_id": CALL["id"],
            "content": [{"type": "text", "text": weather("Paris")}],
        }
    ]


def test_thinking_stored_as_text_and_signature_is_replayed_as_one_block() -> None:
    chat, replay = chat_for(answered())
    # What a persisted chat gives back: text and signature, not the original blocks.
    chat.add_message(Message(role="user", content="What is 5 + 3?"))
    chat.add_message(
        Message(
            role="assistant",
            content="8",
            model_id=MODEL,
            thinking=Thinking(text="5 + 3 = 8", signature="sig-xyz"),
        )
    )
    chat.ask("Double it")
    assistant = replay.seen[0].body["messages"][1]
    assert assistant["content"] == [
        {"type": "thinking", "thinking": "5 + 3 = 8", "signature": "sig-xyz"},
        {"type": "text", "text": "8"},
    ]


def test_another_vendors_reasoning_is_not_sent_as_claude_thinking() -> None:
    chat, replay = chat_for(answered())
    chat.add_message(Message(role="user", content="Hi"))
    chat.add_message(
        Message(
            role="assistant",
            content="Hello",
            model_id="gpt-5-nano",
            thinking=Thinking(text="greet", signature="openai-encrypted"),
        )
    )
    chat.ask("Again")
    assert replay.seen[0].body["messages"][1]["content"] == [{"type": "text", "text": "Hello"}]


def test_parallel_tool_results_share_one_user_turn_and_empty_replies_are_left_out() -> None:
    chat, replay = chat_for(answered())
    calls = (
        ToolCall("toolu_a", "weather", {"city": "Paris"}),
        ToolCall("toolu_b", "weather", {"city": "Rome"}),
    )
    chat.add_message(Message(role="user", content="Paris and Rome?"))
    chat.add_message(Message(role="assistant", tool_calls=calls))
    chat.add_message(Message(role="tool", content="Sunny", tool_call_id="toolu_a"))
    chat.add_message(Message(role="tool", content="Rainy", tool_call_id="toolu_b"))
    chat.add_message(Message(role="assistant", content=None))  # tool choice "none": no content
    chat.ask("Thanks")
    sent = replay.seen[0].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user", "user"]
    assert [b["tool_use_id"] for b in sent[2]["content"]] == ["toolu_a", "toolu_b"]
    assert [b["id"] for b in sent[1]["content"]] == ["toolu_a", "toolu_b"]


# -- model listing --------------------------------------------------------------------------------


def test_model_listing_request_and_parse() -> None:
    provider = create_provider("anthropic", Config(anthropic_api_key="k-123"))
    request = provider.list_models_request()
    assert request.method == "GET"
    assert request.url.startswith("https://api.anthropic.com/v1/models")
    assert request.headers["x-api-key"] == "k-123"
    assert request.headers["anthropic-version"]
    listing: dict[str, Any] = {
        "data": [
            {
                "type": "model",
                "id": "claude-haiku-4-5-20251001",
                "display_name": "Claude Haiku 4.5",
                "created_at": "2025-10-15T00:00:00Z",
            },
            {"type": "model", "id": "claude-new", "display_name": None, "created_at": None},
            {"type": "model"},
        ],
        "has_more": False,
        "first_id": "claude-haiku-4-5-20251001",
        "last_id": "claude-new",
    }
    listed = provider.parse_model_list(HttpResponse(200, {}, json.dumps(listing).encode()))
    first = listing["data"][0]
    assert listed == [
        {"id": first["id"], "name": first["display_name"], "created_at": first["created_at"]},
        {"id": "claude-new", "name": "claude-new", "created_at": None},
    ]


def test_model_listing_without_data_is_a_parse_error() -> None:
    provider = create_provider("anthropic", Config(anthropic_api_key="k"))
    with pytest.raises(sa_llm.ResponseParseError) as caught:
        provider.parse_model_list(HttpResponse(200, {}, b'{"models": []}'))
    assert caught.value.provider == "anthropic"


def test_missing_key_names_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    provider = create_provider("anthropic", Config())
    with pytest.raises(sa_llm.MissingAPIKeyError) as caught:
        provider.auth_headers()
    assert "ANTHROPIC_API_KEY" in str(caught.value)
