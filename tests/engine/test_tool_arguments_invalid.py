"""Tool-call arguments that are not valid JSON go back to the model as an error result.

A model sometimes sends arguments cut short or garbled. That is its mistake, not a broken
reply: the turn goes on, the tool is not run, and the model receives an error result saying the
arguments were not valid JSON, so it can try again. Every codec whose arguments arrive as JSON
text is covered, whole and streamed: Chat Completions, Responses, and the streamed forms of
Anthropic and Bedrock (whose whole replies, like Gemini's, carry the arguments as an object).
Persisted chats store the call, its raw text under ``{"_raw": ...}``, and the error result.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

import sa_llm
from persisted import World
from sa_llm.testing import Replay
from sa_llm.testing.faults import encode_frame

BROKEN = '{"city": "Par'  # cut off mid-string, as a model that ran out of tokens sends it
ANSWER = "Sorry, I sent broken arguments."


class Weather(sa_llm.Tool):
    """The weather in a city."""

    runs: ClassVar[list[str]] = []

    def execute(self, city: str) -> str:
        Weather.runs.append(city)
        return f"sunny in {city}"


@pytest.fixture(autouse=True)
def _fresh_runs() -> None:
    Weather.runs = []


def sse(*events: Any, named: bool = False) -> str:
    """An SSE body; ``named`` adds an ``event:`` line with each payload's ``type``."""
    lines = []
    for event in events:
        data = event if isinstance(event, str) else json.dumps(event)
        prefix = f"event: {event['type']}\n" if named and not isinstance(event, str) else ""
        lines.append(f"{prefix}data: {data}\n\n")
    return "".join(lines)


def pieces(text: str) -> list[str]:
    return [text[i : i + 5] for i in range(0, len(text), 5)]


# -- Chat Completions ------------------------------------------------------------------------------

USAGE = {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}


def cc_whole(arguments: str | None) -> str:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": ANSWER if arguments is None else None,
    }
    if arguments is not None:
        message["tool_calls"] = [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "weather", "arguments": arguments},
            }
        ]
    finish = "stop" if arguments is None else "tool_calls"
    return json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": "gpt-4.1-nano",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": USAGE,
        }
    )


def cc_stream(arguments: str | None) -> str:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "model": "gpt-4.1-nano",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    if arguments is None:
        events: list[Any] = [chunk({"role": "assistant", "content": ANSWER}), chunk({}, "stop")]
    else:
        start = {"index": 0, "id": "call_1", "type": "function"}
        events = [chunk({"tool_calls": [{**start, "function": {"name": "weather"}}]})]
        events += [
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]})
            for p in pieces(arguments)
        ]
        events.append(chunk({}, "tool_calls"))
    usage = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [], "usage": USAGE}
    return sse(*events, usage, "[DONE]")


# -- Responses -------------------------------------------------------------------------------------


def responses_object(arguments: str | None) -> dict[str, Any]:
    item: dict[str, Any]
    if arguments is None:
        item = {
            "type": "message",
            "id": "msg_1",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": ANSWER, "annotations": []}],
        }
    else:
        item = {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "call_1",
            "name": "weather",
            "arguments": arguments,
            "status": "completed",
        }
    return {
        "id": "resp_1",
        "object": "response",
        "status": "completed",
        "model": "gpt-4.1-nano",
        "output": [item],
        "usage": {"input_tokens": 20, "output_tokens": 5, "total_tokens": 25},
    }


def responses_whole(arguments: str | None) -> str:
    return json.dumps(responses_object(arguments))


def responses_stream(arguments: str | None) -> str:
    whole = responses_object(arguments)
    events: list[Any] = [{"type": "response.created", "response": {**whole, "output": []}}]
    if arguments is None:
        events.append({"type": "response.output_text.delta", "item_id": "msg_1", "delta": ANSWER})
    else:
        item = {**whole["output"][0], "arguments": "", "status": "in_progress"}
        events.append({"type": "response.output_item.added", "output_index": 0, "item": item})
        events += [
            {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": p}
            for p in pieces(arguments)
        ]
        events.append(
            {"type": "response.output_item.done", "output_index": 0, "item": whole["output"][0]}
        )
    events.append({"type": "response.completed", "response": whole})
    return sse(*events, named=True)


# -- Anthropic (streamed) --------------------------------------------------------------------------


def anthropic_stream(arguments: str | None) -> str:
    message: dict[str, Any] = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-haiku-4-5",
        "content": [],
        "usage": {"input_tokens": 20, "output_tokens": 1},
    }
    events: list[Any] = [{"type": "message_start", "message": message}]
    block: dict[str, Any]
    if arguments is None:
        block = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": ANSWER}]
        stop = "end_turn"
    else:
        block = {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces(arguments)]
        stop = "tool_use"
    events.append({"type": "content_block_start", "index": 0, "content_block": block})
    events += [{"type": "content_block_delta", "index": 0, "delta": d} for d in deltas]
    events.append({"type": "content_block_stop", "index": 0})
    events.append(
        {"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": 5}}
    )
    events.append({"type": "message_stop"})
    return sse(*events, named=True)


# -- Bedrock ConverseStream (binary event stream) --------------------------------------------------


def bedrock_stream(arguments: str | None) -> bytes:
    def frame(event: str, payload: dict[str, Any]) -> bytes:
        headers = {
            ":event-type": event,
            ":content-type": "application/json",
            ":message-type": "event",
        }
        return encode_frame(headers, json.dumps(payload).encode())

    frames = [frame("messageStart", {"role": "assistant"})]
    if arguments is None:
        frames.append(
            frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": ANSWER}})
        )
        stop = "end_turn"
    else:
        start = {"toolUse": {"toolUseId": "tooluse_1", "name": "weather"}}
        frames.append(frame("contentBlockStart", {"contentBlockIndex": 0, "start": start}))
        frames += [
            frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": p}}})
            for p in pieces(arguments)
        ]
        stop = "tool_use"
    frames.append(frame("contentBlockStop", {"contentBlockIndex": 0}))
    frames.append(frame("messageStop", {"stopReason": stop}))
    usage = {"inputTokens": 20, "outputTokens": 5, "totalTokens": 25}
    frames.append(frame("metadata", {"usage": usage, "metrics": {"latencyMs": 100}}))
    return b"".join(frames)


@dataclass(frozen=True)
class Api:
    provider: str
    model: str
    path: str
    stream: bool
    reply: Callable[[str | None], str | bytes]
    settings: tuple[tuple[str, Any], ...] = ()

    @property
    def content_type(self) -> str:
        if self.provider == "bedrock" and self.stream:
            return "application/vnd.amazon.eventstream"
        return "text/event-stream" if self.stream else "application/json"


BEDROCK = (
    ("bedrock_region", "us-east-1"),
    ("bedrock_access_key_id", "AKIDEXAMPLE"),
    ("bedrock_secret_access_key", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
)
APIS = {
    "chat_completions-whole": Api(
        "openai",
        "gpt-4.1-nano",
        "/chat/completions",
        False,
        cc_whole,
        (("openai_api", "chat_completions"),),
    ),
    "chat_completions-stream": Api(
        "openai",
        "gpt-4.1-nano",
        "/chat/completions",
        True,
        cc_stream,
        (("openai_api", "chat_completions"),),
    ),
    "mistral-stream": Api("mistral", "mistral-small-latest", "/chat/completions", True, cc_stream),
    "responses-whole": Api("openai", "gpt-4.1-nano", "/responses", False, responses_whole),
    "responses-stream": Api("openai", "gpt-4.1-nano", "/responses", True, responses_stream),
    "anthropic-stream": Api(
        "anthropic", "claude-haiku-4-5", "/v1/messages", True, anthropic_stream
    ),
    "bedrock-stream": Api(
        "bedrock",
        "anthropic.claude-haiku-4-5-20251001-v1:0",
        "/converse-stream",
        True,
        bedrock_stream,
        BEDROCK,
    ),
}


def recording(api: Api, arguments: str) -> dict[str, Any]:
    def interaction(reply: str | bytes) -> dict[str, Any]:
        response: dict[str, Any] = {"status": 200, "headers": {"content-type": api.content_type}}
        if isinstance(reply, bytes):
            import base64

            response.update(body=base64.b64encode(reply).decode(), body_base64=True)
        else:
            response["body"] = reply
        return {"request": {"method": "POST", "url": f"<BASE>{api.path}"}, "response": response}

    return {"interactions": [interaction(api.reply(arguments)), interaction(api.reply(None))]}


def carries(value: Any, wanted: dict[str, Any]) -> bool:
    """Whether a request body holds ``wanted`` as an object or as JSON text (Chat Completions
    and Responses send arguments as a string, Anthropic and Bedrock as an object)."""
    if value == wanted:
        return True
    if isinstance(value, str) and value.startswith("{"):
        try:
            return bool(json.loads(value) == wanted)
        except ValueError:
            return False
    if isinstance(value, dict):
        return any(carries(v, wanted) for v in value.values())
    if isinstance(value, list):
        return any(carries(v, wanted) for v in value)
    return False


def tool_result_error(message: sa_llm.Message) -> str:
    assert message.role == "tool"
    return str(json.loads(str(message.text))["error"])


@pytest.mark.parametrize(
    "arguments",
    [BROKEN, "[1, 2]", '{"city": "Paris"} trailing'],
    ids=["cut-short", "not-an-object", "trailing-garbage"],
)
@pytest.mark.parametrize("api_name", list(APIS))
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_bad_arguments_go_back_to_the_model(mode: str, api_name: str, arguments: str) -> None:
    api = APIS[api_name]
    replay = Replay(recording(api, arguments))
    ctx = replay.context(**dict(api.settings))
    chat = ctx.chat(api.model, provider=api.provider, assume_model_exists=True)
    chat.with_tool(Weather)
    calls: list[sa_llm.ToolCall] = []
    chat.on_tool_call(calls.append)
    kwargs: dict[str, Any] = {"on_chunk": lambda chunk: None} if api.stream else {}

    reply = (
        chat.ask("Weather in Paris?", **kwargs)
        if mode == "sync"
        else await chat.aask("Weather in Paris?", **kwargs)
    )

    assert reply.text == ANSWER  # the turn went on to the model's next answer
    assert Weather.runs == []  # the tool was not run
    _, call_message, result, _ = chat.messages
    [call] = call_message.tool_calls
    assert call == calls[0]
    assert (call.name, dict(call.arguments)) == ("weather", {"_raw": arguments})
    assert call.arguments_error is not None
    error = tool_result_error(result)
    assert error.startswith("Invalid arguments for tool 'weather': the arguments are not")
    assert "The tool was not run" in error
    assert result.tool_call_id == call.id
    # The model got the error result, next to its own call with the text it sent.
    second = json.dumps(replay.seen[1].body)
    assert "Invalid arguments for tool 'weather'" in second
    assert carries(replay.seen[1].body, {"_raw": arguments})
    replay.assert_all_used()


def test_a_valid_call_still_runs() -> None:
    api = APIS["chat_completions-stream"]
    replay = Replay(recording(api, '{"city": "Paris"}'))
    chat = replay.context(openai_api="chat_completions").chat("gpt-4.1-nano")
    chat.with_tool(Weather)
    assert chat.ask("Weather in Paris?", on_chunk=lambda c: None).text == ANSWER
    assert Weather.runs == ["Paris"]
    assert chat.messages[1].tool_calls[0].arguments_error is None


# -- persisted chats -------------------------------------------------------------------------------


@pytest.mark.parametrize("api_name", ["chat_completions-whole", "anthropic-stream"])
async def test_a_persisted_chat_stores_the_call_and_the_error(world: World, api_name: str) -> None:
    api = APIS[api_name]
    replay = Replay(recording(api, BROKEN))
    ctx = replay.context(**dict(api.settings))
    chat = world.Chat(model=api.model, provider=api.provider, context=ctx)
    chat.assume_model_exists = True
    await world.add(chat)
    chat.with_tool(Weather)
    kwargs: dict[str, Any] = {"on_chunk": lambda chunk: None} if api.stream else {}

    reply = await world.call(chat.ask, "Weather in Paris?", **kwargs)

    assert reply.text == ANSWER
    assert Weather.runs == []
    rows = world.messages()
    assert [r.role for r in rows] == ["user", "assistant", "tool", "assistant"]
    [call_row] = world.rows(world.ToolCall)
    assert (call_row.name, call_row.arguments) == ("weather", {"_raw": BROKEN})
    assert call_row.message_id == rows[1].id
    error = json.loads(rows[2].content)["error"]
    assert error.startswith(
        "Invalid arguments for tool 'weather': the arguments are not valid JSON"
    )
    assert rows[2].tool_call_id == call_row.id
    assert rows[3].content == ANSWER
