"""The plain, in-memory conversation: ask, stream, tools, structured output, callbacks.

A :class:`Chat` holds the messages of one conversation and its settings (model, tools, schema,
temperature, params, headers). :meth:`Chat.ask` adds a user message and completes the turn,
running the tool loop until the model answers in words. Every turn is one flow
(:mod:`sa_llm._flow`) pumped by a sync or an async driver, so ``ask``/``aask``,
``complete``/``acomplete`` and ``stream``/``astream`` share one implementation. The persisted
chat of :mod:`sa_llm.persistence` subclasses the flow's hooks (``_reply_started``,
``_reply_completed``, ...) to write rows at the same points.

Example::

    chat = sa_llm.chat("gpt-4.1-nano").with_instructions("Answer in one word.")
    reply = chat.ask("What is the capital of France?")
    print(reply.text, reply.tokens)

    for chunk in chat.stream("And of Spain?"):
        print(chunk.content or "", end="")

One concept, one module (over 600 lines): the conversation engine, its settings and its flow.
"""

from __future__ import annotations

import functools
import math
from collections.abc import (
    AsyncIterator,
    Callable,
    Hashable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar

from sa_llm import registry, telemetry
from sa_llm._attempts import OK, AttemptLog, outcome_of
from sa_llm._busy import Occupy
from sa_llm._flow import (
    AsyncCallInSyncDrive,
    Call,
    Emit,
    Flow,
    adrive,
    adrive_iter,
    drive,
    drive_iter,
)
from sa_llm._instructions import RuntimeInstructions
from sa_llm._parallel import Gather
from sa_llm.approval import (
    APPROVED,
    DENIED,
    PENDING,
    SUPERSEDED,
    ApprovalPolicy,
    Decision,
    ParkedRound,
    arguments_hash,
    denial_content,
)
from sa_llm.config import Config, get_config
from sa_llm.content import AttachmentSource, ensure_model_accepts, to_attachments
from sa_llm.cost import GenaiPrices, Prices, prices_for
from sa_llm.errors import (
    ApprovalPendingError,
    ConfigurationError,
    ProviderError,
    StaleApprovalError,
    StructuredOutputError,
    ToolError,
    UnsupportedFeatureError,
)
from sa_llm.fallbacks import DEFAULT_FALLBACK_ERRORS, FallbackEvent, split_spec
from sa_llm.providers import create_provider, provider_class, provider_names
from sa_llm.providers._transport import Download, OpenStream, ReadStream, SendRequest, Transport
from sa_llm.providers.base import ChatRequest, FormatCache, HttpResponse, deep_merge
from sa_llm.schema import OutputSchema
from sa_llm.streaming import Accumulator
from sa_llm.tools import (
    Halt,
    Tool,
    ToolResult,
    checked_tool,
    error_result,
    invalid_arguments_result,
    result_content,
)
from sa_llm.types import Chunk, Content, Message, MessageContent, RawContent, ToolCall

if TYPE_CHECKING:
    from sa_llm._context import Context
    from sa_llm.registry import ModelInfo

__all__ = ["Chat", "ChatSettings", "ChunkCallback"]

ChunkCallback = Callable[[Chunk], Any]
# The files of a question, as ``ask(attachments=...)`` takes them.
Files: TypeAlias = "AttachmentSource | Sequence[AttachmentSource] | None"
Self = TypeVar("Self", bound="ChatSettings")
ChatT = TypeVar("ChatT", bound="Chat")
EventName = Literal["new_message", "end_message", "tool_call", "tool_result", "fallback"]

_MAX_TOOL_ROUNDS = 100

FlowMethod = TypeVar("FlowMethod", bound=Callable[..., Flow[Message]])


def traced_turn(method: FlowMethod) -> FlowMethod:
    """Run a turn's flow inside its telemetry span (see :mod:`sa_llm.telemetry`); the flow is
    returned as it is when telemetry is off."""

    @functools.wraps(method)
    def turn(self: Chat, *args: Any, **kwargs: Any) -> Flow[Message]:
        flow = method(self, *args, **kwargs)
        if not self.config.telemetry:
            return flow
        return self._traced(flow)

    return turn  # type: ignore[return-value]


class ChatSettings:
    """The runtime settings of a conversation: tools, schema, sampling, params, headers,
    callbacks. :class:`Chat` has them, and so has a persisted chat row (where they live on the
    instance and are never stored); ``with_*`` and ``on_*`` return the object for chaining.
    """

    def __init__(self) -> None:
        self.tools: dict[str, Tool] = {}
        self.tool_choice: str | None = None
        self.parallel_tool_calls: bool | None = None
        self.schema: OutputSchema | None = None
        self.temperature: float | None = None
        self.params: dict[str, Any] = {}
        self.headers: dict[str, str] = {}
        self._callbacks: dict[str, list[Callable[..., Any]]] = {}
        self.runtime_instructions = RuntimeInstructions()
        self.approval_policy: bool | ApprovalPolicy | None = None
        self.on_new_question: Literal["raise", "deny"] = "raise"
        self.tool_concurrency: int | None = None
        self.fallbacks: tuple[ModelInfo, ...] = ()
        self.fallback_errors: tuple[type[ProviderError], ...] = DEFAULT_FALLBACK_ERRORS

    def use_settings(self, other: ChatSettings) -> None:
        """Take over ``other``'s settings (copies: later changes to either stay apart)."""
        self.tools = dict(other.tools)
        self.tool_choice = other.tool_choice
        self.parallel_tool_calls = other.parallel_tool_calls
        self.schema = other.schema
        self.temperature = other.temperature
        self.params = dict(other.params)
        self.headers = dict(other.headers)
        self._callbacks = {event: list(cbs) for event, cbs in other._callbacks.items()}
        self.runtime_instructions = other.runtime_instructions.copy()
        self.approval_policy = other.approval_policy
        self.on_new_question = other.on_new_question
        self.tool_concurrency = other.tool_concurrency
        self.fallbacks = other.fallbacks
        self.fallback_errors = other.fallback_errors

    def with_temperature(self: Self, temperature: float | None) -> Self:
        """Sampling temperature for the following requests (``None``: provider default).

        Raises:
            ConfigurationError: not a finite number of at least 0 (e.g. ``"hot"``); the
                provider decides the upper bound (OpenAI 2, Anthropic 1).
        """
        if temperature is not None:
            if isinstance(temperature, bool) or not isinstance(temperature, int | float):
                raise ConfigurationError(
                    f"with_temperature() takes a number (e.g. 0.2) or None, not {temperature!r}."
                )
            if not math.isfinite(temperature) or temperature < 0:
                raise ConfigurationError(
                    f"with_temperature() takes a finite number of at least 0, not {temperature!r}."
                )
        self.temperature = temperature
        return self

    def with_params(self: Self, **params: Any) -> Self:
        """Provider-specific body fields, deep-merged into every request body."""
        self.params = deep_merge(self.params, params)
        return self

    def with_headers(self: Self, **headers: str) -> Self:
        """Extra HTTP headers for every request."""
        self.headers.update({key.replace("_", "-"): value for key, value in headers.items()})
        return self

    def with_thinking(self: Self, *, effort: str | None = None, budget: int | None = None) -> Self:
        """Ask reasoning models to think: ``effort`` (``low``/``medium``/``high``) or a token
        ``budget``, translated by each provider."""
        thinking: dict[str, Any] = {}
        if effort is not None:
            if not isinstance(effort, str) or not effort:
                raise ConfigurationError(
                    "with_thinking(effort=...) takes a name such as 'low' or 'high', "
                    f"not {effort!r}."
                )
            thinking["effort"] = effort
        if budget is not None:
            if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
                raise ConfigurationError(
                    "with_thinking(budget=...) takes a number of tokens (an int >= 0), "
                    f"not {budget!r}."
                )
            thinking["budget"] = budget
        self.params = {k: v for k, v in self.params.items() if k != "_thinking"}
        if thinking:
            self.params["_thinking"] = thinking
        return self

    def with_tool(
        self: Self,
        tool: Tool | type[Tool] | Callable[..., Any],
        *,
        choice: str | None = None,
        calls: Literal["one", "many"] | None = None,
    ) -> Self:
        """Let the model call ``tool`` (a :class:`Tool` class or instance, or a typed function).

        Args:
            choice: ``"auto"``, ``"required"``, ``"none"`` or a tool name to force.
            calls: ``"one"`` for one call per reply, ``"many"`` to allow parallel calls.
        """
        return self.with_tools(tool, choice=choice, calls=calls)

    def with_tools(
        self: Self,
        *tools: Tool | type[Tool] | Callable[..., Any],
        replace: bool = False,
        choice: str | None = None,
        calls: Literal["one", "many"] | None = None,
        concurrency: int | None = None,
    ) -> Self:
        """Add several tools (``replace=True`` drops the current ones first).

        Each tool is checked here, not when the model is first asked: its name and the JSON
        Schema of its arguments are built now.

        Args:
            concurrency: how many calls of one round run at once (default: the
                ``tool_concurrency`` setting, 1). Results are still written and sent in call
                order. Above 1, sync chats run tools on threads and async chats run plain
                functions in worker threads: tools must then be thread-safe.

        Raises:
            ToolError: not a tool, a name providers refuse (a lambda's ``<lambda>``), or a
                signature that cannot become a schema (``*args``, positional-only parameters,
                a builtin without a signature, unreadable type hints).
            ConfigurationError: ``calls`` other than ``"one"``/``"many"``, a ``choice``
                that is not a string, or a ``concurrency`` that is not a positive int.
        """
        if calls not in (None, "one", "many"):
            raise ConfigurationError(f"calls must be 'one' or 'many', not {calls!r}.")
        if choice is not None and not isinstance(choice, str):
            raise ConfigurationError(
                f"choice must be 'auto', 'none', 'required' or a tool name, not {choice!r}."
            )
        if concurrency is not None and (
            isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
        ):
            raise ConfigurationError(
                f"concurrency is a number of calls run at once (an int >= 1), not {concurrency!r}."
            )
        if concurrency is not None:
            self.tool_concurrency = concurrency
        # Every tool is checked before any is added: a bad one leaves the chat as it was.
        instances = [checked_tool(tool) for tool in tools]
        if replace:
            self.tools = {}
        for instance in instances:
            self.tools[instance.name] = instance
        if choice is not None:
            self.tool_choice = choice
        if calls is not None:
            self.parallel_tool_calls = calls == "many"
        return self

    def with_approval(
        self: Self,
        policy: bool | ApprovalPolicy | None = True,
        *,
        on_new_question: Literal["raise", "deny"] = "raise",
    ) -> Self:
        """Make tool calls wait for a person's decision (see :mod:`sa_llm.approval`).

        Tools marked ``requires_approval`` always wait; ``policy`` picks more: ``True`` every
        call, a callable ``policy(call) -> bool`` (may be ``async def``) the calls it returns
        true for, ``None``/``False`` none besides the marked tools.

        Args:
            on_new_question: what ``ask`` does while a round waits: ``"raise"``
                :class:`~sa_llm.errors.ApprovalPendingError`, or ``"deny"`` the waiting calls
                (the model is told none of them ran) and go on.

        Raises:
            ConfigurationError: a policy that is not a bool, ``None`` or a callable, or an
                unknown ``on_new_question``.
        """
        if policy is not None and not isinstance(policy, bool) and not callable(policy):
            raise ConfigurationError(
                f"with_approval() takes True, False, None or a callable, not {policy!r}."
            )
        if on_new_question not in ("raise", "deny"):
            raise ConfigurationError(
                f"on_new_question must be 'raise' or 'deny', not {on_new_question!r}."
            )
        self.approval_policy = policy
        self.on_new_question = on_new_question
        return self

    def with_fallbacks(
        self: Self,
        *models: str | ModelInfo,
        on: Sequence[type[ProviderError]] | None = None,
    ) -> Self:
        """Models to move on to, in order, when a request fails for good (see
        :mod:`sa_llm.fallbacks`); none clears them.

        Args:
            models: registry ids or aliases, ``"provider/model"`` to route one, or registry
                entries; resolved now.
            on: the provider error classes that move a turn on (default: rate limits, 5xx and
                overload, connection failures and timeouts, streams cut short).

        Raises:
            ModelNotFoundError: a model the registry does not know.
            ConfigurationError: ``on`` is not a sequence of provider error classes.
        """
        context = getattr(self, "context", None)
        config = context.config if context is not None else get_config()
        providers = frozenset(provider_names())
        resolved = []
        for spec in models:
            if isinstance(spec, str):
                model, provider = split_spec(spec, providers)
                resolved.append(resolve_model(model, provider, False, config))
            else:
                resolved.append(resolve_model(spec, None, False, config))
        if on is not None:
            if not all(isinstance(cls, type) and issubclass(cls, ProviderError) for cls in on):
                raise ConfigurationError(
                    f"with_fallbacks(on=...) takes provider error classes, not {on!r}."
                )
            self.fallback_errors = tuple(on)
        self.fallbacks = tuple(resolved)
        return self

    def on_fallback(self: Self, callback: Callable[[FallbackEvent], Any]) -> Self:
        """Call ``callback(event)`` before a turn moves to a fallback model."""
        return self._on("fallback", callback)

    def with_schema(self: Self, schema: Any) -> Self:
        """Ask for replies matching a pydantic model class or JSON Schema; ``None`` removes it."""
        self.schema = None if schema is None else OutputSchema.coerce(schema)
        return self

    def _on(self: Self, event: EventName, callback: Callable[..., Any]) -> Self:
        self._callbacks.setdefault(event, []).append(callback)
        return self

    def on_new_message(self: Self, callback: Callable[[], Any]) -> Self:
        """Call ``callback()`` when an assistant reply starts (the first chunk, when streaming)."""
        return self._on("new_message", callback)

    def on_end_message(self: Self, callback: Callable[[Message], Any]) -> Self:
        """Call ``callback(message)`` when a message is complete (replies and tool results)."""
        return self._on("end_message", callback)

    def on_tool_call(self: Self, callback: Callable[[ToolCall], Any]) -> Self:
        """Call ``callback(tool_call)`` before a tool runs."""
        return self._on("tool_call", callback)

    def on_tool_result(self: Self, callback: Callable[[Any], Any]) -> Self:
        """Call ``callback(result)`` after a tool ran."""
        return self._on("tool_result", callback)


class Chat(ChatSettings):
    """A conversation with a model, kept in memory.

    Args:
        model: a model id or alias from the registry (default: ``default_model``).
        provider: route the model through this provider (e.g. ``"bedrock"``); default: the
            registry's provider for the model.
        assume_model_exists: skip the registry lookup (needs ``provider``), for models the
            registry does not list yet.
        context: an isolated :class:`~sa_llm.Context` (per-tenant keys); default: the globals.
        messages: an existing history to continue.

    Raises:
        ModelNotFoundError: unknown model, with close matches.
        ProviderNotFoundError: unknown provider.
        ConfigurationError: a model or provider that is not a string.
    """

    def __init__(
        self,
        model: str | ModelInfo | None = None,
        *,
        provider: str | None = None,
        assume_model_exists: bool = False,
        context: Context | None = None,
        messages: Iterable[Message] = (),
    ) -> None:
        super().__init__()
        self.context = context
        self.messages: list[Message] = list(messages)
        #: The earlier messages' wire items, reused by the next request (a persisted chat
        #: shares its row's, so they outlive the turn).
        self.format_cache = FormatCache()
        # The reply being streamed, while it streams (what a turn that stops early got).
        self._accumulator: Accumulator | None = None
        # The running turn's spans (None: telemetry off), and the prices its attempts cost.
        self._trace: telemetry.TurnTrace | None = None
        self._price_list: tuple[Any, Prices | GenaiPrices | None] | None = None
        # A round of tool calls waiting for decisions, and the one the next turn runs.
        self._parked: ParkedRound | None = None
        self._resume: ParkedRound | None = None
        self.with_model(
            model or self.config.default_model,
            provider=provider,
            assume_model_exists=assume_model_exists,
        )

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} model={self.model_id!r} provider={self.provider.name!r} "
            f"messages={len(self.messages)}>"
        )

    # -- configuration ----------------------------------------------------------------------

    @property
    def config(self) -> Config:
        """The configuration in force: the context's, else the global one."""
        return self.context.config if self.context is not None else get_config()

    def with_model(
        self: ChatT,
        model: str | ModelInfo,
        *,
        provider: str | None = None,
        assume_model_exists: bool = False,
    ) -> ChatT:
        """Switch model (and optionally provider) for the following turns.

        Raises:
            ModelNotFoundError: the registry does not know the model.
            ConfigurationError: ``assume_model_exists`` without a provider.
        """
        self.model_info = resolve_model(model, provider, assume_model_exists, self.config)
        self.model_id = self.model_info.id
        self._bind_provider()
        return self

    def with_context(self: ChatT, context: Context | None) -> ChatT:
        """Use another context's configuration (keys, clients) from now on."""
        self.context = context
        self._bind_provider()
        return self

    def _bind_provider(self) -> None:
        """Build the codec and transport for the model and the configuration in force."""
        config = self.config
        self.provider = create_provider(self.model_info.provider, config, self.model_id)
        self.transport = Transport(config, self.provider)
        self._bound_config = config

    def _current_provider(self) -> None:
        # ``configure()`` swaps the global configuration; a chat made earlier follows it.
        if self._bound_config is not self.config:
            self._bind_provider()

    def with_instructions(self: ChatT, instructions: str | None, *, append: bool = False) -> ChatT:
        """Set the system prompt. Replaces earlier ones unless ``append``; ``None`` clears."""
        if not append:
            self.messages = [m for m in self.messages if m.role != "system"]
        if instructions is not None:
            position = sum(1 for m in self.messages if m.role == "system")
            self.messages.insert(position, Message(role="system", content=instructions))
        return self

    def _fire(self, event: EventName, *args: Any) -> Flow[None]:
        for callback in self._callbacks.get(event, ()):
            yield Call(callback, *args)

    # -- tool approval (in memory; a persisted chat keeps it in its tool-call rows) -----------

    def pending_approvals(self) -> list[ToolCall]:
        """The tool calls of the parked round that wait for a decision, in call order."""
        parked = self._parked
        if parked is None:
            return []
        waiting = set(parked.waiting())
        return [call for call in parked.message.tool_calls if call.id in waiting]

    def approve(
        self, call_id: str, *, by: str | None = None, arguments_hash: str | None = None
    ) -> Decision:
        """Let the parked call ``call_id`` run on the next ``complete()``.

        Args:
            by: who decided (recorded with the decision).
            arguments_hash: the hash of the arguments the person saw
                (:func:`sa_llm.approval.arguments_hash`); refused when the call's differ.

        Raises:
            ConfigurationError: no parked call has that id.
            StaleApprovalError: ``arguments_hash`` is not that of the call's arguments.
        """
        return self._decide(call_id, APPROVED, by, None, arguments_hash)

    def deny(
        self,
        call_id: str,
        reason: str | None = None,
        *,
        by: str | None = None,
        arguments_hash: str | None = None,
    ) -> Decision:
        """Refuse the parked call ``call_id``: it never runs; the model is told (with
        ``reason``) on the next ``complete()``. Raises as :meth:`approve`."""
        return self._decide(call_id, DENIED, by, reason, arguments_hash)

    def _decide(
        self,
        call_id: str,
        state: Literal["approved", "denied"],
        by: str | None,
        reason: str | None,
        expected: str | None,
    ) -> Decision:
        from datetime import datetime, timezone

        parked = self._parked
        calls = parked.message.tool_calls if parked is not None else ()
        call = next((c for c in calls if c.id == call_id), None)
        if parked is None or call is None or call_id not in parked.decisions:
            raise ConfigurationError(f"No tool call {call_id!r} of this chat awaits a decision.")
        current = arguments_hash(call.arguments)
        if expected is not None and expected != current:
            raise StaleApprovalError(
                f"The arguments of tool call {call_id!r} changed since they were shown; "
                "decide again on the current ones.",
                [call_id],
            )
        decision = Decision(state, current, by, datetime.now(timezone.utc), reason)
        parked.decisions[call_id] = decision
        return decision

    # -- messages ---------------------------------------------------------------------------

    def add_message(self, message: Message | None = None, **fields: Any) -> Message:
        """Append a message to the history without calling the model."""
        if message is None:
            message = Message(**fields)
        self.messages.append(message)
        return message

    def reset_messages(self) -> None:
        """Forget the conversation (system prompts included)."""
        self.messages = []

    def __iter__(self) -> Iterator[Message]:
        return iter(self.messages)

    @staticmethod
    def user_message(
        content: str | Content | RawContent | None,
        attachments: AttachmentSource | Sequence[AttachmentSource] | None = None,
        *,
        max_bytes: int | None = None,
    ) -> Message:
        """The user message for ``content`` and files (files are checked now, before sending).

        Raises:
            AttachmentError: a file is missing, unreadable or too large.
        """
        files = to_attachments(attachments)
        for attachment in files:
            if max_bytes is not None:
                attachment.check_size(max_bytes)
        if files:
            if isinstance(content, RawContent):
                raise ConfigurationError("Attachments cannot be combined with RawContent.")
            text = content.text if isinstance(content, Content) else content
            existing = content.attachments if isinstance(content, Content) else ()
            return Message(role="user", content=Content(text, (*existing, *files)))
        return Message(role="user", content=content)

    # -- the turn ---------------------------------------------------------------------------

    def ask(
        self,
        content: str | Content | RawContent | None = None,
        *,
        attachments: AttachmentSource | Sequence[AttachmentSource] | None = None,
        on_chunk: ChunkCallback | None = None,
    ) -> Message:
        """Send a user message and return the model's final reply.

        Streams when ``on_chunk`` is given (it receives every :class:`~sa_llm.types.Chunk`).
        Tools run in a loop until the model answers in words (or a tool halts).
        """
        return drive(self._ask_flow(content, attachments, on_chunk, on_chunk is not None))

    async def aask(
        self,
        content: str | Content | RawContent | None = None,
        *,
        attachments: AttachmentSource | Sequence[AttachmentSource] | None = None,
        on_chunk: ChunkCallback | None = None,
    ) -> Message:
        """Async twin of :meth:`ask`; ``on_chunk`` may be ``async def``."""
        return await adrive(self._ask_flow(content, attachments, on_chunk, on_chunk is not None))

    def complete(self, *, on_chunk: ChunkCallback | None = None) -> Message:
        """Ask the model to answer the conversation as it stands."""
        return drive(self._complete_flow(on_chunk, on_chunk is not None))

    async def acomplete(self, *, on_chunk: ChunkCallback | None = None) -> Message:
        """Async twin of :meth:`complete`."""
        return await adrive(self._complete_flow(on_chunk, on_chunk is not None))

    def stream(
        self,
        content: str | Content | RawContent | None = None,
        *,
        attachments: AttachmentSource | Sequence[AttachmentSource] | None = None,
    ) -> Iterator[Chunk]:
        """Ask and iterate over the reply's chunks; the final message lands in ``messages``."""
        return drive_iter(self._ask_flow(content, attachments, None, True))

    def astream(
        self,
        content: str | Content | RawContent | None = None,
        *,
        attachments: AttachmentSource | Sequence[AttachmentSource] | None = None,
    ) -> AsyncIterator[Chunk]:
        """Async twin of :meth:`stream`."""
        return adrive_iter(self._ask_flow(content, attachments, None, True))

    # -- the flow (shared by all drivers) ---------------------------------------------------

    @traced_turn
    def _ask_flow(
        self,
        content: str | Content | RawContent | None,
        attachments: AttachmentSource | Sequence[AttachmentSource] | None,
        on_chunk: ChunkCallback | None,
        stream: bool,
    ) -> Flow[Message]:
        require_content(content, attachments)
        yield from self._open_turn(content, attachments, stream)
        return (yield from self._reply_flow(on_chunk, stream))

    def _open_turn(self, content: MessageContent, attachments: Files, stream: bool) -> Flow[None]:
        """Take the chat for a question's turn and add the question to the conversation."""
        # A missing or oversized file, or a feature the provider lacks, fails here: before the
        # turn takes the chat, saves a row or sends anything.
        message = self.user_message(
            content, attachments, max_bytes=self.config.max_attachment_bytes
        )
        ensure_model_accepts(self.model_info, message.attachments)
        self._check_supported()
        yield from self._take_turn()
        yield from self._close_parked_round()
        yield from self._add_user_message(message)

    @traced_turn
    def _complete_flow(self, on_chunk: ChunkCallback | None, stream: bool) -> Flow[Message]:
        self._check_supported()
        yield from self._take_turn()
        parked = self._parked
        if parked is not None:
            check_decided(parked)
            self._parked, self._resume = None, parked
        return (yield from self._reply_flow(on_chunk, stream))

    def _close_parked_round(self) -> Flow[None]:
        """A new question while a round is parked: refuse it, or deny the round's calls."""
        parked = self._parked
        if parked is None:
            return
        if self.on_new_question != "deny":
            raise_pending(parked)
        self._parked = None
        for call in parked.message.tool_calls:
            content = denial_content(SUPERSEDED)
            yield from self._add_tool_result(
                Message(role="tool", content=content, tool_call_id=call.id), call
            )

    def _take_turn(self) -> Flow[None]:
        """Occupy the chat for this turn: wait for (or refuse) a turn already running on it.

        The gate is released when the drive ends, however it ends (see :mod:`sa_llm._busy`).
        """
        config = self.config
        yield Occupy(self._turn_key(), config.concurrent_turns == "wait", config.turn_wait_timeout)

    def _check_supported(self) -> None:
        """Refuse what the provider cannot do, before anything is saved or sent.

        Raises:
            UnsupportedFeatureError: a schema for a provider without structured output.
        """
        self._current_provider()
        self._prices()  # genai-prices asked for but missing: fail before anything is sent
        provider = self.provider
        if self.schema is not None and not provider.supports_schema:
            raise UnsupportedFeatureError(
                f"{provider.name} cannot constrain replies to a JSON Schema; remove the schema "
                "(with_schema(None)) or route the model through another provider."
            )

    def _turn_key(self) -> Hashable:
        """What identifies this chat among concurrent turns: the chat object itself."""
        return self

    def _reply_flow(self, on_chunk: ChunkCallback | None, stream: bool) -> Flow[Message]:
        self._current_provider()
        primary = (self.model_info, self.model_id)
        try:
            return (yield from self._replies(on_chunk, stream))
        finally:
            if (self.model_info, self.model_id) != primary:  # a fallback lasts one turn
                self.model_info, self.model_id = primary
                self._bind_provider()

    def _replies(self, on_chunk: ChunkCallback | None, stream: bool) -> Flow[Message]:
        resume, self._resume = self._resume, None
        if resume is not None:  # a parked round whose calls were decided: run it first
            halted = yield from self._run_tools(resume.message, resume.decisions)
            if halted is not None:
                return halted
        rounds = 0
        attempt = 1
        fallbacks = list(self.fallbacks)
        while True:
            rounds += 1
            if rounds > _MAX_TOOL_ROUNDS:
                raise ToolError(f"The model kept calling tools for {_MAX_TOOL_ROUNDS} rounds.")
            yield from self._download_attachments()
            http = self.provider.build_request(self.chat_request(stream))
            log = self._attempt_log(stream)
            self._accumulator = None
            try:
                if stream:
                    message = yield from self._stream_reply(http, on_chunk, log)
                else:
                    yield from self._reply_started()
                    response: HttpResponse = yield SendRequest(self.transport, http, log)
                    accumulator = Accumulator(self.provider.name)
                    for chunk in self.provider.parse_response(response):
                        accumulator.add(chunk)
                    accumulator.raw = response
                    message = accumulator.message()
            except ProviderError as exc:
                # A reply or stream event that echoes a key (an error event, a garbled body
                # kept in the error) must not carry it to the caller.
                self.provider.redact_error(exc)
                self._attempts_ended(log, exc)
                if not fallbacks or not isinstance(exc, self.fallback_errors):
                    raise
                yield from self._fall_back(exc, fallbacks.pop(0), attempt, stream)
                attempt += 1
                rounds -= 1  # the round is tried again, on the next model
                continue
            except BaseException as exc:
                self._attempts_ended(log, exc)
                raise
            self._attempts_ended(log, None, message)
            parse_error = self._parse_structured(message)
            yield from self._reply_completed(message)
            yield from self._fire("end_message", message)
            if parse_error is not None:
                raise parse_error
            if not message.tool_calls:
                return message
            # A forced tool choice applies to one round; forcing it again would loop forever.
            if self.tool_choice not in (None, "auto", "none"):
                self.tool_choice = None
            waiting = yield from self._calls_to_approve(message)
            if waiting:
                yield from self._park(
                    ParkedRound(
                        message,
                        {
                            call.id: Decision(PENDING, arguments_hash(call.arguments))
                            for call in waiting
                        },
                    )
                )
                return message
            halted = yield from self._run_tools(message)
            if halted is not None:
                return halted

    def _fall_back(
        self, error: ProviderError, to: ModelInfo, attempt: int, stream: bool
    ) -> Flow[None]:
        """End the failed attempt (its reply as far as it got) and switch to ``to``."""
        accumulator, self._accumulator = self._accumulator, None
        partial = accumulator.partial() if accumulator is not None else None
        event = FallbackEvent(
            from_model=self.model_id,
            to_model=to.id,
            error=error,
            attempt=attempt,
            streaming=stream,
            chunks_delivered=accumulator is not None and accumulator.chunks > 0,
        )
        yield from self._attempt_failed(error, partial, to)
        yield from self._fire("fallback", event)
        self.model_info, self.model_id = to, to.id
        self._bind_provider()

    def _attempt_failed(
        self, error: ProviderError, partial: Message | None, to: ModelInfo
    ) -> Flow[None]:
        """A reply attempt failed and ``to`` is tried next (a persisted chat records it)."""
        return
        yield

    def _stream_reply(
        self, http: Any, on_chunk: ChunkCallback | None, log: AttemptLog | None = None
    ) -> Flow[Message]:
        handle = yield OpenStream(self.transport, http, log)
        attempt = log.current if log is not None else None
        parser = self.provider.stream_parser()
        accumulator = self._accumulator = Accumulator(self.provider.name)
        # The provider accepted the request and its reply has begun (status and headers are
        # in): the reply's message starts now, before its first chunk is read, so the work that
        # goes with it (a persisted chat's row) is done while the model produces that chunk.
        yield from self._reply_started()
        while True:
            data: bytes = yield ReadStream(handle)
            chunks = parser.feed(data) if data else parser.close()
            if chunks and attempt is not None:
                attempt.first_chunk()
            for chunk in chunks:
                accumulator.add(chunk)
                yield Emit(chunk, on_chunk)
            if not data:
                break
            yield from self._reply_progress(accumulator)
        self._accumulator = None
        return accumulator.message()

    def _parse_structured(self, message: Message) -> StructuredOutputError | None:
        if self.schema is None or message.tool_calls:
            return None
        try:
            message.parsed = self.schema.parse(message.text)
        except StructuredOutputError as exc:
            return exc
        return None

    def _calls_to_approve(self, message: Message) -> Flow[list[ToolCall]]:
        """The calls of ``message`` that wait for a decision: those of tools marked
        ``requires_approval`` and those the chat's approval policy picks."""
        policy = self.approval_policy
        waiting: list[ToolCall] = []
        for call in message.tool_calls:
            tool = self.tools.get(call.name)
            if tool is None or call.arguments_error is not None:
                continue  # not run anyway: the model reads an error result
            needed = bool(getattr(tool, "requires_approval", False))
            if not needed and policy is True:
                needed = True
            elif not needed and callable(policy):
                needed = bool((yield Call(policy, call)))
            if needed:
                waiting.append(call)
        return waiting

    def _park(self, parked: ParkedRound) -> Flow[None]:
        """End the turn with a round waiting for decisions (a persisted chat writes them)."""
        self._parked = parked
        return
        yield

    def _run_tools(
        self, message: Message, decisions: Mapping[str, Decision] | None = None
    ) -> Flow[Message | None]:
        decisions = decisions or {}
        limit = self.tool_concurrency or self.config.tool_concurrency
        if limit > 1 and len(message.tool_calls) > 1:
            return (yield from self._run_tools_concurrently(message, decisions, limit))
        halted: Message | None = None
        for call in message.tool_calls:
            decision = decisions.get(call.id)
            if decision is not None and decision.state == DENIED:
                yield from self._tool_result_started(call)
                result = ToolResult(denial_content(decision.reason), is_error=True)
            else:
                yield from self._fire("tool_call", call)
                yield from self._tool_result_started(call)
                result = yield from self._execute_tool(call)
            halted = (yield from self._tool_finished(call, result)) or halted
        return halted

    def _run_tools_concurrently(
        self, message: Message, decisions: Mapping[str, Decision], limit: int
    ) -> Flow[Message | None]:
        """Run a round's calls at most ``limit`` at a time; write the results in call order."""
        calls = message.tool_calls
        jobs: list[ToolResult | Call] = []
        for call in calls:
            decision = decisions.get(call.id)
            if decision is not None and decision.state == DENIED:
                jobs.append(ToolResult(denial_content(decision.reason), is_error=True))
                continue
            yield from self._fire("tool_call", call)
            jobs.append(self._prepare_tool(call))
        runs = [job for job in jobs if isinstance(job, Call)]
        outcomes = iter((yield Gather(runs, limit)) if runs else ())
        halted: Message | None = None
        for call, job in zip(calls, jobs, strict=True):
            if isinstance(job, Call):
                outcome = next(outcomes)
                result = self._tool_outcome(call, outcome.value, outcome.error)
            else:
                result = job
            yield from self._tool_result_started(call)
            halted = (yield from self._tool_finished(call, result)) or halted
        return halted

    def _tool_finished(self, call: ToolCall, result: ToolResult) -> Flow[Message | None]:
        """Hand a call's result on and write it; the tool message when the tool halted."""
        yield from self._fire("tool_result", result.content)
        tool_message = Message(role="tool", content=result.content, tool_call_id=call.id)
        yield from self._add_tool_result(tool_message, call)
        yield from self._fire("end_message", tool_message)
        return tool_message if result.halted else None

    def _prepare_tool(self, call: ToolCall) -> ToolResult | Call:
        """The effect that runs the call's tool, or the result when it cannot run."""
        tool = self.tools.get(call.name)
        if tool is None:
            return error_result(call.name, ToolError(f"no tool named {call.name!r} is available"))
        if call.arguments_error is not None:
            # Unreadable arguments: the tool is not run; the model reads why and can retry.
            return invalid_arguments_result(call.name, call.arguments_error)
        try:
            arguments = tool.validate(call.arguments)
        except Exception as exc:
            return error_result(call.name, exc)
        run = Call(tool.execute, **arguments)
        if self._trace is not None:
            run = self._trace.traced_call(run, call)
        return run

    def _tool_outcome(self, call: ToolCall, value: Any, error: Exception | None) -> ToolResult:
        """The result of a tool that ran: its value, or the error it raised."""
        if isinstance(error, AsyncCallInSyncDrive):
            # A mistake in the program, not in the model's call: tell the developer.
            raise ToolError(f"Tool {call.name!r} is async: {error}") from error
        if error is not None:
            return error_result(call.name, error)
        if isinstance(value, Halt):
            return ToolResult(result_content(value.content), halted=True)
        return ToolResult(result_content(value))

    def _execute_tool(self, call: ToolCall) -> Flow[ToolResult]:
        job = self._prepare_tool(call)
        if isinstance(job, ToolResult):
            return job
        try:
            value = yield job
        except Exception as exc:
            return self._tool_outcome(call, None, exc)
        return self._tool_outcome(call, value, None)

    def _download_attachments(self) -> Flow[None]:
        for message in self.messages:
            content = message.content
            if not isinstance(content, Content):  # no files: most messages, checked cheaply
                continue
            for attachment in content.attachments:
                if attachment.needs_download(self.provider.accepts_url(attachment.mime_type or "")):
                    data, content_type = yield Download(self.transport, attachment.url or "")
                    attachment.set_downloaded(data, content_type)

    def chat_request(self, stream: bool = False) -> ChatRequest:
        """The provider-neutral request for the conversation as it stands."""
        return ChatRequest(
            model=self.model_id,
            messages=self.runtime_instructions.apply(self.messages),
            tools=[tool.spec() for tool in self.tools.values()],
            tool_choice=self.tool_choice,
            parallel_tool_calls=self.parallel_tool_calls,
            temperature=self.temperature,
            schema=self.schema.spec() if self.schema is not None else None,
            params=self.params,
            headers=self.headers,
            stream=stream,
            format_cache=self.format_cache,
        )

    # -- attempts, cost and telemetry ---------------------------------------------------------

    def _traced(self, flow: Flow[Message]) -> Flow[Message]:
        """``flow`` inside the span of its turn (the span starts when the flow does)."""
        trace = telemetry.start_turn(
            self.config, self.provider.name, self.model_id, self._conversation_id()
        )
        if trace is None:
            return (yield from flow)
        self._trace = trace
        try:
            reply = yield from flow
        except BaseException as exc:
            trace.end(exc)
            raise
        finally:
            self._trace = None
        trace.end(None)
        return reply

    def _conversation_id(self) -> Any:
        """What ``gen_ai.conversation.id`` says: nothing for a chat kept in memory."""
        return None

    def _attempt_log(self, stream: bool) -> AttemptLog:
        """The record of the attempts of the provider call about to be made."""
        return AttemptLog(self.provider.name, self.model_id, stream)

    def _costs_attempts(self) -> bool:
        """Whether anything keeps the attempts' costs (the persisted chat's usage ledger); a
        chat kept in memory has no ledger, so its attempts are not priced."""
        return False

    def _prices(self) -> Prices | GenaiPrices | None:
        """The prices of the model in force, from the configured source (cached per model)."""
        source = self.config.price_source
        cached = self._price_list
        if cached is None or cached[0][0] is not self.model_info or cached[0][1] != source:
            cached = self._price_list = (
                (self.model_info, source),
                prices_for(self.model_info, source),
            )
        return cached[1]

    def _attempts_ended(
        self, log: AttemptLog, error: BaseException | None, message: Message | None = None
    ) -> None:
        """The provider call ended: close its running attempt with the reply's usage (or what
        a cut stream reported), cost its attempts and emit their spans."""
        if message is not None:
            log.close(
                outcome=OK,
                tokens=message.tokens,
                response_model=message.model_id,
                finish_reason=message.finish_reason,
                prices=self._prices() if self._costs_attempts() else None,
            )
        else:
            partial = self._accumulator
            log.close(
                outcome=outcome_of(error) if error is not None else OK,
                tokens=partial.tokens if partial is not None else None,
                error=error,
                response_model=partial.model_id if partial is not None else None,
                prices=self._prices() if self._costs_attempts() else None,
            )
        if self._trace is not None:
            self._trace.attempts(log, self.messages, message)

    # -- hooks: where the persisted chat writes rows ------------------------------------------

    def _add_user_message(self, message: Message) -> Flow[None]:
        self.messages.append(message)
        yield from self._fire("end_message", message)

    def _reply_started(self) -> Flow[None]:
        yield from self._fire("new_message")

    def _reply_progress(self, accumulator: Accumulator) -> Flow[None]:
        """More of a streamed reply arrived (once per read, after its chunks were handed on)."""
        return
        yield

    def _reply_completed(self, message: Message) -> Flow[None]:
        self.messages.append(message)
        return
        yield

    def _tool_result_started(self, call: ToolCall) -> Flow[None]:
        return
        yield

    def _add_tool_result(self, message: Message, call: ToolCall) -> Flow[None]:
        self.messages.append(message)
        return
        yield


def raise_pending(parked: ParkedRound) -> None:
    """Refuse a new question while ``parked`` waits.

    Raises:
        ApprovalPendingError: always.
    """
    ids = [call.id for call in parked.message.tool_calls]
    raise ApprovalPendingError(
        f"Tool calls of this chat wait for a decision ({', '.join(ids)}): approve or deny them "
        "and call complete() first, or use with_approval(on_new_question='deny').",
        ids,
    )


def check_decided(parked: ParkedRound) -> None:
    """Refuse to run a parked round while a call waits for a (fresh) decision.

    Raises:
        StaleApprovalError: a decision was about other arguments than the call has.
        ApprovalPendingError: a call has no decision yet.
    """
    stale = parked.stale()
    if stale:
        raise StaleApprovalError(
            f"The arguments of tool call(s) {', '.join(stale)} changed after the decision; "
            "they wait for a new one.",
            stale,
        )
    waiting = parked.waiting()
    if waiting:
        raise ApprovalPendingError(
            f"Tool call(s) {', '.join(waiting)} wait for approve() or deny().", waiting
        )


def require_content(
    content: str | Content | RawContent | None,
    attachments: AttachmentSource | Sequence[AttachmentSource] | None,
) -> None:
    """Refuse an ``ask`` with nothing to say, before any row is written or request sent.

    Raises:
        ConfigurationError: no text (``None`` or blank) and no file.
    """
    if isinstance(content, RawContent):
        return
    text = content.text if isinstance(content, Content) else content
    files = content.attachments if isinstance(content, Content) else ()
    if attachments is not None or files:
        return
    if text is not None and not isinstance(text, str):
        raise ConfigurationError(
            f"ask() takes the message as a str, Content or RawContent, not {type(text).__name__}."
        )
    if not text or not text.strip():
        raise ConfigurationError(
            "ask() needs a message: the text is empty and nothing is attached (to answer the "
            "conversation as it stands, call complete())."
        )


def resolve_model(
    model: str | ModelInfo,
    provider: str | None,
    assume_model_exists: bool,
    config: Config | None = None,
) -> ModelInfo:
    """The registry entry for ``model`` (routed through ``provider`` when given).

    With ``assume_model_exists`` the registry is skipped and a minimal entry is made; a
    provider is then required. Providers that serve any model (the test fake) skip it too.
    A :class:`~sa_llm.registry.ModelInfo` (e.g. from a registry row) is used as it is. A
    provider may prefer another entry for the same model (Bedrock: the inference profile of
    ``config``'s region), see :meth:`~sa_llm.providers.base.Provider.preferred_model`.
    """
    if isinstance(model, registry.ModelInfo):
        return model
    if not isinstance(model, str):
        raise ConfigurationError(
            f"A model is a model id such as 'gpt-4.1-nano' (or a ModelInfo), not {model!r}."
        )
    if provider is not None and not isinstance(provider, str):
        raise ConfigurationError(f"A provider is a name such as 'openai', not {provider!r}.")
    if provider is not None:
        known = provider in registry.SUPPORTED_PROVIDERS
        if not known:
            # Registers and checks the name; unknown providers fail with close matches.
            cls = provider_class(provider)
            if not cls.uses_registry:
                return registry.ModelInfo.assumed(model, cls.name)
        if assume_model_exists:
            return registry.ModelInfo.assumed(model, provider)
    elif assume_model_exists:
        raise ConfigurationError(
            "assume_model_exists=True needs an explicit provider, e.g. provider='openai'."
        )
    info = registry.find(model, provider)
    if provider is None:
        return info
    return provider_class(info.provider).preferred_model(
        info, registry.default_registry, config or get_config()
    )
