"""Support for the fault matrix: the recorded replies each API replays, and readers of the wire.

``SPECS`` names, for each provider API, the provider that speaks it, its model and the recorded
replies a test replays through :class:`~sa_llm.testing.faults.FaultInjectingServer`: a text
reply and a tool-call reply, each whole (JSON) and streamed. The readers below take what a
test needs out of those bytes and out of the requests the server received, independently of
sa_llm's own codecs: the text a reply carries, the tools it calls, and the conversation a
request sends.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from sa_llm.testing.faults import Api, FaultInjectingServer, RecordedReply, split_events

WIRE = Path(__file__).parent / "fixtures" / "wire"


def recorded(provider: str, name: str, index: int) -> tuple[Mapping[str, Any], RecordedReply]:
    """The request body (or URL-derived facts) and the reply of one recorded model call."""
    recording = json.loads((WIRE / provider / f"{name}.json").read_text(encoding="utf-8"))
    calls = [i for i in recording["interactions"] if i["request"]["method"] == "POST"]
    call = calls[index]
    body = call["request"]["body"] if isinstance(call["request"]["body"], dict) else {}
    return {"url": call["request"]["url"], **body}, RecordedReply.from_interaction(call)


@dataclass(frozen=True)
class Replies:
    """A text reply and a tool-call reply of one API, in one mode (whole or streamed)."""

    text: RecordedReply
    tool_call: RecordedReply


@dataclass(frozen=True)
class ApiSpec:
    """One provider API as the matrix drives it."""

    api: Api
    provider: str
    model: str
    base_path: str
    keys: Mapping[str, str]
    whole: Replies
    streamed: Replies

    def replies(self, stream: bool) -> Replies:
        return self.streamed if stream else self.whole

    def settings(self, server: FaultInjectingServer, **extra: Any) -> dict[str, Any]:
        """Context settings that point the provider at ``server`` with fake credentials."""
        return {f"{self.provider}_base_url": server.url + self.base_path, **self.keys, **extra}


def _spec(
    api: Api,
    provider: str,
    slug: str,
    base_path: str,
    keys: Mapping[str, str],
    *,
    text: tuple[str, int],
    text_stream: tuple[str, int],
    tools: str,
    tools_stream: str,
) -> ApiSpec:
    """An :class:`ApiSpec` from recording names (``{p}``/``{m}``: provider and model slug)."""

    def reply(name: str, index: int) -> RecordedReply:
        return recorded(provider, name.format(p=provider, m=slug), index)[1]

    request, _ = recorded(provider, text[0].format(p=provider, m=slug), text[1])
    model = request.get("model") or _model_in_url(str(request["url"]))
    return ApiSpec(
        api=api,
        provider=provider,
        model=str(model),
        base_path=base_path,
        keys=keys,
        whole=Replies(reply(*text), reply(tools, 0)),
        streamed=Replies(reply(*text_stream), reply(tools_stream, 0)),
    )


def _model_in_url(url: str) -> str:
    """Bedrock's ``/model/<id>/converse`` and Gemini's ``/models/<id>:generateContent``."""
    path = httpx.URL(url.replace("<AWS_REGION>", "region")).path
    if "/model/" in path:
        return path.split("/model/")[-1].split("/")[0]
    return path.split("/models/")[-1].split(":")[0]


BASIC = "chat_basic_chat_functionality_{p}_{m}_can_have_a_basic_conversation"
MULTI_TURN = "chat_basic_chat_functionality_{p}_{m}_can_handle_multi-turn_conversations"
STREAMING = "chat_streaming_responses_{p}_{m}_supports_streaming_responses"
CONSISTENT = (
    "chat_streaming_responses_{p}_{m}_reports_consistent_token_counts_compared_to_non-streaming"
)
TOOLS = "chat_function_calling_{p}_{m}_can_use_tools"
NO_PARAMETERS = TOOLS + "_without_parameters"
STREAMING_TOOLS = NO_PARAMETERS + "_in_multi-turn_streaming_conversations"

SPECS: dict[str, ApiSpec] = {
    "chat_completions": _spec(
        "chat_completions",
        "openrouter",
        "claude-haiku-4-5",
        "/api/v1",
        {"openrouter_api_key": "sk-or-fake"},
        text=(BASIC, 0),
        text_stream=(STREAMING, 0),
        tools=NO_PARAMETERS,
        tools_stream=STREAMING_TOOLS,
    ),
    "responses": _spec(
        "responses",
        "openai",
        "gpt-5-nano",
        "/v1",
        {"openai_api_key": "sk-fake"},
        text=(BASIC, 0),
        text_stream=(CONSISTENT, 0),
        tools=NO_PARAMETERS,
        tools_stream=STREAMING_TOOLS,
    ),
    "anthropic": _spec(
        "anthropic",
        "anthropic",
        "claude-haiku-4-5",
        "",
        {"anthropic_api_key": "sk-ant-fake"},
        text=(MULTI_TURN, 0),
        text_stream=(STREAMING, 0),
        tools=TOOLS,
        tools_stream=STREAMING_TOOLS,
    ),
    "gemini": _spec(
        "gemini",
        "gemini",
        "gemini-2_5-flash",
        "/v1beta",
        {"gemini_api_key": "fake-gemini-key"},
        text=(BASIC, 0),
        # The text reply after the tool round: two events, so a fault can land between them.
        text_stream=(STREAMING_TOOLS, 1),
        tools=NO_PARAMETERS,
        tools_stream=STREAMING_TOOLS,
    ),
    "bedrock": _spec(
        "bedrock",
        "bedrock",
        "amazon_nova-2-lite-v1_0",
        "",
        {
            "bedrock_region": "us-east-1",
            "bedrock_access_key_id": "AKIAFAKEFAKEFAKE",
            "bedrock_secret_access_key": "fake-secret",
        },
        text=(BASIC, 0),
        text_stream=(CONSISTENT, 0),
        tools=NO_PARAMETERS,
        tools_stream=STREAMING_TOOLS,
    ),
}


# -- reading replies ------------------------------------------------------------------------------


def events(reply: RecordedReply) -> list[tuple[str, Any]]:
    """(event type, JSON payload) of every event of a reply; a whole reply is one event."""
    if not reply.streamed:
        return [("", json.loads(reply.body))]
    if reply.event_stream:
        return list(_frames(reply.body))
    found = []
    text = reply.body.decode("utf-8").replace("\r\n", "\n")
    for block in text.split("\n\n"):
        data = [line[5:].lstrip(" ") for line in block.split("\n") if line.startswith("data:")]
        if data and data != ["[DONE]"]:
            found.append(("", json.loads("\n".join(data))))
    return found


def _frames(body: bytes) -> Iterator[tuple[str, Any]]:
    """(``:event-type``, JSON payload) of each AWS event-stream frame."""
    position = 0
    while position < len(body):
        total, headers_length = struct.unpack_from(">II", body, position)
        headers, cursor = {}, position + 12
        while cursor < position + 12 + headers_length:
            size = body[cursor]
            name = body[cursor + 1 : cursor + 1 + size].decode()
            cursor += 1 + size + 1  # the value type: always 7 (string) in these recordings
            (length,) = struct.unpack_from(">H", body, cursor)
            headers[name] = body[cursor + 2 : cursor + 2 + length].decode()
            cursor += 2 + length
        payload = body[position + 12 + headers_length : position + total - 4]
        yield headers.get(":event-type", ""), json.loads(payload)
        position += total


def _text_pieces(api: Api, payload: Any, kind: str) -> Iterator[str]:
    if api == "chat_completions":
        for choice in payload.get("choices") or ():
            part = choice.get("message") or choice.get("delta") or {}
            if isinstance(part.get("content"), str):
                yield part["content"]
    elif api == "responses":
        if payload.get("type") == "response.output_text.delta":
            yield payload["delta"]
        for item in payload.get("output") or ():
            if item.get("type") == "message":
                yield from (c["text"] for c in item["content"] if c["type"] == "output_text")
    elif api == "anthropic":
        delta = payload.get("delta") or {}
        if delta.get("type") == "text_delta":
            yield delta["text"]
        yield from (b["text"] for b in payload.get("content") or () if b["type"] == "text")
    elif api == "gemini":
        for candidate in payload.get("candidates") or ():
            for part in (candidate.get("content") or {}).get("parts") or ():
                if "text" in part and not part.get("thought"):
                    yield part["text"]
    elif kind == "contentBlockDelta":
        yield payload["delta"].get("text", "")
    elif not kind:
        yield from (b["text"] for b in payload["output"]["message"]["content"] if "text" in b)


def reply_text(api: Api, reply: RecordedReply) -> str:
    """The text a recorded reply carries, as a user reads it."""
    return "".join(
        piece for kind, payload in events(reply) for piece in _text_pieces(api, payload, kind)
    )


def first_content_event(api: Api, reply: RecordedReply) -> int:
    """The position (among the server's events, comments included) of the first event that
    carries text or names a tool call."""
    for position, event in enumerate(split_events(reply)):
        single = RecordedReply(reply.status, reply.headers, event)
        try:
            if reply_text(api, single) or tool_names(api, single):
                return position
        except (ValueError, KeyError):
            continue  # a comment or the [DONE] line
    raise AssertionError("the recorded reply carries neither text nor a tool call")


def tool_names(api: Api, reply: RecordedReply) -> list[str]:
    """The names of the tools a recorded reply calls, in order."""
    names: list[str] = []
    for kind, payload in events(reply):
        if api == "chat_completions":
            for choice in payload.get("choices") or ():
                part = choice.get("message") or choice.get("delta") or {}
                calls = [c.get("function") or {} for c in part.get("tool_calls") or ()]
                names += [c["name"] for c in calls if c.get("name")]
        elif api == "responses":
            items = list(payload.get("output") or ())
            if payload.get("type") in ("response.output_item.added", "response.output_item.done"):
                items.append(payload["item"])
            names += [i["name"] for i in items if i.get("type") == "function_call"]
        elif api == "anthropic":
            blocks = list(payload.get("content") or ())
            if payload.get("type") == "content_block_start":
                blocks.append(payload["content_block"])
            names += [b["name"] for b in blocks if b.get("type") == "tool_use"]
        elif api == "gemini":
            for candidate in payload.get("candidates") or ():
                parts = (candidate.get("content") or {}).get("parts") or ()
                names += [p["functionCall"]["name"] for p in parts if "functionCall" in p]
        elif kind == "contentBlockStart":
            use = payload.get("start", {}).get("toolUse")
            names += [use["name"]] if use else []
        elif not kind:
            blocks = payload["output"]["message"]["content"]
            names += [b["toolUse"]["name"] for b in blocks if "toolUse" in b]
    return list(dict.fromkeys(names)) if api == "responses" else names


# -- reading requests -----------------------------------------------------------------------------

Entry = tuple[str, str]
"""One item of a conversation as a request sends it: ``("user", text)``, ``("assistant", text)``
(``""`` for an assistant message with neither text nor tool calls), ``("tool_call", name)``,
``("tool_result", id or name)`` or ``("system", text)``."""


def _texts(content: Any, key: str = "text") -> str:
    if isinstance(content, str):
        return content
    return "".join(str(part.get(key, "")) for part in content or () if isinstance(part, Mapping))


def history(api: Api, body: Mapping[str, Any]) -> list[Entry]:
    """The conversation a request body sends, in order, in the terms of :data:`Entry`."""
    entries: list[Entry] = []

    def assistant(text: str, calls: list[str]) -> None:
        if text:
            entries.append(("assistant", text))
        entries.extend(("tool_call", name) for name in calls)
        if not text and not calls:
            entries.append(("assistant", ""))

    if api == "chat_completions":
        for m in body["messages"]:
            if m["role"] == "assistant":
                calls = [c["function"]["name"] for c in m.get("tool_calls") or ()]
                assistant(_texts(m.get("content")), calls)
            elif m["role"] == "tool":
                entries.append(("tool_result", m["tool_call_id"]))
            else:
                entries.append((m["role"], _texts(m.get("content"))))
    elif api == "responses":
        for item in body["input"]:
            kind = item.get("type", "message")
            if kind == "function_call":
                entries.append(("tool_call", item["name"]))
            elif kind == "function_call_output":
                entries.append(("tool_result", item["call_id"]))
            elif kind == "message" and item["role"] == "assistant":
                assistant(_texts(item.get("content")), [])
            elif kind == "message":
                entries.append((item["role"], _texts(item.get("content"))))
    elif api == "anthropic":
        for m in body["messages"]:
            blocks = (
                m["content"]
                if isinstance(m["content"], list)
                else [{"type": "text", "text": m["content"]}]
            )
            if m["role"] == "assistant":
                text = "".join(b["text"] for b in blocks if b["type"] == "text")
                assistant(text, [b["name"] for b in blocks if b["type"] == "tool_use"])
                continue
            for b in blocks:
                if b["type"] == "tool_result":
                    entries.append(("tool_result", b["tool_use_id"]))
                elif b["type"] == "text":
                    entries.append(("user", b["text"]))
    elif api == "gemini":
        for content in body["contents"]:
            parts = content.get("parts") or []
            if content.get("role") == "model":
                text = "".join(p.get("text", "") for p in parts if not p.get("thought"))
                assistant(text, [p["functionCall"]["name"] for p in parts if "functionCall" in p])
                continue
            for p in parts:
                if "functionResponse" in p:
                    entries.append(("tool_result", p["functionResponse"]["name"]))
                elif "text" in p:
                    entries.append(("user", p["text"]))
    else:
        for m in body["messages"]:
            blocks = m["content"]
            if m["role"] == "assistant":
                text = "".join(b.get("text", "") for b in blocks)
                assistant(text, [b["toolUse"]["name"] for b in blocks if "toolUse" in b])
                continue
            for b in blocks:
                if "toolResult" in b:
                    entries.append(("tool_result", b["toolResult"]["toolUseId"]))
                elif "text" in b:
                    entries.append(("user", b["text"]))
    return entries
