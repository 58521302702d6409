"""The persistence flow: how a turn of a persisted chat becomes rows, and how failures clean up.

A turn of ``chat_record.ask(...)`` runs the plain conversation engine (:mod:`sa_llm.chat`) with
hooks that write rows at fixed points:

1. the **user message** is saved before anything is sent;
2. an **empty assistant message** (the placeholder) is created before the provider call, or on
   the first chunk when streaming, so a UI has something to stream into;
3. on success the placeholder is **filled** in one step: content (or ``content_raw``), tokens
   (input, output, cached, cache creation), thinking, the model, and the ``tool_calls`` rows;
4. each tool result gets its own placeholder, created before the tool runs and turned into a
   ``tool`` message linked to its ``tool_calls`` row;
5. on **any failure** (provider error, broken stream, timeout, cancellation) the blank placeholder
   and any incomplete tool-call round are deleted, the user message and complete rounds are kept,
   and the error is re-raised, so the chat can always continue.

Attached files (when the message class has an ``@acts_as_attachment`` class) are checked,
streamed into the configured :mod:`sa_llm.storage` and linked to their message by rows written
in the same step as the message (see :mod:`sa_llm._persisted.attachments`); rebuilding the history
re-sends them, read from storage only when a request is built.

How and when those writes are committed is a :class:`PersistenceStrategy`:

* :class:`PersistenceStrategy` (the default) commits at each step and holds no transaction or
  row lock while the provider is called, as Rails does.
* :class:`InTransactionStrategy` works inside the caller's transaction: each step runs in a
  SAVEPOINT and is flushed, and the caller commits (or rolls back) the whole turn.
* :class:`SaveOnCompletionStrategy` creates no placeholder row: the assistant message is saved
  once, complete, so apps can require non-empty content.

Bind a strategy to a session or sessionmaker with :func:`use_strategy`, or to one chat class with
``@acts_as_chat(persistence=...)``; override single hooks by subclassing::

    class AuditedStrategy(PersistenceStrategy):
        def persist_message_completion(self, session, turn, row, message):
            row = super().persist_message_completion(session, turn, row, message)
            audit_log(row)
            return row

    use_strategy(SessionLocal, AuditedStrategy())

Every database step is a plain function over a sync :class:`~sqlalchemy.orm.Session`; the async
record API runs the same functions through ``AsyncSession.run_sync``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.attributes import instance_state

from sa_llm._mapping import ChatSchema
from sa_llm._persisted import attachments as _attachments
from sa_llm._persisted import usage as _usage
from sa_llm._persisted.approvals import round_has_approvals
from sa_llm._persisted.history import HistoryCache, call_from_values
from sa_llm._persisted.lease import Lease, RepairReport, repair
from sa_llm._persisted.rowwrite import save_row
from sa_llm._persisted.steps import (
    commit_keeping,
    loaded_values,
    mark_commit_failure,
    restore,
)
from sa_llm.providers.base import FormatCache
from sa_llm.types import Content, Message, RawContent, Tokens, ToolCall

__all__ = [
    "ChatMemory",
    "InTransactionStrategy",
    "PersistenceStrategy",
    "SaveOnCompletionStrategy",
    "Turn",
    "enable_sqlite_savepoints",
    "repair_chats",
    "strategy_for",
    "use_strategy",
]

logger = logging.getLogger("sa_llm.persistence")

T = TypeVar("T")

_STRATEGY_KEY = "sa_llm.persistence_strategy"


# -- the turn -------------------------------------------------------------------------------------


@dataclass
class ChatMemory:
    """What one chat row instance remembers between its turns (never persisted).

    Attributes:
        history: the history of its last turn, reused while the rows are unchanged.
        format_cache: the wire items its last request sent, reused by the next one.
        stale_lease: the token of its last turn when that turn could not release its lease
            (the database was down): the next turn takes it over at once instead of waiting
            for it to expire.
        prices: the prices its last turn looked up, with the model and source they are of
            (each turn's chat object is new; the lookup is the same while the model is).
    """

    history: HistoryCache = field(default_factory=HistoryCache)
    stale_lease: str | None = None
    format_cache: FormatCache = field(default_factory=FormatCache)
    prices: Any = None


@dataclass
class Turn:
    """What one ``ask``/``complete`` on one chat row knows while it runs.

    Attributes:
        schema: the chat's classes and link attributes.
        record: the chat row.
        chat_id: its primary key (captured once: rows may be expired by commits).
        model_ref: what new assistant rows reference: the registry row's key, or the model
            id string in legacy mode.
        placeholder: the assistant (or tool) row being filled, if any.
        tool_call_rows: provider tool-call id -> ``tool_calls`` primary key, for this chat.
        model_name: the model id string that assistant rows reference (as a rebuild reads it).
        memory: the chat row instance's memory between turns (history cache, stale lease).
        written_calls: message key -> the ``tool_calls`` rows :meth:`PersistenceStrategy.
            persist_tool_calls` wrote for it in this turn.
        lease: the turn's lease on the chat (``None`` for schemas without the lease columns).
        streaming: whether the reply being written streams (its placeholder is ``streaming``
            rather than ``pending``).
        keep_partial: keep what streamed when the turn does not complete
            (``keep_partial_output``).
        outcome: how a turn that did not complete ended, for the clean-up: ``failed``,
            ``cancelled`` or ``interrupted``.
        partial: the reply as far as it got when the turn did not complete (text, usage).
    """

    schema: ChatSchema
    record: Any
    chat_id: Any
    model_ref: Any = None
    placeholder: Any = None
    tool_call_rows: dict[str, Any] = field(default_factory=dict)
    model_name: str | None = None
    memory: ChatMemory = field(default_factory=ChatMemory)
    written_calls: dict[Any, list[ToolCall | None]] = field(default_factory=dict)
    lease: Lease | None = None
    streaming: bool = False
    keep_partial: bool = False
    outcome: str = "failed"
    partial: Message | None = None


# -- strategies -----------------------------------------------------------------------------------


class PersistenceStrategy:
    """The default strategy: every step is committed on its own, no transaction spans a call.

    Override single hooks in a subclass; each hook does its work on ``session`` and leaves the
    commit to :meth:`run_step`.

    Args:
        keep_partial_output: keep streamed text when a turn does not complete (and flush it
            while it streams); ``None``: the ``keep_partial_output`` setting decides.
    """

    #: Whether :meth:`run_step` commits each step (so others see it at once). The turn lease is
    #: renewed by a heartbeat only then; inside the caller's transaction the row lock holds it.
    commits_steps: ClassVar[bool] = True

    def __init__(self, *, keep_partial_output: bool | None = None) -> None:
        self.keep_partial_output = keep_partial_output

    def run_step(self, session: Session, step: Callable[[], T], *, keep: Sequence[Any] = ()) -> T:
        """Run one step and make it durable (here: commit; subclasses: savepoint/flush).

        The commit expires every row in the session. The step's result (a row it wrote) and the
        rows in ``keep`` (the caller's chat) read afterwards as the step left them, without a
        SELECT: with an ``AsyncSession`` a reload would need I/O the caller cannot do there.
        On failure they read as before the step.
        """
        before = [(row, loaded_values(row)) for row in keep]
        try:
            result = step()
            try:
                commit_keeping(session, (result, *keep))
            except BaseException as exc:
                mark_commit_failure(exc)  # it may have committed: not retried blindly
                raise
        except BaseException:
            session.rollback()
            restore(before)
            raise
        return result

    def run_cleanup(self, session: Session, step: Callable[[], T]) -> T:
        """Run the failure clean-up on a session that may hold a failed transaction."""
        session.rollback()
        return self.run_step(session, step)

    # -- hooks --

    def persist_user_message(self, session: Session, turn: Turn, message: Message) -> Any:
        """Save a message the caller added (user, system, or ``add_message``)."""
        row = self.new_row(turn, message.role)
        self.assign_status(turn, row, "complete")
        self.assign_content(turn, row, message)
        return self._save_message_row(session, turn, row, message)

    def persist_new_message(self, session: Session, turn: Turn) -> Any:
        """Create the empty assistant row that the reply will fill (the placeholder).

        Its status is ``streaming`` when the reply streams (the row is written when the stream
        opens), else ``pending``.
        """
        row = self.new_row(turn, "assistant")
        row.content = ""
        self.assign_status(turn, row, "streaming" if turn.streaming else "pending")
        self.save_row(session, row)
        return row

    def persist_partial_output(
        self, session: Session, turn: Turn, row: Any, message: Message
    ) -> Any:
        """Write the reply as far as it streamed into its row (``keep_partial_output``).

        Called at most every ``partial_output_interval`` seconds while a reply streams, one
        short transaction each, never per chunk.
        """
        self.assign_content(turn, row, message)
        self.assign_status(turn, row, "streaming")
        self.save_row(session, row)
        return row

    def persist_message_completion(
        self, session: Session, turn: Turn, row: Any, message: Message
    ) -> Any:
        """Fill the placeholder with the finished message (content, tokens, model, tool calls)."""
        schema = turn.schema
        row.role = message.role
        self.assign_status(turn, row, "complete")
        self.assign_content(turn, row, message)
        self.assign_tokens(turn, row, message)
        if schema.message_model_attr is not None and message.role == "assistant":
            setattr(row, schema.message_model_attr, turn.model_ref)
        return self._save_message_row(session, turn, row, message)

    def _save_message_row(self, session: Session, turn: Turn, row: Any, message: Message) -> Any:
        """Link a tool result to its call, write the row, then its tool calls and files."""
        if message.tool_call_id:
            parent = self.find_tool_call_row(session, turn, message.tool_call_id)
            setattr(row, turn.schema.message_parent_fk, parent)
        self.save_row(session, row)
        if message.tool_calls:
            self.persist_tool_calls(session, turn, row, message.tool_calls)
        if message.attachments and turn.schema.attachment_cls is not None:
            self.persist_attachments(session, turn, row, message.attachments)
        return row

    def persist_failed_attempt(
        self,
        session: Session,
        turn: Turn,
        row: Any,
        partial: Message | None,
        error: BaseException,
    ) -> Any:
        """Record a reply attempt that failed before the turn moved on to a fallback model.

        The attempt stays visible as its own message: its placeholder (or, when none was
        written, e.g. a stream refused at its start, a new row) gets status ``failed``, the
        model that failed (``turn.model_ref``), the usage reported so far and, with
        ``keep_partial_output``, the text that streamed; the next attempt starts a new row.
        Failed rows are never sent to a provider. A message table without ``status`` cannot
        tell such a row from a reply: the placeholder is deleted instead and ``None`` returned.
        This is the hook where a usage ledger records an attempt.
        """
        schema = turn.schema
        written = row is not None and instance_state(row).key is not None
        if "status" not in schema.optional:
            identity = instance_state(row).identity if written else None
            if identity is not None:
                found = session.get(schema.message_cls, identity[0])
                if found is not None:
                    session.delete(found)
                    session.flush()
            return None
        if not written:
            row = self.new_row(turn, "assistant")
            row.content = ""
            session.add(row)
        if partial is not None:
            if turn.keep_partial and (partial.text or partial.thinking):
                self.assign_content(turn, row, partial)
            self.assign_tokens(turn, row, partial)
        self.assign_status(turn, row, "failed")
        if schema.message_model_attr is not None:
            setattr(row, schema.message_model_attr, turn.model_ref)
        session.flush()
        return row

    def persist_attachments(
        self, session: Session, turn: Turn, row: Any, attachments: Sequence[Any]
    ) -> list[Any]:
        """Create the attachment rows of a message whose files are already in storage.

        Runs in the same step as the message, so both are committed (or rolled back)
        together; files without a storage key (not stored) get no row.
        """
        return _attachments.add_rows(session, turn.schema, row.id, attachments)

    def persist_attempts(
        self, session: Session, turn: Turn, message_id: Any, attempts: Sequence[Any]
    ) -> None:
        """Write the usage ledger rows of ``attempts`` (:class:`sa_llm._attempts.Attempt`), in
        the step they belong to: the completion of the message ``message_id`` they produced,
        or the clean-up of a turn that failed (``message_id`` then ``None`` unless its partial
        reply was kept). Only called for chats with an ``@acts_as_usage`` class; override it to
        add columns of your own (a tenant, a user) to the rows."""
        _usage.write(session, turn.schema, turn.chat_id, message_id, attempts)

    def persist_tool_calls(
        self, session: Session, turn: Turn, row: Any, tool_calls: Sequence[ToolCall]
    ) -> list[Any]:
        """Create the ``tool_calls`` rows of an assistant message."""
        schema = turn.schema
        message_pk = row.id
        rows = []
        for call in tool_calls:
            call_row = schema.tool_call_cls()
            setattr(call_row, schema.tool_call_message_fk, message_pk)
            call_row.tool_call_id = call.id
            call_row.name = call.name
            call_row.arguments = dict(call.arguments)
            signature = call.extra.get("thought_signature") if call.extra else None
            if signature and hasattr(schema.tool_call_cls, "thought_signature"):
                call_row.thought_signature = signature
            session.add(call_row)
            rows.append(call_row)
        session.flush()
        for call, call_row in zip(tool_calls, rows, strict=True):
            turn.tool_call_rows[call.id] = call_row.id
        # What a rebuild will read for them, taken now: the step's commit expires these rows.
        has_signature = "thought_signature" in schema.optional_tool_call
        turn.written_calls[message_pk] = [
            call_from_values(call_row.__dict__, has_signature) for call_row in rows
        ]
        return rows

    def cleanup_failed_turn(self, session: Session, turn: Turn) -> None:
        """After a turn that did not complete: settle its placeholder, drop an incomplete
        tool-call round (complete rounds stay).

        The placeholder keeps the reply as far as it got, with the turn's ``outcome`` as its
        status (``failed`` / ``cancelled`` / ``interrupted``), when there is something to keep
        and it should be kept: always after a cancel (the user asked to stop what they saw),
        otherwise with ``keep_partial_output``. Else a blank placeholder is deleted, as the
        reference flow does.
        """
        schema = turn.schema
        M, TC = schema.message_cls, schema.tool_call_cls
        placeholder = turn.placeholder
        identity = instance_state(placeholder).identity if placeholder is not None else None
        if identity is not None:
            pk = identity[0]
            row = session.get(M, pk)
            if row is not None and not _tool_call_ids(session, turn, [pk]):
                partial = turn.partial
                keep = (turn.keep_partial or turn.outcome == "cancelled") and partial is not None
                if keep and partial is not None and (partial.text or partial.thinking):
                    self.assign_content(turn, row, partial)
                    self.assign_tokens(turn, row, partial)
                    self.assign_status(turn, row, turn.outcome)
                    session.flush()
                elif _is_blank(row) or not turn.keep_partial:
                    logger.warning("Deleting the empty %s row %s after a failure", M.__name__, pk)
                    session.delete(row)
                    session.flush()
                else:  # text flushed earlier (keep_partial_output) and nothing newer
                    self.assign_status(turn, row, turn.outcome)
                    session.flush()
        chat_fk = getattr(M, schema.message_chat_fk)
        last = session.scalars(
            select(M)
            .where(chat_fk == turn.chat_id)
            .order_by(M.created_at.desc(), M.id.desc())
            .limit(1)
        ).first()
        if last is None:
            return
        parent_fk = getattr(M, schema.message_parent_fk)
        if _tool_call_ids(session, turn, [last.id]):
            # The model asked for tools and no result was saved: the round is incomplete.
            self._delete_round(session, turn, last.id)
            return
        if last.role == "tool" and getattr(last, schema.message_parent_fk) is not None:
            parent = session.get(TC, getattr(last, schema.message_parent_fk))
            if parent is None:
                return
            call_message_id = getattr(parent, schema.tool_call_message_fk)
            call_ids = set(_tool_call_ids(session, turn, [call_message_id]))
            answered = set(session.scalars(select(parent_fk).where(parent_fk.in_(call_ids))).all())
            if call_ids != answered:
                self._delete_round(session, turn, call_message_id)

    def _delete_round(self, session: Session, turn: Turn, call_message_id: Any) -> None:
        schema = turn.schema
        M, TC = schema.message_cls, schema.tool_call_cls
        if round_has_approvals(session, schema, call_message_id):
            return  # parked for approval: its calls wait for decisions, the next turn runs them
        call_ids = _tool_call_ids(session, turn, [call_message_id])
        parent_fk = getattr(M, schema.message_parent_fk)
        results = (
            session.scalars(select(M).where(parent_fk.in_(call_ids))).all() if call_ids else []
        )
        logger.warning(
            "Deleting an incomplete tool-call round (message %s, %d result(s))",
            call_message_id,
            len(results),
        )
        for result in results:
            session.delete(result)
        session.flush()
        for call in session.scalars(select(TC).where(TC.id.in_(call_ids))).all():
            session.delete(call)
        session.flush()
        message = session.get(M, call_message_id)
        if message is not None:
            session.delete(message)
        session.flush()

    # -- helpers subclasses may use --

    def save_row(self, session: Session, row: Any) -> None:
        """Write one row now, as ``session.add(row); session.flush()`` would.

        The INSERT or UPDATE runs in Core on the session's connection, and the row is left
        persistent and clean, as after a flush; where a flush would do more than that statement
        (mapper or flush listeners, server-side defaults, a version counter, inheritance), it
        is a flush (D43).
        """
        save_row(session, row)

    def new_row(self, turn: Turn, role: str) -> Any:
        """A new, unsaved message row of this chat."""
        row = turn.schema.message_cls()
        setattr(row, turn.schema.message_chat_fk, turn.chat_id)
        row.role = role
        return row

    def assign_status(self, turn: Turn, row: Any, status: str) -> None:
        """Set the row's ``status`` (when the message table has the column)."""
        if "status" in turn.schema.optional:
            row.status = status

    def assign_content(self, turn: Turn, row: Any, message: Message) -> None:
        """Split a message's content into ``content`` / ``content_raw`` columns."""
        content = message.content
        has_raw = "content_raw" in turn.schema.optional
        if isinstance(content, RawContent):
            row.content = None
            if not has_raw:
                row.content = json.dumps(content.value)
            else:
                row.content_raw = content.value
            return
        if isinstance(content, Mapping | list):
            row.content = None if has_raw else json.dumps(content)
            if has_raw:
                row.content_raw = content
            return
        row.content = content.text if isinstance(content, Content) else content
        if has_raw:
            row.content_raw = None

    def assign_tokens(self, turn: Turn, row: Any, message: Message) -> None:
        tokens = message.tokens or Tokens()
        optional = turn.schema.optional
        row.input_tokens = tokens.input
        row.output_tokens = tokens.output
        if "cached_tokens" in optional:
            row.cached_tokens = tokens.cached
        if "cache_creation_tokens" in optional:
            row.cache_creation_tokens = tokens.cache_creation
        thinking = message.thinking
        if "thinking_text" in optional:
            row.thinking_text = thinking.text if thinking else None
        if "thinking_signature" in optional:
            row.thinking_signature = thinking.signature if thinking else None
        if "thinking_tokens" in optional:
            row.thinking_tokens = tokens.reasoning
        if "thinking_raw" in optional:
            # Every block as the provider sent it (signatures, reasoning items), for replay.
            row.thinking_raw = dict(thinking.extra) if thinking and thinking.extra else None

    def find_tool_call_row(self, session: Session, turn: Turn, provider_id: str) -> Any:
        """The ``tool_calls`` key of this chat's call with this provider id, or ``None``."""
        if provider_id in turn.tool_call_rows:
            return turn.tool_call_rows[provider_id]
        schema = turn.schema
        M, TC = schema.message_cls, schema.tool_call_cls
        found = session.scalars(
            select(TC.id)
            .join(M, getattr(TC, schema.tool_call_message_fk) == M.id)
            .where(getattr(M, schema.message_chat_fk) == turn.chat_id)
            .where(TC.tool_call_id == provider_id)
            .order_by(TC.id.desc())
            .limit(1)
        ).first()
        if found is not None:
            turn.tool_call_rows[provider_id] = found
        return found


class InTransactionStrategy(PersistenceStrategy):
    """Work inside the caller's transaction: each step in a SAVEPOINT, flushed, never committed.

    The caller commits (or rolls back) the whole turn. The transaction stays open during the
    provider call, which is the point: nothing of the turn is visible until the caller commits.
    The chat row stays locked meanwhile (PostgreSQL; SQLite: the database), so a second turn
    waits for the caller's commit, and a cancel from elsewhere waits too.
    """

    commits_steps = False

    def run_step(self, session: Session, step: Callable[[], T], *, keep: Sequence[Any] = ()) -> T:
        with session.begin_nested():
            result = step()
        session.flush()  # no commit, so nothing expires: ``keep`` needs no care
        return result

    def run_cleanup(self, session: Session, step: Callable[[], T]) -> T:
        if not session.is_active:
            # The failed step broke the outer transaction; only the caller can end it.
            logger.warning("Skipping clean-up: the session's transaction is no longer active")
            return None  # type: ignore[return-value]
        return self.run_step(session, step)


class SaveOnCompletionStrategy(PersistenceStrategy):
    """No placeholder row: the assistant message is saved once, complete.

    Use it when your message model validates that content is present. The trade-off: there is
    no row to stream into while the reply arrives (the chunk callback still sees every chunk).
    """

    def persist_new_message(self, session: Session, turn: Turn) -> Any:
        row = self.new_row(turn, "assistant")
        return row  # not added: nothing is written until completion

    def persist_failed_attempt(
        self,
        session: Session,
        turn: Turn,
        row: Any,
        partial: Message | None,
        error: BaseException,
    ) -> Any:
        return None  # only complete replies are written


def enable_sqlite_savepoints(engine: Any) -> None:
    """Make SAVEPOINTs (and so :class:`InTransactionStrategy`) work on SQLite.

    The ``sqlite3`` driver starts transactions lazily and commits on the release of an outer
    SAVEPOINT; this is SQLAlchemy's documented fix: the driver stops managing transactions and
    SQLAlchemy emits ``BEGIN`` itself. Works for sync engines and ``AsyncEngine`` (aiosqlite).
    """
    sync_engine = getattr(engine, "sync_engine", engine)
    if sync_engine.dialect.name != "sqlite":
        return

    @event.listens_for(sync_engine, "connect")
    def _no_driver_transactions(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(sync_engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")


# -- repair ---------------------------------------------------------------------------------------


def repair_chats(session: Session, chat_cls: type[Any], chat_ids: Any = None) -> RepairReport:
    """Put right what turns that died left in a whole database (or in the chats ``chat_ids``).

    A turn that takes over a dead turn's chat does this for that chat; this does it for every
    chat at once (after an outage, before a deploy): unfinished placeholders are deleted when
    blank, kept as ``interrupted`` when they hold text, and tool calls without a result get one
    saying the turn was interrupted. Chats a live turn holds are skipped. Also ``sa-llm chats
    repair``. Commits once per chat.

    Returns:
        The chats repaired, the rows changed and the chats skipped as busy.
    """
    from sa_llm._mapping import chat_schema

    return repair(session, chat_schema(chat_cls), chat_ids)


# -- binding strategies ---------------------------------------------------------------------------

_DEFAULT_STRATEGY = PersistenceStrategy()


def use_strategy(
    target: Session | AsyncSession | sessionmaker[Any] | Any, strategy: PersistenceStrategy
) -> None:
    """Make ``strategy`` the one for ``target``: a session, an async session, or a factory.

    A sessionmaker (sync or async) passes it to every session it makes afterwards.
    """
    if isinstance(target, AsyncSession):
        target.sync_session.info[_STRATEGY_KEY] = strategy
        return
    if isinstance(target, Session):
        target.info[_STRATEGY_KEY] = strategy
        return
    kw = getattr(target, "kw", None)
    if isinstance(kw, dict):  # sessionmaker / async_sessionmaker
        info = dict(kw.get("info") or {})
        info[_STRATEGY_KEY] = strategy
        kw["info"] = info
        return
    raise TypeError(f"use_strategy() takes a Session, AsyncSession or sessionmaker, not {target!r}")


def strategy_for(session: Session, chat_cls: type[Any]) -> PersistenceStrategy:
    """The strategy in force: the chat class's, else the session's, else the default."""
    options = getattr(chat_cls, "__sa_llm_chat__", None)
    if options is not None and options.persistence is not None:
        return options.persistence  # type: ignore[no-any-return]
    found = session.info.get(_STRATEGY_KEY)
    return found if isinstance(found, PersistenceStrategy) else _DEFAULT_STRATEGY


def _is_blank(row: Any) -> bool:
    return not row.content and getattr(row, "content_raw", None) in (None, "", [], {})


def _tool_call_ids(session: Session, turn: Turn, message_ids: Sequence[Any]) -> list[Any]:
    schema = turn.schema
    TC = schema.tool_call_cls
    fk = getattr(TC, schema.tool_call_message_fk)
    return list(session.scalars(select(TC.id).where(fk.in_(list(message_ids)))).all())
