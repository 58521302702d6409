"""Every recorded Gemini exchange, replayed through the public chat API, sync and async.

Table-driven over ``tests/fixtures/wire/gemini``: the conversation of each file is rebuilt from
its recorded ``generateContent`` requests (instructions, prompts and their files, tools and what
they returned, schema, thinking, tool choice, extra fields), run through ``Chat.ask``/``aask``
(streamed files as streams, through ``on_chunk``) against the recorded replies, and the result is
compared with what the recorded replies say, read here by a small reader of their own: reply
text, thinking text, tool rounds, usage, model, finish reason, structured output, error class.

Every request the library sent must equal the recorded one where it matters: the ``contents``
turns exactly (roles, part kinds, files, tool results, where each thought signature sits), the
system instruction, the function declarations with their converted schemas, the generation
config and the tool config; and no empty text part, ever. A new recording that follows the
naming needs no new code here.

The ``cachedcontent_*`` recording is the ``cachedContents`` resource API (create, get, delete a
cache), not a chat call; it is checked to be only that and skipped. A chat that uses such a
cache passes ``with_params(cachedContent=...)``, which this test replays like any extra field.
"""

from __future__ import annotations

import base64
import json
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

import sa_llm
from sa_llm.content import Attachment
from sa_llm.testing import Replay, ReplayedRequest
from sa_llm.types import Chunk, Content, Message

WIRE = Path(__file__).parents[1] / "fixtures" / "wire" / "gemini"
FILES = sorted(WIRE.glob("*.json"))
_MODEL_CALL = re.compile(
    r"/(?:models|tunedModels)/(?P<model>[^/:]+):(?:generateContent|streamGenerateContent)"
)
_FILE = re.compile(
    r"^<file name='(?P<name>[^']*)' mime_type='(?P<type>[^']*)'>(?P<body>.*)</file>$", re.S
)
_KNOWN_BODY = {"contents", "generationConfig", "systemInstruction", "tools", "toolConfig"}


def load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8")))


def model_calls(recording: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [
        item
        for item in recording["interactions"]
        if item["request"]["method"] == "POST" and _MODEL_CALL.search(item["request"]["url"])
    ]


def is_stream(call: Mapping[str, Any]) -> bool:
    return ":streamGenerateContent" in call["request"]["url"]


# -- reading recorded replies (independently of the codec) -------------------------------------


def reply_events(response: Mapping[str, Any]) -> list[dict[str, Any]]:
    body = str(response["body"])
    if "event-stream" in response["headers"].get("content-type", ""):
        return [json.loads(line[5:]) for line in body.splitlines() if line.startswith("data:")]
    return [json.loads(body)]


def expected_reply(response: Mapping[str, Any]) -> dict[str, Any]:
    """Text, thinking, calls, usage, model and finish reason that a recorded reply carries."""
    text, thinking = "", ""
    calls: list[tuple[str, dict[str, Any]]] = []
    usage: dict[str, Any] = {}
    model = finish = None
    for event in reply_events(response):
        for candidate in event.get("candidates", [])[:1]:
            for part in candidate.get("content", {}).get("parts", []):
                if "functionCall" in part:
                    calls.append((part["functionCall"]["name"], part["functionCall"]["args"]))
                elif part.get("thought"):
                    thinking += part.get("text", "")
                else:
                    text += part.get("text", "")
            finish = candidate.get("finishReason", finish)
        usage = event.get("usageMetadata", usage)
        model = event.get("modelVersion", model)
    return {
        "text": text or None,
        "thinking": thinking or None,
        "calls": calls,
        "usage": usage,
        "model": model,
        "finish": finish,
    }


def expected_error(response: Mapping[str, Any]) -> type[Exception]:
    error = json.loads(response["body"])["error"]
    reasons = {detail.get("reason") for detail in error.get("details", [])}
    if "API_KEY_INVALID" in reasons or error.get("status") == "UNAUTHENTICATED":
        return sa_llm.AuthenticationError  # Gemini answers a bad key with 400
    return {
        400: sa_llm.BadRequestError,
        403: sa_llm.PermissionDeniedError,
        404: sa_llm.NotFoundError,
        429: sa_llm.RateLimitError,
    }.get(int(response["status"]), sa_llm.ServerError)


# -- rebuilding the conversation from the recorded requests ------------------------------------


def part_file(part: Mapping[str, Any]) -> Attachment | None:
    if "inline_data" in part:
        blob = part["inline_data"]
        extension = blob["mime_type"].split("/")[-1]
        return Attachment.from_bytes(
            base64.b64decode(blob["data"]),
            filename=f"file.{extension}",
            mime_type=blob["mime_type"],
        )
    match = _FILE.match(str(part.get("text", "")))
    if match:
        return Attachment.from_bytes(
            match["body"].encode(), filename=match["name"], mime_type=match["type"]
        )
    return None


def prompt_of(content: Mapping[str, Any]) -> tuple[str | None, list[Attachment]]:
    texts, files = [], []
    for part in content["parts"]:
        file = part_file(part)
        if file is not None:
            files.append(file)
        elif "text" in part:
            texts.append(part["text"])
    return "".join(texts) or None, files


def is_prompt(content: Mapping[str, Any]) -> bool:
    return content["role"] == "user" and not any("functionResponse" in p for p in content["parts"])


def tool_results(calls: list[Mapping[str, Any]]) -> dict[tuple[str, str], list[Any]]:
    """What each tool returned, in call order, keyed by name and arguments."""
    by_position: dict[tuple[int, int], tuple[str, str, Any]] = {}
    for call in calls:
        contents = call["request"]["body"]["contents"]
        for index, content in enumerate(contents[1:], start=1):
            asked = [p["functionCall"] for p in contents[index - 1]["parts"] if "functionCall" in p]
            answers = [p for p in content["parts"] if "functionResponse" in p]
            for number, (request, answer) in enumerate(zip(asked, answers, strict=False)):
                by_position[(index, number)] = (
                    request["name"],
                    json.dumps(request["args"], sort_keys=True),
                    result_of(answer, content["parts"]),
                )
    results: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for _, (name, args, result) in sorted(by_position.items()):
        results[(name, args)].append(result)
    return results


def result_of(answer: Mapping[str, Any], parts: list[Mapping[str, Any]]) -> Any:
    """A recorded function response as the tool's return value (text, and files if any)."""
    response = answer["functionResponse"]
    text = "".join(c.get("text", "") for c in response["response"]["content"])
    files = [f for p in response.get("parts", []) if (f := part_file(p))]
    following = parts[parts.index(answer) + 1 :]
    for part in following:  # Gemini 2.x: the files are parts after the response
        if "functionResponse" in part:
            break
        file = part_file(part)
        if file is not None:
            files.append(file)
    return Content(text, tuple(files)) if files else text


def json_schema(schema: Any) -> Any:
    """A recorded Gemini parameter schema read back as JSON Schema (lower-case types)."""
    if isinstance(schema, list):
        return [json_schema(item) for item in schema]
    if not isinstance(schema, Mapping):
        return schema
    return {
        key: value.lower() if key == "type" and isinstance(value, str) else json_schema(value)
        for key, value in schema.items()
    }


def make_tool(declaration: Mapping[str, Any], results: Any) -> sa_llm.Tool:
    class Recorded(sa_llm.Tool):
        name = str(declaration["name"])
        description = str(declaration.get("description") or "")
        schema: ClassVar[Mapping[str, Any] | None] = json_schema(declaration["parameters"])

        def execute(self, **kwargs: Any) -> Any:
            queue = results.get((self.name, json.dumps(kwargs, sort_keys=True)))
            return queue.pop(0) if queue else self.halt("the recording ends on this call")

    return Recorded()


def configure_turn(chat: sa_llm.Chat, body: Mapping[str, Any], results: Any) -> None:
    system = body.get("systemInstruction")
    chat.with_instructions("".join(p["text"] for p in system["parts"]) if system else None)
    chat.with_schema(None).with_temperature(None)
    chat.params = {}
    generation = dict(body.get("generationConfig") or {})
    if "temperature" in generation:
        chat.with_temperature(generation.pop("temperature"))
    if "responseJsonSchema" in generation:
        generation.pop("responseMimeType", None)
        chat.with_schema({"name": "response", "schema": generation.pop("responseJsonSchema")})
    thinking = generation.get("thinkingConfig") or {}
    if "thinkingLevel" in thinking or "thinkingBudget" in thinking:
        del generation["thinkingConfig"]
        chat.with_thinking(
            effort=thinking.get("thinkingLevel"), budget=thinking.get("thinkingBudget")
        )
    if generation:
        chat.with_params(generationConfig=generation)
    extra = {k: v for k, v in body.items() if k not in _KNOWN_BODY}
    if extra:
        chat.with_params(**extra)
    declarations = [d for tool in body.get("tools", []) for d in tool["functionDeclarations"]]
    chat.with_tools(*[make_tool(d, results) for d in declarations], replace=True)
    chat.tool_choice = tool_choice(body.get("toolConfig", {}).get("functionCallingConfig", {}))


def tool_choice(config: Mapping[str, Any]) -> str | None:
    """``with_tools(choice=...)`` for a recorded ``functionCallingConfig``."""
    mode = str(config.get("mode", "")).lower()
    allowed = config.get("allowedFunctionNames") or []
    if mode == "any":
        return str(allowed[0]) if len(allowed) == 1 else "required"
    return mode or None


def split_turns(calls: list[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """Model calls grouped by user prompt: a turn is a prompt and its tool rounds."""
    turns: list[list[Mapping[str, Any]]] = []
    for call in calls:
        if not turns or is_prompt(call["request"]["body"]["contents"][-1]):
            turns.append([call])
        else:
            turns[-1].append(call)
    return turns


def text_parts(body: Mapping[str, Any]) -> Iterator[Any]:
    for content in [*body.get("contents", []), body.get("systemInstruction") or {"parts": []}]:
        for part in content["parts"]:
            if "text" in part:
                yield part["text"]


# -- the test ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
async def test_replay_gemini_recording(path: Path, mode: str) -> None:
    recording = load(path)
    calls = model_calls(recording)
    if not calls:
        urls = {item["request"]["url"].split("/v1beta/")[-1] for item in recording["interactions"]}
        assert all(url.startswith("cachedContents") for url in urls)
        pytest.skip(
            "cachedContents, not a chat call: replayed by tests/providers/test_gemini_cache.py"
        )
    replay = Replay(recording)
    ctx = replay.context()
    first = calls[0]["request"]["body"]
    found = _MODEL_CALL.search(calls[0]["request"]["url"])
    assert found is not None
    model = found["model"]
    results = tool_results(calls)
    chat = ctx.chat(model, provider="gemini", assume_model_exists=True)
    for content in first["contents"][:-1]:
        text, _ = prompt_of(content)
        chat.add_message(
            Message(role="user" if content["role"] == "user" else "assistant", content=text)
        )

    for turn in split_turns(calls):
        body = turn[0]["request"]["body"]
        configure_turn(chat, body, results)
        prompt, files = prompt_of(body["contents"][-1])
        chunks: list[Chunk] = []
        kwargs: dict[str, Any] = {"attachments": files or None}
        if is_stream(turn[0]):
            kwargs["on_chunk"] = chunks.append
        last = turn[-1]["response"]
        if int(last["status"]) >= 400:
            with pytest.raises(expected_error(last)) as caught:
                await (
                    chat.aask(prompt, **kwargs) if mode == "async" else _sync(chat, prompt, kwargs)
                )
            assert isinstance(caught.value, sa_llm.ProviderError)
            assert caught.value.provider == "gemini"
            assert caught.value.status == last["status"]
            continue
        before = len(chat.messages)
        reply = await chat.aask(prompt, **kwargs) if mode == "async" else chat.ask(prompt, **kwargs)
        expected = expected_reply(last)
        final = reply
        if expected["calls"]:
            assert reply.role == "tool"  # the recording ends on a call: the tool halted
            final = [m for m in chat.messages if m.role == "assistant"][-1]
        assert final.text == expected["text"]
        assert (final.thinking.text if final.thinking else None) == expected["thinking"]
        assert final.model_id == expected["model"]
        assert final.finish_reason == expected["finish"]
        usage = expected["usage"]
        assert final.tokens is not None
        assert final.tokens.input == usage["promptTokenCount"]
        counted = [usage[k] for k in ("candidatesTokenCount", "thoughtsTokenCount") if k in usage]
        assert final.tokens.output == (sum(counted) if counted else None)
        assert final.tokens.reasoning == usage.get("thoughtsTokenCount")
        assert final.tokens.cached == usage.get("cachedContentTokenCount")
        if chat.schema is not None and not expected["calls"]:
            assert final.parsed == json.loads(expected["text"])
        if kwargs.get("on_chunk"):
            assert "".join(c.content or "" for c in chunks) == (final.text or "")
            assert "".join(c.thinking or "" for c in chunks) == (expected["thinking"] or "")
            assert final.raw is None
        else:
            assert final.raw.json() == json.loads(last["body"])
        rounds = [m for m in chat.messages[before:] if m.role == "assistant" and m.tool_calls]
        assert [[(c.name, dict(c.arguments)) for c in m.tool_calls] for m in rounds] == [
            r["calls"] for c in turn if (r := expected_reply(c["response"]))["calls"]
        ]

    ids = [c.id for m in chat.messages for c in m.tool_calls]
    assert all(ids) and len(set(ids)) == len(ids)
    posts = [s for s in replay.seen if s.method == "POST"]
    assert len(posts) == len(calls)
    for sent, call in zip(posts, calls, strict=True):
        check_request(sent, call["request"])
    replay.assert_all_used()


def check_request(sent: ReplayedRequest, recorded: Mapping[str, Any]) -> None:
    mine, theirs = sent.body, recorded["body"]
    assert sent.headers.get("x-goog-api-key") == "test-key"
    assert "key=" not in sent.url  # the key never goes in the (logged) URL
    assert "" not in list(text_parts(mine))  # Gemini rejects empty text parts
    assert set(mine) == set(theirs)
    # Roles, part kinds and order, files, tool results and each thought signature's place.
    assert mine["contents"] == theirs["contents"]
    assert mine.get("systemInstruction") == theirs.get("systemInstruction")
    assert mine.get("tools") == theirs.get("tools")
    assert mine["generationConfig"] == theirs["generationConfig"]
    assert _lower_mode(mine.get("toolConfig")) == _lower_mode(theirs.get("toolConfig"))


def _lower_mode(config: Any) -> Any:
    """Tool config with the mode in one case (the enum is case-insensitive on the wire)."""
    if not config:
        return config
    calling = dict(config["functionCallingConfig"])
    calling["mode"] = str(calling["mode"]).lower()
    return {**config, "functionCallingConfig": calling}


async def _sync(chat: sa_llm.Chat, prompt: str | None, kwargs: dict[str, Any]) -> Message:
    return chat.ask(prompt, **kwargs)
