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
in the same step as the message (see :mod:`sa_llm._attachments`); rebuilding the history
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
import weakref
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar

from sqlalchemy import bindparam, event, func, null, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.attributes import instance_state, set_committed_value

from sa_llm import _attachments
from sa_llm._flow import Effect, Flow, Scope
from sa_llm._mapping import ChatSchema
from sa_llm.chat import Chat
from sa_llm.content import AttachmentSource, ensure_model_accepts
from sa_llm.errors import ConfigurationError
from sa_llm.providers._transport import Download
from sa_llm.storage import Storage
from sa_llm.types import Content, Message, RawContent, Thinking, Tokens, ToolCall

__all__ = [
    "DbStep",
    "InTransactionStrategy",
    "PersistedChat",
    "PersistenceStrategy",
    "SaveOnCompletionStrategy",
    "Turn",
    "enable_sqlite_savepoints",
    "load_history",
    "strategy_for",
    "use_strategy",
]

logger = logging.getLogger("sa_llm.persistence")

T = TypeVar("T")

_STRATEGY_KEY = "sa_llm.persistence_strategy"


# -- the turn -------------------------------------------------------------------------------------


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
        history: the chat row instance's history cache (see :class:`HistoryCache`).
        written_calls: message key -> the ``tool_calls`` rows :meth:`PersistenceStrategy.
            persist_tool_calls` wrote for it in this turn.
    """

    schema: ChatSchema
    record: Any
    chat_id: Any
    model_ref: Any = None
    placeholder: Any = None
    tool_call_rows: dict[str, Any] = field(default_factory=dict)
    model_name: str | None = None
    history: HistoryCache | None = None
    written_calls: dict[Any, list[ToolCall | None]] = field(default_factory=dict)


@dataclass
class HistoryCache:
    """What one chat row instance remembers of its history between turns (never persisted).

    A turn rebuilds the conversation from the database (D9); when the rows have not changed
    since the last turn on this instance, the messages it already holds are reused, checked by
    one aggregate ``SELECT count(*), max(updated_at)`` of the chat's messages instead of reading
    them all again. ``messages`` are exactly what a rebuild would read (built from the written
    rows' values, not from the provider's reply), so a reused history sends the same request as
    a rebuilt one.

    Attributes:
        messages: the history as a rebuild reads it, or ``None`` (nothing to reuse).
        rows: how many message rows it mirrors.
        last_updated: the newest ``updated_at`` among them (naive UTC).
        version: the turn gate's count it is valid for (another turn in this process clears it).
        chat_id: the chat it belongs to.
    """

    messages: tuple[Message, ...] | None = None
    rows: int = 0
    last_updated: Any = None
    version: int = -1
    chat_id: Any = None

    def clear(self) -> None:
        """Forget the history: the next turn reads it from the database."""
        self.messages = None


# -- strategies -----------------------------------------------------------------------------------


class PersistenceStrategy:
    """The default strategy: every step is committed on its own, no transaction spans a call.

    Override single hooks in a subclass; each hook does its work on ``session`` and leaves the
    commit to :meth:`run_step`.
    """

    def run_step(self, session: Session, step: Callable[[], T], *, keep: Sequence[Any] = ()) -> T:
        """Run one step and make it durable (here: commit; subclasses: savepoint/flush).

        The commit expires every row in the session. The step's result (a row it wrote) and the
        rows in ``keep`` (the caller's chat) read afterwards as the step left them, without a
        SELECT: with an ``AsyncSession`` a reload would need I/O the caller cannot do there.
        On failure they read as before the step.
        """
        before = [(row, _loaded_values(row)) for row in keep]
        try:
            result = step()
            after = [(row, _loaded_values(row)) for row in (result, *keep)]
            session.commit()
        except BaseException:
            session.rollback()
            _restore(before)
            raise
        _restore(after)
        return result

    def run_cleanup(self, session: Session, step: Callable[[], T]) -> T:
        """Run the failure clean-up on a session that may hold a failed transaction."""
        session.rollback()
        return self.run_step(session, step)

    # -- hooks --

    def persist_user_message(self, session: Session, turn: Turn, message: Message) -> Any:
        """Save a message the caller added (user, system, or ``add_message``)."""
        row = self.new_row(turn, message.role)
        self.assign_content(turn, row, message)
        if message.tool_call_id:
            parent = self.find_tool_call_row(session, turn, message.tool_call_id)
            setattr(row, turn.schema.message_parent_fk, parent)
        session.add(row)
        session.flush()
        if message.tool_calls:
            self.persist_tool_calls(session, turn, row, message.tool_calls)
        if message.attachments and turn.schema.attachment_cls is not None:
            self.persist_attachments(session, turn, row, message.attachments)
        return row

    def persist_new_message(self, session: Session, turn: Turn) -> Any:
        """Create the empty assistant row that the reply will fill (the placeholder)."""
        row = self.new_row(turn, "assistant")
        row.content = ""
        session.add(row)
        session.flush()
        return row

    def persist_message_completion(
        self, session: Session, turn: Turn, row: Any, message: Message
    ) -> Any:
        """Fill the placeholder with the finished message (content, tokens, model, tool calls)."""
        schema = turn.schema
        row.role = message.role
        self.assign_content(turn, row, message)
        self.assign_tokens(turn, row, message)
        if schema.message_model_attr is not None and message.role == "assistant":
            setattr(row, schema.message_model_attr, turn.model_ref)
        if message.tool_call_id:
            parent = self.find_tool_call_row(session, turn, message.tool_call_id)
            setattr(row, schema.message_parent_fk, parent)
        session.add(row)
        session.flush()
        if message.tool_calls:
            self.persist_tool_calls(session, turn, row, message.tool_calls)
        if message.attachments and turn.schema.attachment_cls is not None:
            self.persist_attachments(session, turn, row, message.attachments)
        return row

    def persist_attachments(
        self, session: Session, turn: Turn, row: Any, attachments: Sequence[Any]
    ) -> list[Any]:
        """Create the attachment rows of a message whose files are already in storage.

        Runs in the same step as the message, so both are committed (or rolled back)
        together; files without a storage key (not stored) get no row.
        """
        return _attachments.add_rows(session, turn.schema, row.id, attachments)

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
            _call_from_values(call_row.__dict__, has_signature) for call_row in rows
        ]
        return rows

    def cleanup_failed_turn(self, session: Session, turn: Turn) -> None:
        """Delete the blank placeholder and any incomplete tool-call round (complete ones stay)."""
        schema = turn.schema
        M, TC = schema.message_cls, schema.tool_call_cls
        placeholder = turn.placeholder
        identity = instance_state(placeholder).identity if placeholder is not None else None
        if identity is not None:
            pk = identity[0]
            row = session.get(M, pk)
            if row is not None and _is_blank(row) and not _tool_call_ids(session, turn, [pk]):
                logger.warning("Deleting the empty %s row %s after a failure", M.__name__, pk)
                session.delete(row)
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

    def new_row(self, turn: Turn, role: str) -> Any:
        """A new, unsaved message row of this chat."""
        row = turn.schema.message_cls()
        setattr(row, turn.schema.message_chat_fk, turn.chat_id)
        row.role = role
        return row

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
    """

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


# -- the DB effect --------------------------------------------------------------------------------


class DbStep(Effect[T]):
    """Effect: run ``fn(session)``; the async driver runs it through ``run_sync``."""

    __slots__ = ("async_session", "fn", "session")

    def __init__(
        self, fn: Callable[[Session], T], session: Session, async_session: AsyncSession | None
    ) -> None:
        self.fn = fn
        self.session = session
        self.async_session = async_session

    def run(self, scope: Scope) -> T:
        return self.fn(self.session)

    async def arun(self, scope: Scope) -> T:
        if self.async_session is None:
            return self.fn(self.session)
        return await self.async_session.run_sync(self.fn)


# -- the persisted chat ---------------------------------------------------------------------------


class _Mirror:
    """The history as the database holds it, kept up to date by the turn's own writes."""

    __slots__ = ("last_updated", "messages", "noted", "rows")

    def __init__(self, history: list[Message], rows: int, last_updated: Any) -> None:
        self.messages: list[Message] | None = list(history)
        self.rows = rows
        self.last_updated = last_updated
        self.noted: set[Any] = set()

    def add(self, mirrored: tuple[Message, Any] | None, key: Any) -> None:
        """A row this turn wrote, as a rebuild reads it (``None``: unknown, stop mirroring)."""
        if self.messages is None:
            return
        if mirrored is None or key in self.noted:
            self.messages = None
            return
        message, updated_at = mirrored
        self.noted.add(key)
        self.rows += 1
        if message.role == "system":  # a rebuild puts system messages first
            self.messages.insert(sum(1 for m in self.messages if m.role == "system"), message)
        else:
            self.messages.append(message)
        if self.last_updated is None or updated_at > self.last_updated:
            self.last_updated = updated_at


class PersistedChat(Chat):
    """The in-memory chat of a chat row, whose flow hooks write rows through a strategy.

    Built by ``chat_record.to_llm()``; use the record's methods rather than this class.
    """

    turn: Turn
    strategy: PersistenceStrategy
    storage: Storage | None = None
    _session: Session
    _async_session: AsyncSession | None = None
    _mirror: _Mirror | None = None
    # The history came from the cache unchecked: the user message's step checks it (asks only).
    _unchecked: bool = False
    _streamed: bool = True  # whether the reply of this ask streams (set by _ask_flow)
    _placeholder_ready: bool = False  # the user message's step wrote the reply's placeholder

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
        self.strategy = strategy
        self._session = session
        self._async_session = async_session
        self.storage = storage

    @staticmethod
    def turn_key_of(chat_class: type[Any], chat_id: Any) -> Hashable:
        """The turn-gate key of a chat row: its class and primary key, whatever the session."""
        return ("sa_llm.chat", chat_class, chat_id)

    def _turn_key(self) -> Hashable:
        return self.turn_key_of(type(self.turn.record), self.turn.chat_id)

    def _history_changed(self) -> Flow[None]:
        """Another session's turn ended on this chat while this one waited: reload the rows."""
        schema, chat_id, storage = self.turn.schema, self.turn.chat_id, self.storage
        history = yield self._step(lambda s: _read_history(s, schema, chat_id, storage))
        self.use_history(history)

    # -- the history cache (see HistoryCache) --

    def use_history(self, history: _History | list[Message]) -> None:
        """Start from ``history``: rows just read (``_History``) or reused from the cache."""
        cache = self.turn.history
        self._unchecked = False
        if isinstance(history, list):  # reused: the cache describes these rows
            self.messages = history
            if cache is not None:
                self._mirror = _Mirror(history, cache.rows, cache.last_updated)
            return
        self.messages = history.messages
        self._mirror = None
        if cache is None:
            return
        cache.clear()
        if not history.has_files and _queries(self.turn.schema).fingerprint is not None:
            self._mirror = _Mirror(history.messages, history.rows, history.last_updated)
            self._remember(self._history_version)

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
        mirror.add(_mirror(self.turn, row, message), state.key)

    def _remember(self, version: int | None) -> None:
        """Hand the mirrored history to the row instance's cache, valid at gate ``version``."""
        cache, mirror = self.turn.history, self._mirror
        if cache is None:
            return
        if mirror is None or mirror.messages is None or version is None:
            cache.clear()
            return
        cache.messages = tuple(mirror.messages)
        cache.rows = mirror.rows
        cache.last_updated = mirror.last_updated
        cache.version = version
        cache.chat_id = self.turn.chat_id

    def _forget(self) -> None:
        self._mirror = None
        if self.turn.history is not None:
            self.turn.history.clear()

    def _step(self, hook: Callable[[Session], T]) -> DbStep[T]:
        strategy, record = self.strategy, self.turn.record

        def step(session: Session) -> T:
            # Our commits must not expire the caller's chat row (see run_step).
            return strategy.run_step(session, lambda: hook(session), keep=(record,))

        return DbStep(step, self._session, self._async_session)

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
        row = yield self._step(lambda s: strategy.persist_user_message(s, turn, message))
        self.messages.append(message)
        return row

    def create_user_message_flow(
        self,
        content: str | Content | RawContent | None,
        attachments: AttachmentSource | Sequence[AttachmentSource] | None,
    ) -> Flow[Any]:
        """Save a user message (files checked and stored) without calling the model."""
        message = yield from self.user_message_flow(content, attachments)
        turn, strategy = self.turn, self.strategy
        self._forget()  # a message outside a turn: the next turn reads the rows
        row = yield self._step(lambda s: strategy.persist_user_message(s, turn, message))
        self.messages.append(message)
        return row

    # -- flow hooks --

    def _ask_flow(
        self,
        content: str | Content | RawContent | None,
        attachments: AttachmentSource | Sequence[AttachmentSource] | None,
        on_chunk: Any,
        stream: bool,
    ) -> Flow[Message]:
        # Files are checked and stored first; the engine's own turn (feature checks, the turn
        # gate, the user message row, the reply) then runs on the prepared content.
        message = yield from self.user_message_flow(content, attachments)
        self._streamed = stream
        return (yield from super()._ask_flow(message.content, None, on_chunk, stream))

    def _add_user_message(self, message: Message) -> Flow[None]:
        """Save the user message; for a non-streamed reply, its placeholder in the same step.

        Both rows are written before the provider call either way; one transaction instead of
        two saves a commit per turn. The history check of a turn that took its history from
        the cache runs first, in the same transaction (``_unchecked``). Should the combined step
        fail (a table that refuses the empty placeholder), the user message is saved alone, as
        it would have been, and the placeholder's own step then raises.
        """
        turn, strategy, record = self.turn, self.strategy, self.turn.record
        mirror = self._mirror
        check = self._unchecked and mirror is not None
        expected = (mirror.rows, mirror.last_updated) if mirror is not None else None
        self._unchecked = False
        with_placeholder = not self._streamed
        changed: list[bool] = []
        refused: list[BaseException] = []
        kept: list[Any] = [record]

        def write(session: Session) -> Any:
            changed.clear()
            if check:
                changed.append(history_fingerprint(session, turn.schema, turn.chat_id) != expected)
            row = strategy.persist_user_message(session, turn, message)
            if with_placeholder and not any(changed):
                try:
                    placeholder = strategy.persist_new_message(session, turn)
                except Exception as exc:
                    refused.append(exc)
                    raise
                kept.append(placeholder)  # read after the commit too (see run_step's keep)
                turn.placeholder = placeholder
            return row

        def step(session: Session) -> Any:
            del kept[1:]
            return strategy.run_step(session, lambda: write(session), keep=kept)

        try:
            row = yield DbStep(step, self._session, self._async_session)
        except Exception:
            if not refused:  # the user message itself failed (nothing was committed)
                raise
            turn.placeholder = None
            with_placeholder = False
            row = yield DbStep(step, self._session, self._async_session)
        self._placeholder_ready = turn.placeholder is not None
        if any(changed):
            # Someone else changed the rows since the last turn: read them all (with this
            # user message, now one of them).
            yield from self._history_changed()
            yield from self._fire("end_message", message)
            return
        self._note(row, message)
        self.messages.append(message)
        yield from self._fire("end_message", message)

    def _reply_started(self) -> Flow[None]:
        turn, strategy = self.turn, self.strategy
        if self._placeholder_ready:  # written with the user message
            self._placeholder_ready = False
        else:
            turn.placeholder = yield self._step(lambda s: strategy.persist_new_message(s, turn))
        yield from self._fire("new_message")

    def _reply_completed(self, message: Message) -> Flow[None]:
        turn, strategy = self.turn, self.strategy
        row = turn.placeholder
        if row is None:  # a strategy that skipped the placeholder, or a hook that cleared it
            row = strategy.new_row(turn, message.role)
        yield from self._store_files_of(message)
        row = yield self._step(lambda s: strategy.persist_message_completion(s, turn, row, message))
        self._note(row, message)
        turn.placeholder = None
        self.messages.append(message)

    def _tool_result_started(self, call: ToolCall) -> Flow[None]:
        turn, strategy = self.turn, self.strategy
        turn.placeholder = yield self._step(lambda s: strategy.persist_new_message(s, turn))

    def _add_tool_result(self, message: Message, call: ToolCall) -> Flow[None]:
        yield from self._reply_completed(message)

    def _reply_flow(self, on_chunk: Any, stream: bool) -> Flow[Message]:
        try:
            reply = yield from super()._reply_flow(on_chunk, stream)
            self._remember(self._history_version)
            return reply
        except GeneratorExit:
            # The flow is being closed, not failed: it may not yield again. Drivers throw
            # StreamAbandoned first when they want the clean-up to run.
            self._forget()
            raise
        except BaseException:
            turn, strategy = self.turn, self.strategy
            self._forget()
            self._placeholder_ready = False
            try:
                yield DbStep(
                    lambda s: strategy.run_cleanup(
                        s, lambda: strategy.cleanup_failed_turn(s, turn)
                    ),
                    self._session,
                    self._async_session,
                )
            except Exception:
                # The original error matters more; the clean-up failure is logged, not raised.
                logger.exception("Clean-up after a failed turn failed")
            turn.placeholder = None
            raise


def _loaded_values(row: Any) -> dict[str, Any] | None:
    """The loaded column values of a mapped row (``None`` for anything else)."""
    try:
        state = instance_state(row)
    except Exception:
        return None
    columns = state.mapper.column_attrs
    return {prop.key: state.dict[prop.key] for prop in columns if prop.key in state.dict}


def _restore(rows: Sequence[tuple[Any, dict[str, Any] | None]]) -> None:
    """Mark the saved column values as loaded again where a commit or rollback expired them."""
    for row, values in rows:
        if values is None:
            continue
        state = instance_state(row)
        if state.key is None or state.deleted or state.detached:
            continue
        for key, value in values.items():
            if key not in state.dict:
                set_committed_value(row, key, value)


def _is_blank(row: Any) -> bool:
    return not row.content and getattr(row, "content_raw", None) in (None, "", [], {})


def _tool_call_ids(session: Session, turn: Turn, message_ids: Sequence[Any]) -> list[Any]:
    schema = turn.schema
    TC = schema.tool_call_cls
    fk = getattr(TC, schema.tool_call_message_fk)
    return list(session.scalars(select(TC.id).where(fk.in_(list(message_ids)))).all())


# -- rebuilding a conversation --------------------------------------------------------------------


_HISTORY_COLUMNS = (
    "id",
    "role",
    "content",
    "content_raw",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_creation_tokens",
    "thinking_text",
    "thinking_signature",
    "thinking_tokens",
    "updated_at",
)

_TOKEN_KEYS = (
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_creation_tokens",
    "thinking_tokens",
)


@dataclass(frozen=True)
class _HistoryQueries:
    """The history SELECTs of one chat schema, built once (the chat id is a parameter)."""

    schema: ChatSchema

    messages: Any
    calls: Any
    has_signature: bool
    attachments: Any = None
    fingerprint: Any = None  # count(*), max(updated_at); None without an updated_at column
    present: frozenset[str] = frozenset()  # the history columns the message table has
    server_set: frozenset[str] = frozenset()  # ... whose value the database may set itself


#: chat class -> its history queries (weak: classes made in tests come and go).
_QUERIES: weakref.WeakKeyDictionary[type[Any], _HistoryQueries] = weakref.WeakKeyDictionary()


def _queries(schema: ChatSchema) -> _HistoryQueries:
    cached = _QUERIES.get(schema.chat_cls)
    if cached is not None and cached.schema is schema:
        return cached
    # Core columns of the mapped tables, labelled with the attribute names: the statements
    # skip the ORM's per-row machinery, and renamed columns still read by attribute.
    m = sa_inspect(schema.message_cls).c
    tc_mapper = sa_inspect(schema.tool_call_cls)
    tc = tc_mapper.c
    chat_id: Any = bindparam("sa_llm_chat_id")
    parent = tc_mapper.local_table.alias("parent_call")
    parent_id = parent.c[tc["id"].key]

    # A fixed column layout (absent optional columns read as NULL), so rows unpack by position.
    def column(name: str) -> Any:
        return m[name].label(name) if name in m else null().label(name)

    columns: list[Any] = [column(name) for name in _HISTORY_COLUMNS]
    columns.append(parent.c[tc["tool_call_id"].key].label("parent_call_id"))
    if schema.model_cls is not None and schema.message_model_attr is not None:
        model = sa_inspect(schema.model_cls).c
        columns.append(model["model_id"].label("model_name"))
        joined = (
            m["id"]
            .table.outerjoin(parent, m[schema.message_parent_fk] == parent_id)
            .outerjoin(model["id"].table, m[schema.message_model_attr] == model["id"])
        )
    else:
        if schema.message_model_attr is not None:
            columns.append(m[schema.message_model_attr].label("model_name"))
        else:
            columns.append(null().label("model_name"))
        joined = m["id"].table.outerjoin(parent, m[schema.message_parent_fk] == parent_id)
    query = (
        select(*columns)
        .select_from(joined)
        .where(m[schema.message_chat_fk] == chat_id)
        .order_by(m["created_at"], m["id"])
    )
    message_fk = tc[schema.tool_call_message_fk]
    has_signature = "thought_signature" in schema.optional_tool_call
    call_columns = [message_fk, tc["tool_call_id"], tc["name"], tc["arguments"]]
    if has_signature:
        call_columns.append(tc["thought_signature"])
    calls = (
        select(*call_columns)
        .select_from(tc["id"].table.join(m["id"].table, message_fk == m["id"]))
        .where(m[schema.message_chat_fk] == chat_id)
        .order_by(tc["id"])
    )
    attachments = (
        _attachments.history_query(schema, chat_id) if schema.attachment_cls is not None else None
    )
    fingerprint = None
    if "updated_at" in m:
        fingerprint = select(func.count(), func.max(m["updated_at"])).where(
            m[schema.message_chat_fk] == chat_id
        )
    present = frozenset(name for name in _HISTORY_COLUMNS if name in m)
    server_set = frozenset(
        name
        for name in present
        if m[name].server_default is not None or m[name].server_onupdate is not None
    )
    built = _HistoryQueries(
        schema, query, calls, has_signature, attachments, fingerprint, present, server_set
    )
    _QUERIES[schema.chat_cls] = built
    return built


def load_history(
    session: Session, schema: ChatSchema, chat_id: Any, storage: Storage | None = None
) -> list[Message]:
    """The chat's messages as value objects: system messages first, then by (created_at, id).

    Two SELECTs whatever the length: the messages (joined with their model and parent call) and
    the tool calls of the chat; a third for the stored files when the message class has an
    attachment class and a ``storage`` is given. Rows are read as tuples, not ORM objects:
    rebuilding a long history stays close to the cost of the raw SELECT. Files are read from
    the storage only when a request is built.
    """
    return _read_history(session, schema, chat_id, storage).messages


@dataclass
class _History:
    """A rebuilt history and the fingerprint of the rows it was read from."""

    messages: list[Message]
    rows: int
    last_updated: Any
    has_files: bool


def _read_history(
    session: Session, schema: ChatSchema, chat_id: Any, storage: Storage | None
) -> _History:
    queries = _queries(schema)
    params = {"sa_llm_chat_id": chat_id}
    files: dict[Any, tuple[Any, ...]] = {}
    if queries.attachments is not None and storage is not None:
        files = _attachments.read_history(session.execute(queries.attachments, params), storage)
    collected: dict[Any, list[ToolCall]] = {}
    for call in session.execute(queries.calls, params):
        signature = call[4] if queries.has_signature else None
        collected.setdefault(call[0], []).append(
            ToolCall(
                id=call[1],
                name=call[2],
                arguments=_arguments(call[3]),
                extra={"thought_signature": signature} if signature else {},
            )
        )
    calls_by_message = {pk: tuple(calls) for pk, calls in collected.items()}
    system: list[Message] = []
    others: list[Message] = []
    no_calls: tuple[ToolCall, ...] = ()
    rows = 0
    last_updated: Any = None
    for (
        pk, role, content, raw, tokens_in, tokens_out, cached, cache_creation,
        thinking_text, thinking_signature, thinking_tokens, updated_at, parent_call_id,
        model_name,
    ) in session.execute(queries.messages, params):  # fmt: skip
        # This loop is the cost of a long history: positional unpacking, no per-row lookups.
        rows += 1
        if updated_at is not None and (last_updated is None or updated_at > last_updated):
            last_updated = updated_at
        message = _history_message(
            pk, role, content, raw, tokens_in, tokens_out, cached, cache_creation,
            thinking_text, thinking_signature, thinking_tokens, parent_call_id, model_name,
            calls_by_message.get(pk, no_calls), files,
        )  # fmt: skip
        (system if role == "system" else others).append(message)
    return _History(system + others, rows, _naive_utc(last_updated), bool(files))


def _history_message(
    pk: Any,
    role: Any,
    content: Any,
    raw: Any,
    tokens_in: Any,
    tokens_out: Any,
    cached: Any,
    cache_creation: Any,
    thinking_text: Any,
    thinking_signature: Any,
    thinking_tokens: Any,
    parent_call_id: Any,
    model_name: Any,
    calls: tuple[ToolCall, ...],
    files: Mapping[Any, tuple[Any, ...]],
) -> Message:
    """One history message from a row's values: the rebuild and the history cache share it."""
    tokens = None
    if not (
        tokens_in is None
        and tokens_out is None
        and cached is None
        and cache_creation is None
        and thinking_tokens is None
    ):
        tokens = Tokens(tokens_in, tokens_out, cached, cache_creation, thinking_tokens)
    value: Any = RawContent(raw) if raw is not None else content
    if files and pk in files:
        if raw is None:
            value = Content(content, files[pk])
        else:
            logger.warning("Message %s has raw content; its stored files are not sent", pk)
    return Message(
        role,
        value,
        calls,
        parent_call_id,
        tokens,
        model_name,
        Thinking(thinking_text, thinking_signature)
        if (thinking_text or thinking_signature)
        else None,
    )


def _call_from_values(values: Mapping[str, Any], has_signature: bool) -> ToolCall | None:
    """A ``tool_calls`` row's values as a rebuild reads them (``None``: not all known)."""
    try:
        signature = values.get("thought_signature") if has_signature else None
        return ToolCall(
            id=values["tool_call_id"],
            name=values["name"],
            arguments=_arguments(values["arguments"]),
            extra={"thought_signature": signature} if signature else {},
        )
    except KeyError:
        return None


def _naive_utc(value: Any) -> Any:
    """``updated_at`` comparable across drivers: SQLite returns naive UTC, PostgreSQL aware."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def history_fingerprint(session: Session, schema: ChatSchema, chat_id: Any) -> tuple[int, Any]:
    """The chat's message count and newest ``updated_at`` (naive UTC): one aggregate SELECT."""
    query = _queries(schema).fingerprint
    assert query is not None, "the message table has no updated_at column"
    rows, last_updated = session.execute(query, {"sa_llm_chat_id": chat_id}).one()
    return int(rows), _naive_utc(last_updated)


def reusable(cache: HistoryCache, schema: ChatSchema, chat_id: Any, version: int) -> bool:
    """Whether ``cache`` may hold this chat's history: the rows decide (see reuse_history)."""
    return (
        cache.messages is not None
        and cache.chat_id == chat_id
        and cache.version == version
        and _queries(schema).fingerprint is not None
    )


def reuse_history(
    session: Session, schema: ChatSchema, chat_id: Any, cache: HistoryCache, version: int
) -> list[Message] | None:
    """The cached history when the chat's rows are as the cache left them, else ``None``.

    One aggregate SELECT (count and newest ``updated_at`` of the chat's messages). A turn of
    this chat in this process since (``version``), a row added, deleted or updated through
    SQLAlchemy by anyone (the mixins' ``updated_at`` has ``onupdate``) all mean ``None``.
    """
    if not reusable(cache, schema, chat_id, version) or cache.messages is None:
        return None
    if history_fingerprint(session, schema, chat_id) != (cache.rows, cache.last_updated):
        return None
    return list(cache.messages)


def _mirror(turn: Turn, row: Any, message: Message) -> tuple[Message, Any] | None:
    """What a rebuild would read back for ``row`` (just written), and its ``updated_at``.

    Built from the values the row was written with, so the cached history equals a rebuilt
    one. ``None`` when that is not known without reading: files (read from storage), a value
    the database sets itself (no ``updated_at`` in the row), tool calls written elsewhere.
    """
    state = instance_state(row)
    values = state.dict
    updated_at = values.get("updated_at")
    if state.key is None or updated_at is None or message.attachments:
        return None
    schema = turn.schema
    queries = _queries(schema)
    present = queries.present
    calls: tuple[ToolCall, ...] = ()
    if message.tool_calls:
        call_rows = turn.written_calls.get(state.key[1][0])
        if call_rows is None:
            return None
        known = [call for call in call_rows if call is not None]
        if len(known) != len(call_rows):
            return None
        calls = tuple(known)
    parent_call_id = None
    if values.get(schema.message_parent_fk) is not None:
        parent_call_id = message.tool_call_id
    model_name = None
    if schema.message_model_attr is not None and values.get(schema.message_model_attr) is not None:
        model_name = turn.model_name

    if any(name in queries.server_set and name not in values for name in present):
        return None  # the database chose a value this row does not hold

    def column(name: str) -> Any:
        return values.get(name) if name in present else None

    mirrored = _history_message(
        state.key[1][0],
        values.get("role"),
        column("content"),
        column("content_raw"),
        column("input_tokens"),
        column("output_tokens"),
        column("cached_tokens"),
        column("cache_creation_tokens"),
        column("thinking_text"),
        column("thinking_signature"),
        column("thinking_tokens"),
        parent_call_id,
        model_name,
        calls,
        {},
    )
    return mirrored, _naive_utc(updated_at)


def _arguments(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {"_raw": value}
    return dict(value) if isinstance(value, Mapping) else {}


def row_to_message(row: Mapping[Any, Any], tool_calls: Sequence[ToolCall] = ()) -> Message:
    """A value :class:`~sa_llm.types.Message` from a message row's columns (``to_llm``)."""
    raw = row.get("content_raw")
    content: str | RawContent | None
    content = RawContent(raw) if raw is not None else row.get("content")
    tokens = None
    # Most rows (user, system, tool) carry no counts: skip building a Tokens for them.
    if any(row.get(key) is not None for key in _TOKEN_KEYS):
        tokens = Tokens(
            input=row.get("input_tokens"),
            output=row.get("output_tokens"),
            cached=row.get("cached_tokens"),
            cache_creation=row.get("cache_creation_tokens"),
            reasoning=row.get("thinking_tokens"),
        )
    thinking = None
    if row.get("thinking_text") or row.get("thinking_signature"):
        thinking = Thinking(text=row.get("thinking_text"), signature=row.get("thinking_signature"))
    return Message(
        role=row["role"],
        content=content,
        tool_calls=tuple(tool_calls),
        tool_call_id=row.get("parent_call_id"),
        tokens=tokens,
        model_id=row.get("model_name"),
        thinking=thinking,
    )
