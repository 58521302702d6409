"""The persisted chat: the plain conversation engine whose flow hooks write rows.

:class:`PersistedChat` subclasses :class:`sa_llm.chat.Chat` and overrides its hooks
(``_reply_started``, ``_reply_completed``, ...) to run the strategy's steps
(:mod:`sa_llm.persistence`) at the points the reference flow fixes. Built by
``chat_record.to_llm()``; the record API (:mod:`sa_llm._records`) drives it.

One turn, step by step (each step is one transaction; the default strategy commits it):

1. **begin**: claim the chat's lease (:mod:`.lease`; a turn that died before is settled first),
   read or reuse the history (:class:`~.history.HistoryCache`), write the user message and,
   for a reply that does not stream, its placeholder. A busy chat: wait (woken by
   :mod:`.wakeups`) or raise :class:`~sa_llm.errors.ChatBusyError`.
2. the heartbeat starts (:mod:`.heartbeat`): it renews the lease and watches for a cancel.
3. the provider is called; a streamed reply writes its placeholder when the stream opens, and
   with ``keep_partial_output`` its text so far every ``partial_output_interval`` seconds.
4. **completion**: the reply fills its placeholder, and the last reply of the turn releases the
   lease in the same transaction. Tool rounds write a placeholder and a result per call.
5. on any failure, cancellation or interruption: **clean-up** settles the placeholder (kept
   with its status, or deleted when blank) and any incomplete tool round, and releases the
   lease; it completes however often the task is cancelled meanwhile.

A database step that loses its connection before committing is retried (``db_retries``); one
that fails for good raises :class:`~sa_llm.errors.PersistenceError` carrying the reply.

One concept, one module (over 600 lines): the persisted turn, every step of it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import instance_state

from sa_llm._attempts import Attempt, AttemptLog
from sa_llm._flow import Effect, Flow, Sleep, StreamAbandoned
from sa_llm._persisted import approvals as _approvals
from sa_llm._persisted import attachments as _attachments
from sa_llm._persisted import events as _events
from sa_llm._persisted.heartbeat import Heartbeat, StartHeartbeat
from sa_llm._persisted.history import Mirror, mirror_row
from sa_llm._persisted.lease import (
    Claim,
    Lease,
    claim,
    lease_state,
    release,
    settle,
    wakeup_key,
)
from sa_llm._persisted.steps import DbStep, commit_failed, show_messages
from sa_llm._persisted.wakeups import Listen, WaitForWakeup, hub
from sa_llm.approval import ParkedRound
from sa_llm.chat import Chat, ChunkCallback, Files, require_content, traced_turn
from sa_llm.content import AttachmentSource, ensure_model_accepts
from sa_llm.errors import (
    ChatBusyError,
    ConfigurationError,
    PersistenceError,
    ProviderError,
    TurnCancelledError,
    TurnLeaseLostError,
)
from sa_llm.persistence import PersistenceStrategy, Turn
from sa_llm.providers._transport import Download
from sa_llm.registry_table import resolve_model_row
from sa_llm.storage import Storage
from sa_llm.streaming import Accumulator
from sa_llm.types import Content, Message, MessageContent, RawContent, ToolCall

if TYPE_CHECKING:
    from sa_llm.cost import GenaiPrices, Prices
    from sa_llm.registry import ModelInfo

__all__ = ["PersistedChat"]

logger = logging.getLogger("sa_llm.persistence")

T = TypeVar("T")

# A busy chat is tried again after a wake-up, or after a delay growing to _MAX_WAIT.
_FIRST_WAIT = 0.01
_MAX_WAIT = 0.25
# Pauses before the retries of a database step that lost its connection.
_DB_RETRY_DELAYS = (0.05, 0.25, 1.0)
# SQLSTATEs after which the transaction was rolled back whole: safe to run the step again.
_RETRY_SQLSTATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock


#: A begin step that found the chat's parked round in the way (the turn raises after it).
_REFUSED = "refused"


class _LeaseGone(Exception):
    """Raised inside a completion step whose release found the lease taken (rolls it back)."""


class PersistedChat(Chat):
    """The in-memory chat of a chat row, whose flow hooks write rows through a strategy.

    Built by ``chat_record.to_llm()``; use the record's methods rather than this class.
    """

    turn: Turn
    strategy: PersistenceStrategy
    storage: Storage | None = None
    _session: Session
    _async_session: AsyncSession | None = None
    _mirror: Mirror | None = None
    _streamed: bool = True  # whether the reply of this turn streams
    _heartbeat: Heartbeat | None = None
    _flush_interval: float | None = None  # seconds between flushes of streamed text (None: off)
    _next_flush: float = 0.0
    _flushed: int = 0  # characters of the streaming reply already in the event log
    _buffer: _events.EventBuffer | None = None  # the events of the step running now
    _unwritten: list[AttemptLog] | None = None  # provider calls not yet in the usage ledger

    def bind(
        self,
        turn: Turn,
        strategy: PersistenceStrategy,
        session: Session,
        async_session: AsyncSession | None,
        storage: Storage | None = None,
    ) -> None:
        """Attach the turn state, the session the next flow runs on and the file storage."""
        self.turn = turn
        self.format_cache = turn.memory.format_cache
        self._price_list = turn.memory.prices
        self.strategy = strategy
        self._session = session
        self._async_session = async_session
        self.storage = storage

    def _bind(self) -> Any:
        """What the session talks to for the chat table (an Engine, or a Connection)."""
        return self._session.get_bind(mapper=self.turn.schema.chat_cls)

    def _turn_key(self) -> Hashable:
        """The in-process gate of a chat whose table has no lease columns (older schemas):
        its database, table and key, so two tenants' chats with one key stay apart."""
        bind = self._bind()
        url = getattr(bind, "url", None) or getattr(getattr(bind, "engine", None), "url", None)
        table = self.turn.schema.chat_cls.__table__
        return ("sa_llm.chat", str(url), table.fullname, self.turn.chat_id)

    # -- the history cache --

    def use_history(self, messages: list[Message], mirror: Mirror | None) -> None:
        """Start from ``messages`` (as the rows hold them); ``mirror`` follows this turn."""
        self.messages = messages
        self._mirror = mirror

    def _note(self, row: Any, message: Message) -> None:
        """A message row this turn wrote: keep the mirrored history in step with the table."""
        mirror = self._mirror
        if mirror is None:
            return
        try:
            state = instance_state(row)
        except Exception:  # a hook that returned something else than the row
            mirror.add(None, None)
            return
        turn = self.turn
        mirror.add(
            mirror_row(turn.schema, turn.written_calls, turn.model_name, row, message), state.key
        )

    def _remember(self) -> None:
        self.turn.memory.history.keep(self._mirror, self.turn.chat_id)

    def _prices(self) -> Prices | GenaiPrices | None:
        """The chat's prices, kept by its row between turns (see :meth:`Chat._prices`)."""
        prices = super()._prices()
        self.turn.memory.prices = self._price_list
        return prices

    def _forget(self) -> None:
        self._mirror = None
        self.turn.memory.history.clear()

    # -- database steps --

    def _run(
        self,
        hook: Callable[[Session, list[Any]], T],
        *,
        what: str,
        reply: Message | None = None,
    ) -> Flow[T]:
        """Run ``hook(session, kept)`` as one step of the strategy; return its result.

        ``kept`` starts as ``[chat row]``; a hook appends the rows it writes. They all read as
        the step left them after its commit (no reload), and the chat's loaded ``messages``
        collection shows the new rows. A step that lost its connection before committing (or
        hit a serialization failure or deadlock, which roll the transaction back whole) is
        run again, ``db_retries`` times; then :class:`PersistenceError` carries ``reply``.
        """
        strategy, record, schema = self.strategy, self.turn.record, self.turn.schema

        chat_id = self.turn.chat_id
        wrote: list[int | None] = []

        def step(session: Session) -> T:
            kept: list[Any] = [record]
            buffer = self._buffer = _events.EventBuffer()

            def body() -> T:
                result = hook(session, kept)
                wrote.append(_events.write(session, schema, chat_id, buffer.items))
                return result

            try:
                result = strategy.run_step(session, body, keep=kept)
            finally:
                self._buffer = None
            show_messages(record, schema.messages_attr, kept[1:])
            return result

        retries = self.config.db_retries
        attempt = 0
        while True:
            try:
                result: T = yield self._step(DbStep(step, self._session, self._async_session), what)
                if wrote and wrote[-1] is not None:
                    hub.notify(_events.events_key(schema, chat_id))  # viewers in this process
                return result
            except sa_exc.DBAPIError as exc:
                if attempt < retries and _retriable(exc):
                    delay = _DB_RETRY_DELAYS[min(attempt, len(_DB_RETRY_DELAYS) - 1)]
                    attempt += 1
                    logger.warning("Retrying the step to %s after %s", what, type(exc).__name__)
                    yield Sleep(delay)
                    continue
                raise PersistenceError(
                    f"The database could not {what}: {type(exc.orig).__name__}: {exc.orig}"
                    + (" (the reply is attached to this error)" if reply is not None else ""),
                    reply=reply,
                    step=what,
                ) from exc

    def _step(self, effect: Effect[T], what: str) -> Effect[T]:
        """A database step, inside its span when the turn is traced."""
        return effect if self._trace is None else self._trace.step(effect, what)

    # -- the usage ledger --

    def _conversation_id(self) -> Any:
        return self.turn.chat_id

    def _costs_attempts(self) -> bool:
        return self.turn.schema.usage_cls is not None

    def _attempt_log(self, stream: bool) -> AttemptLog:
        log = super()._attempt_log(stream)
        if self.turn.schema.usage_cls is not None:
            if self._unwritten is None:
                self._unwritten = []
            self._unwritten.append(log)
        return log

    def _closed_attempts(self) -> list[Attempt]:
        """The attempts of this turn's provider calls that ended and are not in the ledger."""
        return [a for log in self._unwritten or () if not log.written for a in log if a.closed]

    def _ledgered(self) -> None:
        """The closed attempts were committed to the ledger."""
        for log in self._unwritten or ():
            log.written = log.written or all(a.closed for a in log)
        self._unwritten = [log for log in self._unwritten or () if not log.written]

    def _emit(self, kind: str, message_id: Any = None, **data: Any) -> None:
        """Add an event to the running step's transaction (a no-op without an event log)."""
        if self._buffer is not None and self.turn.schema.event_cls is not None:
            self._buffer.add(kind, message_id, **data)

    def _created(self, row: Any, message: Message | None = None) -> None:
        """A ``message.created`` event for a row just written."""
        if self._buffer is None or self.turn.schema.event_cls is None:
            return
        data: dict[str, Any] = {"role": row.role, "status": getattr(row, "status", None)}
        if message is not None:
            data["content"] = message.text
        if message is not None and message.tool_call_id:
            data["tool_call_id"] = message.tool_call_id
        self._emit("message.created", _pk(row), **data)

    def _write(self, hook: Callable[[Session], Any], what: str) -> Flow[Any]:
        """A step whose hook writes one row; returns the row."""

        def write(session: Session, kept: list[Any]) -> Any:
            row = hook(session)
            kept.append(row)
            return row

        return (yield from self._run(write, what=what))

    # -- files --

    @property
    def stores_files(self) -> bool:
        """Whether this chat's messages keep their files (an ``@acts_as_attachment`` class)."""
        return self.turn.schema.attachment_cls is not None and self.storage is not None

    def user_message_flow(
        self,
        content: str | Content | RawContent | None,
        attachments: AttachmentSource | Sequence[AttachmentSource] | None,
    ) -> Flow[Message]:
        """The user message for ``content`` and files, its files checked and stored.

        Everything that can fail about a file fails here, before any row or request: a missing
        or unreadable file, one larger than ``max_attachment_bytes``, a type the model cannot
        read. Blobs are written before the message row; a row never points at a missing blob.

        Raises:
            AttachmentError: a file cannot be read, downloaded or is too large.
            UnsupportedAttachmentError: the registry says the model cannot read a file's type.
        """
        sources: list[Any] = []
        if isinstance(content, Content) and content.attachments:
            sources.extend(content.attachments)
        if attachments is not None:
            sources.append(attachments)
        if not sources:
            return Chat.user_message(content, None)
        if isinstance(content, RawContent):
            raise ConfigurationError("Attachments cannot be combined with RawContent.")
        limit = self.config.max_attachment_bytes
        if not self.stores_files:
            logger.warning(
                "%s has no @acts_as_attachment class: the files are sent with this turn but "
                "not stored, so later turns will not include them",
                self.turn.schema.message_cls.__name__,
            )
            message = Chat.user_message(content, attachments, max_bytes=limit)
            ensure_model_accepts(self.model_info, message.attachments)
            return message
        files = _attachments.collect(sources)
        if not files:  # an empty list, or a form's blank file fields
            return Chat.user_message(content.text if isinstance(content, Content) else content)
        for pending in files:
            pending.attachment.check_size(limit)
        yield from self._download_pending(files)
        ensure_model_accepts(self.model_info, [f.attachment for f in files])
        assert self.storage is not None
        yield _attachments.StoreFiles(files, self.storage, limit)
        # Uploads that cannot seek have a type only now; nothing was sent or saved yet.
        ensure_model_accepts(self.model_info, [f.attachment for f in files if f.stream])
        text = content.text if isinstance(content, Content) else content
        return Message(role="user", content=Content(text, tuple(f.attachment for f in files)))

    def _download_pending(self, files: Sequence[_attachments.PendingFile]) -> Flow[None]:
        """Download remote files: they are stored, and stored copies are what later turns send."""
        self._current_provider()
        for pending in files:
            attachment = pending.attachment
            if attachment.url is not None and not attachment.loaded:
                data, content_type = yield Download(self.transport, attachment.url)
                attachment.set_downloaded(data, content_type)

    def _store_files_of(self, message: Message) -> Flow[None]:
        """Store the files a tool returned (or a reply carries) before its row is written."""
        if not (message.attachments and self.stores_files):
            return
        assert self.storage is not None
        files = _attachments.collect(message.attachments)
        yield from self._download_pending(files)
        yield _attachments.StoreFiles(files, self.storage, None)

    def persist_message_flow(self, message: Message) -> Flow[Any]:
        """Save a message the caller built (files stored first); returns its row."""
        turn, strategy = self.turn, self.strategy
        yield from self._store_files_of(message)
        self._forget()  # a message outside a turn: the next turn reads the rows

        def save(session: Session) -> Any:
            row = strategy.persist_user_message(session, turn, message)
            self._created(row, message)
            return row

        row = yield from self._write(save, "save the message")
        self.messages.append(message)
        return row

    def create_user_message_flow(
        self,
        content: str | Content | RawContent | None,
        attachments: AttachmentSource | Sequence[AttachmentSource] | None,
    ) -> Flow[Any]:
        """Save a user message (files checked and stored) without calling the model."""
        require_content(content, attachments)
        message = yield from self.user_message_flow(content, attachments)
        return (yield from self.persist_message_flow(message))

    # -- the turn --

    def _open_turn(self, content: MessageContent, attachments: Files, stream: bool) -> Flow[None]:
        # Everything that can be refused is refused before any row is written: the content,
        # a feature the provider lacks, then the files (checked and stored before the turn).
        self._check_supported()
        message = yield from self.user_message_flow(content, attachments)
        self._streamed = stream
        yield from self._begin(message)

    @traced_turn
    def _complete_flow(self, on_chunk: ChunkCallback | None, stream: bool) -> Flow[Message]:
        self._check_supported()
        self._streamed = stream
        yield from self._begin(None)
        return (yield from self._reply_flow(on_chunk, stream))

    def _begin(self, message: Message | None) -> Flow[None]:
        """Take the chat (waiting for a running turn, or raising), read the history, write
        the user message (and a non-streamed reply's placeholder): one transaction."""
        turn, config, schema = self.turn, self.config, self.turn.schema
        turn.streaming = self._streamed
        turn.keep_partial = self._keep_partial()
        if schema.lease:
            turn.lease = Lease(turn.chat_id, config.turn_lease_seconds)
            turn.lease.stale = turn.memory.stale_lease
        else:
            yield from self._take_turn()  # an older schema: one turn at a time per process
        wait = config.concurrent_turns == "wait"
        timeout = config.turn_wait_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = _FIRST_WAIT
        waiter = None
        while (yield from self._begin_step(message)) == Claim.BUSY:
            if not wait:
                raise ChatBusyError(
                    "Another turn is running on this chat; with concurrent_turns='raise' a "
                    "second turn fails instead of waiting."
                )
            if waiter is None:
                # Listen first, then claim again: a release in between is not missed.
                waiter = yield Listen(wakeup_key(schema, turn.chat_id), self._bind())
                continue
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise ChatBusyError(
                    f"Another turn kept this chat busy for {timeout:g} s (turn_wait_timeout); "
                    "try again later."
                )
            yield WaitForWakeup(waiter, delay if remaining is None else min(delay, remaining))
            delay = min(delay * 2, _MAX_WAIT)
        turn.memory.stale_lease = None
        if turn.lease is not None and self.strategy.commits_steps:
            self._heartbeat = yield StartHeartbeat(
                schema, turn.lease, config.turn_poll_interval, self._bind(), self._async_bind
            )
        intervals = []
        if turn.keep_partial:
            intervals.append(config.partial_output_interval)
        if schema.event_cls is not None:
            intervals.append(config.stream_event_interval)
        self._flush_interval = min(intervals) if intervals else None
        if message is not None:
            yield from self._fire("end_message", message)

    def _begin_step(self, message: Message | None) -> Flow[str]:
        turn, strategy, schema = self.turn, self.strategy, self.turn.schema
        lease = turn.lease
        with_placeholder = message is not None and not self._streamed
        refused: list[BaseException] = []
        found: dict[str, Any] = {}

        def begin(session: Session, kept: list[Any]) -> str:
            outcome = Claim.CLAIMED
            if lease is not None:
                outcome = claim(session, schema, lease, turn.record)
                if outcome == Claim.BUSY:
                    return outcome
                if outcome == Claim.TAKEN_OVER:
                    settle(session, schema, turn.chat_id, self._buffer)
            history = turn.memory.history
            found["history"] = history.current(session, schema, turn.chat_id, self.storage)
            if schema.approval and history.parked:  # the reading found a round parked
                verdict = _approvals.at_begin(
                    session, schema, turn.chat_id, asking=message is not None,
                    deny=self.on_new_question == "deny", events=self._buffer,
                )  # fmt: skip
                if verdict.error is not None:  # refused: give the chat back, keep resets
                    if lease is not None:
                        release(session, schema, lease, turn.record)
                    found["refused"] = verdict.error
                    return _REFUSED
                found["resume"] = verdict.resume
                if verdict.resume is None:  # closed with denials: read what is sent now
                    found["history"] = history.current(session, schema, turn.chat_id, self.storage)
            self._emit("turn.started")
            if message is not None:
                found["row"] = strategy.persist_user_message(session, turn, message)
                kept.append(found["row"])
                self._created(found["row"], message)
                if with_placeholder:
                    try:
                        placeholder = strategy.persist_new_message(session, turn)
                    except Exception as exc:
                        refused.append(exc)
                        raise
                    kept.append(placeholder)
                    turn.placeholder = placeholder
                    self._created(placeholder)
            return outcome

        try:
            outcome = yield from self._run(begin, what="save the user message")
        except Exception:
            if not refused:  # the user message itself failed (nothing was committed)
                raise
            # A table that refuses the empty placeholder: save the user message alone, as the
            # reference flow does; the placeholder's own step then raises.
            turn.placeholder = None
            with_placeholder = False
            outcome = yield from self._run(begin, what="save the user message")
        if outcome == Claim.BUSY:
            if lease is not None:
                lease.held = False
            return outcome
        if outcome == _REFUSED:
            self._released()
            raise found["refused"]
        messages, mirror = found["history"]
        resume: _approvals.Resume | None = found.get("resume")
        if resume is not None:
            # The parked reply and any results it has are not in the (valid) history yet;
            # the mirror would not know them, so this turn keeps none.
            messages, mirror = [*messages, resume.message, *resume.answered], None
            self._resume = resume.round
        self.use_history(messages, mirror)
        if message is not None:
            self._note(found["row"], message)
            self.messages.append(message)
        return outcome

    def _async_bind(self) -> AsyncEngine | None:
        """The async engine behind the async session (for the heartbeat), if any."""
        if self._async_session is None:
            return None
        bind = self._bind()
        return AsyncEngine(bind) if getattr(bind.dialect, "is_async", False) else None

    def _keep_partial(self) -> bool:
        setting = getattr(self.turn.record, "keep_partial_output", None)
        if isinstance(setting, bool):
            return setting
        strategy_setting = getattr(self.strategy, "keep_partial_output", None)
        if isinstance(strategy_setting, bool):
            return strategy_setting
        return self.config.keep_partial_output

    def _stop_heartbeat(self) -> None:
        heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None:
            heartbeat.stop()

    def _released(self) -> None:
        """The lease was released (committed): wake this process's waiters at once."""
        lease = self.turn.lease
        if lease is not None:
            lease.held = False
            hub.notify(wakeup_key(self.turn.schema, self.turn.chat_id))

    def _check_supported(self) -> None:
        """Also refuse tool approval on a tool-call table without its columns (before any
        row is written)."""
        super()._check_supported()
        if self.turn.schema.approval:
            return
        marked = any(getattr(tool, "requires_approval", False) for tool in self.tools.values())
        if marked or self.approval_policy:
            raise ConfigurationError(
                f"{self.turn.schema.tool_call_cls.__name__} has no tool-approval columns "
                "(approval, approval_arguments_hash, approval_decided_by, approval_decided_at, "
                "approval_reason), so calls cannot wait for a decision: add them (`sa-llm "
                "upgrade` writes the migration)."
            )

    def _park(self, parked: ParkedRound) -> Flow[None]:
        """Mark the calls that wait and release the chat, in one transaction."""
        turn, schema = self.turn, self.turn.schema
        lease = turn.lease
        self._stop_heartbeat()
        self._forget()  # the history leaves the parked round out until it is answered
        waiting = {
            turn.tool_call_rows[call_id]: decision.arguments_hash or ""
            for call_id, decision in parked.decisions.items()
        }

        def park(session: Session, kept: list[Any]) -> None:
            _approvals.mark_pending(session, schema, waiting)
            if (
                lease is not None
                and lease.held
                and not release(session, schema, lease, turn.record)
            ):
                raise _LeaseGone
            self._emit("turn.ended", outcome="awaiting_approval", tool_calls=list(parked.decisions))

        try:
            yield from self._run(park, what="park the tool calls")
        except _LeaseGone:
            raise TurnLeaseLostError(
                "This turn's lease on the chat expired and another turn took the chat over; "
                "its tool calls were not parked."
            ) from None
        self._released()

    def _attempt_failed(
        self, error: ProviderError, partial: Message | None, to: ModelInfo
    ) -> Flow[None]:
        """Record the failed attempt (its own row, ``failed``) and reference the fallback's
        registry row in the replies that follow, in one step."""
        turn, strategy, schema = self.turn, self.strategy, self.turn.schema
        row, config = turn.placeholder, self.config
        failed_model = self.model_id

        def record(session: Session, kept: list[Any]) -> Any:
            existed = row is not None and instance_state(row).key is not None
            written = strategy.persist_failed_attempt(session, turn, row, partial, error)
            if written is not None and instance_state(written).key is not None:
                kept.append(written)
                pk = _pk(written)
                if not existed:
                    self._emit("message.created", pk, role="assistant", status="failed")
                self._emit(
                    "message.status", pk, status="failed", content=written.content,
                    model=failed_model, error=_describe(error),
                )  # fmt: skip
            if schema.model_cls is not None:
                assumed = bool(to.metadata.get("assumed"))
                model_row = resolve_model_row(
                    session, schema.model_cls, to.id, to.provider, assumed, config
                )
                turn.model_ref = _pk(model_row)
            else:
                turn.model_ref = to.id
            turn.model_name = to.id
            return written

        yield from self._run(record, what="record the failed attempt")
        turn.placeholder = None

    # -- flow hooks --

    def _reply_started(self) -> Flow[None]:
        turn, strategy = self.turn, self.strategy
        if turn.placeholder is None:  # the begin step writes a non-streamed reply's own

            def start(session: Session) -> Any:
                row = strategy.persist_new_message(session, turn)
                if instance_state(row).key is not None:  # SaveOnCompletion writes none
                    self._created(row)
                return row

            turn.placeholder = yield from self._write(start, "write the reply's placeholder")
        self._flushed = 0
        if self._flush_interval is not None:
            self._next_flush = time.monotonic() + self._flush_interval
        yield from self._fire("new_message")

    def _reply_progress(self, accumulator: Accumulator) -> Flow[None]:
        """Flush the reply so far to its row (``keep_partial_output``), at most every
        ``partial_output_interval`` seconds; the same short transaction reads the cancel flag."""
        interval = self._flush_interval
        if interval is None or time.monotonic() < self._next_flush:
            return
        self._next_flush = time.monotonic() + interval
        turn, strategy, schema = self.turn, self.strategy, self.turn.schema
        row = turn.placeholder
        if row is None or instance_state(row).key is None:
            return
        partial = accumulator.partial()
        lease = turn.lease
        text = partial.text or ""
        fresh, offset = text[self._flushed :], self._flushed

        def flush(session: Session, kept: list[Any]) -> str | None:
            if turn.keep_partial:
                kept.append(strategy.persist_partial_output(session, turn, row, partial))
            if fresh:
                self._emit("message.delta", _pk(row), text=fresh, offset=offset)
            if lease is None:
                return None
            state = lease_state(session, schema, turn.chat_id)
            if state.token != lease.token:
                return "lost"
            return "cancelled" if state.cancel_requested_at is not None else None

        if not turn.keep_partial and not fresh and lease is None:
            return
        found = yield from self._run(flush, what="write the partial reply")
        self._flushed = len(text)
        if found == "lost":
            raise TurnLeaseLostError(
                "This turn's lease on the chat expired and another turn took the chat over."
            )
        if found == "cancelled":
            raise TurnCancelledError("The turn was cancelled (chat.cancel()).")

    def _reply_completed(self, message: Message) -> Flow[None]:
        turn, strategy, schema = self.turn, self.strategy, self.turn.schema
        row = turn.placeholder
        if row is None:  # a strategy that skipped the placeholder, or a hook that cleared it
            row = strategy.new_row(turn, message.role)
        yield from self._store_files_of(message)
        lease = turn.lease
        # The turn's last reply releases the lease in its own transaction: no commit of its own.
        ends = lease is not None and lease.held and message.role == "assistant"
        ends = ends and not message.tool_calls
        if ends:
            self._stop_heartbeat()
        attempts = self._closed_attempts() if schema.usage_cls is not None else []

        def complete(session: Session, kept: list[Any]) -> Any:
            done = strategy.persist_message_completion(session, turn, row, message)
            kept.append(done)
            if attempts:
                strategy.persist_attempts(session, turn, _pk(done), attempts)
            if ends and lease is not None and not release(session, schema, lease, turn.record):
                raise _LeaseGone
            if schema.event_cls is not None:
                pk = _pk(done)
                _events.forget_deltas(session, schema, turn.chat_id, pk)
                self._emit("message.completed", pk, **_completed(done, message))
                if ends:
                    self._emit("turn.ended", outcome="complete")
            return done

        try:
            row = yield from self._run(complete, what="write the reply", reply=message)
        except _LeaseGone:
            raise TurnLeaseLostError(
                "This turn's lease on the chat expired and another turn took the chat over; "
                "the reply was not written (it is attached to this error).",
                reply=message,
                step="write the reply",
            ) from None
        if attempts:
            self._ledgered()
        if ends:
            self._released()
        self._note(row, message)
        turn.placeholder = None
        self.messages.append(message)

    def _tool_result_started(self, call: ToolCall) -> Flow[None]:
        turn, strategy = self.turn, self.strategy
        streaming, turn.streaming = turn.streaming, False

        def start(session: Session) -> Any:
            row = strategy.persist_new_message(session, turn)
            if instance_state(row).key is not None:
                self._emit(
                    "message.created", _pk(row), role="tool", status=getattr(row, "status", None),
                    tool_call_id=call.id, name=call.name,
                )  # fmt: skip
            return row

        turn.placeholder = yield from self._write(start, "write the tool result's placeholder")
        turn.streaming = streaming

    def _add_tool_result(self, message: Message, call: ToolCall) -> Flow[None]:
        yield from self._reply_completed(message)

    def _reply_flow(self, on_chunk: ChunkCallback | None, stream: bool) -> Flow[Message]:
        try:
            reply = yield from super()._reply_flow(on_chunk, stream)
        except GeneratorExit:
            # The flow is being closed, not failed: it may not yield again. Drivers throw
            # StreamAbandoned first when they want the clean-up to run.
            self._stop_heartbeat()
            self._forget()
            raise
        except BaseException as exc:
            yield from self._clean_up(exc)
            raise
        lease = self.turn.lease
        if lease is not None and lease.held:  # a tool halted the turn: release on its own
            self._stop_heartbeat()

            def finish(session: Session, kept: list[Any]) -> bool:
                self._emit("turn.ended", outcome="complete")
                return release(session, self.turn.schema, lease, self.turn.record)

            yield from self._run(finish, what="release the chat")
            self._released()
        self._remember()
        return reply

    def _clean_up(self, error: BaseException) -> Flow[None]:
        """After a turn that did not complete: settle its rows and release the chat."""
        turn, strategy, schema = self.turn, self.strategy, self.turn.schema
        self._stop_heartbeat()
        self._forget()
        accumulator, self._accumulator = self._accumulator, None
        if isinstance(error, TurnLeaseLostError):
            return  # another turn holds the chat and settled this one's rows
        turn.outcome = _outcome(error)
        turn.partial = accumulator.partial() if accumulator is not None else None
        if isinstance(error, TurnCancelledError) and error.partial is None:
            error.partial = turn.partial
        lease = turn.lease

        placeholder = turn.placeholder
        attempts = self._closed_attempts() if schema.usage_cls is not None else []

        def cleanup(session: Session) -> None:
            def work() -> None:
                deleted = _deleted_messages(session, schema) if schema.event_cls else None
                try:
                    strategy.cleanup_failed_turn(session, turn)
                finally:
                    if deleted is not None:
                        deleted.close()
                if attempts:
                    kept = placeholder is not None and not instance_state(placeholder).was_deleted
                    strategy.persist_attempts(
                        session, turn, _pk(placeholder) if kept else None, attempts
                    )
                if lease is not None and lease.held:
                    release(session, schema, lease, turn.record)
                if deleted is None:
                    return
                buffer = _events.EventBuffer()
                for pk in deleted.keys:
                    buffer.add("message.deleted", pk)
                if placeholder is not None and not instance_state(placeholder).was_deleted:
                    state = instance_state(placeholder)
                    if state.key is not None:
                        buffer.add(
                            "message.status", state.key[1][0],
                            status=getattr(placeholder, "status", None),
                            content=placeholder.content,
                        )  # fmt: skip
                buffer.add("turn.ended", outcome=turn.outcome, error=_describe(error))
                _events.write(session, schema, turn.chat_id, buffer.items)

            strategy.run_cleanup(session, work)
            show_messages(turn.record, schema.messages_attr, ())

        try:
            yield self._step(DbStep(cleanup, self._session, self._async_session), "clean up")
        except Exception:
            # The original error matters more; the clean-up failure is logged, not raised.
            # The next turn of this row instance takes the lease over at once.
            logger.exception("Clean-up after a failed turn failed")
            if lease is not None and lease.held:
                turn.memory.stale_lease = lease.token
        else:
            if attempts:
                self._ledgered()
            if lease is not None and lease.held:
                self._released()
            if schema.event_cls is not None:
                hub.notify(_events.events_key(schema, turn.chat_id))
        turn.placeholder = None


def _pk(row: Any) -> Any:
    """A written row's primary key (its identity: readable after the commit without I/O)."""
    state = instance_state(row)
    return state.key[1][0] if state.key is not None else None


def _completed(row: Any, message: Message) -> dict[str, Any]:
    """The data of a ``message.completed`` event: what a viewer shows of the final row."""
    data: dict[str, Any] = {
        "role": message.role,
        "status": getattr(row, "status", None) or "complete",
        "content": message.text,
    }
    if message.thinking is not None and message.thinking.text:
        data["thinking"] = message.thinking.text
    if message.tool_calls:
        data["tool_calls"] = [
            {"id": call.id, "name": call.name, "arguments": dict(call.arguments)}
            for call in message.tool_calls
        ]
    if message.tool_call_id:
        data["tool_call_id"] = message.tool_call_id
    if message.tokens is not None:
        tokens = message.tokens
        data["tokens"] = {"input": tokens.input, "output": tokens.output}
    return data


def _describe(error: BaseException) -> str:
    """What a viewer is told about the error that ended a turn (no traceback, no secrets:
    sa_llm's own messages are redacted)."""
    message = getattr(error, "message", None) or str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


class _DeletedMessages:
    """Collects the keys of the message rows a step deletes (a clean-up hook may delete any)."""

    def __init__(self, session: Session, message_cls: type[Any]) -> None:
        from sqlalchemy import event

        self.keys: list[Any] = []
        self._session = session
        self._message_cls = message_cls
        self._event = event
        event.listen(session, "after_flush", self._collect)

    def _collect(self, session: Session, context: Any) -> None:
        for row in session.deleted:
            if isinstance(row, self._message_cls):
                key = instance_state(row).key
                if key is not None:
                    self.keys.append(key[1][0])

    def close(self) -> None:
        self._event.remove(self._session, "after_flush", self._collect)


def _deleted_messages(session: Session, schema: Any) -> _DeletedMessages:
    return _DeletedMessages(session, schema.message_cls)


def _outcome(error: BaseException) -> str:
    """The status a turn that ended with ``error`` leaves on its partial reply."""
    if isinstance(error, TurnCancelledError):
        return "cancelled"
    if isinstance(error, Exception) and not isinstance(error, StreamAbandoned):
        return "failed"
    return "interrupted"  # the task was cancelled, the stream abandoned, the process stopping


def _retriable(error: sa_exc.DBAPIError) -> bool:
    """Whether a step that failed with ``error`` can simply run again: it did not reach its
    commit and its transaction is gone (lost connection, serialization failure, deadlock,
    SQLite's busy timeout)."""
    if commit_failed(error):
        return False
    if error.connection_invalidated:
        return True
    original = error.orig
    state = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    if state in _RETRY_SQLSTATES:
        return True
    return isinstance(error, sa_exc.OperationalError) and "database is locked" in str(original)
