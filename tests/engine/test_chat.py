"""The plain chat engine through the scripted fake model: turns, streaming, tools, structured
output, errors and retries, configuration and contexts. Every behaviour runs sync and async."""

from __future__ import annotations

import asyncio
import logging
import pickle
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, Field

import sa_llm
from sa_llm.config import Config
from sa_llm.providers._transport import retry_delay, should_retry
from sa_llm.testing import FakeLLM
from sa_llm.types import Chunk, Message, Tokens

pytestmark = pytest.mark.usefixtures("no_retries")


async def ask(chat: sa_llm.Chat, mode: str, *args: Any, **kwargs: Any) -> Message:
    if mode == "sync":
        return chat.ask(*args, **kwargs)
    return await chat.aask(*args, **kwargs)


def new_chat() -> sa_llm.Chat:
    return sa_llm.chat("fake-model", provider="fake")


class Weather(sa_llm.Tool):
    """Gets the weather for a city."""

    def execute(self, city: Annotated[str, "A city"], unit: str = "C") -> str:
        return f"15°{unit} in {city}"


class Boom(sa_llm.Tool):
    """Always fails."""

    def execute(self) -> str:
        raise RuntimeError("sensor offline")


# -- turns -------------------------------------------------------------------------------------


async def test_ask_returns_the_reply_and_keeps_history(fake: FakeLLM, mode: str) -> None:
    fake.reply("Paris", tokens=Tokens(input=10, output=2, cached=4, reasoning=1))
    chat = new_chat().with_instructions("Be brief.")
    reply = await ask(chat, mode, "Capital of France?")
    assert reply.text == "Paris"
    assert reply.tokens == Tokens(input=10, output=2, cached=4, reasoning=1)
    assert [m.role for m in chat.messages] == ["system", "user", "assistant"]
    assert fake.requests[0]["messages"][0] == {"role": "system", "content": "Be brief."}


async def test_instructions_replace_append_and_clear(fake: FakeLLM) -> None:
    chat = new_chat().with_instructions("one").with_instructions("two")
    assert [m.text for m in chat.messages] == ["two"]
    chat.with_instructions("three", append=True)
    assert [m.text for m in chat.messages] == ["two", "three"]
    chat.with_instructions(None)
    assert chat.messages == []


async def test_params_deep_merge_and_headers(fake: FakeLLM, mode: str) -> None:
    fake.reply("ok")
    chat = new_chat().with_params(a={"x": 1, "y": 2}).with_params(a={"y": 3}, b=True)
    chat.with_headers(X_Request_Source="tests")
    await ask(chat, mode, "hi")
    assert fake.requests[0]["params"] == {"a": {"x": 1, "y": 3}, "b": True}
    assert fake.headers[0]["x-request-source"] == "tests"


async def test_callbacks_fire_in_order(fake: FakeLLM, mode: str) -> None:
    fake.tool_call("weather", {"city": "Rome"}).reply("sunny")
    events: list[str] = []
    chat = new_chat().with_tool(Weather)
    chat.on_new_message(lambda: events.append("new"))
    chat.on_end_message(lambda m: events.append(f"end:{m.role}"))
    chat.on_tool_call(lambda c: events.append(f"call:{c.name}"))
    chat.on_tool_result(lambda r: events.append(f"result:{r}"))
    await ask(chat, mode, "weather?")
    assert events == [
        "end:user",
        "new",
        "end:assistant",
        "call:weather",
        "result:15°C in Rome",
        "end:tool",
        "new",
        "end:assistant",
    ]


# -- streaming ---------------------------------------------------------------------------------


async def test_streaming_callback_gets_every_chunk(fake: FakeLLM, mode: str) -> None:
    fake.reply("Hello there, streaming world", chunks=5, tokens=Tokens(input=3, output=5))
    chunks: list[Chunk] = []
    reply = await ask(new_chat(), mode, "hi", on_chunk=chunks.append)
    assert "".join(c.content or "" for c in chunks) == reply.text == "Hello there, streaming world"
    assert len([c for c in chunks if c.content]) == 5
    assert reply.tokens == Tokens(input=3, output=5)
    assert fake.requests[0]["stream"] is True


async def test_async_chunk_callback_is_awaited(fake: FakeLLM) -> None:
    fake.reply("abc", chunks=3)
    seen: list[str] = []

    async def on_chunk(chunk: Chunk) -> None:
        await asyncio.sleep(0)
        seen.append(chunk.content or "")

    await new_chat().aask("hi", on_chunk=on_chunk)
    assert "".join(seen) == "abc"


def test_stream_iterator_sync(fake: FakeLLM) -> None:
    fake.reply("one two three", chunks=3)
    chat = new_chat()
    text = "".join(chunk.content or "" for chunk in chat.stream("count"))
    assert text == "one two three"
    assert chat.messages[-1].text == "one two three"


async def test_stream_iterator_async(fake: FakeLLM) -> None:
    fake.reply("one two three", chunks=3)
    chat = new_chat()
    text = "".join([chunk.content or "" async for chunk in chat.astream("count")])
    assert text == "one two three"
    assert chat.messages[-1].role == "assistant"


async def test_streamed_and_whole_replies_end_the_same(fake: FakeLLM, mode: str) -> None:
    calls = [{"name": "weather", "arguments": {"city": "Oslo"}, "id": "c1"}]
    for _ in range(2):
        fake.reply("x", tool_calls=calls, thinking="hmm", tokens=Tokens(input=1, output=2))
        fake.reply("done")
    whole, streamed = new_chat().with_tool(Weather), new_chat().with_tool(Weather)
    await ask(whole, mode, "a")
    await ask(streamed, mode, "a", on_chunk=lambda c: None)
    first_a, first_b = whole.messages[1], streamed.messages[1]
    assert first_a.tool_calls and first_a.thinking is not None
    assert (first_a.text, first_a.tool_calls, first_a.thinking, first_a.tokens) == (
        first_b.text,
        first_b.tool_calls,
        first_b.thinking,
        first_b.tokens,
    )


async def test_broken_stream_raises_typed_error(fake: FakeLLM, mode: str) -> None:
    fake.broken_stream("never finished", after_chunks=1)
    with pytest.raises(sa_llm.APIConnectionError):
        await ask(new_chat(), mode, "hi", on_chunk=lambda c: None)


async def test_truncated_stream_is_not_an_empty_reply(fake: FakeLLM, mode: str) -> None:
    fake.raw(b'data: {"content": "partial"}\n\n')  # no final event
    chat = new_chat()
    with pytest.raises(sa_llm.StreamInterruptedError):
        await ask(chat, mode, "hi", on_chunk=lambda c: None)
    assert [m.role for m in chat.messages] == ["user"]


# -- tools -------------------------------------------------------------------------------------


async def test_parallel_tool_calls_each_get_a_result(fake: FakeLLM, mode: str) -> None:
    fake.reply(
        tool_calls=[
            {"name": "weather", "arguments": {"city": "Paris"}, "id": "a"},
            {"name": "weather", "arguments": {"city": "Rome", "unit": "F"}, "id": "b"},
        ]
    ).reply("Both nice.")
    chat = new_chat().with_tool(Weather)
    reply = await ask(chat, mode, "Paris and Rome?")
    assert reply.text == "Both nice."
    results = [m for m in fake.requests[1]["messages"] if m["role"] == "tool"]
    assert [(r["tool_call_id"], r["content"]) for r in results] == [
        ("a", "15°C in Paris"),
        ("b", "15°F in Rome"),
    ]


async def test_bad_arguments_become_an_error_result(fake: FakeLLM, mode: str) -> None:
    fake.tool_call("weather", {"town": "Paris"}).reply("Sorry.")
    await ask(new_chat().with_tool(Weather), mode, "weather?")
    result = fake.requests[1]["messages"][-1]
    assert result["role"] == "tool"
    assert "Invalid arguments for tool 'weather'" in result["content"]
    assert "city" in result["content"]


async def test_raising_tool_becomes_an_error_result(fake: FakeLLM, mode: str) -> None:
    fake.tool_call("boom", {}).reply("The sensor is offline.")
    reply = await ask(new_chat().with_tool(Boom), mode, "read")
    assert reply.text == "The sensor is offline."
    assert "sensor offline" in fake.requests[1]["messages"][-1]["content"]


async def test_unknown_tool_becomes_an_error_result(fake: FakeLLM, mode: str) -> None:
    fake.tool_call("teleport", {}).reply("I cannot.")
    await ask(new_chat().with_tool(Weather), mode, "go")
    assert "no tool named 'teleport'" in fake.requests[1]["messages"][-1]["content"]


async def test_async_tool_in_async_chat(fake: FakeLLM) -> None:
    class Slow(sa_llm.Tool):
        """Waits."""

        async def execute(self, seconds: float) -> str:
            await asyncio.sleep(seconds)
            return "waited"

    fake.tool_call("slow", {"seconds": 0}).reply("done")
    await new_chat().with_tool(Slow).aask("wait")
    assert fake.requests[1]["messages"][-1]["content"] == "waited"


async def test_function_tools_and_schema(fake: FakeLLM, mode: str) -> None:
    def add(a: int, b: Annotated[int, "second"] = 1) -> int:
        """Adds two numbers."""
        return a + b

    fake.tool_call("add", {"a": 2, "b": 3}).reply("5")
    await ask(new_chat().with_tool(add), mode, "2+3")
    tool = fake.requests[0]["tools"][0]
    assert tool["name"] == "add" and tool["description"] == "Adds two numbers."
    assert tool["parameters"]["required"] == ["a"]
    assert tool["parameters"]["properties"]["b"]["description"] == "second"
    assert fake.requests[1]["messages"][-1]["content"] == "5"


async def test_forced_tool_choice_applies_once(fake: FakeLLM, mode: str) -> None:
    fake.tool_call("weather", {"city": "Oslo"}).reply("cold")
    await ask(new_chat().with_tool(Weather, choice="weather"), mode, "?")
    assert fake.requests[0]["tool_choice"] == "weather"
    assert "tool_choice" not in fake.requests[1]


# -- structured output -------------------------------------------------------------------------


class Person(BaseModel):
    name: str
    age: int


async def test_schema_parses_into_the_model(fake: FakeLLM, mode: str) -> None:
    fake.reply('{"name": "Alice", "age": 28}')
    reply = await ask(new_chat().with_schema(Person), mode, "Alice, 28")
    assert reply.parsed == Person(name="Alice", age=28)
    assert fake.requests[0]["schema"]["name"] == "Person"


async def test_reply_not_matching_the_schema_keeps_the_text(fake: FakeLLM, mode: str) -> None:
    fake.reply('{"name": "Alice"}')
    chat = new_chat().with_schema(Person)
    with pytest.raises(sa_llm.StructuredOutputError) as caught:
        await ask(chat, mode, "Alice")
    assert caught.value.raw_text == '{"name": "Alice"}'
    assert chat.messages[-1].text == '{"name": "Alice"}'


# -- errors and retries ------------------------------------------------------------------------


async def test_status_errors_are_typed_and_carry_details(fake: FakeLLM, mode: str) -> None:
    fake.error(401, "bad key")
    with pytest.raises(sa_llm.AuthenticationError) as caught:
        await ask(new_chat(), mode, "hi")
    error = caught.value
    assert (error.provider, error.status) == ("fake", 401)
    assert error.body["error"]["message"] == "bad key"
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is sa_llm.AuthenticationError
    assert (clone.status, clone.provider, str(clone)) == (401, "fake", str(error))


async def test_rate_limits_are_retried_honouring_retry_after(fake: FakeLLM, mode: str) -> None:
    sa_llm.configure(max_retries=2, retry_interval=5.0)
    fake.error(429, "slow down", headers={"retry-after": "0"}, times=2).reply("finally")
    reply = await ask(new_chat(), mode, "hi")
    assert reply.text == "finally"
    assert len(fake.requests) == 3


async def test_retries_are_bounded(fake: FakeLLM, mode: str) -> None:
    sa_llm.configure(max_retries=1)
    fake.error(503, "overloaded", times=3)
    with pytest.raises(sa_llm.OverloadedError):
        await ask(new_chat(), mode, "hi")
    assert len(fake.requests) == 2


async def test_bad_requests_are_not_retried(fake: FakeLLM, mode: str) -> None:
    sa_llm.configure(max_retries=3)
    fake.error(400, "maximum context length is 128000 tokens")
    with pytest.raises(sa_llm.ContextLengthExceededError):
        await ask(new_chat(), mode, "hi")
    assert len(fake.requests) == 1


async def test_rate_limit_error_exposes_retry_after(fake: FakeLLM, mode: str) -> None:
    fake.error(429, "slow down", headers={"retry-after": "7"})
    with pytest.raises(sa_llm.RateLimitError) as caught:
        await ask(new_chat(), mode, "hi")
    assert caught.value.retry_after == 7.0


async def test_non_json_reply_is_a_parse_error(fake: FakeLLM, mode: str) -> None:
    fake.raw(b"<html>gateway error</html>")
    with pytest.raises(sa_llm.ResponseParseError) as caught:
        await ask(new_chat(), mode, "hi")
    assert "gateway error" in caught.value.body


def test_retry_decisions() -> None:
    config = Config(max_retries=3, retry_interval=1.0, retry_backoff_factor=2.0, retry_jitter=0)
    assert retry_delay(0, config, 500, {}) == 1.0
    assert retry_delay(2, config, 500, {}) == 4.0
    assert retry_delay(3, config, 500, {}) is None
    assert retry_delay(0, config, 429, {"retry-after": "3"}) == 3.0
    assert retry_delay(0, config, 429, {"retry-after-ms": "250"}) == 0.25
    assert retry_delay(0, config, 400, {}) is None
    assert retry_delay(0, config, None, {}) == 1.0  # connection errors
    assert not should_retry(500, {"x-should-retry": "false"})
    assert should_retry(400, {"x-should-retry": "true"})
    jittered = Config(retry_interval=1.0, retry_jitter=0.5)
    assert retry_delay(0, jittered, 500, {}, rand=1.0) == 0.5


# -- configuration, contexts, registry ----------------------------------------------------------


def test_unknown_setting_suggests_the_right_one() -> None:
    with pytest.raises(sa_llm.ConfigurationError, match="openai_api_key"):
        sa_llm.configure(openai_api_kye="x")


def test_missing_key_names_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(sa_llm.MissingAPIKeyError, match="OPENAI_API_KEY"):
        sa_llm.chat("gpt-4.1-nano").ask("hi")


def test_env_var_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    assert sa_llm.get_config().api_key("openai") == "sk-from-env"


def test_contexts_are_isolated_and_keys_never_shown() -> None:
    secret = "sk-test-SECRET-123"
    ctx = sa_llm.context(openai_api_key=secret, request_timeout=5)
    assert sa_llm.get_config().openai_api_key is None
    assert ctx.config.request_timeout == 5
    assert secret not in repr(ctx) + repr(ctx.config) + str(ctx.config)
    assert secret not in repr(ctx.chat("gpt-4.1-nano"))


async def test_tenants_send_their_own_keys(fake: FakeLLM) -> None:
    tenants = {f"tenant{i}": sa_llm.context(api_keys={"fake": f"key-{i}"}) for i in range(5)}
    for _ in range(20):
        fake.reply("ok")

    async def run(name: str) -> None:
        await tenants[name].chat("fake-model", provider="fake").aask(name)

    await asyncio.gather(*(run(name) for name in tenants for _ in range(4)))
    for body, headers in zip(fake.requests, fake.headers, strict=True):
        tenant = body["messages"][-1]["content"]
        assert headers["authorization"] == f"Bearer key-{tenant.removeprefix('tenant')}"


def test_unknown_model_lists_close_matches() -> None:
    with pytest.raises(sa_llm.ModelNotFoundError) as caught:
        sa_llm.chat("gpt-4.1-nan")
    assert "gpt-4.1-nano" in caught.value.suggestions


def test_unknown_provider_lists_close_matches() -> None:
    with pytest.raises(sa_llm.ProviderNotFoundError, match="openai"):
        sa_llm.chat("x", provider="openaii")


def test_assume_model_exists_needs_a_provider() -> None:
    with pytest.raises(sa_llm.ConfigurationError, match="provider"):
        sa_llm.chat("my-model", assume_model_exists=True)


def test_keys_stay_out_of_logs(fake: FakeLLM, caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk-log-SECRET-456"
    fake.error(500, times=2)
    sa_llm.configure(max_retries=1)
    caplog.set_level(logging.DEBUG)
    ctx = sa_llm.context(api_keys={"fake": secret})
    with pytest.raises(sa_llm.ServerError) as caught:
        ctx.chat("fake-model", provider="fake").ask("hi")
    assert fake.headers[0]["authorization"].endswith(secret)
    assert secret not in caplog.text
    assert secret not in str(caught.value) + repr(caught.value)
    assert secret.encode() not in pickle.dumps(caught.value)


def test_async_tool_in_a_sync_chat_is_a_developer_error(fake: FakeLLM) -> None:
    class Slow(sa_llm.Tool):
        """Waits."""

        async def execute(self) -> str:
            return "never"

    fake.tool_call("slow", {})
    with pytest.raises(sa_llm.ToolError, match="async"):
        new_chat().with_tool(Slow).ask("wait")


async def test_pydantic_fields_describe_tool_parameters(fake: FakeLLM) -> None:
    class Count(sa_llm.Tool):
        """Counts."""

        def execute(
            self,
            start: Annotated[int, Field(ge=0, description="where to start")],
            step: int = Field(1, ge=1, description="how far to move"),
        ) -> str:
            return str(start + step)

    fake.tool_call("count", {"start": 2, "step": 0}).tool_call("count", {"start": 2}).reply("3")
    await new_chat().with_tool(Count).aask("count")
    schema = fake.requests[0]["tools"][0]["parameters"]
    assert schema["properties"]["start"]["description"] == "where to start"
    assert schema["properties"]["step"] == {
        "default": 1,
        "description": "how far to move",
        "minimum": 1,
        "type": "integer",
    }
    assert "Invalid arguments" in fake.requests[1]["messages"][-1]["content"]  # step=0 < 1
    assert fake.requests[2]["messages"][-1]["content"] == "3"


def test_a_chat_follows_configure_after_it_was_made(fake: FakeLLM) -> None:
    chat = new_chat()
    sa_llm.configure(api_keys={"fake": "key-set-later"})
    fake.reply("ok")
    chat.ask("hi")
    assert fake.headers[0]["authorization"] == "Bearer key-set-later"
