"""Bad input fails at the call that made it, with a typed error, not later or as it is.

A temperature that is not a number, a tool a provider cannot name or describe, a model that is
not a model id: each raises ``ConfigurationError`` or ``ToolError`` right away, from the plain
chat and from the record API of a persisted chat (which shares ``ChatSettings``).
"""

from __future__ import annotations

from typing import Any

import pytest

import sa_llm
from persisted import default_models
from sa_llm._records.chat import _runtime
from sa_llm.chat import Chat, ChatSettings


def weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def positional_only(city: str, /) -> str:
    return city


def plain_chat() -> ChatSettings:
    return sa_llm.context(openai_api_key="k").chat("gpt-4.1-nano")


def record_chat() -> ChatSettings:
    """A persisted chat row: its ``with_*`` methods need no session."""
    chat: ChatSettings = default_models()["Chat"](model="gpt-4.1-nano")
    return chat


def tools(chat: Any) -> list[str]:
    """The names of a chat's tools (a row keeps them on its runtime settings)."""
    return list((chat if isinstance(chat, Chat) else _runtime(chat)).tools)


CHATS = [pytest.param(plain_chat, id="chat"), pytest.param(record_chat, id="record")]


@pytest.mark.parametrize("make", CHATS)
@pytest.mark.parametrize("value", ["hot", "0.2", True, float("nan"), float("inf"), -0.5, [1]])
def test_a_temperature_that_is_not_a_number_is_refused(make: Any, value: Any) -> None:
    chat = make()
    with pytest.raises(sa_llm.ConfigurationError, match="with_temperature"):
        chat.with_temperature(value)


@pytest.mark.parametrize("make", CHATS)
def test_a_numeric_temperature_is_sent(make: Any) -> None:
    chat = plain_chat()
    chat.with_temperature(1).with_temperature(None).with_temperature(0.3)
    chat.add_message(sa_llm.Message(role="user", content="Hi"))  # type: ignore[attr-defined]
    body = chat.provider.build_request(chat.chat_request()).json  # type: ignore[attr-defined]
    assert body["temperature"] == 0.3
    assert make().with_temperature(0) is not None


@pytest.mark.parametrize("make", CHATS)
def test_a_lambda_has_no_tool_name(make: Any) -> None:
    chat = make()
    with pytest.raises(sa_llm.ToolError, match="lambda"):
        chat.with_tool(lambda city: city)
    assert tools(chat) == []
    # Named, the same lambda is a tool.
    chat.with_tool(sa_llm.as_tool(lambda city: city, name="echo"))
    assert tools(chat) == ["echo"]


@pytest.mark.parametrize("make", CHATS)
@pytest.mark.parametrize(
    "tool",
    [print, max, len, positional_only],
    ids=["print-*args", "max-no-signature", "len-positional-only", "positional-only"],
)
def test_a_callable_that_cannot_be_described_fails_when_added(make: Any, tool: Any) -> None:
    chat = make()
    with pytest.raises(sa_llm.ToolError):
        chat.with_tool(tool)
    assert tools(chat) == []


@pytest.mark.parametrize("make", CHATS)
def test_one_bad_tool_adds_none_of_the_others(make: Any) -> None:
    chat = make().with_tool(weather)
    with pytest.raises(sa_llm.ToolError):
        chat.with_tools(weather, print, replace=True)
    assert tools(chat) == ["weather"]


@pytest.mark.parametrize("make", CHATS)
@pytest.mark.parametrize("name", ["get weather", "x" * 65, "wetter/heute", "-dash"])
def test_a_tool_name_providers_refuse_is_refused(make: Any, name: str) -> None:
    with pytest.raises(sa_llm.ToolError, match="name"):
        make().with_tool(sa_llm.as_tool(weather, name=name))


@pytest.mark.parametrize("make", CHATS)
@pytest.mark.parametrize("name", ["weather", "get-weather", "weather.v2", "ns:weather", "_w"])
def test_tool_names_some_provider_takes_are_kept(make: Any, name: str) -> None:
    chat = make().with_tool(sa_llm.as_tool(weather, name=name))
    assert tools(chat) == [name]


@pytest.mark.parametrize("make", CHATS)
def test_not_a_tool(make: Any) -> None:
    with pytest.raises(sa_llm.ToolError, match="Not a tool"):
        make().with_tool("weather")


@pytest.mark.parametrize("make", CHATS)
def test_calls_and_choice_are_checked(make: Any) -> None:
    with pytest.raises(sa_llm.ConfigurationError, match="calls"):
        make().with_tool(weather, calls="several")
    with pytest.raises(sa_llm.ConfigurationError, match="choice"):
        make().with_tool(weather, choice=True)


@pytest.mark.parametrize("make", CHATS)
@pytest.mark.parametrize(
    "thinking", [{"effort": 3}, {"effort": ""}, {"budget": "1024"}, {"budget": -1}]
)
def test_thinking_arguments_are_checked(make: Any, thinking: dict[str, Any]) -> None:
    with pytest.raises(sa_llm.ConfigurationError, match="with_thinking"):
        make().with_thinking(**thinking)


@pytest.mark.parametrize("model", [123, 4.1, b"gpt-4.1-nano", ["gpt-4.1-nano"]])
def test_a_model_that_is_not_an_id_is_refused(model: Any) -> None:
    with pytest.raises(sa_llm.ConfigurationError, match="model id"):
        sa_llm.chat(model)
    with pytest.raises(sa_llm.ConfigurationError, match="model id"):
        sa_llm.context(openai_api_key="k").chat(model)


def test_a_provider_that_is_not_a_name_is_refused() -> None:
    with pytest.raises(sa_llm.ConfigurationError, match="provider"):
        sa_llm.chat("gpt-4.1-nano", provider=7)  # type: ignore[arg-type]
