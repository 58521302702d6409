"""The record API of a chat row (``@acts_as_chat``): :class:`ChatMethods`.

``ask``/``aask``, ``complete``/``acomplete``, ``stream``/``astream``, the persisted
``with_instructions``/``with_model`` (and async twins) and the runtime-only ``with_tool(s)``,
``with_schema``, ``with_temperature``, ``with_params``, ``with_headers``, ``with_thinking``,
``with_context`` and callbacks. Sync methods need the row in a
:class:`~sqlalchemy.orm.Session`, the ``a``-prefixed ones in an
:class:`~sqlalchemy.ext.asyncio.AsyncSession`. Every database step is a sync function over a
``Session``; the async twins run the same functions through ``AsyncSession.run_sync``.

Runtime configuration (tools, schema, temperature, params, headers, callbacks, context,
``assume_model_exists``) lives on the row instance only and is never stored: a row loaded anew
starts without it, as in the reference.

One concept, one module (over 600 lines): the record API of a chat row, with its sync and
async twins side by side.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from sqlalchemy import Engine, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_object_session
from sqlalchemy.orm import Session, object_session
from sqlalchemy.orm.attributes import set_committed_value

from sa_llm._flow import adrive, adrive_iter, drive, drive_iter
from sa_llm._mapping import ChatSchema, chat_schema
from sa_llm.approval import ApprovalPolicy, Decision
from sa_llm.chat import ChatSettings, ChunkCallback, resolve_model
from sa_llm.config import get_config
from sa_llm.content import AttachmentSource
from sa_llm.errors import ConfigurationError, DetachedRecordError, ProviderError
from sa_llm.fallbacks import FallbackEvent
from sa_llm.registry_table import resolve_model_row
from sa_llm.tools import Tool
from sa_llm.types import Chunk, Content, Message, RawContent, ToolCall

if TYPE_CHECKING:
    from sa_llm._context import Context
    from sa_llm._persisted.chat import PersistedChat
    from sa_llm.cost import Cost, Usage
    from sa_llm.persistence import ChatMemory, PersistenceStrategy
    from sa_llm.registry import ModelInfo

__all__ = ["ChatMethods"]

Self = TypeVar("Self", bound="ChatMethods")
R = TypeVar("R")

_RUNTIME = "_sa_llm_runtime"
_MISSING = object()


class _Runtime(ChatSettings):
    """Runtime-only state of one chat row instance (never persisted): the chat settings plus
    the context and the model the constructor or ``with_model`` was given."""

    def __init__(self) -> None:
        super().__init__()
        self.assume_model_exists = False
        self.context: Context | None = None
        self.pending_model: str | None = None
        self.pending_provider: str | None = None
        # (registry row key, its ModelInfo): saves reloading the row on every turn.
        self.resolved: tuple[Any, ModelInfo] | None = None
        # What the row instance remembers between turns (history cache, a stale lease).
        self.memory: ChatMemory | None = None
        # keep_partial_output for this row's turns (None: the strategy's, else the setting).
        self.keep_partial_output: bool | None = None


def _runtime(record: Any) -> _Runtime:
    runtime = record.__dict__.get(_RUNTIME)
    if runtime is None:
        runtime = _Runtime()
        record.__dict__[_RUNTIME] = runtime
    return runtime  # type: ignore[no-any-return]


def _sync_session(record: Any) -> Session:
    session = object_session(record)
    if session is None:
        raise DetachedRecordError(
            f"{type(record).__name__} is not attached to a session: add it first "
            f"(session.add(chat)) or load it through a session."
        )
    if async_object_session(record) is not None:
        raise DetachedRecordError(
            f"{type(record).__name__} belongs to an AsyncSession: use the async methods "
            "(await chat.aask(...), acomplete, awith_instructions, ...)."
        )
    return session


def _async_session(record: Any) -> AsyncSession:
    session = async_object_session(record)
    if session is None:
        if object_session(record) is not None:
            raise DetachedRecordError(
                f"{type(record).__name__} belongs to a sync Session: use the sync methods "
                "(chat.ask(...), complete, with_instructions, ...)."
            )
        raise DetachedRecordError(
            f"{type(record).__name__} is not attached to a session: add it first "
            f"(async_session.add(chat)) or load it through an AsyncSession."
        )
    return session


@dataclass(frozen=True)
class _Decided:
    """A decision on a parked call, as ``approve``/``deny`` received it."""

    call: Any
    state: Literal["approved", "denied"]
    by: str | None
    reason: str | None
    expected: str | None  # the arguments hash the person saw


class ChatMethods:
    """The record API of a chat row (added by ``@acts_as_chat``)."""

    # -- runtime-only attributes --

    @property
    def context(self) -> Context | None:
        """The :class:`~sa_llm.Context` this chat's calls use (runtime only, never stored)."""
        return _runtime(self).context

    @context.setter
    def context(self, value: Context | None) -> None:
        _runtime(self).context = value

    @property
    def assume_model_exists(self) -> bool:
        """Create a registry row for an unknown model instead of failing (runtime only)."""
        return _runtime(self).assume_model_exists

    @assume_model_exists.setter
    def assume_model_exists(self, value: bool) -> None:
        _runtime(self).assume_model_exists = bool(value)

    def _set_pending_model(self, model: str, provider: str | None) -> None:
        runtime = _runtime(self)
        runtime.pending_model = model
        runtime.pending_provider = provider
        schema = chat_schema(type(self))
        options = type(self).__sa_llm_chat__  # type: ignore[attr-defined]
        if options.legacy:
            setattr(self, options.model_id_column, model)
        elif schema is not None and schema.chat_model_attr is not None:
            # Clear the old key so the flush resolves the new model.
            setattr(self, schema.chat_model_attr, None)

    @property
    def model_name(self) -> str | None:
        """The model id this chat talks to (e.g. ``"gpt-4.1-nano"``)."""
        runtime = _runtime(self)
        options = type(self).__sa_llm_chat__  # type: ignore[attr-defined]
        if options.legacy:
            return getattr(self, options.model_id_column, None) or runtime.pending_model
        if runtime.pending_model is not None:
            return runtime.pending_model
        row = getattr(self, options.model, None)
        return row.model_id if row is not None else None

    @property
    def provider_name(self) -> str | None:
        """The provider this chat's model is routed through."""
        runtime = _runtime(self)
        options = type(self).__sa_llm_chat__  # type: ignore[attr-defined]
        if runtime.pending_provider is not None or options.legacy:
            return runtime.pending_provider
        row = getattr(self, options.model, None)
        return row.provider if row is not None else None

    # -- runtime configuration (no database): the chat settings, kept on this instance --

    def with_tool(
        self: Self,
        tool: Tool | type[Tool] | Callable[..., Any],
        *,
        choice: str | None = None,
        calls: Literal["one", "many"] | None = None,
    ) -> Self:
        """Let the model call ``tool`` on this row's turns (see :meth:`sa_llm.Chat.with_tool`)."""
        _runtime(self).with_tool(tool, choice=choice, calls=calls)
        return self

    def with_tools(
        self: Self,
        *tools: Tool | type[Tool] | Callable[..., Any],
        replace: bool = False,
        choice: str | None = None,
        calls: Literal["one", "many"] | None = None,
        concurrency: int | None = None,
    ) -> Self:
        """Add tools (``replace=True`` drops the current ones first); runtime only.

        ``concurrency``: calls of one round run at once (results are written in call order).
        """
        _runtime(self).with_tools(
            *tools, replace=replace, choice=choice, calls=calls, concurrency=concurrency
        )
        return self

    def with_approval(
        self: Self,
        policy: bool | ApprovalPolicy | None = True,
        *,
        on_new_question: Literal["raise", "deny"] = "raise",
    ) -> Self:
        """Make tool calls wait for a decision (see :meth:`sa_llm.Chat.with_approval`);
        runtime only. Tools marked ``requires_approval`` wait without it."""
        _runtime(self).with_approval(policy, on_new_question=on_new_question)
        return self

    def with_fallbacks(
        self: Self,
        *models: str | ModelInfo,
        on: Sequence[type[ProviderError]] | None = None,
    ) -> Self:
        """Models to move on to when a request fails for good (see
        :meth:`sa_llm.Chat.with_fallbacks`); runtime only. Each failed attempt stays a row of
        its own (status ``failed``, the model that failed)."""
        _runtime(self).with_fallbacks(*models, on=on)  # resolved with the row's context
        return self

    def on_fallback(self: Self, callback: Callable[[FallbackEvent], Any]) -> Self:
        """Call ``callback(event)`` before a turn of this row moves to a fallback model."""
        _runtime(self).on_fallback(callback)
        return self

    def with_schema(self: Self, schema: Any) -> Self:
        """Structured replies (stored as JSON text, replayed as JSON); ``None`` removes it."""
        _runtime(self).with_schema(schema)
        return self

    def with_temperature(self: Self, temperature: float | None) -> Self:
        """Sampling temperature of this row's turns; runtime only."""
        _runtime(self).with_temperature(temperature)
        return self

    def with_params(self: Self, **params: Any) -> Self:
        """Provider-specific body fields (deep-merged into each request); runtime only."""
        _runtime(self).with_params(**params)
        return self

    def with_headers(self: Self, **headers: str) -> Self:
        """Extra HTTP headers of this row's turns; runtime only."""
        _runtime(self).with_headers(**headers)
        return self

    def with_thinking(self: Self, *, effort: str | None = None, budget: int | None = None) -> Self:
        """Reasoning effort or budget of this row's turns; runtime only."""
        _runtime(self).with_thinking(effort=effort, budget=budget)
        return self

    def with_context(self: Self, context: Context | None) -> Self:
        """Use a context's keys and settings for this row's calls (runtime only)."""
        _runtime(self).context = context
        return self

    def on_new_message(self: Self, callback: Callable[[], Any]) -> Self:
        _runtime(self).on_new_message(callback)
        return self

    def on_end_message(self: Self, callback: Callable[[Message], Any]) -> Self:
        _runtime(self).on_end_message(callback)
        return self

    def on_tool_call(self: Self, callback: Callable[[ToolCall], Any]) -> Self:
        _runtime(self).on_tool_call(callback)
        return self

    def on_tool_result(self: Self, callback: Callable[[Any], Any]) -> Self:
        _runtime(self).on_tool_result(callback)
        return self

    # -- building the in-memory chat --

    def _prepare(
        self,
        session: Session,
        async_session: AsyncSession | None,
        *,
        with_history: bool = False,
    ) -> PersistedChat:
        """Sync DB step: resolve the model (saving the row when new or changed), bind a turn,
        and with ``with_history`` read the history (``to_llm``; a turn reads it itself, in the
        transaction that takes the chat). The step ends its transaction like any other, so no
        read transaction (a SQLite read lock, a PostgreSQL snapshot) outlives it."""
        from sa_llm.persistence import strategy_for

        strategy = strategy_for(session, type(self))

        def prepare() -> PersistedChat:
            schema = chat_schema(type(self))
            if self not in session:
                session.add(self)
            info, model_ref = self._resolve_model(session, schema)
            if sa_inspect(self).key is None or session.is_modified(self):
                session.flush()
            llm = self._new_llm(session, async_session, strategy, info, model_ref)
            if with_history:
                turn = llm.turn
                llm.use_history(
                    *turn.memory.history.current(session, schema, turn.chat_id, llm.storage)
                )
            return llm

        return _run_step(strategy, session, self, prepare)

    def _prepare_for_turn(
        self, session: Session, async_session: AsyncSession | None
    ) -> PersistedChat | None:
        """The turn's chat without any I/O, or ``None`` when the row needs the database first.

        When the chat row is saved and unchanged and its model known, a turn needs no step of
        its own before its first one (which takes the chat and checks the history).
        """
        from sa_llm.persistence import strategy_for

        runtime = _runtime(self)
        state = sa_inspect(self)
        if (
            runtime.pending_model is not None
            or runtime.resolved is None
            or state.key is None
            or self not in session
            or session.is_modified(self)
        ):
            return None
        schema = chat_schema(type(self))
        if schema.model_cls is None or schema.chat_model_attr is None:
            return None  # legacy mode resolves the model string each turn
        key, info = runtime.resolved
        if self.__dict__.get(schema.chat_model_attr, _MISSING) != key:
            return None
        return self._new_llm(session, async_session, strategy_for(session, type(self)), info, key)

    def _llm_for_turn(self) -> PersistedChat:
        session = _sync_session(self)
        return self._prepare_for_turn(session, None) or self._prepare(session, None)

    async def _allm_for_turn(self) -> PersistedChat:
        session = _async_session(self)
        quick = self._prepare_for_turn(session.sync_session, session)
        if quick is not None:
            return quick  # no I/O, so no hop into the session's greenlet
        return await session.run_sync(lambda s: self._prepare(s, session))

    def _new_llm(
        self,
        session: Session,
        async_session: AsyncSession | None,
        strategy: PersistenceStrategy,
        info: ModelInfo,
        model_ref: Any,
    ) -> PersistedChat:
        """A persisted chat bound to this row's turn (its history is read by the turn)."""
        from sa_llm._persisted.chat import PersistedChat
        from sa_llm.persistence import ChatMemory, Turn
        from sa_llm.storage import open_storage

        schema = chat_schema(type(self))
        runtime = _runtime(self)
        if runtime.memory is None:
            runtime.memory = ChatMemory()
        llm = PersistedChat(info, context=runtime.context)
        storage = None
        if schema.attachment_cls is not None:
            storage = open_storage(llm.config.attachment_storage)
        turn = Turn(
            schema=schema,
            record=self,
            chat_id=sa_inspect(self).identity[0],
            model_ref=model_ref,
            model_name=info.id,
            memory=runtime.memory,
        )
        llm.bind(turn, strategy, session, async_session, storage)
        llm.use_settings(runtime)
        return llm

    def _resolve_model(self, session: Session, schema: ChatSchema) -> tuple[ModelInfo, Any]:
        runtime = _runtime(self)
        config = runtime.context.config if runtime.context is not None else get_config()
        options = type(self).__sa_llm_chat__  # type: ignore[attr-defined]
        if schema.model_cls is None:
            model = getattr(self, options.model_id_column, None) or config.default_model
            info = resolve_model(
                model, runtime.pending_provider, runtime.assume_model_exists, config
            )
            setattr(self, options.model_id_column, info.id)  # the resolved id, not an alias
            return info, info.id
        assert schema.chat_model_attr is not None
        if runtime.pending_model is None and runtime.resolved is not None:
            key, info = runtime.resolved
            if getattr(self, schema.chat_model_attr) == key:
                return info, key
        row: Any
        if runtime.pending_model is not None:
            row = resolve_model_row(
                session,
                schema.model_cls,
                runtime.pending_model,
                runtime.pending_provider,
                runtime.assume_model_exists,
                config,
            )
        elif getattr(self, options.model, None) is not None:
            row = getattr(self, options.model)
        else:
            row = resolve_model_row(session, schema.model_cls, config.default_model, None, False)
        if getattr(self, options.model, None) is not row:
            setattr(self, options.model, row)  # only when it changes: no needless flush
        runtime.pending_model = runtime.pending_provider = None
        key = sa_inspect(row).identity[0]
        info = row.to_llm()
        runtime.resolved = (key, info)
        return info, key

    def expire_history(self) -> None:
        """Read the history from the database on the next turn, even if it looks unchanged.

        Between turns this row instance keeps the history it last sent and reuses it when the
        chat's messages have the same count and newest ``updated_at``. Changes that keep both
        (an UPDATE in raw SQL that leaves ``updated_at`` alone) are only seen after this.
        """
        memory = _runtime(self).memory
        if memory is not None:
            memory.history.clear()

    def to_llm(self) -> PersistedChat:
        """The plain chat rebuilt from the rows: system messages first, then by (created_at, id).

        Only what a provider may be sent: unfinished or partial replies and unanswered tool
        calls are left out (``chat.messages`` shows every row). Runtime configuration (tools,
        schema, ...) is applied, and callbacks registered on the returned chat
        (``on_new_message``, ``on_end_message``, ...) also fire on this row's own turns
        (``chat.ask``). Needs a sync session.
        """
        session = _sync_session(self)
        return self._shared(self._prepare(session, None, with_history=True))

    async def ato_llm(self) -> PersistedChat:
        """Async twin of :meth:`to_llm`."""
        session = _async_session(self)
        llm = await session.run_sync(lambda s: self._prepare(s, session, with_history=True))
        return self._shared(llm)

    def _shared(self, llm: PersistedChat) -> PersistedChat:
        """``llm`` with this row's callbacks (one registry of them): a callback registered on
        what ``to_llm()`` returned fires on the row's own turns too, as in RubyLLM."""
        llm._callbacks = _runtime(self)._callbacks
        return llm

    # -- partial output and cancellation --

    @property
    def keep_partial_output(self) -> bool | None:
        """Keep what streamed when this row's turns do not complete (runtime only).

        ``None`` (default): the strategy's choice, else the ``keep_partial_output`` setting.
        """
        return _runtime(self).keep_partial_output

    @keep_partial_output.setter
    def keep_partial_output(self, value: bool | None) -> None:
        _runtime(self).keep_partial_output = value

    def with_partial_output(self: Self, keep: bool | None = True) -> Self:
        """Flush streamed text to the reply's row while it arrives and keep it (status
        ``failed`` / ``cancelled`` / ``interrupted``) if the turn does not complete."""
        self.keep_partial_output = keep
        return self

    def cancel(self) -> bool:
        """Ask the turn running on this chat, in any process, to stop.

        Durable: a flag in the chat row, which the running turn reads at its heartbeat (within
        ``turn_poll_interval``) and at each partial-output flush. The turn closes the provider
        stream, keeps what streamed with status ``cancelled`` (and the usage it got), releases
        the chat and raises :class:`~sa_llm.errors.TurnCancelledError`. Committed at once, in a
        transaction of its own (the session's own transaction is left alone).

        Returns:
            Whether a turn was running.
        """
        return type(self).cancel_turn(_sync_session(self), sa_inspect(self).identity[0])

    async def acancel(self) -> bool:
        """Async twin of :meth:`cancel`."""
        return await type(self).acancel_turn(_async_session(self), sa_inspect(self).identity[0])

    @classmethod
    def cancel_turn(cls, session: Session, chat_id: Any) -> bool:
        """Cancel the turn running on the chat ``chat_id`` (see :meth:`cancel`), e.g. from a
        request handler that has only the id; ``session`` gives the database.

        Raises:
            ConfigurationError: the chat table has no turn-lease columns (``sa-llm upgrade``).
        """
        from sa_llm._persisted.lease import request_cancel

        schema = _lease_schema(cls)
        bind = session.get_bind(mapper=cls)
        if isinstance(bind, Engine):
            with bind.begin() as connection:
                return request_cancel(connection, schema, chat_id)
        found = request_cancel(session, schema, chat_id)
        session.commit()
        return found

    @classmethod
    async def acancel_turn(cls, session: AsyncSession, chat_id: Any) -> bool:
        """Async twin of :meth:`cancel_turn`."""
        from sa_llm._persisted.lease import request_cancel

        schema = _lease_schema(cls)
        bind = session.sync_session.get_bind(mapper=cls)
        if isinstance(bind, Engine):
            async with AsyncEngine(bind).begin() as connection:
                return await connection.run_sync(lambda sync: request_cancel(sync, schema, chat_id))
        found = await session.run_sync(lambda sync: request_cancel(sync, schema, chat_id))
        await session.commit()
        return found

    # -- usage and cost --

    def usage(self) -> Usage:
        """What this chat's attempts used and cost, from its usage ledger (``@acts_as_usage``:
        every attempt, retries and failures included), else from its messages' tokens.

        Read in the row's session (its transaction sees what this session wrote).
        """
        from sa_llm._persisted.usage import chat_usage

        session = _sync_session(self)
        return chat_usage(session, chat_schema(type(self)), sa_inspect(self).identity[0])

    async def ausage(self) -> Usage:
        """Async twin of :meth:`usage`."""
        from sa_llm._persisted.usage import chat_usage

        schema, key = chat_schema(type(self)), sa_inspect(self).identity[0]
        return await _async_session(self).run_sync(lambda s: chat_usage(s, schema, key))

    def cost(self) -> Cost | None:
        """The cost of this chat so far (``usage().cost``); ``None`` when nothing is priced."""
        return self.usage().cost

    async def acost(self) -> Cost | None:
        """Async twin of :meth:`cost`."""
        return (await self.ausage()).cost

    # -- tool approval (decisions in the tool-call rows, from any process) --

    def pending_approvals(self) -> list[Any]:
        """The tool-call rows of this chat that wait for a decision, in call order.

        A chat whose list is not empty is *awaiting approval*: its last turn parked, no turn
        runs, and ``ask`` raises :class:`~sa_llm.errors.ApprovalPendingError` until the calls
        are decided and :meth:`complete` has run them.
        """
        return self._pending_step(_sync_session(self))

    async def apending_approvals(self) -> list[Any]:
        """Async twin of :meth:`pending_approvals`."""
        return await _async_session(self).run_sync(self._pending_step)

    def _pending_step(self, session: Session) -> list[Any]:
        """Read the waiting calls as a step: its transaction ends (no SQLite read lock is left
        to block a decision written on another connection) and the rows stay readable."""
        from sa_llm._persisted.approvals import pending_query
        from sa_llm._persisted.steps import loaded_values, restore
        from sa_llm.persistence import strategy_for

        schema = _approval_schema(type(self))
        query = pending_query(schema, sa_inspect(self).identity[0])
        loaded: list[tuple[Any, dict[str, Any] | None]] = []

        def step() -> list[Any]:
            rows = list(session.scalars(query))
            loaded.extend((row, loaded_values(row)) for row in rows)
            return rows

        rows = _run_step(strategy_for(session, type(self)), session, self, step)
        restore(loaded)
        return rows

    def approve(
        self, call: Any, *, by: str | None = None, arguments_hash: str | None = None
    ) -> Decision:
        """Let a parked call run on the next :meth:`complete` (in this or any process).

        Committed at once in a transaction of its own, with who (``by``) and when, and the hash
        of the call's arguments: a call whose arguments change afterwards is not run.

        Args:
            call: the provider's call id (``row.tool_call_id``), or the tool-call row.
            by: who decided (a user id, a name: any string).
            arguments_hash: the hash of the arguments the person saw (the row's
                ``approval_arguments_hash`` when it was shown); refused if they changed since.

        Raises:
            ConfigurationError: no call of this chat with that id awaits a decision.
            StaleApprovalError: ``arguments_hash`` differs from the call's arguments now.
        """
        return self._decide_sync(_Decided(call, "approved", by, None, arguments_hash))

    async def aapprove(
        self, call: Any, *, by: str | None = None, arguments_hash: str | None = None
    ) -> Decision:
        """Async twin of :meth:`approve`."""
        return await self._adecide(_Decided(call, "approved", by, None, arguments_hash))

    def deny(
        self,
        call: Any,
        reason: str | None = None,
        *,
        by: str | None = None,
        arguments_hash: str | None = None,
    ) -> Decision:
        """Refuse a parked call: it never runs; the next :meth:`complete` tells the model, with
        ``reason``. Recorded like :meth:`approve` (same arguments and errors)."""
        return self._decide_sync(_Decided(call, "denied", by, reason, arguments_hash))

    async def adeny(
        self,
        call: Any,
        reason: str | None = None,
        *,
        by: str | None = None,
        arguments_hash: str | None = None,
    ) -> Decision:
        """Async twin of :meth:`deny`."""
        return await self._adecide(_Decided(call, "denied", by, reason, arguments_hash))

    def _decision_writer(self, asked: _Decided) -> Callable[[Any], Decision]:
        """The decision's write, on a connection or a session (the async twin runs it with
        ``run_sync``)."""
        from sa_llm._persisted.approvals import decide

        schema = _approval_schema(type(self))
        chat_id = sa_inspect(self).identity[0]

        def record(connection: Any) -> Decision:
            return decide(
                connection, schema, chat_id, asked.call, asked.state,
                by=asked.by, reason=asked.reason, expected_hash=asked.expected,
            )  # fmt: skip

        return record

    def _decide_sync(self, asked: _Decided) -> Decision:
        session = _sync_session(self)
        record = self._decision_writer(asked)
        bind = session.get_bind(mapper=type(self))
        if isinstance(bind, Engine):
            with bind.begin() as connection:
                decision = record(connection)
        else:
            decision = record(session)
            session.commit()
        _show_decision(session, asked.call, decision)
        return decision

    async def _adecide(self, asked: _Decided) -> Decision:
        session = _async_session(self)
        record = self._decision_writer(asked)
        bind = session.sync_session.get_bind(mapper=type(self))
        if isinstance(bind, Engine):
            async with AsyncEngine(bind).begin() as connection:
                decision = await connection.run_sync(record)
        else:
            decision = await session.run_sync(record)
            await session.commit()
        _show_decision(session.sync_session, asked.call, decision)
        return decision

    # -- turns --

    def ask(
        self,
        content: str | Content | RawContent | None = None,
        *,
        attachments: AttachmentSource | Sequence[AttachmentSource] | None = None,
        on_chunk: ChunkCallback | None = None,
    ) -> Message:
        """Save the user message, run the turn (streaming with ``on_chunk``), persist the reply."""
        llm = self._llm_for_turn()
        return drive(llm._ask_flow(content, attachments, on_chunk, on_chunk is not None))

    async def aask(
        self,
        content: str | Content | RawContent | None = None,
        *,
        attachments: AttachmentSource | Sequence[AttachmentSource] | None = None,
        on_chunk: ChunkCallback | None = None,
    ) -> Message:
        """Async twin of :meth:`ask` (the row must belong to an ``AsyncSession``)."""
        llm = await self._allm_for_turn()
        return await adrive(llm._ask_flow(content, attachments, on_chunk, on_chunk is not None))

    def complete(self, *, on_chunk: ChunkCallback | None = None) -> Message:
        """Answer the conversation as stored (e.g. after :meth:`create_user_message`)."""
        llm = self._llm_for_turn()
        return drive(llm._complete_flow(on_chunk, on_chunk is not None))

    async def acomplete(self, *, on_chunk: ChunkCallback | None = None) -> Message:
        llm = await self._allm_for_turn()
        return await adrive(llm._complete_flow(on_chunk, on_chunk is not None))

    def stream(
        self,
        content: str | Content | RawContent | None = None,
        *,
        attachments: AttachmentSource | Sequence[AttachmentSource] | None = None,
    ) -> Iterator[Chunk]:
        """Ask and iterate over the reply's chunks; rows are written as in :meth:`ask`."""
        llm = self._llm_for_turn()
        return drive_iter(llm._ask_flow(content, attachments, None, True))

    async def astream(
        self,
        content: str | Content | RawContent | None = None,
        *,
        attachments: AttachmentSource | Sequence[AttachmentSource] | None = None,
    ) -> AsyncIterator[Chunk]:
        """Async twin of :meth:`stream`; stopping early cleans up like a failed turn."""
        llm = await self._allm_for_turn()
        chunks = adrive_iter(llm._ask_flow(content, attachments, None, True))
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            # Closing this generator must close the inner one now (not at garbage collection),
            # so the flow's clean-up runs while the session is still usable.
            await chunks.aclose()  # type: ignore[attr-defined]

    # -- persisted configuration --

    def _instructions_step(self, session: Session, text: str | None, append: bool) -> None:
        from sa_llm.persistence import Turn, strategy_for

        schema = chat_schema(type(self))
        strategy = strategy_for(session, type(self))
        M = schema.message_cls

        def step() -> None:
            if self not in session:
                session.add(self)
            if sa_inspect(self).key is None:
                self._resolve_model(session, schema)
                session.flush()
            chat_id = sa_inspect(self).identity[0]
            turn = Turn(schema=schema, record=self, chat_id=chat_id)
            existing = session.scalars(
                select(M)
                .where(getattr(M, schema.message_chat_fk) == chat_id, M.role == "system")
                .order_by(M.id)
            ).all()
            if text is None:
                for row in existing:
                    session.delete(row)
                return
            if append or not existing:
                strategy.persist_user_message(session, turn, Message(role="system", content=text))
                return
            first, *rest = existing
            if first.content != text:
                first.content = text
            for row in rest:
                session.delete(row)
            session.flush()

        _run_step(strategy, session, self, step)

    def with_instructions(
        self: Self, text: str | None, *, append: bool = False, persist: bool = True
    ) -> Self:
        """Persist the system prompt: replaces it unless ``append``; ``None`` clears it.

        With ``persist=False`` the instruction is a *runtime* one: it applies to this row
        instance's turns and is never stored (an agent whose prompt lives in code). A request
        then sends the stored instructions (unless a runtime one replaced them:
        ``append=False``), then the runtime ones in the order given; ``None`` forgets the
        runtime ones. No database access.
        """
        if not persist:
            _runtime(self).runtime_instructions.set(text, append=append)
            return self
        self._instructions_step(_sync_session(self), text, append)
        return self

    async def awith_instructions(
        self: Self, text: str | None, *, append: bool = False, persist: bool = True
    ) -> Self:
        """Async twin of :meth:`with_instructions`."""
        if not persist:
            _runtime(self).runtime_instructions.set(text, append=append)
            return self
        session = _async_session(self)
        await session.run_sync(lambda s: self._instructions_step(s, text, append))
        return self

    def _model_step(self, session: Session, model: str, provider: str | None, assume: bool) -> None:
        from sa_llm.persistence import strategy_for

        schema = chat_schema(type(self))
        strategy = strategy_for(session, type(self))
        runtime = _runtime(self)

        def step() -> None:
            runtime.assume_model_exists = assume or runtime.assume_model_exists
            self._set_pending_model(model, provider)
            if self not in session:
                session.add(self)
            self._resolve_model(session, schema)
            session.flush()

        _run_step(strategy, session, self, step)

    def with_model(
        self: Self, model: str, *, provider: str | None = None, assume_model_exists: bool = False
    ) -> Self:
        """Switch model (and provider) and save it; later replies reference the new model.

        Raises:
            ModelNotFoundError: unknown model (unless ``assume_model_exists`` with a provider).
        """
        self._model_step(_sync_session(self), model, provider, assume_model_exists)
        return self

    async def awith_model(
        self: Self, model: str, *, provider: str | None = None, assume_model_exists: bool = False
    ) -> Self:
        session = _async_session(self)
        await session.run_sync(lambda s: self._model_step(s, model, provider, assume_model_exists))
        return self

    def create_user_message(
        self,
        content: str | Content | RawContent | None,
        *,
        attachments: AttachmentSource | Sequence[AttachmentSource] | None = None,
    ) -> Any:
        """Save a user message without calling the model; returns the row.

        Files are checked and stored as in :meth:`ask` (a later :meth:`complete` sends them).

        Raises:
            ConfigurationError: no text and no file.
            AttachmentError: a file is missing, unreadable or too large (nothing is saved).
            UnsupportedAttachmentError: the model cannot read a file's type (nothing is saved).
        """
        llm = self._llm_for_turn()
        return drive(llm.create_user_message_flow(content, attachments))

    async def acreate_user_message(
        self,
        content: str | Content | RawContent | None,
        *,
        attachments: AttachmentSource | Sequence[AttachmentSource] | None = None,
    ) -> Any:
        llm = await self._allm_for_turn()
        return await adrive(llm.create_user_message_flow(content, attachments))

    def add_message(self, message: Message | None = None, **fields: Any) -> Any:
        """Save any message (role, content, tool calls, ...) without calling the model.

        Files in a :class:`~sa_llm.types.Content` are stored with it.
        """
        value = message or Message(**fields)
        return drive(self._llm_for_turn().persist_message_flow(value))

    async def aadd_message(self, message: Message | None = None, **fields: Any) -> Any:
        value = message or Message(**fields)
        llm = await self._allm_for_turn()
        return await adrive(llm.persist_message_flow(value))


def _lease_schema(chat_cls: type[Any]) -> ChatSchema:
    schema = chat_schema(chat_cls)
    if not schema.lease:
        raise ConfigurationError(
            f"{chat_cls.__name__} has no turn-lease columns (turn_token, turn_expires_at, "
            "cancel_requested_at), so a turn cannot be cancelled from elsewhere: add them "
            "(`sa-llm upgrade` writes the migration)."
        )
    return schema


def _approval_schema(chat_cls: type[Any]) -> ChatSchema:
    schema = chat_schema(chat_cls)
    if not schema.approval:
        raise ConfigurationError(
            f"{schema.tool_call_cls.__name__} has no tool-approval columns (approval, "
            "approval_arguments_hash, approval_decided_by, approval_decided_at, "
            "approval_reason): add them (`sa-llm upgrade` writes the migration)."
        )
    return schema


def _show_decision(session: Session, call: Any, decision: Decision) -> None:
    """A tool-call row given as ``call`` reads as decided (written by another connection)."""
    if isinstance(call, str) or call not in session:
        return
    for name, value in (
        ("approval", decision.state),
        ("approval_arguments_hash", decision.arguments_hash),
        ("approval_decided_by", decision.decided_by),
        ("approval_decided_at", decision.decided_at),
        ("approval_reason", decision.reason),
    ):
        set_committed_value(call, name, value)


def _has_files(content: Any) -> bool:
    return isinstance(content, Content) and bool(content.attachments)


def _run_step(
    strategy: PersistenceStrategy, session: Session, record: Any, step: Callable[[], R]
) -> R:
    """``strategy.run_step`` keeping ``record`` readable after the commit (see there)."""
    return strategy.run_step(session, step, keep=(record,))
