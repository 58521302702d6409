"""The loopback fake OpenAI server (``sa_llm.testing.server``), driven through sa_llm's chats.

Every test talks real HTTP to 127.0.0.1 through a :func:`sa_llm.context` pointed at the server,
over both OpenAI APIs (Responses, Chat Completions) and, where it matters, sync and async,
whole replies and streams.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Annotated, Any

import httpx
import pytest

import sa_llm
from sa_llm.testing.server import (
    CloseAfter,
    Drip,
    ErrorEvent,
    Failure,
    FakeOpenAIServer,
    Fault,
    Hang,
    Malformed,
    Plan,
    PlannedToolCall,
    Received,
    Refuse,
    Usage,
)
from sa_llm.types import Chunk

MODEL = "gpt-4.1-nano"
APIS = ["responses", "chat_completions"]
REPLY = "Paris is the capital of France, on the Seine."


def context_for(server: FakeOpenAIServer, api: str, **settings: Any) -> sa_llm.Context:
    values: dict[str, Any] = {
        "openai_base_url": server.url,
        "openai_api_key": "x",
        "openai_api": api,
        "max_retries": 0,
        **settings,
    }
    return sa_llm.context(**values)


def collect(into: list[Chunk]) -> Callable[[Chunk], None]:
    return into.append


def with_fault(fault: Fault) -> Callable[[Received, Plan], Plan]:
    return lambda received, plan: replace(plan, fault=fault)


class Weather(sa_llm.Tool):
    """Gets the current weather for a city."""

    def execute(self, city: Annotated[str, "The city"]) -> str:
        return f"{city}: 15°C"


# -- replies ------------------------------------------------------------------------------------


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_reply_text_usage_and_chunks(api: str, stream: bool) -> None:
    usage = Usage(input_tokens=120, output_tokens=12, cached_tokens=64)
    with FakeOpenAIServer(reply=REPLY, chunks=7, usage=usage) as server:
        chunks: list[Chunk] = []
        chat = context_for(server, api).chat(MODEL)
        message = chat.ask("Capital of France?", on_chunk=collect(chunks) if stream else None)

        assert message.text == REPLY
        assert message.tokens is not None
        assert (message.tokens.input, message.tokens.output) == (120, 12)
        assert message.tokens.cached == 64
        (exchange,) = server.exchanges
        assert exchange.received.api == api
        assert exchange.received.stream is stream
        assert exchange.received.turn == 1
        assert exchange.finished
    if stream:
        texts = [chunk.content for chunk in chunks if chunk.content]
        assert len(texts) == 7
        assert "".join(texts) == REPLY
        assert exchange.first_content_ns is not None
    else:
        assert exchange.first_content_ns is None


@pytest.mark.parametrize("api", APIS)
async def test_async_chat_and_async_context_manager(api: str) -> None:
    async with FakeOpenAIServer(reply=REPLY, chunks=3) as server:
        chat = context_for(server, api).chat(MODEL)
        chunks: list[Chunk] = []
        first = await chat.aask("One?")
        second = await chat.aask("Two?", on_chunk=collect(chunks))
    assert (first.text, second.text) == (REPLY, REPLY)
    assert len([c for c in chunks if c.content]) == 3
    assert [e.received.turn for e in server.exchanges] == [1, 2]
    assert not server.running


def test_turns_count_user_messages_and_reply_can_depend_on_the_request() -> None:
    def reply(received: Received) -> str:
        return f"turn {received.turn} of {received.model}"

    with FakeOpenAIServer(reply=reply) as server:
        chat = context_for(server, "responses").chat(MODEL)
        texts = [chat.ask(f"Question {n}").text for n in range(1, 4)]
    assert texts == [f"turn {n} of {MODEL}" for n in range(1, 4)]
    # The history grows: each request carries every earlier question.
    inputs = [body["input"] for body in server.bodies()]
    assert [sum(1 for item in items if item.get("role") == "user") for items in inputs] == [1, 2, 3]


# -- tool calls ---------------------------------------------------------------------------------


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_tool_call_on_a_chosen_turn(api: str, stream: bool) -> None:
    call = PlannedToolCall("weather", {"city": "Lyon"})
    with FakeOpenAIServer(reply=REPLY, tool_turns={2}, tool_call=call) as server:
        chat = context_for(server, api).chat(MODEL).with_tool(Weather)
        results: list[Any] = []
        chat.on_tool_result(results.append)
        on_chunk = collect([]) if stream else None
        chat.ask("Hello", on_chunk=on_chunk)
        answer = chat.ask("Weather in Lyon?", on_chunk=on_chunk)

    assert answer.text == REPLY
    assert results == ["Lyon: 15°C"]
    received = [exchange.received for exchange in server.exchanges]
    assert [(r.turn, r.after_tool_result) for r in received] == [(1, False), (2, False), (2, True)]
    asked = [m for m in chat.messages if m.tool_calls]
    assert [(c.name, c.arguments) for m in asked for c in m.tool_calls] == [
        ("weather", {"city": "Lyon"})
    ]
    # The tool result went back under the call id the server chose.
    last_body = json.dumps(received[-1].body)
    assert asked[0].tool_calls[0].id in last_body


def test_tool_turns_as_a_predicate() -> None:
    with FakeOpenAIServer(tool_turns=lambda turn: turn % 2 == 0) as server:
        chat = context_for(server, "chat_completions").chat(MODEL).with_tool(Weather)
        for n in range(1, 5):
            chat.ask(f"Question {n}")
    # Turns 2 and 4 take two requests each (the call, then the answer to its result).
    assert [e.received.turn for e in server.exchanges] == [1, 2, 2, 3, 4, 4]


# -- failures -----------------------------------------------------------------------------------


@pytest.mark.parametrize("api", APIS)
def test_failure_at_a_chosen_turn_uses_openai_error_format(api: str) -> None:
    with FakeOpenAIServer(failures={2: Failure(500, "upstream exploded")}) as server:
        chat = context_for(server, api).chat(MODEL)
        chat.ask("One")
        with pytest.raises(sa_llm.ServerError) as raised:
            chat.ask("Two")
        chat.ask("Three")  # the failure fires once
    assert raised.value.status == 500
    assert "upstream exploded" in str(raised.value)
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["error"]["type"] == "server_error"
    assert [e.plan.status for e in server.exchanges] == [200, 500, 200]


def test_a_failure_once_is_retried_away_and_times_outlasts_retries() -> None:
    with FakeOpenAIServer(failures={1: 503, 2: Failure(429, times=3)}) as server:
        ctx = context_for(server, "responses", max_retries=1, retry_interval=0)
        chat = ctx.chat(MODEL)
        assert chat.ask("One").text  # 503 once, then the retry succeeds
        with pytest.raises(sa_llm.RateLimitError):
            chat.ask("Two")  # 429, retried once, 429 again
    assert [e.plan.status for e in server.exchanges] == [503, 200, 429, 429]


def test_latency_delays_each_reply() -> None:
    with FakeOpenAIServer(latency=0.15) as server:
        chat = context_for(server, "responses").chat(MODEL)
        start = time.perf_counter()
        chat.ask("Slow?")
        elapsed = time.perf_counter() - start
    assert 0.15 <= elapsed < 2.0


# -- faults -------------------------------------------------------------------------------------

# (fault, the error the chat raises, whether the server sent its whole (broken) response)
FAULTS_BOTH_MODES: list[tuple[Fault, type[Exception], bool]] = [
    (Refuse(), sa_llm.APIConnectionError, False),
    (CloseAfter(2), sa_llm.APIConnectionError, False),
    (Malformed(), sa_llm.ResponseParseError, True),
]


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize(
    ("fault", "error", "sent_whole"),
    FAULTS_BOTH_MODES,
    ids=[type(fault).__name__ for fault, _, _ in FAULTS_BOTH_MODES],
)
def test_faults_surface_as_typed_errors(
    api: str, stream: bool, fault: Fault, error: type[Exception], sent_whole: bool
) -> None:
    with FakeOpenAIServer(chunks=5, plan=with_fault(fault)) as server:
        chat = context_for(server, api).chat(MODEL)
        with pytest.raises(error):
            chat.ask("Hi", on_chunk=collect([]) if stream else None)
    assert server.request_count == 1
    assert server.exchanges[0].finished is sent_whole


@pytest.mark.parametrize("api", APIS)
def test_error_event_mid_stream(api: str) -> None:
    fault = ErrorEvent(after=3, message="model melted")
    with FakeOpenAIServer(chunks=5, plan=with_fault(fault)) as server:
        chunks: list[Chunk] = []
        chat = context_for(server, api).chat(MODEL)
        with pytest.raises(sa_llm.ServerError, match="model melted"):
            chat.ask("Hi", on_chunk=collect(chunks))


@pytest.mark.parametrize("api", APIS)
def test_malformed_event_after_good_ones(api: str) -> None:
    with FakeOpenAIServer(reply=REPLY, chunks=5, plan=with_fault(Malformed(after=6))) as server:
        chunks: list[Chunk] = []
        chat = context_for(server, api).chat(MODEL)
        with pytest.raises(sa_llm.ResponseParseError):
            chat.ask("Hi", on_chunk=collect(chunks))
    # The good events before the broken one reached the callback.
    assert any(chunk.content for chunk in chunks)


def test_hang_until_the_client_times_out() -> None:
    with FakeOpenAIServer(plan=with_fault(Hang(5))) as server:
        chat = context_for(server, "responses", request_timeout=0.2).chat(MODEL)
        start = time.perf_counter()
        with pytest.raises(sa_llm.APITimeoutError):
            chat.ask("Anyone there?")
        assert time.perf_counter() - start < 2.0
    assert server.request_count == 1


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_drip_sends_the_whole_reply_slowly(api: str, stream: bool) -> None:
    with FakeOpenAIServer(reply=REPLY, chunks=4, plan=with_fault(Drip(0.0, 3))) as server:
        chat = context_for(server, api).chat(MODEL)
        message = chat.ask("Hi", on_chunk=collect([]) if stream else None)
    assert message.text == REPLY
    assert server.exchanges[0].finished


def test_plan_hook_sees_the_default_plan_and_can_fail_one_request() -> None:
    seen: list[tuple[int, int]] = []

    def plan(received: Received, default: Plan) -> Plan:
        seen.append((received.index, default.chunks))
        if received.index == 2:
            return replace(default, status=400, error_message="bad second request")
        return default

    with FakeOpenAIServer(chunks=9, plan=plan) as server:
        chat = context_for(server, "chat_completions").chat(MODEL)
        chat.ask("One")
        with pytest.raises(sa_llm.BadRequestError, match="bad second request"):
            chat.ask("Two")
    assert seen == [(1, 9), (2, 9)]


# -- bounds and bookkeeping ---------------------------------------------------------------------


def test_binds_loopback_only_on_an_ephemeral_port() -> None:
    with FakeOpenAIServer() as server:
        assert server.url == f"http://127.0.0.1:{server.port}/v1"
        assert server.port > 0
        with socket.create_connection(("127.0.0.1", server.port), timeout=2):
            pass
    with pytest.raises(RuntimeError):
        _ = server.url


def test_max_requests_then_503_and_the_server_stops() -> None:
    with FakeOpenAIServer(max_requests=2) as server:
        chat = context_for(server, "responses").chat(MODEL)
        chat.ask("One")
        chat.ask("Two")
        with pytest.raises(sa_llm.ServerError) as raised:
            chat.ask("Three")
        assert raised.value.status == 503
        assert server.wait_stopped(5)
    assert server.stop_reason == "max_requests"
    assert server.request_count == 3
    assert len(server.exchanges) == 2


def test_stops_by_itself_when_idle() -> None:
    server = FakeOpenAIServer(idle_timeout=0.2).start()
    try:
        context_for(server, "responses").chat(MODEL).ask("One")
        assert server.wait_stopped(5)
        assert server.stop_reason == "idle_timeout"
        assert not server.running
    finally:
        server.stop()


def test_stops_by_itself_after_max_seconds_even_when_busy() -> None:
    server = FakeOpenAIServer(max_seconds=0.3, plan=with_fault(Hang(10))).start()
    try:
        chat = context_for(server, "responses", request_timeout=5).chat(MODEL)
        start = time.perf_counter()
        with pytest.raises(sa_llm.APIConnectionError):
            chat.ask("Hang on")
        assert time.perf_counter() - start < 3
        assert server.wait_stopped(5)
        assert server.stop_reason == "max_seconds"
    finally:
        server.stop()


def test_counts_requests_and_can_forget_bodies() -> None:
    with FakeOpenAIServer(keep_bodies=False) as server:
        chat = context_for(server, "responses").chat(MODEL)
        for n in range(3):
            chat.ask(f"Question {n}")
        assert server.request_count == 3
    assert [e.received.index for e in server.exchanges] == [1, 2, 3]
    assert [e.received.turn for e in server.exchanges] == [1, 2, 3]
    assert server.bodies() == [{}, {}, {}]


def test_any_path_prefix_and_the_exchange_log_over_http() -> None:
    with FakeOpenAIServer(chunks=3) as server:
        prefixed = f"http://127.0.0.1:{server.port}/run-7/v1"
        chat = context_for(server, "chat_completions", openai_base_url=prefixed).chat(MODEL)
        chat.ask("One")
        chat.ask("Two", on_chunk=collect([]))
        with httpx.Client() as client:
            log = client.get(f"{prefixed}/_fake/exchanges?since=1").json()["exchanges"]
            unknown = client.post(f"{server.url}/embeddings", json={"input": "x"})
        assert server.request_count == 2  # neither the GET nor the unknown path counts
    assert [e.received.path for e in server.exchanges] == ["/run-7/v1/chat/completions"] * 2
    (second,) = log
    assert (second["index"], second["turn"], second["stream"]) == (2, 2, True)
    assert second["first_content_ns"] == server.exchanges[1].first_content_ns
    assert unknown.status_code == 404
    assert unknown.json()["error"]["type"] == "invalid_request_error"
