"""OpenTelemetry GenAI spans and metrics for every turn, attempt, tool call and database step.

With ``opentelemetry-api`` installed (``pip install "sa-llm[otel]"``) every turn emits, through
the configured (or global) tracer and meter providers, the names of the GenAI semantic
conventions v1.41::

    invoke_agent                       one span per turn (ask, complete, stream)
    ├── sa_llm save the user message   a database step (SQLAlchemy's own spans nest inside)
    ├── chat gpt-4.1-nano              one span per physical attempt (a retry is a second one)
    ├── execute_tool get_weather       one span per tool call
    ├── chat gpt-4.1-nano
    └── sa_llm write the reply

Attempt spans carry ``gen_ai.operation.name`` (``chat``), ``gen_ai.provider.name``,
``gen_ai.request.model``, ``gen_ai.request.stream``, ``gen_ai.response.model``,
``gen_ai.response.finish_reasons``, ``gen_ai.response.time_to_first_chunk``, the usage
(``gen_ai.usage.input_tokens`` including cached tokens, ``gen_ai.usage.output_tokens``,
``gen_ai.usage.cache_read.input_tokens``, ``gen_ai.usage.cache_creation.input_tokens``,
``gen_ai.usage.reasoning.output_tokens``: each only when the provider reported it),
``http.response.status_code`` and ``error.type`` for an attempt that failed or was cancelled;
``gen_ai.conversation.id`` is the chat row's key. The turn span carries no usage (its attempts
do: counting both would count every token twice). Each attempt also records the metrics
``gen_ai.client.token.usage`` (``gen_ai.token.type`` ``input`` / ``output``) and
``gen_ai.client.operation.duration`` (seconds).

Message content is not captured unless ``telemetry_capture_content=True``: then attempt spans
get ``gen_ai.input.messages`` / ``gen_ai.output.messages`` and tool spans
``gen_ai.tool.call.arguments`` / ``gen_ai.tool.call.result``. ``telemetry=False`` turns it all
off; without ``opentelemetry-api`` nothing is emitted and nothing is imported.

Example::

    from opentelemetry.sdk.trace import TracerProvider
    import sa_llm

    sa_llm.configure(tracer_provider=TracerProvider())   # or set the global provider
    sa_llm.chat("gpt-4.1-nano").ask("Hello")            # invoke_agent > chat gpt-4.1-nano
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from sa_llm._attempts import OK, Attempt, AttemptLog, outcome_of
from sa_llm._flow import Call, Effect, Scope

if TYPE_CHECKING:
    from sa_llm.config import Config
    from sa_llm.types import Message, ToolCall

__all__ = [
    "PROVIDER_NAMES",
    "SEMCONV_VERSION",
    "InSpan",
    "TurnTrace",
    "start_turn",
]

T = TypeVar("T")

#: The version of the GenAI semantic conventions whose names are emitted.
SEMCONV_VERSION = "1.41.0"
_SCHEMA_URL = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"

#: sa_llm provider name -> ``gen_ai.provider.name`` (the conventions' well-known values; others
#: are sent as they are).
PROVIDER_NAMES: Mapping[str, str] = {
    "gemini": "gcp.gemini",
    "bedrock": "aws.bedrock",
    "mistral": "mistral_ai",
    "xai": "x_ai",
}

# Bucket boundaries the conventions advise for the two histograms.
_TOKEN_BUCKETS = [4.0**power for power in range(14)]  # 1, 4, 16, ..., 67108864
_DURATION_BUCKETS = [0.01 * 2**power for power in range(14)]  # 0.01 ... 81.92 s

_api: Any = None  # opentelemetry's trace, metrics and context modules, once imported
_instruments: dict[tuple[int, int], _Instruments] = {}


def _otel() -> Any:
    """The opentelemetry API modules, or ``False`` when the package is not installed."""
    global _api
    if _api is None:
        try:
            from opentelemetry import context, metrics, trace
        except ImportError:
            _api = False
        else:
            _api = (trace, metrics, context)
    return _api


class _Instruments:
    """The tracer and the two histograms of one (tracer provider, meter provider) pair."""

    __slots__ = ("duration", "providers", "tokens", "tracer")

    def __init__(self, tracer_provider: Any, meter_provider: Any) -> None:
        from sa_llm import __version__

        trace, metrics, _ = _api
        # Held so that the ids the cache is keyed by cannot be reused by other objects.
        self.providers = (tracer_provider, meter_provider)
        tracer_provider = tracer_provider or trace.get_tracer_provider()
        meter_provider = meter_provider or metrics.get_meter_provider()
        self.tracer = tracer_provider.get_tracer("sa_llm", __version__, schema_url=_SCHEMA_URL)
        meter = meter_provider.get_meter("sa_llm", __version__, schema_url=_SCHEMA_URL)
        self.tokens = _histogram(
            meter,
            "gen_ai.client.token.usage",
            "{token}",
            "Number of input and output tokens used, per attempt.",
            _TOKEN_BUCKETS,
        )
        self.duration = _histogram(
            meter,
            "gen_ai.client.operation.duration",
            "s",
            "GenAI operation duration, per attempt.",
            _DURATION_BUCKETS,
        )


def _histogram(meter: Any, name: str, unit: str, description: str, buckets: list[float]) -> Any:
    try:
        return meter.create_histogram(
            name, unit=unit, description=description, explicit_bucket_boundaries_advisory=buckets
        )
    except TypeError:  # an API older than the advisory (before 1.23)
        return meter.create_histogram(name, unit=unit, description=description)


def _recording(config: Config) -> bool:
    """Whether anything would receive the spans and metrics: a provider configured here, or
    global providers an SDK (or a distro) has set. The API alone hands out proxies that drop
    everything; then a turn skips its spans altogether (the check is made per turn, so global
    providers set later are used from the next turn on)."""
    if config.tracer_provider is not None or config.meter_provider is not None:
        return True
    trace, metrics, _ = _api
    tracer_provider = trace.get_tracer_provider()
    meter_provider = metrics.get_meter_provider()
    tracing = not isinstance(tracer_provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))
    metering = not (
        isinstance(meter_provider, metrics.NoOpMeterProvider)
        # The API's stand-in until a provider is set (a private class of opentelemetry-api).
        or type(meter_provider).__name__ == "_ProxyMeterProvider"
    )
    return tracing or metering


def _instruments_for(config: Config) -> _Instruments:
    key = (id(config.tracer_provider), id(config.meter_provider))
    found = _instruments.get(key)
    if found is None:
        found = _instruments[key] = _Instruments(config.tracer_provider, config.meter_provider)
    return found


def start_turn(
    config: Config, provider: str, model: str, conversation_id: Any = None
) -> TurnTrace | None:
    """The trace of a turn that starts now, or ``None`` when telemetry is off or
    ``opentelemetry-api`` is not installed (then nothing costs anything)."""
    if not config.telemetry or not _otel() or not _recording(config):
        return None
    return TurnTrace(_instruments_for(config), config, provider, model, conversation_id)


class TurnTrace:
    """The spans of one turn: the turn's own, its attempts', its tools' and its steps'."""

    __slots__ = ("_base", "_capture", "_context", "_instruments", "_span")

    def __init__(
        self,
        instruments: _Instruments,
        config: Config,
        provider: str,
        model: str,
        conversation_id: Any,
    ) -> None:
        trace = _api[0]
        self._instruments = instruments
        self._capture = config.telemetry_capture_content
        self._base: dict[str, Any] = {
            "gen_ai.provider.name": PROVIDER_NAMES.get(provider, provider),
            "gen_ai.request.model": model,
        }
        if conversation_id is not None:
            self._base["gen_ai.conversation.id"] = str(conversation_id)
        self._span = instruments.tracer.start_span(
            "invoke_agent",
            kind=trace.SpanKind.INTERNAL,
            attributes={"gen_ai.operation.name": "invoke_agent", **self._base},
        )
        self._context = trace.set_span_in_context(self._span)

    def end(self, error: BaseException | None) -> None:
        """End the turn's span (with ``error.type`` when it failed or was cancelled)."""
        if error is not None:
            _fail(self._span, error)
        self._span.end()

    # -- attempts --

    def attempts(
        self, log: AttemptLog, request: Sequence[Message] = (), reply: Message | None = None
    ) -> None:
        """A span and the metrics of every attempt of ``log`` (each closed: times known)."""
        for attempt in log:
            self._attempt(attempt, request, reply if attempt.outcome == OK else None)

    def _attempt(self, attempt: Attempt, request: Sequence[Message], reply: Message | None) -> None:
        trace = _api[0]
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            **self._base,
            "gen_ai.provider.name": PROVIDER_NAMES.get(attempt.provider, attempt.provider),
            "gen_ai.request.model": attempt.model,
            "gen_ai.request.stream": attempt.streamed,
            "sa_llm.attempt": attempt.number,
        }
        if attempt.response_model:
            attributes["gen_ai.response.model"] = attempt.response_model
        if attempt.finish_reason:
            attributes["gen_ai.response.finish_reasons"] = [attempt.finish_reason]
        if attempt.time_to_first_chunk is not None:
            attributes["gen_ai.response.time_to_first_chunk"] = attempt.time_to_first_chunk
        if attempt.http_status is not None:
            attributes["http.response.status_code"] = attempt.http_status
        tokens = attempt.tokens
        if tokens is not None:
            for name, value in (
                ("gen_ai.usage.input_tokens", tokens.input),
                ("gen_ai.usage.output_tokens", tokens.output),
                ("gen_ai.usage.cache_read.input_tokens", tokens.cached),
                ("gen_ai.usage.cache_creation.input_tokens", tokens.cache_creation),
                ("gen_ai.usage.reasoning.output_tokens", tokens.reasoning),
            ):
                if value is not None:
                    attributes[name] = value
        if self._capture:
            attributes["gen_ai.input.messages"] = json.dumps(_messages(request))
            if reply is not None:
                attributes["gen_ai.output.messages"] = json.dumps(_messages([reply]))
        start = _nanoseconds(attempt.started_at)
        span = self._instruments.tracer.start_span(
            f"chat {attempt.model}",
            context=self._context,
            kind=trace.SpanKind.CLIENT,
            attributes=attributes,
            start_time=start,
        )
        error_type = None
        if attempt.outcome not in (OK, None):
            error_type = attempt.outcome
            span.set_attribute("error.type", error_type)
            span.set_status(trace.Status(trace.StatusCode.ERROR, attempt.outcome))
        end = _nanoseconds(attempt.finished_at) if attempt.finished_at is not None else None
        span.end(end_time=end)
        self._metrics(attempt, error_type)

    def _metrics(self, attempt: Attempt, error_type: str | None) -> None:
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": PROVIDER_NAMES.get(attempt.provider, attempt.provider),
            "gen_ai.request.model": attempt.model,
        }
        if attempt.response_model:
            attributes["gen_ai.response.model"] = attempt.response_model
        tokens = attempt.tokens
        if tokens is not None:
            for kind, value in (("input", tokens.input), ("output", tokens.output)):
                if value is not None:
                    self._instruments.tokens.record(
                        value, {**attributes, "gen_ai.token.type": kind}
                    )
        if error_type is not None:
            attributes["error.type"] = error_type
        if attempt.duration is not None:
            self._instruments.duration.record(attempt.duration, attributes)

    # -- tools and steps --

    def tool(self, effect: Effect[T], call: ToolCall) -> InSpan[T]:
        """``effect`` (running the tool) inside an ``execute_tool {name}`` span."""
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": call.name,
            "gen_ai.tool.call.id": call.id,
            "gen_ai.tool.type": "function",
        }
        if self._capture:
            attributes["gen_ai.tool.call.arguments"] = json.dumps(dict(call.arguments))
        result = _tool_result if self._capture else None
        return InSpan(effect, self, f"execute_tool {call.name}", attributes, result)

    def traced_call(self, run: Call, call: ToolCall) -> Call:
        """``run`` (a tool's :class:`~sa_llm._flow.Call`) as a call whose function runs inside
        an ``execute_tool {name}`` span, wherever it runs: in the flow, or on a worker thread
        or task when a round's calls run concurrently."""
        in_span = self.tool(run, call)
        if inspect.iscoroutinefunction(run.fn):

            async def traced_async() -> Any:
                return await in_span.arun(_NO_SCOPE)

            return Call(traced_async)

        def traced() -> Any:
            return in_span.run(_NO_SCOPE)

        return Call(traced)

    def step(self, effect: Effect[T], what: str) -> InSpan[T]:
        """``effect`` (a database step) inside an ``sa_llm {what}`` span."""
        return InSpan(effect, self, f"sa_llm {what}", {"sa_llm.step": what})


#: A tool's function ignores the scope of its Call; a traced call run off the flow has none.
_NO_SCOPE: Any = None


def _tool_result(span: Any, value: Any) -> None:
    span.set_attribute("gen_ai.tool.call.result", _text(value))


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _nanoseconds(moment: Any) -> int:
    return int(moment.timestamp() * 1_000_000_000)


def _fail(span: Any, error: BaseException) -> None:
    trace = _api[0]
    outcome = outcome_of(error)
    span.set_attribute("error.type", outcome)
    span.set_status(trace.Status(trace.StatusCode.ERROR, outcome))


def _messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Messages in the shape of ``gen_ai.input.messages`` (role and parts)."""
    shaped = []
    for message in messages:
        parts: list[dict[str, Any]] = []
        if message.role == "tool":
            parts.append(
                {"type": "tool_call_response", "id": message.tool_call_id, "response": message.text}
            )
        elif message.text:
            parts.append({"type": "text", "content": message.text})
        for call in message.tool_calls:
            parts.append(
                {
                    "type": "tool_call",
                    "id": call.id,
                    "name": call.name,
                    "arguments": dict(call.arguments),
                }
            )
        shaped.append({"role": message.role, "parts": parts})
    return shaped


class InSpan(Effect[T]):
    """An effect run inside a span of a turn, made current while it runs: spans the effect's
    own code starts (SQLAlchemy's instrumentation, a tool's own tracing) nest inside it."""

    __slots__ = ("_attributes", "_effect", "_name", "_on_result", "_trace")

    def __init__(
        self,
        effect: Effect[T],
        trace: TurnTrace,
        name: str,
        attributes: Mapping[str, Any],
        on_result: Callable[[Any, Any], None] | None = None,
    ) -> None:
        self._effect = effect
        self._trace = trace
        self._name = name
        self._attributes = attributes
        self._on_result = on_result

    @property
    def interruptible(self) -> bool:  # type: ignore[override]
        return self._effect.interruptible

    def _start(self) -> tuple[Any, Any]:
        trace, _, context = _api
        span = self._trace._instruments.tracer.start_span(
            self._name, context=self._trace._context, attributes=self._attributes
        )
        return span, context.attach(trace.set_span_in_context(span, self._trace._context))

    def _finish(self, span: Any, token: Any, error: BaseException | None, value: Any) -> None:
        _api[2].detach(token)
        if error is not None:
            _fail(span, error)
        elif self._on_result is not None:
            self._on_result(span, value)
        span.end()

    def run(self, scope: Scope) -> T:
        span, token = self._start()
        try:
            value = self._effect.run(scope)
        except BaseException as exc:
            self._finish(span, token, exc, None)
            raise
        self._finish(span, token, None, value)
        return value

    async def arun(self, scope: Scope) -> T:
        span, token = self._start()
        try:
            value = await self._effect.arun(scope)
        except BaseException as exc:
            self._finish(span, token, exc, None)
            raise
        self._finish(span, token, None, value)
        return value
