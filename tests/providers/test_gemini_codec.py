"""The Gemini codec, sans-IO: what the recorded corpus does not exercise.

Request building (no empty text part ever, tool choice, thinking config per model generation,
files, signatures of other providers, configuration), the JSON Schema to Gemini-schema
transform, malformed and blocked replies, broken and failing streams, error mapping and the
model listing. Replies are built from the recorded ones where a recording has the shape.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel

import sa_llm
from sa_llm import errors
from sa_llm.config import Config
from sa_llm.content import Attachment
from sa_llm.providers._gemini_schema import function_parameters, gemini_schema
from sa_llm.providers.base import ChatRequest, HttpResponse, SchemaSpec, ToolSpec
from sa_llm.providers.gemini import Gemini
from sa_llm.schema import clean_schema
from sa_llm.streaming import Accumulator
from sa_llm.testing import Replay
from sa_llm.types import Chunk, Content, Message, RawContent, Thinking, ToolCall

WIRE = Path(__file__).parents[1] / "fixtures" / "wire" / "gemini"
STREAM = WIRE / (
    "chat_gemini_token_accounting_correctly_sums_candidatestokencount_and_thoughtstokencount"
    "_in_streaming.json"
)
PARALLEL = WIRE / "chat_function_calling_gemini_gemini-2_5-flash_can_use_parallel_tool_calls.json"
AUTH = WIRE / "chat_error_handling_with_gemini_gemini-2_5-flash_raises_appropriate_auth_error.json"


def codec(**settings: Any) -> Gemini:
    return Gemini(Config(gemini_api_key="test-key", **settings))


def body_of(request: ChatRequest, **settings: Any) -> dict[str, Any]:
    http = codec(**settings).build_request(request)
    assert isinstance(http.json, dict)
    return http.json


def user(text: str | None) -> Message:
    return Message(role="user", content=text)


def response(body: Any, status: int = 200) -> HttpResponse:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpResponse(status, {"content-type": "application/json"}, data)


def fold(chunks: list[Chunk]) -> Message:
    accumulator = Accumulator("gemini")
    for chunk in chunks:
        accumulator.add(chunk)
    return accumulator.message()


def recorded(path: Path, index: int = 0) -> Mapping[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return dict(data["interactions"][index]["response"])


def stream(codec_: Gemini, data: bytes, piece: int = 5) -> list[Chunk]:
    parser = codec_.stream_parser()
    chunks = []
    for start in range(0, len(data), piece):
        chunks.extend(parser.feed(data[start : start + piece]))
    return chunks + parser.close()


def all_text_parts(body: Mapping[str, Any]) -> list[Any]:
    turns = [*body["contents"], body.get("systemInstruction") or {"parts": []}]
    return [part["text"] for turn in turns for part in turn["parts"] if "text" in part]


# -- requests: never an empty text part ----------------------------------------------------------


def test_an_assistant_turn_with_only_tool_calls_sends_only_function_call_parts() -> None:
    call = ToolCall(id="c1", name="weather", arguments={"city": "Berlin"})
    messages = [
        Message(role="system", content=""),
        user("Weather?"),
        Message(role="assistant", content=None, tool_calls=(call,)),
        Message(role="tool", content="15°C", tool_call_id="c1"),
        Message(role="assistant", content=""),  # an empty reply (all tokens spent thinking)
        user("Thanks"),
    ]
    tool = ToolSpec("weather", "Gets weather", {"type": "object", "properties": {}})
    body = body_of(ChatRequest(model="gemini-2.5-flash", messages=messages, tools=[tool]))

    assert "" not in all_text_parts(body)
    assert "systemInstruction" not in body  # the empty system prompt is left out
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user", "user"]
    assert body["contents"][1]["parts"] == [
        {"functionCall": {"name": "weather", "args": {"city": "Berlin"}}}
    ]


def test_empty_user_messages_are_left_out_and_nothing_at_all_is_refused() -> None:
    body = body_of(ChatRequest(model="gemini-2.5-flash", messages=[user(""), user("Hi")]))
    assert body["contents"] == [{"role": "user", "parts": [{"text": "Hi"}]}]

    with pytest.raises(errors.ConfigurationError, match="nothing to send"):
        body_of(ChatRequest(model="gemini-2.5-flash", messages=[user(None), user("")]))


def test_files_only_message_has_no_text_part() -> None:
    image = Attachment.from_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 16, filename="a.png")
    body = body_of(
        ChatRequest(model="gemini-2.5-flash", messages=[Message("user", Content(None, (image,)))])
    )
    assert body["contents"][0]["parts"] == [
        {"inline_data": {"mime_type": "image/png", "data": image.base64()}}
    ]


# -- requests: settings --------------------------------------------------------------------------


def test_url_auth_and_base_url() -> None:
    request = ChatRequest(model="gemini-2.5-flash", messages=[user("Hi")])
    http = codec().build_request(request)
    assert http.url == (
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    )
    assert http.headers["x-goog-api-key"] == "test-key"
    streamed = codec(gemini_base_url="http://proxy.test/v1beta/").build_request(
        ChatRequest(model="tunedModels/my-model", messages=[user("Hi")], stream=True)
    )
    assert (
        streamed.url
        == "http://proxy.test/v1beta/tunedModels/my-model:streamGenerateContent?alt=sse"
    )


def test_the_key_comes_from_gemini_api_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "from-env")
    http = Gemini(Config()).build_request(
        ChatRequest(model="gemini-2.5-flash", messages=[user("x")])
    )
    assert http.headers["x-goog-api-key"] == "from-env"
    monkeypatch.delenv("GEMINI_API_KEY")
    with pytest.raises(errors.MissingAPIKeyError, match="GEMINI_API_KEY"):
        Gemini(Config()).build_request(ChatRequest(model="gemini-2.5-flash", messages=[user("x")]))


@pytest.mark.parametrize(
    ("model", "thinking", "expected"),
    [
        ("gemini-3-flash-preview", {"effort": "low"}, {"thinkingLevel": "low"}),
        ("gemini-3-pro-preview", {"effort": "high", "budget": 2048}, {"thinkingLevel": "high"}),
        ("gemini-3-pro-preview", {"budget": 2048}, {"thinkingBudget": 2048}),
        ("gemini-2.5-flash", {"budget": 2048}, {"thinkingBudget": 2048}),
        ("gemini-2.5-flash", {"effort": "low", "budget": 300}, {"thinkingBudget": 300}),
        ("gemini-2.5-pro", {"effort": "high"}, {"thinkingBudget": 24576}),
        ("gemini-2.5-flash", {"effort": "none"}, {"thinkingBudget": 0}),
        ("gemini-flash-latest", {"effort": "medium"}, {"thinkingLevel": "medium"}),
    ],
)
def test_thinking_config_per_model_generation(
    model: str, thinking: dict[str, Any], expected: dict[str, Any]
) -> None:
    params = {"_thinking": thinking, "generationConfig": {"maxOutputTokens": 64}}
    body = body_of(ChatRequest(model=model, messages=[user("Hi")], params=params))
    assert body["generationConfig"] == {
        "thinkingConfig": {"includeThoughts": True, **expected},
        "maxOutputTokens": 64,  # with_params fields merge into the same object
    }
    assert "_thinking" not in json.dumps(body)


def tools() -> list[ToolSpec]:
    empty = {"type": "object", "properties": {}}
    return [ToolSpec("weather", "Weather", empty), ToolSpec("search", "Search", empty)]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        ("search", {"mode": "ANY", "allowedFunctionNames": ["search"]}),
    ],
)
def test_tool_choice(choice: str, expected: dict[str, Any]) -> None:
    request = ChatRequest(
        model="gemini-2.5-flash", messages=[user("Hi")], tools=tools(), tool_choice=choice
    )
    assert body_of(request)["toolConfig"] == {"functionCallingConfig": expected}


def test_unsupported_combinations_are_refused_before_sending() -> None:
    with pytest.raises(errors.ConfigurationError, match="no tool of that name"):
        body_of(
            ChatRequest(
                model="gemini-2.5-flash", messages=[user("Hi")], tools=tools(), tool_choice="nope"
            )
        )
    schema = SchemaSpec("person", {"type": "object", "properties": {"name": {"type": "string"}}})
    with pytest.raises(errors.ConfigurationError, match="tools and a response schema"):
        body_of(
            ChatRequest(
                model="gemini-2.5-flash", messages=[user("Hi")], tools=tools(), schema=schema
            )
        )
    # Gemini 3 takes both.
    body = body_of(
        ChatRequest(
            model="gemini-3-flash-preview", messages=[user("Hi")], tools=tools(), schema=schema
        )
    )
    assert body["generationConfig"]["responseJsonSchema"] == schema.schema


def test_unsupported_file_fails_before_any_request() -> None:
    replay = Replay({"interactions": []})
    chat = replay.context().chat("gemini-2.5-flash", provider="gemini", assume_model_exists=True)
    archive = Attachment.from_bytes(b"PK\x03\x04" + b"\0" * 20, filename="data.zip")
    with pytest.raises(errors.UnsupportedAttachmentError, match=r"data\.zip"):
        chat.ask("What is in it?", attachments=[archive])
    assert replay.seen == []


def test_tool_files_on_gemini_3_nest_binary_parts_and_keep_text_files_beside() -> None:
    call = ToolCall(id="c1", name="fetch")
    image = Attachment.from_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 16, filename="a.png")
    notes = Attachment.from_bytes(b"hello", filename="notes.txt")
    messages = [
        user("Fetch"),
        Message(role="assistant", tool_calls=(call,)),
        Message(role="tool", content=Content("Fetched.", (image, notes)), tool_call_id="c1"),
    ]
    parts = body_of(ChatRequest(model="gemini-3-flash-preview", messages=messages))["contents"][2][
        "parts"
    ]
    assert [sorted(p) for p in parts] == [["functionResponse"], ["text"]]
    assert parts[0]["functionResponse"]["parts"] == [
        {"inline_data": {"mime_type": "image/png", "data": image.base64()}}
    ]
    assert parts[1]["text"].startswith("<file name='notes.txt'")


def test_a_tool_result_for_an_unknown_call_is_refused() -> None:
    messages = [user("Hi"), Message(role="tool", content="x", tool_call_id="gone")]
    with pytest.raises(errors.ConfigurationError, match="'gone'"):
        body_of(ChatRequest(model="gemini-2.5-flash", messages=messages))


def test_signatures_of_other_providers_are_not_replayed() -> None:
    mine = Message("assistant", "4", thinking=Thinking("2+2", "sig-g"), model_id="gemini-2.5-flash")
    theirs = Message("assistant", "4", thinking=Thinking("2+2", "enc-openai"), model_id="gpt-5")
    body = body_of(
        ChatRequest(
            model="gemini-2.5-flash", messages=[user("a"), mine, user("b"), theirs, user("c")]
        )
    )
    assert body["contents"][1]["parts"] == [
        {"thought": True, "text": "2+2", "thoughtSignature": "sig-g"},
        {"text": "4"},
    ]
    assert body["contents"][3]["parts"] == [{"text": "4"}]


def test_raw_content_parts_are_sent_verbatim() -> None:
    parts = [
        {"text": "Describe"},
        {"file_data": {"file_uri": "https://generativelanguage.googleapis.com/v1beta/files/x"}},
    ]
    body = body_of(
        ChatRequest(model="gemini-2.5-flash", messages=[Message("user", RawContent(parts))])
    )
    assert body["contents"] == [{"role": "user", "parts": parts}]


# -- the schema transform ------------------------------------------------------------------------


class Color(str, Enum):
    red = "red"
    blue = "blue"


class Level(int, Enum):
    low = 1
    high = 2


class Window(BaseModel):
    start: str
    end: str | None = None


class Node(BaseModel):
    name: str
    children: list[Node] = []


def test_a_pydantic_tool_schema_becomes_gemini_schema() -> None:
    class Plan(sa_llm.Tool):
        """Plans."""

        def execute(
            self,
            window: Window,
            tags: Annotated[list[str], "Tags"],
            color: Color,
            level: Level,
            mode: Literal["fast", "slow"] = "fast",
            note: str | None = None,
        ) -> str:
            return ""

    parameters = function_parameters(Plan.spec().parameters)
    properties = parameters["properties"]

    assert parameters["type"] == "OBJECT"
    assert "additionalProperties" not in json.dumps(parameters)
    assert "$ref" not in json.dumps(parameters) and "$defs" not in parameters
    assert set(parameters["required"]) == {"window", "tags", "color", "level"}
    assert properties["window"]["type"] == "OBJECT"  # inlined from $defs
    assert properties["window"]["properties"]["end"] == {
        "type": "STRING",
        "default": None,
        "nullable": True,
    }
    assert properties["tags"] == {
        "type": "ARRAY",
        "items": {"type": "STRING"},
        "description": "Tags",
    }
    assert properties["color"] == {"type": "STRING", "enum": ["red", "blue"]}
    assert properties["level"]["type"] == "INTEGER" and "enum" not in properties["level"]
    assert "1, 2" in properties["level"]["description"]  # non-string enums become a hint
    assert properties["mode"]["enum"] == ["fast", "slow"]
    assert properties["note"]["nullable"] is True and properties["note"]["type"] == "STRING"


def test_recursive_references_end_in_an_open_object() -> None:
    schema = clean_schema(Node.model_json_schema())
    assert schema["$ref"] == "#/$defs/Node"  # pydantic puts the model itself in $defs
    parameters = function_parameters(schema)
    assert parameters["properties"]["name"] == {"type": "STRING"}
    children = parameters["properties"]["children"]
    assert children["type"] == "ARRAY" and children["default"] == []
    assert children["items"] == {"type": "OBJECT"}  # Node inside Node: cut where it recurs


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({}, {"type": "OBJECT", "properties": {}}),
        ({"type": ["string", "null"]}, {"type": "STRING", "nullable": True}),
        ({"type": ["string", "integer"]}, {"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}]}),
        (
            {"anyOf": [{"type": "string"}, {"type": "object", "properties": {"a": {}}}]},
            {"anyOf": [{"type": "STRING"}, {"type": "OBJECT", "properties": {"a": {}}}]},
        ),
        ({"oneOf": [{"type": "number"}, {"type": "null"}]}, {"type": "NUMBER", "nullable": True}),
        ({"const": "x"}, {"type": "STRING", "enum": ["x"]}),
        ({"type": "string", "format": "email"}, {"type": "STRING"}),
        ({"type": "string", "format": "date-time"}, {"type": "STRING", "format": "date-time"}),
        ({"type": "integer", "multipleOf": 2, "minimum": 0}, {"type": "INTEGER", "minimum": 0}),
        (
            {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]},
            {"type": "ARRAY", "items": {"anyOf": [{"type": "INTEGER"}, {"type": "STRING"}]}},
        ),
        (
            {
                "allOf": [{"properties": {"a": {"type": "string"}}, "required": ["a"]}],
                "description": "d",
            },
            {"properties": {"a": {"type": "STRING"}}, "required": ["a"], "description": "d"},
        ),
    ],
)
def test_schema_transform_cases(schema: dict[str, Any], expected: dict[str, Any]) -> None:
    result = function_parameters(schema) if not schema else gemini_schema(schema)
    assert result == expected


def test_tool_declarations_use_the_transform_and_skip_empty_descriptions() -> None:
    tool = ToolSpec("ping", "", {"type": "object", "properties": {}, "additionalProperties": False})
    body = body_of(ChatRequest(model="gemini-2.5-flash", messages=[user("Hi")], tools=[tool]))
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {"name": "ping", "parameters": {"type": "OBJECT", "properties": {}}}
            ]
        }
    ]


# -- replies ---------------------------------------------------------------------------------------


def test_a_reply_that_is_not_json_or_lacks_candidates_or_parts_is_malformed() -> None:
    with pytest.raises(errors.ResponseParseError) as caught:
        codec().parse_response(response(b"<html>"))
    assert caught.value.provider == "gemini"
    with pytest.raises(errors.ResponseParseError, match=r"gemini.*candidates"):
        codec().parse_response(response({"usageMetadata": {"promptTokenCount": 3}}))
    with pytest.raises(errors.ResponseParseError, match=r"content\.parts"):
        codec().parse_response(response({"candidates": [{"content": {"role": "model"}}]}))
    nameless: dict[str, Any] = {
        "candidates": [{"content": {"parts": [{"functionCall": {"args": {}}}]}}]
    }
    with pytest.raises(errors.ResponseParseError, match="no name"):
        fold(codec().parse_response(response(nameless)))


def test_a_reply_that_spent_every_token_thinking_is_empty_not_malformed() -> None:
    body = {
        "candidates": [{"content": {"role": "model"}, "finishReason": "MAX_TOKENS"}],
        "usageMetadata": {"promptTokenCount": 9, "thoughtsTokenCount": 64},
    }
    message = fold(codec().parse_response(response(body)))
    assert message.content is None and message.finish_reason == "MAX_TOKENS"
    assert message.tokens is not None and message.tokens.output == 64


def test_a_blocked_prompt_is_a_content_blocked_error_naming_the_reason() -> None:
    body = {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {}}
    with pytest.raises(errors.ContentBlockedError, match=r"blocked the prompt.*PROHIBITED_CONTENT"):
        codec().parse_response(response(body))
    event = b"data: " + json.dumps(body).encode() + b"\r\n\r\n"
    with pytest.raises(errors.ContentBlockedError, match="PROHIBITED_CONTENT"):
        stream(codec(), event)
    withheld = {"candidates": [{"finishReason": "SAFETY", "index": 0}]}
    with pytest.raises(errors.ContentBlockedError, match=r"withheld.*SAFETY"):
        codec().parse_response(response(withheld))


def test_cached_tokens_are_reported_and_stay_in_input() -> None:
    body = {
        "candidates": [{"content": {"parts": [{"text": "Hi"}]}, "finishReason": "STOP"}],
        "usageMetadata": {
            "promptTokenCount": 9602,
            "cachedContentTokenCount": 9500,
            "candidatesTokenCount": 3,
        },
    }
    tokens = fold(codec().parse_response(response(body))).tokens
    assert tokens == sa_llm.Tokens(input=9602, output=3, cached=9500)


def test_call_ids_are_stable_and_unique_and_gemini_ids_win() -> None:
    reply = recorded(PARALLEL)
    whole = fold(codec().parse_response(response(reply["body"].encode())))
    again = fold(codec().parse_response(response(reply["body"].encode())))
    ids = [c.id for c in whole.tool_calls]
    assert ids == [c.id for c in again.tool_calls] and len(set(ids)) == 2
    assert all(json.loads(reply["body"])["responseId"] in i for i in ids)
    # The same reply streamed gets the same ids.
    event = b"data: " + json.dumps(json.loads(reply["body"])).encode() + b"\r\n\r\n"
    assert [c.id for c in fold(stream(codec(), event)).tool_calls] == ids

    own = {"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "id": "x1"}}]}}]}
    assert fold(codec().parse_response(response(own))).tool_calls[0].id == "x1"


# -- streams ---------------------------------------------------------------------------------------


def test_a_stream_cut_before_its_finish_reason_is_interrupted() -> None:
    body = recorded(STREAM)["body"].encode()
    events = body.split(b"\r\n\r\n")
    assert len(events) > 2
    cut = b"\r\n\r\n".join(events[:-2]) + b"\r\n\r\n"  # the event with finishReason is gone
    with pytest.raises(errors.StreamInterruptedError):
        stream(codec(), cut)
    assert fold(stream(codec(), body)).finish_reason == "STOP"


def test_a_cut_stream_through_the_chat_raises_and_keeps_no_reply() -> None:
    data = json.loads(STREAM.read_text(encoding="utf-8"))
    data["interactions"][0]["response"]["body"] = recorded(STREAM)["body"].split("\r\n\r\n")[0]
    chat = (
        Replay(data).context().chat("gemini-2.5-flash", provider="gemini", assume_model_exists=True)
    )
    with pytest.raises(errors.StreamInterruptedError):
        chat.ask("What is 2+2? Think step by step.", on_chunk=lambda chunk: None)


@pytest.mark.parametrize(
    ("error", "cls"),
    [
        (
            {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"},
            errors.OverloadedError,
        ),
        (
            {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"},
            errors.RateLimitError,
        ),
        ({"code": 500, "message": "Internal error", "status": "INTERNAL"}, errors.ServerError),
    ],
)
def test_an_error_event_in_a_stream_raises_its_typed_error(
    error: dict[str, Any], cls: type[Exception]
) -> None:
    first = recorded(STREAM)["body"].split("\r\n\r\n")[0].encode()
    failing = first + b"\r\n\r\ndata: " + json.dumps({"error": error}).encode() + b"\r\n\r\n"
    with pytest.raises(cls) as caught:
        stream(codec(), failing)
    assert isinstance(caught.value, errors.ProviderError)
    assert caught.value.status == error["code"] and caught.value.provider == "gemini"


def test_stream_usage_is_the_final_figure_and_model_arrives_once() -> None:
    chunks = stream(codec(), recorded(STREAM)["body"].encode(), piece=3)
    assert sum(1 for c in chunks if c.model_id) == 1
    usage = [c.tokens for c in chunks if c.tokens is not None]
    events = [json.loads(line[5:]) for line in recorded(STREAM)["body"].splitlines() if line]
    final = events[-1]["usageMetadata"]
    expected = sa_llm.Tokens(
        input=final["promptTokenCount"],
        output=final["candidatesTokenCount"] + final["thoughtsTokenCount"],
        reasoning=final["thoughtsTokenCount"],
    )
    # Every event reports the running usage (a cut stream keeps it); the last one wins.
    assert len(usage) == sum(1 for e in events if "usageMetadata" in e)
    assert usage[-1] == expected
    assert folded_usage(chunks) == expected


def folded_usage(chunks: list[Any]) -> Any:
    """The usage of the message the chunks fold into."""
    from sa_llm.streaming import Accumulator

    accumulator = Accumulator()
    for chunk in chunks:
        accumulator.add(chunk)
    return accumulator.tokens


# -- errors and model listing ----------------------------------------------------------------------


def test_error_mapping() -> None:
    auth = recorded(AUTH)
    error = codec().error_for(HttpResponse(auth["status"], {}, auth["body"].encode()))
    assert isinstance(error, errors.AuthenticationError) and error.status == 400
    assert error.message == json.loads(auth["body"])["error"]["message"]

    too_long = {
        "error": {
            "code": 400,
            "message": "The input token count (1200000) exceeds the maximum number of tokens "
            "allowed (1048576).",
            "status": "INVALID_ARGUMENT",
        }
    }
    assert isinstance(codec().error_for(response(too_long, 400)), errors.ContextLengthExceededError)
    limited = {
        "error": {
            "code": 429,
            "message": "Quota exceeded",
            "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "31s"}],
        }
    }
    rate = codec().error_for(response(limited, 429))
    assert isinstance(rate, errors.RateLimitError) and rate.retry_after == 31.0
    denied = {"error": {"code": 403, "message": "No access", "status": "PERMISSION_DENIED"}}
    assert isinstance(codec().error_for(response(denied, 403)), errors.PermissionDeniedError)


def test_model_listing() -> None:
    request = codec().list_models_request()
    assert request.method == "GET"
    assert request.url == "https://generativelanguage.googleapis.com/v1beta/models?pageSize=1000"
    assert request.headers == {"x-goog-api-key": "test-key"}
    listing = {
        "models": [
            {"name": "models/gemini-2.5-flash", "displayName": "Gemini 2.5 Flash"},
            {"name": "models/text-embedding-004"},
            {"displayName": "no name"},
        ],
        "nextPageToken": "abc",
    }
    assert codec().parse_model_list(response(listing)) == [
        {"id": "gemini-2.5-flash", "name": "Gemini 2.5 Flash", "created_at": None},
        {"id": "text-embedding-004", "name": "text-embedding-004", "created_at": None},
    ]
    assert codec().parse_model_list(response({})) == []  # proto JSON drops empty lists
    with pytest.raises(errors.ResponseParseError, match="models"):
        codec().parse_model_list(response({"data": []}))
