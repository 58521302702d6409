"""The Chat Completions codec, sans-IO, against recorded traffic of the compatible providers.

Every recorded ``/chat/completions`` exchange of OpenRouter, DeepSeek, Mistral and Ollama (and
OpenAI's audio case) is used three ways:

* the recorded request body is read back into a :class:`ChatRequest`, and the body the codec
  builds from it must carry the same fields (model, messages with roles, content parts and
  tool calls, tools, tool choice, stream flag, response format, extra params);
* each recorded reply, whole or streamed (fed in 7-byte pieces), is parsed and folded with
  :class:`Accumulator`; text, reasoning, tool calls, usage, model and finish reason must be what
  the recorded JSON says (the test reads the numbers from the file, nothing is hard-coded);
* each recorded error response must map to the error class its scenario names.

Provider quirks the shared codec deliberately leaves to subclasses are listed in
``_PROVIDER_SPECIFIC`` with the reason, so a regression in the shared part cannot hide there.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from sa_llm import errors
from sa_llm.config import Config
from sa_llm.content import Attachment
from sa_llm.providers import create_provider
from sa_llm.providers.base import ChatRequest, HttpResponse, SchemaSpec, ToolSpec
from sa_llm.providers.chat_completions import ChatCompletionsCodec
from sa_llm.streaming import Accumulator
from sa_llm.types import Chunk, Content, Message, RawContent, ToolCall

WIRE = Path(__file__).parents[1] / "fixtures" / "wire"
AUDIO = WIRE / "openai" / "chat_audio_models_openai_gpt-audio-mini_can_understand_mp3_audio.json"
PROVIDERS = ("openrouter", "deepseek", "mistral", "ollama")


class _Compat(ChatCompletionsCodec):
    """The shared codec as is: a provider with no differences of its own."""

    name = "openrouter"
    default_base_url = "https://openrouter.ai/api/v1"


class _Developer(_Compat):
    """RubyLLM's OpenRouter sends system prompts with the ``developer`` role."""

    system_role: ClassVar[str] = "developer"


def codec(system_role: str = "system") -> ChatCompletionsCodec:
    config = Config(openrouter_api_key="test-key")
    return _Developer(config) if system_role == "developer" else _Compat(config)


# -- the recordings ----------------------------------------------------------------------------


def load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8")))


def recorded_files() -> list[Path]:
    files = [path for provider in PROVIDERS for path in sorted((WIRE / provider).glob("*.json"))]
    return [*files, AUDIO]


def model_calls(recording: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [
        item
        for item in recording["interactions"]
        if item["request"]["method"] == "POST"
        and item["request"]["url"].endswith("/chat/completions")
    ]


def body_bytes(part: Mapping[str, Any]) -> bytes:
    body = part["body"]
    if body is None:
        return b""
    if part.get("body_base64"):
        return base64.b64decode(body)
    return str(body).encode("utf-8") if isinstance(body, str) else json.dumps(body).encode()


def is_stream(response: Mapping[str, Any]) -> bool:
    return "text/event-stream" in response["headers"].get("content-type", "")


def case_id(path: Path, index: int) -> str:
    return f"{path.parent.name}/{path.stem}#{index}"


def cases(kind: str) -> Iterator[Any]:
    for path in recorded_files():
        for index, item in enumerate(model_calls(load(path))):
            response = item["response"]
            ok = response["status"] == 200
            if (
                (kind == "request")
                or (kind == "reply" and ok and not is_stream(response))
                or (kind == "stream" and ok and is_stream(response))
                or (kind == "error" and not ok)
            ):
                yield pytest.param(path, item, id=case_id(path, index))


# Known provider differences the shared codec leaves to the provider subclasses.
_PROVIDER_SPECIFIC = {
    # Mistral takes "image_url" as a bare string; its subclass formats images its own way.
    "mistral/chat_vision_models_mistral_pixtral-12b_can_understand_remote_images_without_extension",
    "mistral/chat_multimodal_tool_attachments_mistral_mistral-small-latest_describes_images_"
    "returned_from_tools",
}
# Reasoning replayed on assistant turns (DeepSeek, Ollama, OpenRouter, Mistral) is each
# provider's own (tests/providers/test_compatible_corpus.py and
# tests/providers/test_mistral_thinking.py check it).
_REPLAY_KEYS = ("reasoning", "reasoning_content", "reasoning_details")


# -- recorded request -> ChatRequest -------------------------------------------------------------

_FILE_RE = re.compile(
    r"^<file name='(?P<name>[^']*)' mime_type='(?P<type>[^']*)'>(?P<body>.*)</file>$", re.S
)
_TOOL_FILES = "Attachments from tool call "


def data_url_attachment(url: str, filename: str) -> Attachment:
    header, _, data = url.partition(",")
    mime = header[len("data:") :].split(";")[0]
    return Attachment.from_bytes(base64.b64decode(data), filename=filename, mime_type=mime)


def part_attachment(part: Mapping[str, Any]) -> Attachment | None:
    """The file a recorded content part carries; ``None`` for a plain text part."""
    kind = part["type"]
    if kind == "text":
        match = _FILE_RE.match(part["text"])
        if match is None:
            return None
        return Attachment.from_bytes(
            match["body"].encode(), filename=match["name"], mime_type=match["type"]
        )
    if kind == "image_url":
        url = part["image_url"]["url"]
        if url.startswith("data:"):
            return data_url_attachment(url, "image")
        return Attachment.from_url(url, mime_type="image/jpeg")
    if kind == "file":
        return data_url_attachment(part["file"]["file_data"], part["file"]["filename"])
    if kind == "input_audio":
        audio = part["input_audio"]
        mime = {"mp3": "audio/mpeg", "wav": "audio/wav"}[audio["format"]]
        return Attachment.from_bytes(
            base64.b64decode(audio["data"]), filename=f"audio.{audio['format']}", mime_type=mime
        )
    raise AssertionError(f"unexpected content part {kind!r}")


def user_content(content: Any) -> str | Content:
    if isinstance(content, str):
        return content
    texts = []
    files = []
    for part in content:
        attachment = part_attachment(part)
        if attachment is None:
            texts.append(part["text"])
        else:
            files.append(attachment)
    return Content("".join(texts) or None, tuple(files))


def wire_messages(items: list[Mapping[str, Any]]) -> list[Message]:
    messages: list[Message] = []
    for item in items:
        role = item["role"]
        content = item.get("content")
        if role in ("system", "developer"):
            messages.append(Message(role="system", content=content))
        elif (
            role == "user"
            and isinstance(content, list)
            and str(content[0].get("text", "")).startswith(_TOOL_FILES)
        ):
            # The files a tool returned: they belong to the tool result just before.
            result = messages[-1]
            files = user_content(content[1:])
            assert isinstance(files, Content)
            messages[-1] = result.copy(content=Content(result.text, files.attachments))
        elif role == "user":
            messages.append(Message(role="user", content=user_content(content)))
        elif role == "assistant":
            calls = tuple(
                ToolCall(
                    id=call["id"],
                    name=call["function"]["name"],
                    arguments=json.loads(call["function"]["arguments"] or "{}"),
                )
                for call in item.get("tool_calls") or ()
            )
            messages.append(Message(role="assistant", content=content or None, tool_calls=calls))
        else:
            assert role == "tool"
            tool_content = RawContent(content) if isinstance(content, list) else content
            messages.append(
                Message(role="tool", content=tool_content, tool_call_id=item["tool_call_id"])
            )
    return messages


_KNOWN = {
    "model",
    "messages",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "temperature",
    "response_format",
    "reasoning_effort",
}


def chat_request(body: Mapping[str, Any]) -> ChatRequest:
    """The request a chat would have made to send ``body``."""
    choice = body.get("tool_choice")
    schema = None
    params = {key: value for key, value in body.items() if key not in _KNOWN}
    response_format = body.get("response_format")
    if response_format is not None and response_format["type"] == "json_schema":
        spec = response_format["json_schema"]
        schema = SchemaSpec(spec["name"], spec["schema"], spec.get("strict", False))
    elif response_format is not None:
        params["response_format"] = response_format  # with_params(response_format=...)
    if "reasoning_effort" in body:
        params["_thinking"] = {"effort": body["reasoning_effort"]}
    return ChatRequest(
        model=body["model"],
        messages=wire_messages(body["messages"]),
        tools=[
            ToolSpec(
                t["function"]["name"], t["function"]["description"], t["function"]["parameters"]
            )
            for t in body.get("tools") or ()
        ],
        tool_choice=choice["function"]["name"] if isinstance(choice, dict) else choice,
        parallel_tool_calls=body.get("parallel_tool_calls"),
        temperature=body.get("temperature"),
        schema=schema,
        params=params,
        stream=body["stream"],
    )


def _without_default_detail(part: Any) -> Any:
    # Ollama's recording spells out image detail "auto", the API's default when it is absent.
    if isinstance(part, dict) and part.get("type") == "image_url":
        image = part["image_url"]
        if isinstance(image, dict) and image.get("detail") == "auto":
            return {**part, "image_url": {k: v for k, v in image.items() if k != "detail"}}
    return part


def normalised(body: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` with the freedoms the wire allows removed (argument spacing, "" vs null)."""
    messages = []
    for item in body["messages"]:
        item = {k: v for k, v in item.items() if k not in _REPLAY_KEYS}
        if isinstance(item.get("content"), list):
            item["content"] = [_without_default_detail(part) for part in item["content"]]
        if item["role"] == "assistant":
            item["content"] = item.get("content") or None
            if "tool_calls" in item:
                item["tool_calls"] = [
                    {
                        **call,
                        "function": {
                            **call["function"],
                            "arguments": json.loads(call["function"]["arguments"] or "{}"),
                        },
                    }
                    for call in item["tool_calls"]
                ]
        messages.append(item)
    result = {**body, "messages": messages}
    result.pop("stream_options", None)  # checked on its own
    return result


# -- recorded reply -> expected values -----------------------------------------------------------


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p["text"] for p in content or () if p.get("type") == "text")


def thinking_of(message: Mapping[str, Any]) -> str | None:
    """Reasoning as a field (DeepSeek, OpenRouter, Ollama) or as Mistral's thinking parts."""
    field = message.get("reasoning_content") or message.get("reasoning")
    if field:
        return str(field)
    content = message.get("content")
    parts = content if isinstance(content, list) else ()
    texts = [i["text"] for p in parts if p.get("type") == "thinking" for i in p["thinking"]]
    return "".join(texts) or None


def expected_tokens(usage: Mapping[str, Any]) -> dict[str, Any]:
    prompt = usage.get("prompt_tokens_details") or {}
    completion = usage.get("completion_tokens_details") or {}
    cached = prompt.get("cached_tokens", usage.get("prompt_cache_hit_tokens"))
    return {
        "input": usage["prompt_tokens"],
        "output": usage["completion_tokens"],
        "cached": cached,
        "reasoning": completion.get("reasoning_tokens"),
    }


def tokens_of(message: Message) -> dict[str, Any]:
    tokens = message.tokens
    assert tokens is not None
    return {
        "input": tokens.input,
        "output": tokens.output,
        "cached": tokens.cached,
        "reasoning": tokens.reasoning,
    }


def fold(chunks: list[Chunk]) -> Message:
    accumulator = Accumulator("openrouter")
    for chunk in chunks:
        accumulator.add(chunk)
    return accumulator.message()


def feed_in_pieces(data: bytes, size: int = 7) -> list[Chunk]:
    parser = codec().stream_parser()
    chunks = []
    for start in range(0, len(data), size):
        chunks.extend(parser.feed(data[start : start + size]))
    chunks.extend(parser.close())
    return chunks


def stream_payloads(text: str) -> list[Any]:
    """The JSON of every ``data:`` line (these streams put each event on one line)."""
    payloads = []
    for line in text.splitlines():
        if line.startswith("data:") and line[5:].strip() != "[DONE]":
            payloads.append(json.loads(line[5:]))
    return payloads


# -- requests ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "item"), list(cases("request")))
def test_request_matches_recording(path: Path, item: Mapping[str, Any]) -> None:
    if f"{path.parent.name}/{path.stem}" in _PROVIDER_SPECIFIC:
        pytest.skip("a provider difference, left to the provider's subclass")
    recorded = item["request"]
    body = recorded["body"]
    roles = {m["role"] for m in body["messages"]}
    http = codec("developer" if "developer" in roles else "system").build_request(
        chat_request(body)
    )

    assert http.method == "POST"
    assert http.url.endswith("/chat/completions")
    assert http.headers["authorization"] == "Bearer test-key"
    assert http.headers["content-type"] == "application/json"
    assert normalised(http.json) == normalised(body)
    if body["stream"]:
        assert http.json["stream_options"] == {"include_usage": True}
        assert body.get("stream_options", http.json["stream_options"]) == {"include_usage": True}
    else:
        assert "stream_options" not in http.json


def test_the_request_corpus_covers_every_feature() -> None:
    # The table above is only as good as what it contains: make sure the features are there.
    bodies = [i["request"]["body"] for p in recorded_files() for i in model_calls(load(p))]
    parts = {
        part["type"]
        for body in bodies
        for message in body["messages"]
        if isinstance(message["content"], list)
        for part in message["content"]
    }
    assert {"text", "image_url", "file", "input_audio"} <= parts
    assert any(b["stream"] and b.get("tools") for b in bodies)
    assert any(isinstance(b.get("tool_choice"), dict) for b in bodies)
    assert any(b.get("response_format", {}).get("type") == "json_schema" for b in bodies)
    assert any("reasoning_effort" in b for b in bodies)
    assert any(m["role"] == "tool" for b in bodies for m in b["messages"])
    assert any(
        str(m["content"][0].get("text", "")).startswith(_TOOL_FILES)
        for b in bodies
        for m in b["messages"]
        if m["role"] == "user" and isinstance(m["content"], list)
    )


# -- whole replies -------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "item"), list(cases("reply")))
def test_reply_matches_recording(path: Path, item: Mapping[str, Any]) -> None:
    recorded = item["response"]
    body = json.loads(recorded["body"])
    chunks = codec().parse_response(HttpResponse(200, recorded["headers"], body_bytes(recorded)))
    message = fold(chunks)
    wire = body["choices"][0]["message"]

    assert (message.text or "") == text_of(wire["content"])
    assert (message.thinking.text if message.thinking else None) == thinking_of(wire)
    assert [(c.id, c.name, dict(c.arguments)) for c in message.tool_calls] == [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"] or "{}"))
        for c in wire.get("tool_calls") or ()
    ]
    assert tokens_of(message) == expected_tokens(body["usage"])
    assert message.model_id == body["model"]
    assert message.finish_reason == body["choices"][0]["finish_reason"]


def test_deepseek_cached_tokens_are_read() -> None:
    path = (
        WIRE
        / "deepseek"
        / (
            "chat_tool_choice_and_calls_control_deepseek_deepseek-chat_respects_specific_tool_choice.json"
        )
    )
    recorded = model_calls(load(path))[1]["response"]
    usage = json.loads(recorded["body"])["usage"]
    message = fold(codec().parse_response(HttpResponse(200, {}, body_bytes(recorded))))
    assert usage["prompt_cache_hit_tokens"] > 0
    assert message.cached_tokens == usage["prompt_cache_hit_tokens"]
    assert message.input_tokens == usage["prompt_tokens"]


@pytest.mark.parametrize("garbage", [True, 1, "call", {"id": "x"}])
def test_tool_calls_that_are_not_a_list_are_no_calls(garbage: Any) -> None:
    """A garbled ``tool_calls`` (found by the fuzzer: ``true``) is read as no call, whole and
    streamed, instead of a TypeError escaping the codec."""
    message = {"role": "assistant", "content": "Hi", "tool_calls": garbage}
    body = {"model": "m", "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
    whole = fold(codec().parse_response(HttpResponse(200, {}, json.dumps(body).encode())))
    assert (whole.text, whole.tool_calls) == ("Hi", ())
    delta = {"content": "Hi", "tool_calls": garbage}
    event = {"model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": "stop"}]}
    streamed = fold(feed_in_pieces(f"data: {json.dumps(event)}\n\ndata: [DONE]\n\n".encode()))
    assert (streamed.text, streamed.tool_calls) == ("Hi", ())


def test_deepseek_cache_hits_without_prompt_tokens_details() -> None:
    # Older DeepSeek replies have only prompt_cache_hit_tokens.
    usage = {"prompt_tokens": 30, "completion_tokens": 5, "prompt_cache_hit_tokens": 24}
    tokens = codec().usage_tokens(usage)
    assert tokens is not None and tokens.cached == usage["prompt_cache_hit_tokens"]


# -- streams -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "item"), list(cases("stream")))
def test_stream_matches_recording(path: Path, item: Mapping[str, Any]) -> None:
    recorded = item["response"]
    payloads = stream_payloads(recorded["body"])
    message = fold(feed_in_pieces(body_bytes(recorded)))

    deltas = [p["choices"][0]["delta"] for p in payloads if p.get("choices")]
    assert (message.text or "") == "".join(text_of(d.get("content")) for d in deltas)
    thinking = "".join(thinking_of(d) or "" for d in deltas)
    assert (message.thinking.text if message.thinking else None) == (thinking or None)
    calls: dict[int, dict[str, Any]] = {}
    for delta in deltas:
        for call in delta.get("tool_calls") or ():
            entry = calls.setdefault(call["index"], {"id": None, "name": None, "arguments": ""})
            entry["id"] = entry["id"] or call.get("id")
            entry["name"] = entry["name"] or call["function"].get("name")
            entry["arguments"] += call["function"].get("arguments") or ""
    assert [(c.id, c.name, dict(c.arguments)) for c in message.tool_calls] == [
        (c["id"], c["name"], json.loads(c["arguments"] or "{}")) for c in calls.values()
    ]
    usages = [p["usage"] for p in payloads if p.get("usage")]
    assert tokens_of(message) == expected_tokens(usages[-1])
    finishes = [p["choices"][0]["finish_reason"] for p in payloads if p.get("choices")]
    assert message.finish_reason == [f for f in finishes if f][-1]
    assert message.model_id == payloads[-1]["model"]


def test_streams_with_reasoning_and_tools_are_in_the_table() -> None:
    streams = [
        stream_payloads(i["response"]["body"])
        for p in recorded_files()
        for i in model_calls(load(p))
        if is_stream(i["response"])
    ]
    deltas = [
        p["choices"][0]["delta"] for payloads in streams for p in payloads if p.get("choices")
    ]
    assert any(d.get("reasoning") for d in deltas)  # OpenRouter, Ollama
    assert any(d.get("tool_calls") for d in deltas)
    assert any(p.get("usage") and not p.get("choices") for s in streams for p in s)


def _reasoning_stream() -> bytes:
    path = (
        WIRE
        / "openrouter"
        / (
            "chat_with_extended_thinking_openrouter_claude-haiku-4-5_streams_thinking_content_when"
            "_available.json"
        )
    )
    return body_bytes(model_calls(load(path))[0]["response"])


def test_stream_without_done_is_complete_after_a_finish_reason() -> None:
    data = _reasoning_stream().replace(b"data: [DONE]", b"")
    assert b"[DONE]" not in data
    message = fold(feed_in_pieces(data))
    assert message.finish_reason and message.text and message.thinking


def test_stream_cut_short_raises() -> None:
    data = _reasoning_stream()
    cut = data[: data.index(b'"finish_reason":"stop"')]
    cut = cut[: cut.rindex(b"\n\n") + 2]
    with pytest.raises(errors.StreamInterruptedError):
        feed_in_pieces(cut)


def test_error_event_in_a_stream_raises_the_typed_error() -> None:
    parser = codec().stream_parser()
    parser.feed(b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n')
    event = {"error": {"message": "Rate limit exceeded: free-models-per-min", "code": 429}}
    with pytest.raises(errors.RateLimitError) as caught:
        parser.feed(f"data: {json.dumps(event)}\n\n".encode())
    assert caught.value.body == event


def test_error_event_without_a_status_code_uses_the_message() -> None:
    parser = codec().stream_parser()
    event = {"error": {"message": "The server is overloaded", "type": "server_error"}}
    with pytest.raises(errors.OverloadedError):
        parser.feed(f"data: {json.dumps(event)}\n\n".encode())


def test_calls_numbered_zero_with_distinct_ids_stay_apart() -> None:
    # Some servers send each parallel call whole, every one with index 0.
    events = [
        {"index": 0, "id": "call_a", "function": {"name": "weather", "arguments": '{"city":"A"}'}},
        {"index": 0, "id": "call_b", "function": {"name": "weather", "arguments": '{"city":'}},
        {"index": 0, "function": {"arguments": '"B"}'}},
    ]
    data = b"".join(
        f"data: {json.dumps({'choices': [{'delta': {'tool_calls': [e]}}]})}\n\n".encode()
        for e in events
    )
    message = fold(feed_in_pieces(data + b"data: [DONE]\n\n"))
    assert [(c.id, dict(c.arguments)) for c in message.tool_calls] == [
        ("call_a", {"city": "A"}),
        ("call_b", {"city": "B"}),
    ]


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "item"), list(cases("error")))
def test_recorded_errors_map_to_their_class(path: Path, item: Mapping[str, Any]) -> None:
    recorded = item["response"]
    response = HttpResponse(recorded["status"], recorded["headers"], body_bytes(recorded))
    error = codec().error_for(response)
    # The scenario's name says what the original test expected.
    if "context_length_exceeded" in path.stem:
        assert type(error) is errors.ContextLengthExceededError
    elif "auth_error" in path.stem:
        assert isinstance(error, errors.AuthenticationError)
    else:
        raise AssertionError(f"no expectation for {path.stem}")
    assert error.status == recorded["status"]
    assert error.provider == "openrouter"
    body = json.loads(recorded["body"])
    assert str(error).startswith((body.get("error") or body).get("message") or body["detail"])


def test_error_in_a_200_reply_is_raised() -> None:
    body = {"error": {"message": "Upstream provider returned an error", "code": 502}}
    with pytest.raises(errors.ServerError):
        codec().parse_response(HttpResponse(200, {}, json.dumps(body).encode()))


@pytest.mark.parametrize(
    "body",
    [b"<html>Bad gateway</html>", b"[]", b'{"id": "x"}', b'{"choices": []}', b'{"choices": [{}]}'],
)
def test_malformed_replies_raise_parse_errors(body: bytes) -> None:
    with pytest.raises(errors.ResponseParseError):
        codec().parse_response(HttpResponse(200, {}, body))


# -- building requests ---------------------------------------------------------------------------


def _request(**fields: Any) -> ChatRequest:
    fields.setdefault("messages", [Message(role="user", content="Hi")])
    return ChatRequest(model="some/model", **fields)


def test_no_authorization_header_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)

    class Local(_Compat):
        requires_api_key = False

    http = Local(Config()).build_request(_request())
    assert "authorization" not in http.headers
    with pytest.raises(errors.MissingAPIKeyError):
        _Compat(Config()).build_request(_request())


def test_thinking_becomes_reasoning_effort_and_params_merge_last() -> None:
    params = {
        "_thinking": {"effort": "high", "budget": 100},
        "stream_options": {"extra": 1},
        "top_p": 0.5,
    }
    body = codec().build_request(_request(params=params, stream=True)).json
    assert body["reasoning_effort"] == "high"
    assert "_thinking" not in body
    assert body["stream_options"] == {"include_usage": True, "extra": 1}
    assert body["top_p"] == params["top_p"]
    budget_only = codec().build_request(_request(params={"_thinking": {"budget": 10000}})).json
    assert budget_only["reasoning_effort"] == "high"


def test_tool_settings_are_sent_only_with_tools() -> None:
    body = codec().build_request(_request(tool_choice="required", parallel_tool_calls=False)).json
    assert "tool_choice" not in body and "parallel_tool_calls" not in body
    tool = ToolSpec("weather", "Weather at a place", {"type": "object", "properties": {}})
    body = codec().build_request(_request(tools=[tool], tool_choice="weather")).json
    assert body["tool_choice"] == {"type": "function", "function": {"name": "weather"}}


def test_schema_is_made_strict() -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    body = codec().build_request(_request(schema=SchemaSpec("person", schema))).json
    sent = body["response_format"]["json_schema"]
    assert sent["strict"] is True
    assert sent["schema"]["additionalProperties"] is False
    assert sent["schema"]["required"] == ["name"]


def test_raw_content_and_remote_images() -> None:
    raw = [{"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral"}}]
    image = Attachment.from_url("https://example.com/cat.png")
    messages = [
        Message(role="user", content=RawContent(raw)),
        Message(role="user", content=Content("Look", (image,))),
        Message(role="assistant", content=None, tool_calls=(ToolCall("c1", "f", {"a": 1}),)),
    ]
    sent = codec().build_request(_request(messages=messages)).json["messages"]
    assert sent[0]["content"] == raw
    assert sent[1]["content"][1] == {"type": "image_url", "image_url": {"url": image.url}}
    assert sent[2]["content"] is None
    assert json.loads(sent[2]["tool_calls"][0]["function"]["arguments"]) == {"a": 1}


def test_refusal_stands_in_for_the_text() -> None:
    body: dict[str, Any] = {
        "model": "m",
        "choices": [
            {
                "message": {"role": "assistant", "content": None, "refusal": "I can't do that."},
                "finish_reason": "stop",
            }
        ],
    }
    message = fold(codec().parse_response(HttpResponse(200, {}, json.dumps(body).encode())))
    assert message.text == body["choices"][0]["message"]["refusal"]
    assert message.tokens is None


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("Rate limit reached for requests", errors.RateLimitError),
        ("rate_limit_exceeded", errors.RateLimitError),
        ("Too many requests, slow down", errors.RateLimitError),
        ("The model failed to generate a response", errors.ServerError),
        ("Could not produce an accurate answer", errors.ServerError),
    ],
)
def test_stream_error_classes_by_whole_words(message: str, expected: type[Exception]) -> None:
    provider = create_provider("openrouter", Config(openrouter_api_key="k"))
    error = provider.stream_error({"error": {"message": message}})
    assert type(error) is expected
