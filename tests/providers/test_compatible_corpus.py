"""Recorded OpenRouter, DeepSeek, Mistral and Ollama exchanges through the public chat API.

Table-driven like the OpenAI corpus test: the conversation is rebuilt from the recorded Chat
Completions requests (instructions, tools and their results, each user prompt and its files,
extra body fields), run through ``Chat.ask``/``aask`` against the recorded replies, and the reply
text, tool rounds and usage are compared with what the recordings say.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

import sa_llm
from sa_llm.content import Attachment
from sa_llm.testing import Replay
from sa_llm.types import Chunk, Content, Message
from wire_responses import replay_tool, tool_rounds

WIRE = Path(__file__).parents[1] / "fixtures" / "wire"
PROVIDERS = ("openrouter", "deepseek", "mistral", "ollama")
_FILE = re.compile(
    r"^<file name='(?P<name>[^']*)' mime_type='(?P<type>[^']*)'>(?P<body>.*)</file>$", re.S
)
_TOOL_FILES = "Attachments from tool call "
_KNOWN = {
    "model", "messages", "stream", "stream_options", "tools", "tool_choice",
    "parallel_tool_calls", "temperature", "response_format",
}  # fmt: skip
_THINKING_FIELDS = ("reasoning", "reasoning_effort", "thinking")
# The field each dialect sends an earlier reply's reasoning back in.
_REASONING_SENT_BACK = {"deepseek": "reasoning_content", "ollama": "reasoning"}


def thinking_of(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``with_thinking`` arguments a recorded request's reasoning fields stand for."""
    reasoning = body.get("reasoning")
    if isinstance(reasoning, Mapping):  # OpenRouter
        if "max_tokens" in reasoning:
            return {"budget": reasoning["max_tokens"]}
        return {"effort": reasoning.get("effort")}
    if body.get("reasoning_effort"):
        return {"effort": body["reasoning_effort"]}
    if (body.get("thinking") or {}).get("type") == "disabled":  # DeepSeek's off switch
        return {"effort": "none"}
    return None


def load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8")))


def model_calls(recording: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [i for i in recording["interactions"] if i["request"]["method"] == "POST"]


def _is_tool_files(message: Mapping[str, Any]) -> bool:
    content = message.get("content")
    return (
        message.get("role") == "user"
        and isinstance(content, list)
        and bool(content)
        and str(content[0].get("text", "")).startswith(_TOOL_FILES)
    )


def users(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [m for m in body["messages"] if m["role"] == "user" and not _is_tool_files(m)]


def part_file(part: Mapping[str, Any]) -> Attachment | None:
    kind = part.get("type")
    if kind == "text":
        match = _FILE.match(str(part.get("text", "")))
        if match:
            return Attachment.from_bytes(
                match["body"].encode(), filename=match["name"], mime_type=match["type"]
            )
        return None
    if kind == "image_url":
        url = part["image_url"]["url"] if isinstance(part["image_url"], dict) else part["image_url"]
        if url.startswith("data:"):
            header, _, data = url.partition(",")
            ext = header[5:].split(";")[0].split("/")[1]
            return Attachment.from_bytes(base64.b64decode(data), filename=f"image.{ext}")
        return Attachment.from_url(url)
    if kind == "file":
        header, _, data = part["file"]["file_data"].partition(",")
        return Attachment.from_bytes(base64.b64decode(data), filename=part["file"]["filename"])
    if kind == "input_audio":
        audio = part["input_audio"]
        return Attachment.from_bytes(
            base64.b64decode(audio["data"]), filename=f"audio.{audio['format']}"
        )
    return None


def split(content: Any) -> tuple[str | None, list[Attachment]]:
    if isinstance(content, str):
        return content, []
    texts, files = [], []
    for part in content:
        file = part_file(part)
        if file is not None:
            files.append(file)
        elif part.get("type") == "text":
            texts.append(part["text"])
    return ("".join(texts) or None), files


def thinking_in(message: Mapping[str, Any]) -> str:
    """The reasoning of a recorded message or delta, in whichever dialect's form it came:
    DeepSeek's ``reasoning_content``, OpenRouter's and Ollama's ``reasoning``, Mistral's
    ``thinking`` content parts."""
    for key in ("reasoning_content", "reasoning"):
        if isinstance(message.get(key), str) and message[key]:
            return str(message[key])
    content = message.get("content")
    if not isinstance(content, list):
        return ""
    return "".join(
        inner["text"]
        for part in content
        if part.get("type") == "thinking"
        for inner in part["thinking"]
        if inner.get("type") == "text"
    )


def reply_of(response: Mapping[str, Any]) -> dict[str, Any] | None:
    """Text, thinking, tool calls and usage of a recorded reply, streamed or not (read
    independently)."""
    body = response["body"]
    if "event-stream" not in response["headers"].get("content-type", ""):
        data = json.loads(body)
        if "choices" not in data:
            return None
        message = data["choices"][0]["message"]
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if p.get("type") == "text")
        whole = [
            (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"] or "{}"))
            for c in message.get("tool_calls") or []
        ]
        return {
            "text": content or None,
            "thinking": thinking_in(message) or None,
            "calls": whole,
            "usage": data.get("usage") or {},
        }
    text: list[str] = []
    thinking: list[str] = []
    usage: dict[str, Any] = {}
    calls: dict[str, dict[str, str]] = {}
    order: list[str] = []
    current: dict[int, str] = {}  # stream index -> the id of the call it is building
    for line in body.splitlines():
        if not line.startswith("data:") or line.strip() == "data: [DONE]":
            continue
        event = json.loads(line[5:])
        if event.get("usage"):
            usage = event["usage"]
        for choice in event.get("choices") or []:
            delta = choice.get("delta") or {}
            thinking.append(thinking_in(delta))
            content = delta.get("content")
            if isinstance(content, str):
                text.append(content)
            elif isinstance(content, list):  # Mistral: thinking and text parts
                text.extend(p.get("text", "") for p in content if p.get("type") == "text")
            for call in delta.get("tool_calls") or []:
                index = call.get("index", 0)
                if call.get("id") and call["id"] not in calls:
                    calls[call["id"]] = {"name": "", "args": ""}
                    order.append(call["id"])
                    current[index] = call["id"]
                target = calls[current[index]]
                function = call.get("function") or {}
                target["name"] += function.get("name") or ""
                target["args"] += function.get("arguments") or ""
    parsed = [(i, calls[i]["name"], json.loads(calls[i]["args"] or "{}")) for i in order]
    return {
        "text": "".join(text) or None,
        "thinking": "".join(thinking) or None,
        "calls": parsed,
        "usage": usage,
    }


def tool_results(recording: Mapping[str, Any]) -> dict[tuple[str, str], Any]:
    named: dict[str, tuple[str, str]] = {}
    results: dict[tuple[str, str], Any] = {}
    files: dict[str, list[Attachment]] = {}
    for call in model_calls(recording):
        messages = call["request"]["body"]["messages"]
        for message in messages:
            for tc in message.get("tool_calls") or []:
                args = json.loads(tc["function"]["arguments"] or "{}")
                named[tc["id"]] = (tc["function"]["name"], json.dumps(args, sort_keys=True))
            if _is_tool_files(message):
                call_id = message["content"][0]["text"][len(_TOOL_FILES) :].rstrip(":")
                files[call_id] = split(message["content"][1:])[1]
        for message in messages:
            if message["role"] == "tool" and message["tool_call_id"] in named:
                results[named[message["tool_call_id"]]] = message["content"]
    for call_id, attached in files.items():
        key = named[call_id]
        results[key] = Content(str(results[key]), tuple(attached))
    return results


def make_tool(spec: Mapping[str, Any], results: Mapping[tuple[str, str], Any]) -> sa_llm.Tool:
    function = spec["function"]
    return replay_tool(
        function["name"], function.get("description"), function.get("parameters") or {}, results
    )


def recorded_files() -> list[Path]:
    files = []
    for provider in PROVIDERS:
        for path in sorted((WIRE / provider).glob("*.json")):
            calls = model_calls(load(path))
            if calls and all(c["request"]["url"].endswith("/chat/completions") for c in calls):
                files.append(path)
    return files


def new_chat(
    ctx: sa_llm.Context, provider: str, body: Mapping[str, Any], results: Any
) -> sa_llm.Chat:
    chat = ctx.chat(body["model"], provider=provider, assume_model_exists=True)
    if body.get("tools"):
        choice = body.get("tool_choice")
        chat.with_tools(
            *[make_tool(spec, results) for spec in body["tools"]],
            choice=choice["function"]["name"] if isinstance(choice, dict) else choice,
            calls=None
            if body.get("parallel_tool_calls") is None
            else ("many" if body["parallel_tool_calls"] else "one"),
        )
    return chat


def configure(chat: sa_llm.Chat, body: Mapping[str, Any]) -> None:
    system = [m for m in body["messages"] if m["role"] in ("system", "developer")]
    chat.with_instructions(split(system[0]["content"])[0] if system else None)
    fmt = body.get("response_format")
    chat.with_schema(None)
    chat.params = {}
    if fmt and fmt.get("type") == "json_schema":
        schema = fmt["json_schema"]
        chat.with_schema(
            {
                "name": schema["name"],
                "schema": schema["schema"],
                "strict": schema.get("strict", True),
            }
        )
    elif fmt:
        chat.with_params(response_format=fmt)
    if body.get("temperature") is not None:
        chat.with_temperature(body["temperature"])
    thinking = thinking_of(body)
    chat.with_thinking(**(thinking or {}))
    skip = _KNOWN | (set(_THINKING_FIELDS) if thinking else set())
    extra = {k: v for k, v in body.items() if k not in skip}
    if extra:
        chat.with_params(**extra)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("path", recorded_files(), ids=lambda p: f"{p.parent.name}-{p.stem}")
async def test_replay_chat_completions_recording(path: Path, mode: str) -> None:
    recording = load(path)
    provider = path.parent.name
    calls = model_calls(recording)
    first = calls[0]["request"]["body"]
    history_end = max(i for i, m in enumerate(first["messages"]) if m in users(first))
    replay = Replay(recording)
    ctx = replay.context(ollama_api_key="test-key")
    results = tool_results(recording)
    chat = new_chat(ctx, provider, first, results)
    for message in first["messages"][:history_end]:
        if message["role"] in ("user", "assistant"):
            chat.add_message(
                Message(role=message["role"], content=split(message["content"] or "")[0])
            )

    seen_users = len(users(first)) - 1
    turns: list[list[Mapping[str, Any]]] = []
    for call in calls:
        count = len(users(call["request"]["body"]))
        previous = (
            reply_of(turns[-1][-1]["response"])
            if turns and turns[-1][-1]["response"]["status"] < 400
            else None
        )
        if count > seen_users or not (previous and previous["calls"]):
            turns.append([call])
            seen_users = count
        else:
            turns[-1].append(call)

    for index, turn in enumerate(turns):
        body = turn[0]["request"]["body"]
        if index and len(users(body)) <= len(users(turns[index - 1][0]["request"]["body"])):
            chat = new_chat(ctx, provider, body, results)  # the same prompt again: a new chat
        configure(chat, body)
        prompt, files = split(users(body)[-1]["content"])
        stream = bool(body.get("stream"))
        chunks: list[Chunk] = []
        kwargs: dict[str, Any] = {"attachments": files or None}
        if stream:
            kwargs["on_chunk"] = chunks.append
        last = turn[-1]["response"]
        if last["status"] >= 400:
            with pytest.raises(sa_llm.APIStatusError) as caught:
                await (
                    chat.aask(prompt, **kwargs)
                    if mode == "async"
                    else _sync(chat.ask(prompt, **kwargs))
                )
            assert caught.value.status == last["status"]
            assert caught.value.provider == provider
            continue
        expected = reply_of(last)
        if expected is None:  # an error inside a 200 reply
            with pytest.raises(sa_llm.ProviderError):
                await (
                    chat.aask(prompt, **kwargs)
                    if mode == "async"
                    else _sync(chat.ask(prompt, **kwargs))
                )
            continue
        before = len(chat.messages)
        reply = await chat.aask(prompt, **kwargs) if mode == "async" else chat.ask(prompt, **kwargs)
        final = reply
        if expected["calls"]:
            assert reply.role == "tool"  # the recording ends on a tool call: the tool halted
            final = [m for m in chat.messages if m.role == "assistant"][-1]
        assert (final.text or None) == expected["text"]
        # Reasoning, in every dialect's form, becomes message.thinking (Mistral's parts too).
        assert (final.thinking.text if final.thinking else None) == expected["thinking"]
        if expected["usage"].get("prompt_tokens") is not None:
            assert final.tokens is not None
            assert final.tokens.input == expected["usage"]["prompt_tokens"]
            assert final.tokens.output == expected["usage"]["completion_tokens"]
        if stream:
            assert "".join(c.content or "" for c in chunks) == (final.text or "")
        assert tool_rounds(chat.messages[before:]) == [
            r["calls"] for c in turn if (r := reply_of(c["response"])) and r["calls"]
        ]

    posts = [s for s in replay.seen if s.method == "POST"]
    assert len(posts) == len(calls)
    for sent, call in zip(posts, calls, strict=True):
        recorded = call["request"]["body"]
        assert sent.body["model"] == recorded["model"]
        assert sent.body["stream"] == recorded["stream"]
        for field in _THINKING_FIELDS:  # with_thinking became the provider's own fields
            assert sent.body.get(field) == recorded.get(field), field
        assert [m["role"] for m in sent.body["messages"]] == [
            m["role"] for m in recorded["messages"]
        ]
        for mine, theirs in zip(sent.body["messages"], recorded["messages"], strict=True):
            # OpenRouter: a reply's reasoning goes back exactly as it came (signatures too).
            assert mine.get("reasoning_details") == theirs.get("reasoning_details")
            if theirs["role"] == "assistant" and provider in _REASONING_SENT_BACK:
                # DeepSeek and Ollama: the reply's reasoning text, in their own field.
                field = _REASONING_SENT_BACK[provider]
                assert mine.get(field) == theirs.get(field), field
            if theirs["role"] == "user" and isinstance(theirs["content"], list):
                # Files: each part's type, and images exactly as the provider wants them.
                kinds = [p["type"] for p in theirs["content"]]
                assert [p["type"] for p in mine["content"]] == kinds
                images = [_image(p) for p in theirs["content"] if p["type"] == "image_url"]
                assert [_image(p) for p in mine["content"] if p["type"] == "image_url"] == images
        assert [t["function"]["name"] for t in sent.body.get("tools", [])] == [
            t["function"]["name"] for t in recorded.get("tools", [])
        ]
    replay.assert_all_used()


def _image(part: Mapping[str, Any]) -> tuple[str, str]:
    """An image part's form (Mistral: a bare string) and URL; Ollama's default detail aside."""
    value = part["image_url"]
    return ("string", value) if isinstance(value, str) else ("object", value["url"])


async def _sync(value: Any) -> Any:
    return value
