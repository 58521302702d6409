"""The format cache: earlier messages' wire items reused by the next request of a conversation,
formatted again when a message changes or carries files, and the same bytes either way."""

from __future__ import annotations

from typing import Any

import pytest

import sa_llm
from persisted import World
from sa_llm._records.chat import _runtime
from sa_llm.config import Config
from sa_llm.content import Attachment
from sa_llm.providers.base import ChatRequest, FormatCache, Provider
from sa_llm.providers.openai import OpenAI, OpenAIChatCompletions
from sa_llm.testing.server import FakeOpenAIServer
from sa_llm.types import Content, Message, ToolCall


def _counting(base: type[Any]) -> type[Any]:
    class Counting(base):  # type: ignore[misc]
        formatted: list[Message]

        def format_message(self, message: Message) -> list[dict[str, Any]]:
            self.formatted.append(message)
            result: list[dict[str, Any]] = super().format_message(message)
            return result

    return Counting


def _history() -> list[Message]:
    return [
        Message(role="user", content="What is the weather in Paris?"),
        Message(
            role="assistant",
            content=None,
            tool_calls=(ToolCall(id="call_1", name="weather", arguments={"city": "Paris"}),),
        ),
        Message(role="tool", content="18 C, sunny", tool_call_id="call_1"),
        Message(role="assistant", content="It is 18 C and sunny in Paris."),
    ]


def _body(codec: Provider, messages: list[Message], cache: FormatCache | None) -> Any:
    request = ChatRequest(model="gpt-4.1-nano", messages=messages, format_cache=cache)
    return codec.build_request(request).json


@pytest.mark.parametrize("base", [OpenAI, OpenAIChatCompletions])
def test_a_second_request_formats_only_the_new_messages(base: type[Any]) -> None:
    codec = _counting(base)(Config(openai_api_key="sk-test"))
    codec.formatted = []
    cache = FormatCache()
    history = _history()
    first = _body(codec, history, cache)
    assert len(codec.formatted) == 4
    history.append(Message(role="user", content="And tomorrow?"))
    codec.formatted.clear()
    second = _body(codec, history, cache)
    assert codec.formatted == [history[-1]]
    # The same bytes as a request formatted from scratch.
    assert second == _body(codec, history, None)
    key = "input" if base is OpenAI else "messages"
    assert second[key][: len(first[key])] == first[key]


def test_a_message_changed_in_place_is_formatted_again() -> None:
    codec = _counting(OpenAI)(Config(openai_api_key="sk-test"))
    codec.formatted = []
    cache = FormatCache()
    history = _history()
    _body(codec, history, cache)
    history[3].content = "Redacted."
    codec.formatted.clear()
    body = _body(codec, history, cache)
    assert codec.formatted == [history[3]]
    assert body["input"][-1]["content"][0]["text"] == "Redacted."


def test_messages_with_files_are_formatted_every_time() -> None:
    codec = _counting(OpenAI)(Config(openai_api_key="sk-test"))
    codec.formatted = []
    cache = FormatCache()
    picture = Attachment.from_bytes(
        b"\x89PNG\r\n\x1a\n" + b"0" * 32, filename="p.png", mime_type="image/png"
    )
    history = [Message(role="user", content=Content("Describe this", (picture,)))]
    _body(codec, history, cache)
    _body(codec, history, cache)
    assert codec.formatted == [history[0], history[0]]


async def test_a_persisted_chat_reuses_its_cache_across_turns(world: World) -> None:
    async with FakeOpenAIServer() as server:
        sa_llm.configure(openai_base_url=server.url, openai_api_key="k", max_retries=0)
        try:
            chat = world.Chat(model="gpt-4.1-nano")
            await world.add(chat)
            await world.call(chat.ask, "first")
            await world.call(chat.ask, "second")
            memory = _runtime(chat).memory
            assert memory is not None
            before = list(memory.format_cache._entries)
            await world.call(chat.ask, "third")
            after = memory.format_cache._entries
        finally:
            sa_llm.reset_config()
    # Each turn is a new in-memory chat; the row's memory keeps the earlier messages' items.
    assert len(before) == 3 and after[:3] == before and len(after) == 5
    texts = [entry[0].text for entry in after if entry is not None]
    assert texts[0] == "first" and texts[2] == "second" and texts[4] == "third"
    assert [entry[0].role for entry in after if entry is not None] == [
        "user", "assistant", "user", "assistant", "user"
    ]  # fmt: skip
