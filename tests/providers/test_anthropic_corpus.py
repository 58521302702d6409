"""Every recorded Anthropic exchange, replayed through the public chat API, sync and async.

Table-driven over ``tests/fixtures/wire/anthropic``: the conversation of each file is rebuilt
from its recorded Messages requests (system prompt, tools and what they returned, tool choice,
schema, thinking budget, each user prompt and its files), run through ``Chat.ask``/``aask``
against a replay of the recorded replies (streamed files as streams, through ``on_chunk``), and
the parsed result is compared with what the recorded replies say, read here by a small reader of
our own: text, tool rounds (ids, names, arguments), usage incl. cache counts, thinking and its
signature, model, stop reason, or the error class of a recorded error. Every request the library
sent is compared with the recorded one (model, max_tokens, system, messages block by block,
tools, tool_choice, thinking, output_config, stream, auth headers). A new recording that follows
the format needs no new code here.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest

import sa_llm
from sa_llm.content import Attachment
from sa_llm.testing import Replay
from sa_llm.types import Chunk, Content, Message

WIRE = Path(__file__).parents[1] / "fixtures" / "wire" / "anthropic"
FILES = sorted(WIRE.glob("*.json"))
_FILE_RE = re.compile(
    r"^<file name='(?P<name>[^']*)' mime_type='(?P<type>[^']*)'>(?P<body>.*)</file>$", re.S
)
_KNOWN_FIELDS = {
    "model", "messages", "stream", "max_tokens", "system", "temperature", "tools",
    "tool_choice", "output_config", "thinking",
}  # fmt: skip
_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
# Anthropic's error types (https://docs.anthropic.com/en/api/errors) and what they must raise.
_ERRORS: dict[str, type[sa_llm.ProviderError]] = {
    "invalid_request_error": sa_llm.BadRequestError,
    "authentication_error": sa_llm.AuthenticationError,
    "permission_error": sa_llm.PermissionDeniedError,
    "not_found_error": sa_llm.NotFoundError,
    "rate_limit_error": sa_llm.RateLimitError,
    "api_error": sa_llm.ServerError,
    "overloaded_error": sa_llm.OverloadedError,
}


def load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8")))


def model_calls(recording: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [
        item
        for item in recording["interactions"]
        if item["request"]["method"] == "POST" and item["request"]["url"].endswith("/v1/messages")
    ]


# -- what the recorded requests say the original test did -----------------------------------------


def downloads(recording: Mapping[str, Any]) -> dict[str, str]:
    """File name -> URL of the files the original client downloaded before sending them."""
    urls = [
        i["request"]["url"] for i in recording["interactions"] if i["request"]["method"] == "GET"
    ]
    return {PurePosixPath(urlsplit(url).path).name: url for url in urls}


def block_file(block: Mapping[str, Any], fetched: Mapping[str, str]) -> Attachment | None:
    """The file a recorded content block carries, or ``None`` for plain text."""
    kind = block.get("type")
    if kind == "text":
        match = _FILE_RE.match(str(block.get("text", "")))
        if match is None:
            return None
        if match["name"] in fetched:  # a remote text file: let the library download it
            return Attachment.from_url(fetched[match["name"]])
        return Attachment.from_bytes(
            match["body"].encode(), filename=match["name"], mime_type=match["type"]
        )
    if kind in ("image", "document"):
        source = block["source"]
        if source["type"] == "url":
            return Attachment.from_url(source["url"])
        media_type = source["media_type"]
        return Attachment.from_bytes(
            base64.b64decode(source["data"]),
            filename=f"{kind}.{media_type.split('/')[1]}",
            mime_type=media_type,
        )
    return None


def split(content: Any, fetched: Mapping[str, str]) -> tuple[str | None, list[Attachment]]:
    """The text and the files of recorded content (a string or a list of blocks)."""
    if isinstance(content, str):
        return content, []
    texts: list[str] = []
    files: list[Attachment] = []
    for block in content:
        file = block_file(block, fetched)
        if file is not None:
            files.append(file)
        elif block.get("type") == "text":
            texts.append(str(block["text"]))
    return ("".join(texts) or None), files


def is_prompt(message: Mapping[str, Any]) -> bool:
    """A user turn the person typed (not one that only carries tool results)."""
    content = message["content"]
    return message["role"] == "user" and (
        isinstance(content, str) or any(b.get("type") != "tool_result" for b in content)
    )


def prompts(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [m for m in body["messages"] if is_prompt(m)]


def tool_outputs(
    recording: Mapping[str, Any], fetched: Mapping[str, str]
) -> dict[tuple[str, str], list[Any]]:
    """(tool name, canonical JSON arguments) -> what the tool returned, in call order."""
    calls: dict[str, tuple[str, str]] = {}
    results: dict[str, Any] = {}
    for call in model_calls(recording):
        for message in call["request"]["body"]["messages"]:
            if isinstance(message["content"], str):
                continue
            for block in message["content"]:
                if block.get("type") == "tool_use":
                    args = json.dumps(block.get("input") or {}, sort_keys=True)
                    calls[block["id"]] = (block["name"], args)
                elif block.get("type") == "tool_result" and block["tool_use_id"] not in results:
                    text, files = split(block.get("content") or "", fetched)
                    results[block["tool_use_id"]] = Content(text, tuple(files)) if files else text
    outputs: dict[tuple[str, str], list[Any]] = {}
    for call_id, result in results.items():  # dicts keep the order the results were sent in
        outputs.setdefault(calls[call_id], []).append(result or "")
    return outputs


def make_tool(spec: Mapping[str, Any], outputs: Mapping[tuple[str, str], list[Any]]) -> sa_llm.Tool:
    """A tool with the recorded definition that returns the recorded results, in order."""
    queues = {key: list(values) for key, values in outputs.items()}

    class Recorded(sa_llm.Tool):
        name = str(spec["name"])
        description = str(spec.get("description") or "")
        schema: ClassVar[Mapping[str, Any] | None] = dict(spec["input_schema"])

        def execute(self, **kwargs: Any) -> Any:
            queue = queues.get((self.name, json.dumps(kwargs, sort_keys=True)))
            if queue:
                # The same call several times (dice rolls) returned different results.
                return queue.pop(0) if len(queue) > 1 else queue[0]
            # The recording ends at this call: the original test stopped the loop here.
            return self.halt("halted by the replay")

    return Recorded()


def new_chat(ctx: sa_llm.Context, recording: Mapping[str, Any], body: Mapping[str, Any]) -> Any:
    chat = ctx.chat(body["model"], provider="anthropic", assume_model_exists=True)
    if body.get("tools"):
        outputs = tool_outputs(recording, downloads(recording))
        choice = body.get("tool_choice") or {}
        chat.with_tools(
            *[make_tool(spec, outputs) for spec in body["tools"]],
            choice=_CHOICES.get(str(choice.get("type")), choice.get("name")),
            calls="one" if choice.get("disable_parallel_tool_use") else None,
        )
    return chat


def registry_max_tokens(model: str) -> int | None:
    try:
        return sa_llm.registry.find(model, "anthropic").max_output_tokens
    except sa_llm.ModelNotFoundError:
        return None


def configure_turn(chat: Any, body: Mapping[str, Any]) -> None:
    """Apply the settings one recorded request shows to the chat."""
    system = body.get("system") or []
    texts = [system] if isinstance(system, str) else [b["text"] for b in system]
    chat.with_instructions(texts[0] if texts else None)
    for text in texts[1:]:
        chat.with_instructions(text, append=True)
    chat.with_temperature(body.get("temperature"))
    fmt = (body.get("output_config") or {}).get("format")
    chat.with_schema({"name": "response", "schema": fmt["schema"]} if fmt else None)
    thinking = body.get("thinking") or {}
    if thinking.get("type") == "enabled":
        chat.with_thinking(budget=thinking["budget_tokens"])
    else:
        chat.with_thinking()
    extra = {k: v for k, v in body.items() if k not in _KNOWN_FIELDS}
    if body["max_tokens"] != registry_max_tokens(body["model"]):
        extra["max_tokens"] = body["max_tokens"]  # the original test set it explicitly
    if extra:
        chat.with_params(**extra)


@dataclass
class Turn:
    """One ``ask`` of the original test, with the model calls it made."""

    prompt: str | None
    files: list[Attachment]
    body: Mapping[str, Any]
    calls: list[Mapping[str, Any]] = field(default_factory=list)
    fresh: bool = False


def turns(recording: Mapping[str, Any]) -> tuple[list[Message], list[Turn]]:
    """The history to preload and the asks, grouped with the model calls each one made."""
    fetched = downloads(recording)
    calls = model_calls(recording)
    first = calls[0]["request"]["body"]
    last_prompt = max(i for i, m in enumerate(first["messages"]) if is_prompt(m))
    history = [
        Message(role=m["role"], content=split(m["content"], fetched)[0])
        for m in first["messages"][:last_prompt]
    ]
    result: list[Turn] = []
    seen = len(prompts(first)) - 1
    for call in calls:
        body = call["request"]["body"]
        count = len(prompts(body))
        previous = result[-1].calls[-1]["response"] if result else None
        continues = previous is not None and bool((reply_of(previous) or Reply()).calls)
        if count > seen or not continues:
            prompt, files = split(prompts(body)[-1]["content"], fetched)
            # The same prompt again in a shorter history: the original test began a new chat.
            result.append(Turn(prompt, files, body, fresh=count <= seen))
            seen = count
        result[-1].calls.append(call)
    return history, result


# -- what the recorded replies say -----------------------------------------------------------------


@dataclass
class Reply:
    """A recorded reply, read independently of the library."""

    text: str | None = None
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    thinking: str | None = None
    signature: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    stop_reason: str | None = None


def _events(body: str) -> list[dict[str, Any]]:
    return [json.loads(line[5:]) for line in body.splitlines() if line.startswith("data:")]


def reply_of(response: Mapping[str, Any]) -> Reply | None:
    """The reply of a recorded response, whole or streamed; ``None`` for an error."""
    if response["status"] >= 400:
        return None
    body = response["body"]
    if "event-stream" not in response["headers"].get("content-type", ""):
        data = json.loads(body)
        blocks = data["content"]
        usage = dict(data["usage"])
        model, stop = data["model"], data["stop_reason"]
    else:
        blocks, usage, model, stop = [], {}, None, None
        for event in _events(body):
            kind = event["type"]
            if kind == "message_start":
                usage.update(event["message"]["usage"])
                model = event["message"]["model"]
            elif kind == "content_block_start":
                blocks.append(dict(event["content_block"], partial_json=""))
            elif kind == "content_block_delta":
                block, delta = blocks[event["index"]], event["delta"]
                for name in ("text", "thinking", "signature", "partial_json"):
                    if name in delta:
                        block[name] = block.get(name, "") + delta[name]
            elif kind == "message_delta":
                usage.update(event.get("usage") or {})
                stop = event["delta"]["stop_reason"]
        for block in blocks:
            if block["type"] == "tool_use":
                block["input"] = json.loads(block["partial_json"] or "{}")
    reply = Reply(usage=usage, model=model, stop_reason=stop)
    reply.text = "".join(b["text"] for b in blocks if b["type"] == "text") or None
    reply.calls = [(b["id"], b["name"], b["input"]) for b in blocks if b["type"] == "tool_use"]
    thoughts = [b for b in blocks if b["type"] == "thinking"]
    reply.thinking = "".join(b["thinking"] for b in thoughts) or None
    reply.signature = thoughts[-1]["signature"] if thoughts else None
    return reply


def expected_tokens(usage: Mapping[str, Any]) -> sa_llm.Tokens:
    """The usage as docs/providers/anthropic.md defines it: input counts the cached prompt too."""
    cached = usage.get("cache_read_input_tokens")
    created = usage.get("cache_creation_input_tokens")
    return sa_llm.Tokens(
        input=usage["input_tokens"] + (cached or 0) + (created or 0),
        output=usage["output_tokens"],
        cached=cached,
        cache_creation=created,
        reasoning=(usage.get("output_tokens_details") or {}).get("thinking_tokens"),
    )


def essentials(block: Any) -> Any:
    """What must match in one sent content block."""
    if isinstance(block, str):
        return ("text", block)
    kind = block["type"]
    if kind == "text":
        return (kind, block["text"])
    if kind in ("image", "document"):
        return (kind, block["source"])
    if kind == "tool_use":
        return (kind, block["id"], block["name"], block["input"])
    if kind == "tool_result":
        content = block.get("content") or []
        blocks = [content] if isinstance(content, str) else content
        return (kind, block["tool_use_id"], [essentials(b) for b in blocks])
    if kind == "thinking":
        return (kind, block["thinking"], block["signature"])
    return block


def assert_request_matches(sent: Any, recorded: Mapping[str, Any]) -> None:
    mine, theirs = sent.body, recorded["body"]
    for key in ("model", "max_tokens", "stream", "system", "temperature", "tool_choice"):
        assert mine.get(key) == theirs.get(key), key
    for key in ("thinking", "output_config"):
        assert mine.get(key) == theirs.get(key), key
    assert [t["name"] for t in mine.get("tools", [])] == [
        t["name"] for t in theirs.get("tools", [])
    ]
    assert [m["role"] for m in mine["messages"]] == [m["role"] for m in theirs["messages"]]
    for message, expected in zip(mine["messages"], theirs["messages"], strict=True):
        blocks = expected["content"]
        blocks = [blocks] if isinstance(blocks, str) else blocks
        assert [essentials(b) for b in message["content"]] == [essentials(b) for b in blocks]
    assert sent.headers["x-api-key"] == "test-key"
    assert sent.headers["anthropic-version"] == recorded["headers"]["anthropic-version"]


# -- the test -------------------------------------------------------------------------------------


async def ask(chat: Any, mode: str, turn: Turn, stream: bool) -> tuple[Message, list[Chunk]]:
    chunks: list[Chunk] = []
    kwargs: dict[str, Any] = {"attachments": turn.files or None}
    if stream:
        kwargs["on_chunk"] = chunks.append
    if mode == "async":
        return await chat.aask(turn.prompt, **kwargs), chunks
    return chat.ask(turn.prompt, **kwargs), chunks


def test_every_recording_is_replayed() -> None:
    assert len(FILES) >= 29


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
async def test_replay_anthropic_recording(path: Path, mode: str) -> None:
    recording = load(path)
    replay = Replay(recording)
    ctx = replay.context()
    history, asks = turns(recording)
    chat = new_chat(ctx, recording, asks[0].body)
    for message in history:
        chat.add_message(message)

    for turn in asks:
        if turn.fresh:
            chat = new_chat(ctx, recording, turn.body)
        configure_turn(chat, turn.body)
        stream = bool(turn.body.get("stream"))
        last = turn.calls[-1]["response"]
        expected = reply_of(last)
        if expected is None:
            error = json.loads(last["body"])["error"]
            with pytest.raises(_ERRORS[error["type"]]) as caught:
                await ask(chat, mode, turn, stream)
            assert caught.value.status == last["status"]
            assert caught.value.provider == "anthropic"
            assert caught.value.message == error["message"]
            continue
        before = len(chat.messages)
        reply, chunks = await ask(chat, mode, turn, stream)
        final = reply
        if expected.calls:
            # The recording ends on a tool call: the tool halted the loop, as the original did.
            assert reply.role == "tool"
            final = [m for m in chat.messages if m.role == "assistant"][-1]
        assert final.text == expected.text
        assert final.tokens == expected_tokens(expected.usage)
        assert final.model_id == expected.model
        assert final.finish_reason == expected.stop_reason
        if expected.thinking or expected.signature:
            assert final.thinking is not None
            assert final.thinking.text == expected.thinking
            assert final.thinking.signature == expected.signature
        else:
            assert final.thinking is None
        if stream:
            assert "".join(c.content or "" for c in chunks) == (final.text or "")
            assert "".join(c.thinking or "" for c in chunks) == (expected.thinking or "")
        if turn.body.get("output_config"):
            assert final.parsed == json.loads(expected.text or "")
        new_messages = chat.messages[before:]
        rounds = [m for m in new_messages if m.role == "assistant" and m.tool_calls]
        recorded_rounds = [
            r.calls for call in turn.calls if (r := reply_of(call["response"])) and r.calls
        ]
        assert [
            [(c.id, c.name, dict(c.arguments)) for c in m.tool_calls] for m in rounds
        ] == recorded_rounds
        answered = {c.id for m in rounds for c in m.tool_calls}
        assert all(m.tool_call_id in answered for m in new_messages if m.role == "tool")

    posts = [s for s in replay.seen if s.method == "POST"]
    assert len(posts) == len(model_calls(recording))
    for sent, call in zip(posts, model_calls(recording), strict=True):
        assert_request_matches(sent, call["request"])
    replay.assert_all_used()
    downloaded = [s.url for s in replay.seen if s.method == "GET"]
    assert sorted(downloaded) == sorted(downloads(recording).values())
