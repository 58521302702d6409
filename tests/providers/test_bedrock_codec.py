"""The Bedrock codec beyond the recordings: request bodies, model ids, errors, listing, Mantle."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from pydantic import BaseModel

import sa_llm
from sa_llm.config import Config
from sa_llm.content import Attachment
from sa_llm.providers import create_provider
from sa_llm.providers.base import ChatRequest, HttpResponse, SchemaSpec, ToolSpec
from sa_llm.providers.bedrock import Bedrock
from sa_llm.providers.bedrock._model_ids import (
    api_for,
    inference_profile_id,
    is_qualified,
    region_groups,
)
from sa_llm.providers.bedrock.mantle import MantleChatCompletions, MantleResponses
from sa_llm.testing import Replay
from sa_llm.types import Content, Message, RawContent, Thinking, ToolCall

SETTINGS: dict[str, Any] = {
    "bedrock_region": "us-east-1",
    "bedrock_access_key_id": "AKIDEXAMPLE",
    "bedrock_secret_access_key": "secret",
}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
PDF = b"%PDF-1.4 minimal"


def provider(**settings: Any) -> Bedrock:
    return Bedrock(Config(**{**SETTINGS, **settings}))


def body_of(*messages: Message, **request: Any) -> dict[str, Any]:
    http = provider().build_request(
        ChatRequest(model="us.amazon.nova-2-lite-v1:0", messages=list(messages), **request)
    )
    assert http.content is not None
    return dict(json.loads(http.content))


def user(text: str | None = None, *files: Attachment) -> Message:
    return Message(role="user", content=Content(text, files) if files else text)


# -- request bodies ------------------------------------------------------------------------------


def test_tool_results_and_what_follows_them_form_one_user_turn() -> None:
    calls = (
        ToolCall("t1", "weather", {"city": "Berlin"}),
        ToolCall("t2", "weather", {"city": "Paris"}),
    )
    body = body_of(
        user("Weather in Berlin and Paris?"),
        Message(role="assistant", content="Checking.", tool_calls=calls),
        Message(role="tool", content="15°C", tool_call_id="t1"),
        Message(role="tool", content="18°C", tool_call_id="t2"),
        user("And tomorrow?"),
    )
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == [
        {"text": "Checking."},
        {"toolUse": {"toolUseId": "t1", "name": "weather", "input": {"city": "Berlin"}}},
        {"toolUse": {"toolUseId": "t2", "name": "weather", "input": {"city": "Paris"}}},
    ]
    assert body["messages"][2]["content"] == [
        {"toolResult": {"toolUseId": "t1", "content": [{"text": "15°C"}]}},
        {"toolResult": {"toolUseId": "t2", "content": [{"text": "18°C"}]}},
        {"text": "And tomorrow?"},
    ]
    assert body["inferenceConfig"] == {}
    assert "system" not in body and "toolConfig" not in body


def test_files_returned_by_tools_are_blocks_of_the_result() -> None:
    result = Content("Here it is.", (Attachment.from_bytes(PNG, "logo.png"),))
    body = body_of(
        user("Fetch it"),
        Message(role="assistant", tool_calls=(ToolCall("t1", "fetch", {}),)),
        Message(role="tool", content=result, tool_call_id="t1"),
    )
    (block,) = body["messages"][2]["content"]
    content = block["toolResult"]["content"]
    assert content[0] == {"text": "Here it is."}
    assert content[1]["image"]["format"] == "png"


def test_signed_reasoning_is_sent_back_first_and_unsigned_reasoning_is_not() -> None:
    signed = Message(
        role="assistant",
        content="42",
        thinking=Thinking("Let me think.", "sig-1", {"redacted_reasoning": ["b64data"]}),
    )
    unsigned = Message(role="assistant", content="43", thinking=Thinking("[REDACTED]."))
    body = body_of(user("Q1"), signed, user("Q2"), unsigned, user("Q3"))
    assert body["messages"][1]["content"] == [
        {"reasoningContent": {"reasoningText": {"text": "Let me think.", "signature": "sig-1"}}},
        {"reasoningContent": {"redactedContent": "b64data"}},
        {"text": "42"},
    ]
    assert body["messages"][3]["content"] == [{"text": "43"}]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, None),
        ("auto", {"auto": {}}),
        ("required", {"any": {}}),
        ("weather", {"tool": {"name": "weather"}}),
        ("none", None),
    ],
)
def test_tool_config_and_choice(choice: str | None, expected: Any) -> None:
    tool = ToolSpec("weather", "Current weather", {"type": "object", "properties": {}})
    body = body_of(user("Hi"), tools=[tool], tool_choice=choice)
    assert body["toolConfig"]["tools"] == [
        {
            "toolSpec": {
                "name": "weather",
                "description": "Current weather",
                "inputSchema": {"json": {"type": "object", "properties": {}}},
            }
        }
    ]
    assert body["toolConfig"].get("toolChoice") == expected


def test_documents_get_unique_names_bedrock_accepts() -> None:
    body = body_of(
        user(
            "Compare",
            Attachment.from_bytes(PDF, "sample.pdf"),
            Attachment.from_bytes(PDF, "sample.pdf"),
            Attachment.from_bytes(PDF, "Q3 report, final (v2).pdf"),
            Attachment.from_bytes(b"a,b\n1,2\n", "data.csv"),
        )
    )
    documents = [b["document"] for b in body["messages"][0]["content"] if "document" in b]
    assert [(d["name"], d["format"]) for d in documents] == [
        ("sample", "pdf"),
        ("sample_2", "pdf"),
        ("Q3 report- final (v2)", "pdf"),
        ("data", "csv"),
    ]


def test_text_files_are_inlined_and_images_sent_as_bytes() -> None:
    body = body_of(
        user(
            "Read",
            Attachment.from_bytes(b"Ruby is great.", "notes.txt"),
            Attachment.from_bytes(PNG, "x.png"),
        )
    )
    text, inlined, image = body["messages"][0]["content"]
    assert text == {"text": "Read"}
    assert inlined == {
        "text": "<file name='notes.txt' mime_type='text/plain'>Ruby is great.</file>"
    }
    assert image["image"]["format"] == "png"
    assert image["image"]["source"]["bytes"] == Attachment.from_bytes(PNG).base64()


def test_audio_is_not_accepted_by_converse() -> None:
    mp3 = Attachment.from_bytes(b"ID3" + b"\x00" * 32, "speech.mp3")
    with pytest.raises(sa_llm.UnsupportedAttachmentError, match=r"speech\.mp3"):
        body_of(user("What is said?", mp3))


def test_raw_content_goes_verbatim_for_cache_points() -> None:
    system = RawContent([{"text": "Long reference."}, {"cachePoint": {"type": "default"}}])
    prompt = RawContent([{"text": "Question"}, {"cachePoint": {"type": "default"}}])
    body = body_of(
        Message(role="system", content=system),
        Message(role="system", content="Be brief."),
        Message(role="user", content=prompt),
    )
    assert body["system"] == [*system.value, {"text": "Be brief."}]
    assert body["messages"] == [{"role": "user", "content": prompt.value}]


def test_structured_output_sends_the_schema_as_a_json_string() -> None:
    class Person(BaseModel):
        name: str
        age: int | None = None

    schema = sa_llm.chat("fake", provider="fake").with_schema(Person).schema
    assert schema is not None
    body = body_of(user("John, 30"), schema=schema.spec())
    text_format = body["outputConfig"]["textFormat"]
    assert text_format["type"] == "json_schema"
    sent = text_format["structure"]["jsonSchema"]
    assert sent["name"] == "Person"
    assert ": " not in sent["schema"]  # compact, as the recordings show
    parsed = json.loads(sent["schema"])
    assert parsed["additionalProperties"] is False
    assert parsed["required"] == ["name", "age"]  # strict: every property, the optional nullable
    loose = body_of(user("x"), schema=SchemaSpec("p", {"type": "object"}, strict=False))
    assert json.loads(loose["outputConfig"]["textFormat"]["structure"]["jsonSchema"]["schema"]) == {
        "type": "object"
    }


@pytest.mark.parametrize(
    ("model", "thinking", "fields"),
    [
        (
            "us.anthropic.claude-haiku-4-5-20251001-v1:0",
            {"budget": 2000},
            {"reasoning_config": {"type": "enabled", "budget_tokens": 2000}},
        ),
        (
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
            {"effort": "low"},
            {"reasoning_config": {"type": "enabled", "budget_tokens": 1024}},
        ),
        (
            "us.amazon.nova-2-lite-v1:0",
            {"effort": "high"},
            {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": "high"}},
        ),
        (
            "us.amazon.nova-2-lite-v1:0",
            {"budget": 1024},
            {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": "low"}},
        ),
        (
            "us.amazon.nova-2-lite-v1:0",
            {"effort": "none"},
            {"reasoningConfig": {"type": "disabled"}},
        ),
        ("openai.gpt-oss-120b-1:0", {"effort": "medium"}, {"reasoning_effort": "medium"}),
    ],
)
def test_with_thinking_becomes_each_familys_fields(
    model: str, thinking: dict[str, Any], fields: dict[str, Any]
) -> None:
    http = provider().build_request(
        ChatRequest(model=model, messages=[user("Hi")], params={"_thinking": thinking})
    )
    assert http.content is not None
    body = json.loads(http.content)
    assert body["additionalModelRequestFields"] == fields
    assert "_thinking" not in body


def test_with_thinking_on_an_unknown_family_asks_for_with_params() -> None:
    request = ChatRequest(
        model="deepseek.r1-v1:0", messages=[user("Hi")], params={"_thinking": {"effort": "low"}}
    )
    with pytest.raises(sa_llm.ConfigurationError, match="additionalModelRequestFields"):
        provider().build_request(request)


def test_params_merge_into_the_body_and_headers_pass_through() -> None:
    http = provider().build_request(
        ChatRequest(
            model="us.amazon.nova-2-lite-v1:0",
            messages=[user("Hi")],
            temperature=0.2,
            params={
                "inferenceConfig": {"maxTokens": 64},
                "performanceConfig": {"latency": "optimized"},
            },
            headers={"X-Amzn-Bedrock-Trace": "ENABLED"},
        )
    )
    assert http.content is not None
    body = json.loads(http.content)
    assert body["inferenceConfig"] == {"temperature": 0.2, "maxTokens": 64}
    assert body["performanceConfig"] == {"latency": "optimized"}
    assert http.headers["x-amzn-bedrock-trace"] == "ENABLED"
    assert http.headers["accept"] == "application/json"


def test_streaming_requests_go_to_converse_stream() -> None:
    http = provider().build_request(
        ChatRequest(model="us.amazon.nova-2-lite-v1:0", messages=[user("Hi")], stream=True)
    )
    assert http.url.endswith("/converse-stream")
    assert http.headers["accept"] == "application/vnd.amazon.eventstream"


def test_base_url_setting_replaces_the_endpoint_but_not_the_signing_region() -> None:
    http = provider(
        bedrock_base_url="https://vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com/"
    ).build_request(ChatRequest(model="us.amazon.nova-2-lite-v1:0", messages=[user("Hi")]))
    assert http.url.startswith("https://vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com/model/")
    assert "/us-east-1/bedrock/aws4_request" in http.headers["authorization"]


# -- model ids -----------------------------------------------------------------------------------


def fake_lookup(known: Mapping[str, Mapping[str, Any]]) -> Any:
    return known.get


@pytest.mark.parametrize(
    ("region", "groups"),
    [
        ("us-east-1", ("us",)),
        ("us-gov-west-1", ("us-gov",)),
        ("eu-west-3", ("eu",)),
        ("ap-northeast-1", ("jp", "apac")),
        ("ap-southeast-2", ("au", "apac")),
        ("ap-south-1", ("apac",)),
        ("me-central-1", ("apac",)),
        ("sa-east-1", ()),
    ],
)
def test_region_groups(region: str, groups: tuple[str, ...]) -> None:
    assert region_groups(region) == groups


def test_inference_profile_prefix_rules() -> None:
    lookup = fake_lookup(
        {
            "anthropic.claude-x-v1:0": {},
            "us.anthropic.claude-x-v1:0": {"inference_types": ["INFERENCE_PROFILE"]},
            "apac.anthropic.claude-x-v1:0": {"inference_types": ["INFERENCE_PROFILE"]},
            "amazon.nova-lite-v1:0": {"inference_types": ["ON_DEMAND", "INFERENCE_PROFILE"]},
            "us.amazon.nova-lite-v1:0": {"inference_types": ["INFERENCE_PROFILE"]},
            "meta.llama-new-v1:0": {"inference_types": ["INFERENCE_PROFILE"]},
        }
    )
    assert inference_profile_id("anthropic.claude-x-v1:0", "us-west-2", lookup) == (
        "us.anthropic.claude-x-v1:0"
    )
    # Tokyo: no jp. profile listed, so the APAC one.
    assert inference_profile_id("anthropic.claude-x-v1:0", "ap-northeast-1", lookup) == (
        "apac.anthropic.claude-x-v1:0"
    )
    # On-demand models keep their id (the request stays in the region).
    assert (
        inference_profile_id("amazon.nova-lite-v1:0", "us-east-1", lookup)
        == "amazon.nova-lite-v1:0"
    )
    # Profile-only in the registry, no profile entry listed: the region's first geography.
    assert (
        inference_profile_id("meta.llama-new-v1:0", "eu-west-1", lookup) == "eu.meta.llama-new-v1:0"
    )
    # Unknown models, regions without a geography, prefixed ids and ARNs are left alone.
    assert inference_profile_id("vendor.model-v1:0", "us-east-1", lookup) == "vendor.model-v1:0"
    assert inference_profile_id("anthropic.claude-x-v1:0", "sa-east-1", lookup) == (
        "anthropic.claude-x-v1:0"
    )
    for model in (
        "eu.anthropic.claude-x-v1:0",
        "global.anthropic.claude-x-v1:0",
        "arn:aws:bedrock:x",
    ):
        assert is_qualified(model)
        assert inference_profile_id(model, "us-east-1", lookup) == model


@pytest.mark.parametrize(
    ("region", "expected"),
    [
        ("us-east-1", "us.anthropic.claude-haiku-4-5-20251001-v1:0"),
        ("eu-central-1", "eu.anthropic.claude-haiku-4-5-20251001-v1:0"),
        ("ap-northeast-1", "jp.anthropic.claude-haiku-4-5-20251001-v1:0"),
        ("ap-southeast-2", "au.anthropic.claude-haiku-4-5-20251001-v1:0"),
    ],
)
def test_chats_resolve_aliases_to_the_regions_inference_profile(region: str, expected: str) -> None:
    ctx = sa_llm.context(**{**SETTINGS, "bedrock_region": region})
    assert ctx.chat("claude-haiku-4-5", provider="bedrock").model_id == expected


def test_without_a_region_the_registry_id_is_kept_until_a_request_needs_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    chat = sa_llm.context(bedrock_access_key_id="a", bedrock_secret_access_key="b").chat(
        "claude-haiku-4-5", provider="bedrock"
    )
    assert chat.model_id == "anthropic.claude-haiku-4-5-20251001-v1:0"


def test_on_demand_models_keep_their_id() -> None:
    chat = sa_llm.context(**SETTINGS).chat("mistral.voxtral-mini-3b-2507", provider="bedrock")
    assert chat.model_id == "mistral.voxtral-mini-3b-2507"


def test_an_assumed_base_id_is_prefixed_when_the_request_is_built() -> None:
    replay = Replay(
        {
            "interactions": [
                {
                    "request": {
                        "method": "POST",
                        "url": "https://bedrock-runtime.<AWS_REGION>.amazonaws.com/model/"
                        "us.amazon.nova-2-lite-v1:0/converse",
                    },
                    "response": {
                        "status": 200,
                        "headers": {"content-type": "application/json"},
                        "body": json.dumps(
                            {
                                "output": {
                                    "message": {"role": "assistant", "content": [{"text": "4"}]}
                                },
                                "stopReason": "end_turn",
                                "usage": {"inputTokens": 5, "outputTokens": 1, "totalTokens": 6},
                            }
                        ),
                    },
                }
            ]
        }
    )
    chat = replay.context(**SETTINGS).chat(
        "amazon.nova-2-lite-v1:0", provider="bedrock", assume_model_exists=True
    )
    assert chat.model_id == "amazon.nova-2-lite-v1:0"
    assert chat.ask("2 + 2?").text == "4"
    assert replay.seen[0].url.endswith("/model/us.amazon.nova-2-lite-v1%3A0/converse")


@pytest.mark.parametrize(
    ("model", "api", "cls"),
    [
        ("mistral.voxtral-mini-3b-2507", "chat_completions", MantleChatCompletions),
        ("openai.gpt-oss-20b", "responses", MantleResponses),
        ("google.gemma-4-31b", "responses", MantleResponses),
        ("vendor.unlisted-model", "chat_completions", MantleChatCompletions),
        ("amazon.nova-2-lite-v1:0", "converse", Bedrock),
        ("us.anthropic.claude-haiku-4-5-20251001-v1:0", "converse", Bedrock),
        ("anthropic.claude-haiku-4-5", "converse", Bedrock),
        ("arn:aws:bedrock:us-east-1:1:inference-profile/x", "converse", Bedrock),
    ],
)
def test_the_api_is_chosen_by_model(model: str, api: str, cls: type[Any]) -> None:
    from sa_llm.providers.bedrock import registry_lookup

    assert api_for(model, registry_lookup()) == api
    chosen = create_provider("bedrock", Config(**SETTINGS), model)
    assert type(chosen) is cls
    assert chosen.name == "bedrock"


# -- replies -------------------------------------------------------------------------------------


def reply(body: Any, status: int = 200, **headers: str) -> HttpResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpResponse(status, {"content-type": "application/json", **headers}, raw)


def test_a_whole_reply_with_reasoning_tools_and_cache_usage() -> None:
    chunks = provider().parse_response(
        reply(
            {
                "output": {
                    "message": {
                        "role": "assistant",
                        "content": [
                            {
                                "reasoningContent": {
                                    "reasoningText": {"text": "Hmm.", "signature": "s1"}
                                }
                            },
                            {"reasoningContent": {"redactedContent": "cmVkYWN0ZWQ="}},
                            {"text": "Calling."},
                            {"toolUse": {"toolUseId": "t1", "name": "lookup", "input": {"q": "é"}}},
                        ],
                    }
                },
                "stopReason": "tool_use",
                "usage": {
                    "inputTokens": 10,
                    "outputTokens": 4,
                    "cacheReadInputTokens": 100,
                    "cacheWriteInputTokens": 20,
                    "totalTokens": 134,
                },
            }
        )
    )
    acc = sa_llm.streaming.Accumulator("bedrock")
    for chunk in chunks:
        acc.add(chunk)
    message = acc.message()
    assert message.text == "Calling."
    blocks = [
        {"reasoningText": {"text": "Hmm.", "signature": "s1"}},
        {"redactedContent": "cmVkYWN0ZWQ="},
    ]
    assert message.thinking == Thinking(
        "Hmm.", "s1", {"redacted_reasoning": ["cmVkYWN0ZWQ="], "bedrock_reasoning": blocks}
    )
    assert message.tool_calls == (ToolCall("t1", "lookup", {"q": "é"}),)
    assert message.tokens == sa_llm.Tokens(input=130, output=4, cached=100, cache_creation=20)
    assert message.finish_reason == "tool_use"


@pytest.mark.parametrize(
    ("body", "what"),
    [
        (b"<html>gateway</html>", "not valid JSON"),
        ([1, 2], "not a JSON object"),
        ({"output": {}}, "output.message.content"),
        ({"output": {"message": {"content": ["x"]}}}, "content block"),
        ({"output": {"message": {"content": [{"toolUse": {"input": {}}}]}}}, "toolUse"),
    ],
)
def test_malformed_replies_name_provider_and_field(body: Any, what: str) -> None:
    with pytest.raises(sa_llm.ResponseParseError, match=what) as caught:
        provider().parse_response(reply(body))
    assert caught.value.provider == "bedrock"


# The recorded context-length reply (chat_real_error_scenarios_..._nova-2-lite...).
MESSAGE = (
    "The model returned the following errors: Input Tokens Exceeded: Number of input tokens "
    "exceeds maximum length. Please update the input to try again."
)


@pytest.mark.parametrize(
    ("status", "error_type", "message", "error"),
    [
        (
            400,
            "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/",
            MESSAGE,
            sa_llm.ContextLengthExceededError,
        ),
        (400, "ValidationException", "Malformed input request.", sa_llm.BadRequestError),
        (429, "ThrottlingException", "Too many requests.", sa_llm.RateLimitError),
        (
            403,
            "AccessDeniedException",
            "You don't have access to the model.",
            sa_llm.PermissionDeniedError,
        ),
        (
            403,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
            sa_llm.AuthenticationError,
        ),
        (
            403,
            "ExpiredTokenException",
            "The security token included in the request is expired",
            sa_llm.AuthenticationError,
        ),
        (404, "ResourceNotFoundException", "Model not found.", sa_llm.NotFoundError),
        (429, "ModelNotReadyException", "Model is not ready.", sa_llm.OverloadedError),
        (503, "ServiceUnavailableException", "Service unavailable.", sa_llm.OverloadedError),
        (500, "InternalServerException", "Internal failure.", sa_llm.ServerError),
        (424, "ModelErrorException", "The model failed.", sa_llm.ServerError),
        (418, "", "I'm a teapot.", sa_llm.BadRequestError),
    ],
)
def test_errors_are_classified_by_bedrock_error_type(
    status: int, error_type: str, message: str, error: type[Exception]
) -> None:
    headers = {"x-amzn-errortype": error_type} if error_type else {}
    exc = provider().error_for(reply({"message": message}, status, **headers))
    assert type(exc) is error
    assert exc.message == message
    assert (exc.status, exc.provider, exc.body) == (status, "bedrock", {"message": message})


def test_error_type_from_the_body_and_retry_after() -> None:
    exc = provider().error_for(
        reply(
            {
                "__type": "com.amazon.coral.service#UnrecognizedClientException",
                "Message": "Bad token",
            },
            403,
        )
    )
    assert type(exc) is sa_llm.AuthenticationError and exc.message == "Bad token"
    limited = provider().error_for(reply({"message": "Slow down"}, 429, **{"retry-after": "3"}))
    assert isinstance(limited, sa_llm.RateLimitError) and limited.retry_after == 3.0


# -- model listing -------------------------------------------------------------------------------


def test_model_listing_is_a_signed_get_of_foundation_models() -> None:
    request = provider(bedrock_region="eu-west-1").list_models_request()
    assert (request.method, request.url) == (
        "GET",
        "https://bedrock.eu-west-1.amazonaws.com/foundation-models",
    )
    assert (
        "/eu-west-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date,"
        in request.headers["authorization"]
    )
    listed = provider().parse_model_list(
        reply(
            {
                "modelSummaries": [
                    {"modelId": "amazon.nova-2-lite-v1:0", "modelName": "Nova 2 Lite"},
                    {"modelId": "mistral.voxtral-mini-3b-2507"},
                    {"modelName": "no id"},
                ]
            }
        )
    )
    assert listed == [
        {"id": "amazon.nova-2-lite-v1:0", "name": "Nova 2 Lite", "created_at": None},
        {
            "id": "mistral.voxtral-mini-3b-2507",
            "name": "mistral.voxtral-mini-3b-2507",
            "created_at": None,
        },
    ]
    with pytest.raises(sa_llm.ResponseParseError, match="modelSummaries"):
        provider().parse_model_list(reply({"models": []}))


def test_registry_refresh_skips_bedrock_without_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    report = sa_llm.registry.refresh(Config(), providers=["bedrock"])
    assert report == {"bedrock": "skipped: no API key"}


# -- Mantle --------------------------------------------------------------------------------------


def test_mantle_requests_are_signed_for_bedrock_mantle() -> None:
    chosen = create_provider("bedrock", Config(**SETTINGS), "mistral.voxtral-mini-3b-2507")
    http = chosen.build_request(
        ChatRequest(model="mistral.voxtral-mini-3b-2507", messages=[user("Hi")])
    )
    assert http.url == "https://bedrock-mantle.us-east-1.api.aws/v1/chat/completions"
    assert "/us-east-1/bedrock-mantle/aws4_request" in http.headers["authorization"]
    assert (
        http.content is not None
        and json.loads(http.content)["model"] == "mistral.voxtral-mini-3b-2507"
    )
    listing = chosen.list_models_request()
    assert listing.url == "https://bedrock-mantle.us-east-1.api.aws/v1/models"
    assert "bedrock-mantle/aws4_request" in listing.headers["authorization"]


def test_mantle_responses_leave_out_unencrypted_reasoning() -> None:
    chosen = create_provider("bedrock", Config(**SETTINGS), "openai.gpt-oss-20b")
    earlier = Message(
        role="assistant",
        content="OK",
        thinking=Thinking("plain reasoning", None, {"reasoning_item": True}),
    )
    http = chosen.build_request(
        ChatRequest(model="openai.gpt-oss-20b", messages=[user("Say OK"), earlier, user("Again")])
    )
    assert http.content is not None
    items = json.loads(http.content)["input"]
    assert [i.get("type", i.get("role")) for i in items] == ["user", "assistant", "user"]
