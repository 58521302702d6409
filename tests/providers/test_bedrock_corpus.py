"""Every recorded AWS Bedrock exchange, replayed through the public API, sync and async.

Table-driven over ``tests/fixtures/wire/bedrock``. Converse files: the conversation is rebuilt
from the recorded request bodies (system blocks, tools and their results, each user prompt and
its files, inference settings, reasoning switches, schemas), run through ``Chat.ask``/``aask``
against the recorded replies (event streams as streams, in 7-byte pieces), and the reply text,
tool rounds, usage (cache reads and writes included), thinking and errors are compared with
what the recorded replies say. Every request is compared with the recorded body and must carry
a SigV4 signature for service ``bedrock`` (checked against botocore when it is installed).

The expected values are read from the recordings by this file's own small readers, including
a few-line reader of the binary event-stream frames, never by the code under test.

The Mantle files (Bedrock's OpenAI-compatible endpoint) are replayed the same way, through the
same ``provider="bedrock"``: the provider picks Mantle for the models it serves.
"""

from __future__ import annotations

import base64
import json
import re
import struct
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
import pytest

import sa_llm
from sa_llm.content import Attachment
from sa_llm.providers import create_provider
from sa_llm.providers._transport import Transport
from sa_llm.testing import Replay
from sa_llm.types import Chunk, Content, Message, RawContent
from wire_responses import (
    configure_turn,
    expected_text,
    expected_tokens,
    make_tool,
    recorded_rounds,
    replay_tool,
    reply_object,
    tool_outputs,
    tool_rounds,
    turns,
)

WIRE = Path(__file__).parents[1] / "fixtures" / "wire" / "bedrock"
REGION = "us-east-1"
ACCESS_KEY_ID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SETTINGS: dict[str, Any] = {
    "bedrock_region": REGION,
    "bedrock_access_key_id": ACCESS_KEY_ID,
    "bedrock_secret_access_key": SECRET,
}
_PROFILE = re.compile(r"^(?:us|us-gov|eu|apac|jp|au|global)\.")
_FILE = re.compile(
    r"^<file name='(?P<name>[^']*)' mime_type='(?P<type>[^']*)'>(?P<body>.*)</file>$", re.S
)
_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), "
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)
# The body fields this test turns into chat settings; any other field becomes with_params.
_SETTINGS_FIELDS = {
    "messages",
    "system",
    "inferenceConfig",
    "toolConfig",
    "additionalModelRequestFields",
    "outputConfig",
}


def load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8")))


def model_calls(recording: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [i for i in recording["interactions"] if i["request"]["method"] == "POST"]


def _path(url: str) -> str:
    return unquote(urlsplit(url).path)


def kind_of(recording: Mapping[str, Any]) -> str | None:
    """Which API a recording exercises, from its URLs."""
    paths = [_path(i["request"]["url"]) for i in recording["interactions"]]
    calls = [_path(c["request"]["url"]) for c in model_calls(recording)]
    if any(path.endswith("/v1/models") for path in paths):
        return "models"
    for kind, ending in (
        ("converse", ("/converse", "/converse-stream")),
        ("chat_completions", ("/v1/chat/completions",)),
        ("responses", ("/v1/responses",)),
    ):
        if calls and all(path.endswith(ending) for path in calls):
            return kind
    return None


def _files(kind: str) -> list[Path]:
    return [path for path in sorted(WIRE.glob("*.json")) if kind_of(load(path)) == kind]


CONVERSE_FILES = _files("converse")
CHAT_COMPLETIONS_FILES = _files("chat_completions")
RESPONSES_FILES = _files("responses")
MODEL_LIST_FILES = _files("models")


def test_every_recording_is_covered() -> None:
    covered = {
        *CONVERSE_FILES,
        *CHAT_COMPLETIONS_FILES,
        *RESPONSES_FILES,
        *MODEL_LIST_FILES,
    }
    assert covered == set(WIRE.glob("*.json"))


# -- the recorded replies, read independently ----------------------------------------------------


def event_frames(data: bytes) -> Iterator[tuple[dict[str, str], dict[str, Any]]]:
    """A minimal reader of the binary frames: lengths, string headers, JSON payload."""
    position = 0
    while position < len(data):
        total, headers_length = struct.unpack_from(">II", data, position)
        headers: dict[str, str] = {}
        cursor, end = position + 12, position + 12 + headers_length
        while cursor < end:
            name_length = data[cursor]
            name = data[cursor + 1 : cursor + 1 + name_length].decode()
            cursor += 1 + name_length
            assert data[cursor] == 7  # the recordings carry string headers only
            value_length = int.from_bytes(data[cursor + 1 : cursor + 3], "big")
            headers[name] = data[cursor + 3 : cursor + 3 + value_length].decode()
            cursor += 3 + value_length
        payload = data[end : position + total - 4]
        yield headers, (json.loads(payload) if payload else {})
        position += total


def _body_bytes(part: Mapping[str, Any]) -> bytes:
    body = part["body"]
    return base64.b64decode(body) if part.get("body_base64") else str(body).encode()


def reply_of(response: Mapping[str, Any]) -> dict[str, Any]:
    """Text, tool calls, thinking, usage and stop reason of a recorded Converse reply."""
    reply: dict[str, Any] = {"text": "", "calls": [], "thinking": "", "signature": None}
    if "eventstream" not in response["headers"].get("content-type", ""):
        body = json.loads(response["body"])
        for block in body["output"]["message"]["content"]:
            if "text" in block:
                reply["text"] += block["text"]
            elif "toolUse" in block:
                use = block["toolUse"]
                reply["calls"].append((use["toolUseId"], use["name"], use["input"]))
            elif "reasoningContent" in block:
                reasoning = block["reasoningContent"].get("reasoningText", {})
                reply["thinking"] += reasoning.get("text", "")
                reply["signature"] = reasoning.get("signature") or reply["signature"]
        reply["usage"] = body.get("usage") or {}
        reply["stop"] = body.get("stopReason")
        return reply
    uses: dict[int, dict[str, Any]] = {}
    reply["usage"] = {}
    for headers, payload in event_frames(_body_bytes(response)):
        event = headers[":event-type"]
        index = int(payload.get("contentBlockIndex", 0))
        if event == "contentBlockStart" and "toolUse" in payload.get("start", {}):
            start = payload["start"]["toolUse"]
            uses[index] = {"id": start["toolUseId"], "name": start["name"], "input": ""}
        elif event == "contentBlockDelta":
            delta = payload["delta"]
            if "text" in delta:
                reply["text"] += delta["text"]
            elif "toolUse" in delta:
                uses[index]["input"] += delta["toolUse"].get("input", "")
            elif "reasoningContent" in delta:
                reply["thinking"] += delta["reasoningContent"].get("text", "")
                reply["signature"] = (
                    delta["reasoningContent"].get("signature") or reply["signature"]
                )
        elif event == "messageStop":
            reply["stop"] = payload.get("stopReason")
        elif event == "metadata":
            reply["usage"] = payload.get("usage") or {}
    reply["calls"] = [
        (use["id"], use["name"], json.loads(use["input"] or "{}")) for use in uses.values()
    ]
    return reply


# -- the conversation, rebuilt from the recorded requests -----------------------------------------


def block_file(block: Mapping[str, Any]) -> Attachment | None:
    """The file a recorded content block carries, or None for plain text."""
    if "image" in block:
        image = block["image"]
        data = base64.b64decode(image["source"]["bytes"])
        return Attachment.from_bytes(data, filename=f"image.{image['format']}")
    if "document" in block:
        document = block["document"]
        data = base64.b64decode(document["source"]["bytes"])
        return Attachment.from_bytes(data, filename=f"{document['name']}.{document['format']}")
    match = _FILE.match(str(block.get("text", "")))
    if match:
        return Attachment.from_bytes(
            match["body"].encode(), filename=match["name"], mime_type=match["type"]
        )
    return None


def split(blocks: list[Mapping[str, Any]]) -> tuple[str | None, list[Attachment]]:
    texts: list[str] = []
    files: list[Attachment] = []
    for block in blocks:
        file = block_file(block)
        if file is not None:
            files.append(file)
        elif "text" in block:
            texts.append(block["text"])
    return ("".join(texts) or None), files


def prompts(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The user turns that are prompts (not only tool results)."""
    return [
        m
        for m in body["messages"]
        if m["role"] == "user" and not all("toolResult" in b for b in m["content"])
    ]


def tool_results(recording: Mapping[str, Any]) -> dict[tuple[str, str], Any]:
    """(tool name, canonical JSON input) -> what the tool returned (text, or text and files)."""
    named: dict[str, tuple[str, str]] = {}
    results: dict[tuple[str, str], Any] = {}
    for call in model_calls(recording):
        messages = call["request"]["body"]["messages"]
        for message in messages:
            for block in message["content"]:
                if "toolUse" in block:
                    use = block["toolUse"]
                    named[use["toolUseId"]] = (
                        use["name"],
                        json.dumps(use["input"], sort_keys=True),
                    )
        for message in messages:
            for block in message["content"]:
                result = block.get("toolResult")
                if result and result["toolUseId"] in named:
                    text, files = split(result["content"])
                    value = Content(text, tuple(files)) if files else (text or "")
                    results[named[result["toolUseId"]]] = value
    return results


def make_converse_tool(spec: Mapping[str, Any], results: Mapping[tuple[str, str], Any]) -> Any:
    tool = spec["toolSpec"]
    return replay_tool(tool["name"], tool.get("description"), tool["inputSchema"]["json"], results)


def recorded_model(url: str) -> str:
    """The model id of a recorded Converse URL (``/model/{id}/converse``)."""
    return _path(url).split("/model/", 1)[1].rsplit("/", 1)[0]


def new_chat(ctx: sa_llm.Context, url: str, body: Mapping[str, Any], results: Any) -> sa_llm.Chat:
    """A chat on the base model id: the provider must add the inference-profile prefix."""
    model = recorded_model(url)
    try:
        chat = ctx.chat(_PROFILE.sub("", model), provider="bedrock")
    except sa_llm.ModelNotFoundError:  # a model the registry does not list yet
        chat = ctx.chat(model, provider="bedrock", assume_model_exists=True)
    assert chat.model_id == model
    config = body.get("toolConfig")
    if config:
        choice = config.get("toolChoice")
        chat.with_tools(
            *[make_converse_tool(spec, results) for spec in config["tools"]],
            choice=None
            if choice is None
            else "auto"
            if "auto" in choice
            else "required"
            if "any" in choice
            else choice["tool"]["name"],
        )
    return chat


def configure(chat: sa_llm.Chat, body: Mapping[str, Any]) -> None:
    """Apply the settings one recorded request shows to the chat."""
    system = body.get("system") or []
    chat.with_instructions(None)
    if len(system) == 1 and set(system[0]) == {"text"}:
        chat.with_instructions(system[0]["text"])
    elif system:  # blocks sa_llm does not model (a cache point): passed verbatim
        chat.messages.insert(0, Message(role="system", content=RawContent(system)))
    chat.params = {}
    inference = dict(body.get("inferenceConfig") or {})
    chat.with_temperature(inference.pop("temperature", None))
    if inference:
        chat.with_params(inferenceConfig=inference)
    extra = dict(body.get("additionalModelRequestFields") or {})
    if "reasoning_config" in extra:  # Claude
        chat.with_thinking(budget=extra.pop("reasoning_config")["budget_tokens"])
    elif "reasoningConfig" in extra:  # Nova
        chat.with_thinking(effort=extra.pop("reasoningConfig")["maxReasoningEffort"])
    if extra:
        chat.with_params(additionalModelRequestFields=extra)
    text_format = (body.get("outputConfig") or {}).get("textFormat")
    if text_format and text_format.get("type") == "json_schema":
        schema = text_format["structure"]["jsonSchema"]
        chat.with_schema({"name": schema["name"], "schema": json.loads(schema["schema"])})
    else:
        chat.with_schema(None)
    others = {k: v for k, v in body.items() if k not in _SETTINGS_FIELDS}
    if others:
        chat.with_params(**others)


# -- what was sent -------------------------------------------------------------------------------


class RecordingReplay(Replay):
    """The replay, also keeping the exact bytes and headers of every request."""

    def __init__(self, recording: Mapping[str, Any]) -> None:
        super().__init__(recording)
        self.raw: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.raw.append(request)
        return super().handle_request(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        self.raw.append(request)
        return await super().handle_async_request(request)


def assert_signed(request: httpx.Request, service: str) -> None:
    """A well-formed SigV4 Authorization for ``service``, valid for the bytes that were sent."""
    match = _AUTHORIZATION.match(request.headers["authorization"])
    assert match, request.headers["authorization"]
    amz_date = request.headers["x-amz-date"]
    assert re.fullmatch(r"\d{8}T\d{6}Z", amz_date)
    assert match["date"] == amz_date[:8]
    assert (match["key"], match["region"], match["service"]) == (ACCESS_KEY_ID, REGION, service)
    signed = match["signed"].split(";")
    assert signed == sorted(signed) and {"host", "x-amz-date"} <= set(signed)
    try:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials
    except ImportError:
        return
    headers = {name: request.headers[name] for name in signed if name != "host"}
    aws = AWSRequest(method=request.method, url=str(request.url), data=request.content)
    for name, value in headers.items():
        aws.headers[name] = value
    aws.context["timestamp"] = amz_date
    auth = SigV4Auth(Credentials(ACCESS_KEY_ID, SECRET), service, REGION)
    canonical = auth.canonical_request(aws)
    assert auth.signature(auth.string_to_sign(aws, canonical), aws) == match["signature"]


def _schema_parsed(body: Mapping[str, Any]) -> Any:
    text_format = (body.get("outputConfig") or {}).get("textFormat")
    if not text_format:
        return None
    schema = text_format["structure"]["jsonSchema"]
    return {**schema, "schema": json.loads(schema["schema"])}


def assert_converse_request(sent: httpx.Request, recorded: Mapping[str, Any]) -> None:
    body = json.loads(sent.content)
    expected = recorded["body"]
    model = recorded_model(recorded["url"])
    suffix = _path(recorded["url"]).rsplit("/", 1)[1]
    # The model id is one path segment, percent-encoded as the AWS SDKs send it.
    assert sent.url.raw_path.decode() == f"/model/{quote(model, safe='')}/{suffix}"
    assert sent.headers["content-type"] == "application/json"
    if suffix == "converse-stream":
        assert sent.headers["accept"] == "application/vnd.amazon.eventstream"
    assert body["messages"] == expected["messages"]
    for key in ("system", "inferenceConfig", "toolConfig", "additionalModelRequestFields"):
        assert body.get(key) == expected.get(key), key
    assert _schema_parsed(body) == _schema_parsed(expected)
    assert set(body) == set(expected)
    assert_signed(sent, "bedrock")


# -- Converse ------------------------------------------------------------------------------------


async def _ask(
    chat: sa_llm.Chat, mode: str, prompt: str | None, files: list[Attachment], stream: bool
) -> tuple[Message, list[Chunk]]:
    chunks: list[Chunk] = []
    on_chunk = chunks.append if stream else None
    if mode == "async":
        return await chat.aask(prompt, attachments=files or None, on_chunk=on_chunk), chunks
    return chat.ask(prompt, attachments=files or None, on_chunk=on_chunk), chunks


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("path", CONVERSE_FILES, ids=lambda p: p.stem)
async def test_replay_converse_recording(path: Path, mode: str) -> None:
    recording = load(path)
    calls = model_calls(recording)
    first = calls[0]["request"]
    replay = RecordingReplay(recording)
    ctx = replay.context(**SETTINGS)
    results = tool_results(recording)
    chat = new_chat(ctx, first["url"], first["body"], results)
    history_end = first["body"]["messages"].index(prompts(first["body"])[-1])
    for message in first["body"]["messages"][:history_end]:
        chat.add_message(Message(role=message["role"], content=split(message["content"])[0]))

    seen_prompts = len(prompts(first["body"])) - 1
    asks: list[list[Mapping[str, Any]]] = []
    for call in calls:
        count = len(prompts(call["request"]["body"]))
        previous = asks[-1][-1]["response"] if asks else None
        continues = (
            previous is not None and previous["status"] < 400 and reply_of(previous)["calls"]
        )
        if count > seen_prompts or not continues:
            asks.append([call])
            seen_prompts = count
        else:
            asks[-1].append(call)

    for index, ask in enumerate(asks):
        request = ask[0]["request"]
        body = request["body"]
        if index and len(prompts(body)) <= len(prompts(asks[index - 1][0]["request"]["body"])):
            chat = new_chat(ctx, request["url"], body, results)  # the same prompt: a new chat
        configure(chat, body)
        prompt, files = split(prompts(body)[-1]["content"])
        stream = _path(request["url"]).endswith("/converse-stream")
        last = ask[-1]["response"]
        if last["status"] >= 400:
            expected_error = (
                sa_llm.ContextLengthExceededError
                if "context_length" in path.stem
                else sa_llm.APIStatusError
            )
            with pytest.raises(expected_error) as caught:
                await _ask(chat, mode, prompt, files, stream)
            assert caught.value.status == last["status"]
            assert caught.value.provider == "bedrock"
            continue
        before = len(chat.messages)
        reply, chunks = await _ask(chat, mode, prompt, files, stream)
        expected = reply_of(last)
        final = reply
        if expected["calls"]:
            assert reply.role == "tool"  # the recording ends on a tool call: the tool halted
            final = [m for m in chat.messages if m.role == "assistant"][-1]
        assert (final.text or "") == expected["text"]
        assert final.finish_reason == expected["stop"]
        usage = expected["usage"]
        assert final.tokens is not None
        # Bedrock's total minus the output is every prompt token, cache reads and writes included.
        assert final.tokens.input == usage["totalTokens"] - usage["outputTokens"]
        assert final.tokens.output == usage["outputTokens"]
        assert final.tokens.cached == usage.get("cacheReadInputTokens")
        assert final.tokens.cache_creation == usage.get("cacheWriteInputTokens")
        if expected["thinking"] or expected["signature"]:
            assert final.thinking is not None
            assert (final.thinking.text or "") == expected["thinking"]
            assert final.thinking.signature == expected["signature"]
        else:
            assert final.thinking is None
        if stream:
            assert "".join(c.content or "" for c in chunks) == (final.text or "")
            assert "".join(c.thinking or "" for c in chunks) == expected["thinking"]
        assert tool_rounds(chat.messages[before:]) == [
            r["calls"]
            for c in ask
            if c["response"]["status"] < 400 and (r := reply_of(c["response"]))["calls"]
        ]

    sent = [r for r in replay.raw if r.method == "POST"]
    assert len(sent) == len(calls)
    for request, call in zip(sent, calls, strict=True):
        assert_converse_request(request, call["request"])
    replay.assert_all_used()


# -- Mantle (OpenAI-compatible) ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("path", CHAT_COMPLETIONS_FILES, ids=lambda p: p.stem)
async def test_replay_mantle_chat_completions_recording(path: Path, mode: str) -> None:
    recording = load(path)
    (call,) = model_calls(recording)
    recorded = call["request"]["body"]
    replay = RecordingReplay(recording)
    chat = replay.context(**SETTINGS).chat(recorded["model"], provider="bedrock")
    (user,) = recorded["messages"]
    prompt = "".join(p["text"] for p in user["content"] if p["type"] == "text")
    files = [
        Attachment.from_bytes(
            base64.b64decode(p["input_audio"]["data"]), f"audio.{p['input_audio']['format']}"
        )
        for p in user["content"]
        if p["type"] == "input_audio"
    ]
    reply, _ = await _ask(chat, mode, prompt, files, False)
    body = json.loads(call["response"]["body"])
    assert reply.text == body["choices"][0]["message"]["content"]
    assert reply.finish_reason == body["choices"][0]["finish_reason"]
    assert reply.tokens is not None
    assert (reply.tokens.input, reply.tokens.output) == (
        body["usage"]["prompt_tokens"],
        body["usage"]["completion_tokens"],
    )
    (sent,) = replay.raw
    assert json.loads(sent.content) == recorded
    assert sent.url.host == f"bedrock-mantle.{REGION}.api.aws"
    assert_signed(sent, "bedrock-mantle")
    replay.assert_all_used()


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("path", RESPONSES_FILES, ids=lambda p: p.stem)
async def test_replay_mantle_responses_recording(path: Path, mode: str) -> None:
    recording = load(path)
    replay = RecordingReplay(recording)
    ctx = replay.context(**SETTINGS)
    history, asks = turns(recording)
    assert not history
    outputs = tool_outputs(recording)

    def new_mantle_chat(body: Mapping[str, Any]) -> sa_llm.Chat:
        chat = ctx.chat(body["model"], provider="bedrock")
        chat.with_tools(*[make_tool(spec, outputs) for spec in body.get("tools") or []])
        return chat

    chat = new_mantle_chat(asks[0].body)
    for turn in asks:
        if turn.fresh:
            chat = new_mantle_chat(turn.body)
        configure_turn(chat, turn.body)
        stream = bool(turn.body.get("stream"))
        before = len(chat.messages)
        reply, chunks = await _ask(chat, mode, turn.prompt, turn.files, stream)
        expected = reply_object(turn.calls[-1]["response"])
        assert expected is not None
        assert reply.text == expected_text(expected)
        assert reply.tokens == expected_tokens(expected)
        assert reply.model_id == expected["model"]
        if stream:
            assert chunks and "".join(c.content or "" for c in chunks) == reply.text
        assert tool_rounds(chat.messages[before:]) == recorded_rounds(turn.calls)

    sent = [r for r in replay.raw if r.method == "POST"]
    assert len(sent) == len(model_calls(recording))
    for request, call in zip(sent, model_calls(recording), strict=True):
        assert _normalised(json.loads(request.content)) == _normalised(call["request"]["body"])
        assert request.url.host == f"bedrock-mantle.{REGION}.api.aws"
        assert_signed(request, "bedrock-mantle")
    replay.assert_all_used()


def _normalised(body: Mapping[str, Any]) -> Any:
    """A Responses body with each function call's JSON arguments parsed (spacing aside)."""
    items = [
        {**item, "arguments": json.loads(item["arguments"])}
        if item.get("type") == "function_call"
        else item
        for item in body.get("input", [])
    ]
    return {**body, "input": items}


@pytest.mark.parametrize("path", MODEL_LIST_FILES, ids=lambda p: p.stem)
def test_mantle_model_list_recording(path: Path) -> None:
    recording = load(path)
    replay = RecordingReplay(recording)
    config = replay.context(**SETTINGS).config
    provider = create_provider("bedrock", config, "openai.gpt-oss-20b")
    response = Transport(config, provider).send(provider.list_models_request())
    listed = provider.parse_model_list(response)
    (interaction,) = recording["interactions"]
    recorded = json.loads(interaction["response"]["body"])["data"]
    assert [m["id"] for m in listed] == [m["id"] for m in recorded]
    (sent,) = replay.raw
    assert sent.method == "GET" and not sent.content
    assert sent.url.host == f"bedrock-mantle.{REGION}.api.aws"
    assert_signed(sent, "bedrock-mantle")
    replay.assert_all_used()
