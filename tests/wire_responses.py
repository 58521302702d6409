"""Rebuild a recorded Responses-API conversation so the library can replay it.

A recording holds the requests RubyLLM sent and the replies it got. From the requests we read
what the original test did (instructions, tools and their results, schemas, each user prompt
and its files); from the replies, what the library must parse (text, tool calls, usage). A new
recording that follows the format needs no new code.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import sa_llm
from sa_llm.content import Attachment
from sa_llm.types import Content, Message

WIRE = Path(__file__).parent / "fixtures" / "wire"

_FILE_RE = re.compile(
    r"^<file name='(?P<name>[^']*)' mime_type='(?P<type>[^']*)'>(?P<body>.*)</file>$", re.S
)
_TOOL_ATTACHMENTS = "Attachments from tool call "
_KNOWN_FIELDS = {
    "model",
    "input",
    "instructions",
    "stream",
    "store",
    "include",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "temperature",
    "text",
    "reasoning",
}


def load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8")))


def model_calls(recording: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The interactions that are model calls (POSTs), in order."""
    return [i for i in recording["interactions"] if i["request"]["method"] == "POST"]


def attachment_from_part(part: Mapping[str, Any]) -> Attachment | None:
    """The file a recorded content part carries, or None for plain text."""
    kind = part.get("type")
    if kind in ("input_text", "text"):
        match = _FILE_RE.match(str(part.get("text", "")))
        if match:
            return Attachment.from_bytes(
                match["body"].encode(), filename=match["name"], mime_type=match["type"]
            )
        return None
    if kind == "input_image":
        url = str(part["image_url"])
        if url.startswith("data:"):
            header, _, data = url.partition(",")
            mime = header[5:].split(";")[0]
            ext = mime.split("/")[1]
            return Attachment.from_bytes(base64.b64decode(data), filename=f"image.{ext}")
        return Attachment.from_url(url)
    if kind == "input_file":
        data_url = str(part.get("file_data", ""))
        header, _, data = data_url.partition(",")
        return Attachment.from_bytes(
            base64.b64decode(data), filename=str(part.get("filename") or "file")
        )
    return None


def split_user_content(content: Any) -> tuple[str | None, list[Attachment]]:
    if isinstance(content, str):
        return content, []
    text_parts: list[str] = []
    files: list[Attachment] = []
    for part in content:
        attachment = attachment_from_part(part)
        if attachment is not None:
            files.append(attachment)
        elif part.get("type") in ("input_text", "text"):
            text_parts.append(str(part["text"]))
    return ("".join(text_parts) or None), files


def is_tool_attachment_turn(item: Mapping[str, Any]) -> bool:
    content = item.get("content")
    return (
        item.get("role") == "user"
        and isinstance(content, list)
        and bool(content)
        and str(content[0].get("text", "")).startswith(_TOOL_ATTACHMENTS)
    )


def user_items(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [
        item
        for item in body.get("input", [])
        if item.get("role") == "user" and not is_tool_attachment_turn(item)
    ]


@dataclass
class Turn:
    """One ``ask`` of the original test: its prompt, files and request settings."""

    prompt: str | None
    files: list[Attachment]
    body: Mapping[str, Any]
    calls: list[Mapping[str, Any]] = field(default_factory=list)
    fresh: bool = False


def turns(recording: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], list[Turn]]:
    """The history to preload and the asks, grouped with the model calls each one made."""
    calls = model_calls(recording)
    first = calls[0]["request"]["body"]
    items = list(first.get("input", []))
    last_user = max(i for i, item in enumerate(items) if item in user_items(first))
    history = items[:last_user]
    result: list[Turn] = []
    seen_users = len(user_items(first)) - 1
    for call in calls:
        body = call["request"]["body"]
        users = user_items(body)
        continues = bool(result) and _asked_for_tools(result[-1].calls[-1])
        if len(users) > seen_users or not continues:
            prompt, files = split_user_content(users[-1]["content"])
            # The same prompt again in a shorter history: the original test began a new chat.
            result.append(Turn(prompt, files, body, fresh=len(users) <= seen_users))
            seen_users = len(users)
        result[-1].calls.append(call)
    return history, result


def _asked_for_tools(call: Mapping[str, Any]) -> bool:
    reply = reply_object(call["response"]) if call["response"]["status"] < 400 else None
    return bool(reply and expected_calls(reply))


def tool_outputs(recording: Mapping[str, Any]) -> dict[tuple[str, str], list[Any]]:
    """(tool name, canonical JSON arguments) -> what the tool returned, in call order."""
    calls: dict[str, tuple[str, str]] = {}
    by_call: dict[str, Any] = {}
    attachments: dict[str, list[Attachment]] = {}
    for call in model_calls(recording):
        items = call["request"]["body"].get("input", [])
        for item in items:
            if item.get("type") == "function_call":
                args = json.loads(item.get("arguments") or "{}")
                calls[item["call_id"]] = (item["name"], json.dumps(args, sort_keys=True))
            if is_tool_attachment_turn(item):
                call_id = item["content"][0]["text"][len(_TOOL_ATTACHMENTS) :].rstrip(":")
                _, files = split_user_content(item["content"][1:])
                attachments[call_id] = files
        for item in items:
            if item.get("type") == "function_call_output" and item["call_id"] in calls:
                by_call[item["call_id"]] = item["output"]
    for call_id, files in attachments.items():
        by_call[call_id] = Content(str(by_call[call_id]), tuple(files))
    outputs: dict[tuple[str, str], list[Any]] = {}
    for call_id, output in by_call.items():  # dicts keep the order calls were first seen
        outputs.setdefault(calls[call_id], []).append(output)
    return outputs


def make_tool(spec: Mapping[str, Any], outputs: Mapping[tuple[str, str], list[Any]]) -> sa_llm.Tool:
    """A tool with the recorded definition that returns the recorded results, in order."""
    queues = {key: list(values) for key, values in outputs.items()}

    class Recorded(sa_llm.Tool):
        name = str(spec["name"])
        description = str(spec.get("description") or "")
        schema: ClassVar[Mapping[str, Any] | None] = dict(spec.get("parameters") or {})

        def execute(self, **kwargs: Any) -> Any:
            key = (self.name, json.dumps(kwargs, sort_keys=True))
            queue = queues.get(key)
            if queue:
                # The same call twice (a dice roll) returned different results: replay in order.
                return queue.pop(0) if len(queue) > 1 else queue[0]
            same_name = [v[0] for (n, _), v in outputs.items() if n == self.name]
            if same_name:
                return same_name[0]
            # The recording ends at this call: the original test stopped the loop here.
            return self.halt("halted by the replay")

    return Recorded()


def configure_turn(chat: sa_llm.Chat, body: Mapping[str, Any]) -> None:
    """Apply the settings one recorded request shows to the chat."""
    chat.with_instructions(body.get("instructions"))
    fmt = (body.get("text") or {}).get("format")
    if fmt and fmt.get("type") == "json_schema":
        chat.with_schema(
            {"name": fmt["name"], "schema": fmt["schema"], "strict": fmt.get("strict")}
        )
    else:
        chat.with_schema(None)
        if fmt:
            chat.with_params(text=body["text"])
    reasoning = body.get("reasoning")
    if reasoning and reasoning.get("effort"):
        chat.with_thinking(effort=reasoning["effort"])
    if body.get("temperature") is not None:
        chat.with_temperature(body["temperature"])
    extra = {k: v for k, v in body.items() if k not in _KNOWN_FIELDS}
    if extra:
        chat.with_params(**extra)


# -- what the recorded replies say ----------------------------------------------------------------


def reply_object(response: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The final response object of a recorded reply, streamed or not."""
    body = response["body"]
    if "event-stream" in response["headers"].get("content-type", ""):
        for block in re.split(r"\r?\n\r?\n", body):
            for line in block.splitlines():
                if line.startswith("data:"):
                    payload = json.loads(line[5:].strip())
                    if payload.get("type") in ("response.completed", "response.incomplete"):
                        return dict(payload["response"])
        return None
    return dict(json.loads(body))


def expected_text(reply: Mapping[str, Any]) -> str | None:
    texts = [
        part["text"]
        for item in reply.get("output", [])
        if item.get("type") == "message"
        for part in item.get("content", [])
        if part.get("type") == "output_text"
    ]
    return "".join(texts) or None


def expected_calls(reply: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (item["call_id"], item["name"], json.loads(item.get("arguments") or "{}"))
        for item in reply.get("output", [])
        if item.get("type") == "function_call"
    ]


def expected_tokens(reply: Mapping[str, Any]) -> sa_llm.Tokens:
    usage = reply.get("usage") or {}
    return sa_llm.Tokens(
        input=usage.get("input_tokens"),
        output=usage.get("output_tokens"),
        cached=(usage.get("input_tokens_details") or {}).get("cached_tokens"),
        reasoning=(usage.get("output_tokens_details") or {}).get("reasoning_tokens"),
    )


def responses_reply(text: str) -> dict[str, Any]:
    """A whole Responses-API reply of one message saying ``text`` (one token each way)."""
    return {
        "id": "resp_1",
        "object": "response",
        "status": "completed",
        "model": "gpt-4.1-nano",
        "output": [
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ],
        "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2},
    }


def tool_rounds(messages: Sequence[Message]) -> list[list[tuple[str, str, dict[str, Any]]]]:
    """``(id, name, arguments)`` of the calls of each assistant message that asked for tools."""
    return [
        [(c.id, c.name, dict(c.arguments)) for c in m.tool_calls]
        for m in messages
        if m.role == "assistant" and m.tool_calls
    ]


def recorded_rounds(calls: Sequence[Mapping[str, Any]]) -> list[Any]:
    """The tool calls of each recorded Responses-API reply that asked for tools."""
    return [
        found
        for call in calls
        if (obj := reply_object(call["response"])) is not None and (found := expected_calls(obj))
    ]


def replay_tool(
    name: str, description: str | None, schema: Mapping[str, Any], results: Mapping[Any, Any]
) -> sa_llm.Tool:
    """A tool with a recorded definition that answers each call with the recorded result of
    ``(name, JSON arguments)``, else the first result of the same tool; past the recording's
    last result it halts (the original test stopped the loop there)."""
    tool_name, tool_description, tool_schema = str(name), str(description or ""), dict(schema)

    class Recorded(sa_llm.Tool):
        name = tool_name
        description = tool_description
        schema: ClassVar[Mapping[str, Any] | None] = tool_schema

        def execute(self, **kwargs: Any) -> Any:
            key = (self.name, json.dumps(kwargs, sort_keys=True))
            if key in results:
                return results[key]
            same = [v for (n, _), v in results.items() if n == self.name]
            return same[0] if same else self.halt("halted by the replay")

    return Recorded()


#: A whole Chat Completions reply saying "Hi" (3 tokens in, 1 out).
CHAT_COMPLETION_REPLY: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "gpt-4.1-nano",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}
