"""OpenTelemetry GenAI spans and metrics, read back with the SDK's in-memory exporter and reader.

A persisted turn with a retry and a tool round must leave one ``invoke_agent`` span with, as
children, a ``chat {model}`` span per physical attempt (the retried one marked with its error),
an ``execute_tool {name}`` span, and a span per database step, inside which SQLAlchemy's own
instrumentation puts its statements. The attributes carry the GenAI semantic conventions'
names; content stays off the spans unless asked for; ``telemetry=False`` emits nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import sa_llm
from persisted import World
from sa_llm import telemetry
from sa_llm.testing import FakeLLM
from usage_support import ledger_models


@pytest.fixture
def world_models() -> dict[str, Any]:
    return ledger_models()


class Telemetry:
    """A tracer provider with an in-memory exporter and a meter provider with a reader."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    found = Telemetry()
    sa_llm.configure(
        tracer_provider=found.tracer_provider,
        meter_provider=found.meter_provider,
        retry_interval=0,
    )
    try:
        yield found
    finally:
        sa_llm.reset_config()


def clock() -> str:
    """The time."""
    return "12:00"


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return sorted(
        (s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id),
        key=lambda s: s.start_time or 0,
    )


async def test_a_turn_is_a_span_tree_with_genai_attributes(
    world: World, fake: FakeLLM, otel: Telemetry
) -> None:
    fake.error(500).tool_call("clock", id="call_1")
    fake.reply("It is noon", tokens=sa_llm.Tokens(input=20, output=4, cached=8, reasoning=1))
    chat = world.Chat(model="gpt-4.1-nano", provider="fake")
    await world.add(chat)
    chat_id = chat.id
    chat.with_tool(clock)
    await world.call(chat.ask, "What time is it?")

    spans = otel.spans()
    (turn,) = [s for s in spans if s.name == "invoke_agent"]
    assert turn.parent is None
    assert turn.attributes is not None
    assert turn.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert turn.attributes["gen_ai.conversation.id"] == str(chat_id)
    assert not any(key.startswith("gen_ai.usage") for key in turn.attributes)
    names = [s.name for s in children(spans, turn)]
    assert names == [
        "sa_llm save the user message",
        "chat gpt-4.1-nano",  # the 500, retried
        "chat gpt-4.1-nano",  # the tool call
        "sa_llm write the reply",
        "sa_llm write the tool result's placeholder",
        "execute_tool clock",
        "sa_llm write the reply",
        "sa_llm write the reply's placeholder",
        "chat gpt-4.1-nano",
        "sa_llm write the reply",
    ]
    attempts = [s for s in children(spans, turn) if s.name.startswith("chat ")]
    failed, first, last = (dict(s.attributes or {}) for s in attempts)
    assert failed["error.type"] == "ServerError"
    assert failed["http.response.status_code"] == 500
    assert not any(key.startswith("gen_ai.usage") for key in failed)
    assert attempts[0].status.status_code.name == "ERROR"
    assert last == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "fake",
        "gen_ai.request.model": "gpt-4.1-nano",
        "gen_ai.conversation.id": str(chat_id),
        "gen_ai.request.stream": False,
        "sa_llm.attempt": 1,
        "gen_ai.response.model": last["gen_ai.response.model"],
        "gen_ai.response.finish_reasons": last["gen_ai.response.finish_reasons"],
        "http.response.status_code": 200,
        "gen_ai.usage.input_tokens": 20,
        "gen_ai.usage.output_tokens": 4,
        "gen_ai.usage.cache_read.input_tokens": 8,
        "gen_ai.usage.reasoning.output_tokens": 1,
    }
    assert first["sa_llm.attempt"] == 2  # the retry of the 500
    (tool,) = [s for s in spans if s.name == "execute_tool clock"]
    assert dict(tool.attributes or {}) == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "clock",
        "gen_ai.tool.call.id": "call_1",
        "gen_ai.tool.type": "function",
    }
    # No content unless asked for.
    assert not any(
        "messages" in key or "arguments" in key or "result" in key
        for s in spans
        for key in (s.attributes or {})
    )

    tokens = otel.points("gen_ai.client.token.usage")
    by_type = {
        (p.attributes["gen_ai.token.type"]): p.sum for p in tokens if p.attributes is not None
    }
    assert by_type == {
        "input": 20 + _fake_input(attempts[1]),
        "output": 4 + _fake_output(attempts[1]),
    }
    durations = otel.points("gen_ai.client.operation.duration")
    assert sum(p.count for p in durations) == 3
    assert any(p.attributes.get("error.type") == "ServerError" for p in durations)


def _fake_input(span: ReadableSpan) -> int:
    value = (span.attributes or {})["gen_ai.usage.input_tokens"]
    assert isinstance(value, int)
    return value


def _fake_output(span: ReadableSpan) -> int:
    value = (span.attributes or {})["gen_ai.usage.output_tokens"]
    assert isinstance(value, int)
    return value


async def test_streamed_attempts_report_the_time_to_first_chunk(
    world: World, fake: FakeLLM, otel: Telemetry
) -> None:
    fake.reply("One two three", chunks=3)
    chat = world.Chat(model="gpt-4.1-nano", provider="fake")
    await world.add(chat)
    await world.call(chat.ask, "Count", on_chunk=lambda chunk: None)
    (attempt,) = [s for s in otel.spans() if s.name.startswith("chat ")]
    attributes = attempt.attributes or {}
    assert attributes["gen_ai.request.stream"] is True
    assert float(attributes["gen_ai.response.time_to_first_chunk"]) >= 0  # type: ignore[arg-type]


async def test_content_is_captured_only_when_asked(
    world: World, fake: FakeLLM, otel: Telemetry
) -> None:
    sa_llm.configure(
        tracer_provider=otel.tracer_provider,
        meter_provider=otel.meter_provider,
        telemetry_capture_content=True,
    )
    fake.tool_call("clock", id="call_9").reply("It is noon")
    chat = world.Chat(model="gpt-4.1-nano", provider="fake")
    await world.add(chat)
    chat.with_tool(clock)
    await world.call(chat.ask, "What time is it?")
    spans = otel.spans()
    last = [s for s in spans if s.name.startswith("chat ")][-1].attributes or {}
    assert '"content": "What time is it?"' in str(last["gen_ai.input.messages"])
    assert '"content": "It is noon"' in str(last["gen_ai.output.messages"])
    (tool,) = [s for s in spans if s.name == "execute_tool clock"]
    assert (tool.attributes or {})["gen_ai.tool.call.result"] == "12:00"
    assert (tool.attributes or {})["gen_ai.tool.call.arguments"] == "{}"


async def test_sqlalchemy_statements_nest_inside_the_steps(
    world: World, fake: FakeLLM, otel: Telemetry
) -> None:
    """SQLAlchemy's own instrumentation composes: its statement spans are children of the
    database step that ran them, sync and async."""
    engine = world.sync_engine_for_async()
    instrumentor = SQLAlchemyInstrumentor()
    # Its version check stops at SQLAlchemy 2.0; its engine hooks work with 2.1 all the same.
    instrumentor.instrument(
        engine=engine, tracer_provider=otel.tracer_provider, skip_dep_check=True
    )
    try:
        fake.reply("Hello")
        chat = world.Chat(model="gpt-4.1-nano", provider="fake")
        await world.add(chat)
        otel.exporter.clear()
        await world.call(chat.ask, "Hi")
    finally:
        instrumentor.uninstrument()
    spans = otel.spans()
    (step,) = [s for s in spans if s.name == "sa_llm save the user message"]
    statements = [s.name.split()[0] for s in children(spans, step)]
    assert "INSERT" in statements
    (write,) = [s for s in spans if s.name == "sa_llm write the reply"]
    assert "UPDATE" in [s.name.split()[0] for s in children(spans, write)]


async def test_a_failed_turn_marks_its_span(world: World, fake: FakeLLM, otel: Telemetry) -> None:
    fake.error(400, "bad request")
    chat = world.Chat(model="gpt-4.1-nano", provider="fake")
    await world.add(chat)
    with pytest.raises(sa_llm.BadRequestError):
        await world.call(chat.ask, "Hi")
    spans = otel.spans()
    (turn,) = [s for s in spans if s.name == "invoke_agent"]
    assert (turn.attributes or {})["error.type"] == "BadRequestError"
    names = [s.name for s in children(spans, turn)]
    assert names[-1] == "sa_llm clean up"


async def test_telemetry_off_emits_nothing(world: World, fake: FakeLLM, otel: Telemetry) -> None:
    sa_llm.configure(tracer_provider=otel.tracer_provider, telemetry=False)
    fake.reply("Hello")
    chat = world.Chat(model="gpt-4.1-nano", provider="fake")
    await world.add(chat)
    await world.call(chat.ask, "Hi")
    assert otel.spans() == []


def test_without_opentelemetry_nothing_is_traced(
    monkeypatch: pytest.MonkeyPatch, fake: FakeLLM
) -> None:
    """The API not installed (``import opentelemetry`` fails): no trace, the turn runs."""
    monkeypatch.setattr(telemetry, "_api", False)
    assert telemetry.start_turn(sa_llm.get_config(), "fake", "m") is None
    fake.reply("Hello")
    assert sa_llm.chat("gpt-4.1-nano", provider="fake").ask("Hi").text == "Hello"


_GLOBAL_PROVIDERS = """
import sa_llm
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sa_llm import telemetry
from sa_llm.testing import fake_llm

config = sa_llm.get_config()
# The API alone: its providers are stand-ins that drop everything, so no trace is made.
assert telemetry.start_turn(config, "fake", "m") is None
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
# A global provider set later is used from the next turn on.
with fake_llm() as fake:
    fake.reply("Hello")
    sa_llm.chat("gpt-4.1-nano", provider="fake").ask("Hi")
print(sorted({span.name for span in exporter.get_finished_spans()}))
"""


def test_global_providers_set_by_an_sdk_are_used_and_the_api_alone_is_skipped() -> None:
    """In a fresh interpreter (global providers can be set once per process)."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", _GLOBAL_PROVIDERS], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "invoke_agent" in result.stdout and "chat gpt-4.1-nano" in result.stdout


async def test_tools_run_concurrently_each_get_their_span(
    world: World, fake: FakeLLM, otel: Telemetry
) -> None:
    """A round whose calls run at once (``concurrency``) still traces every call, each span a
    child of the turn, wherever the call ran (a worker thread, a task)."""
    fake.reply(
        tool_calls=[
            {"name": "clock", "arguments": {}, "id": "call_a"},
            {"name": "clock", "arguments": {}, "id": "call_b"},
        ]
    ).reply("Noon twice")
    chat = world.Chat(model="gpt-4.1-nano", provider="fake")
    await world.add(chat)
    chat.with_tools(clock, concurrency=2)
    await world.call(chat.ask, "Time, twice?")
    spans = otel.spans()
    (turn,) = [s for s in spans if s.name == "invoke_agent"]
    tools = [s for s in children(spans, turn) if s.name == "execute_tool clock"]
    assert sorted(str((s.attributes or {})["gen_ai.tool.call.id"]) for s in tools) == [
        "call_a",
        "call_b",
    ]
