"""The persisted chat: the plain conversation engine whose flow hooks write rows.

:class:`PersistedChat` subclasses :class:`sa_llm.chat.Chat` and overrides its hooks
(``_add_user_message``, ``_reply_started``, ``_reply_completed``, ...) to run the strategy's
steps (:mod:`sa_llm.persistence`) at the points the reference flow fixes. Built by
``chat_record.to_llm()``; the record API (:mod:`sa_llm._records`) drives it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import instance_state

from sa_llm._flow import Flow
from sa_llm._persisted import attachments as _attachments
from sa_llm._persisted.history import (
    Mirror,
    _History,
    _queries,
    history_fingerprint,
    mirror_row,
    read_history,
)
from sa_llm._persisted.steps import DbStep
from sa_llm.chat import Chat
from sa_llm.content import AttachmentSource, ensure_model_accepts
from sa_llm.errors import ConfigurationError
from sa_llm.persistence import PersistenceStrategy, Turn
from sa_llm.providers._transport import Download
from sa_llm.storage import Storage
from sa_llm.types import Content, Message, RawContent, ToolCall

__all__ = ["PersistedChat"]

logger = logging.getLogger("sa_llm.persistence")

T = TypeVar("T")


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
        history = yield self._step(lambda s: read_history(s, schema, chat_id, storage))
        self.use_history(history)

    # -- the history cache (see HistoryCache) --

    def use_history(self, history: _History | list[Message]) -> None:
        """Start from ``history``: rows just read (``_History``) or reused from the cache."""
        cache = self.turn.history
        self._unchecked = False
        if isinstance(history, list):  # reused: the cache describes these rows
            self.messages = history
            if cache is not None:
                self._mirror = Mirror(history, cache.rows, cache.last_updated)
            return
        self.messages = history.messages
        self._mirror = None
        if cache is None:
            return
        cache.clear()
        if not history.has_files and _queries(self.turn.schema).fingerprint is not None:
            self._mirror = Mirror(history.messages, history.rows, history.last_updated)
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
        turn = self.turn
        mirror.add(
            mirror_row(turn.schema, turn.written_calls, turn.model_name, row, message), state.key
        )

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
