"""Background turns: a chat is answered off the request that stored the user's message.

The unit of work is "answer chat N": :func:`answer_chat` loads the chat, checks that its last
valid message is the user's (so a repeated or late job does nothing), keeps partial output on
(the reply's text is in its row at every flush, so a reload mid-stream shows it and a stop
keeps it) and runs ``chat.acomplete()``. The turn holds the chat's durable lease: a second
job for the same chat waits for it, and a turn whose process died is taken over and settled
by the next one (or by :meth:`InProcessRunner.run` at start-up).

Runners:

* :class:`InProcessRunner` (default): an anyio task group owned by the app's lifespan; jobs for
  one chat are coalesced (one running, at most one more to follow). Turns die with the
  process; their lease expires and the next turn, or the next start-up, settles them.
* :class:`sa_llm.web.queue.ProcrastinateRunner`: a PostgreSQL job queue for several processes,
  deferred inside the request's own transaction.

Example (FastAPI lifespan)::

    runner = InProcessRunner(Session, Chat)

    @asynccontextmanager
    async def lifespan(app):
        async with runner.run():
            yield
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from sa_llm._mapping import chat_schema
from sa_llm.errors import SaLLMError
from sa_llm.persistence import (
    PersistenceStrategy,
    repair_chats,
    strategy_for,
    use_strategy,
)
from sa_llm.types import Message

__all__ = ["InProcessRunner", "Prepare", "TurnRunner", "answer_chat", "needs_reply"]

logger = logging.getLogger("sa_llm.web")

#: Called with the chat row before its turn runs: add tools, instructions, a context...
Prepare = Callable[[Any], "Awaitable[Any] | Any"]


def _commits(strategy: PersistenceStrategy) -> bool:
    """Whether a strategy commits its steps (the in-transaction one leaves that to its caller)."""
    return bool(strategy.commits_steps)


# Assistant statuses that count as an answer (None: rows of releases without the column).
_ANSWERED = (None, "complete")


class TurnRunner(Protocol):
    """What a chat UI needs of a runner: start answering a chat, after the request's commit."""

    #: The strategy the request's session must use (``None``: the default one, which commits
    #: each step): a queue that enqueues in the request's transaction needs it to stay open.
    strategy: PersistenceStrategy | None

    async def submit(self, session: AsyncSession, chat_id: Any) -> None:
        """Have the chat answered; ``session`` is the request's (commit it afterwards)."""


def needs_reply(session: Session, chat_cls: type[Any], chat_id: Any) -> bool:
    """Whether the chat's last valid message is the user's (the model has not answered it).

    Unfinished, failed, cancelled or interrupted replies do not count as answers (a history
    leaves them out too); system messages are skipped.
    """
    schema = chat_schema(chat_cls)
    M = schema.message_cls
    status = getattr(M, "status", None)
    columns = [M.role] + ([status] if status is not None else [])
    rows = session.execute(
        select(*columns)
        .where(getattr(M, schema.message_chat_fk) == chat_id, M.role != "system")
        .order_by(M.created_at.desc(), M.id.desc())
        .limit(50)
    ).all()
    for row in rows:
        role, row_status = row[0], (row[1] if len(row) > 1 else None)
        if role == "assistant" and row_status not in _ANSWERED:
            continue
        return bool(role == "user")
    return False


async def answer_chat(
    sessionmaker: async_sessionmaker[AsyncSession],
    chat_cls: type[Any],
    chat_id: Any,
    *,
    prepare: Prepare | None = None,
) -> Message | None:
    """Answer the chat if its last valid message is the user's; the reply, or ``None``.

    Errors of the turn are logged, not raised: the chat's event log already tells its viewers
    (``turn.ended`` with the outcome and the error), and the reply's row keeps its status.
    """
    async with sessionmaker() as session:
        if not _commits(strategy_for(session.sync_session, chat_cls)):
            # Viewers follow the turn through its commits: the request's in-transaction
            # strategy (a queue's) must not reach the turn's own session.
            use_strategy(session, PersistenceStrategy())
        chat = await session.get(chat_cls, chat_id)
        if chat is None or not await session.run_sync(
            lambda sync: needs_reply(sync, chat_cls, chat_id)
        ):
            return None
        chat.with_partial_output()
        if prepare is not None:
            prepared = prepare(chat)
            if inspect.isawaitable(prepared):
                await prepared
        try:
            # Streamed (a callback asks for it): the text reaches the event log as it comes.
            reply: Message = await chat.acomplete(on_chunk=_streamed)
        except SaLLMError as exc:
            logger.warning("The turn of chat %s ended: %s: %s", chat_id, type(exc).__name__, exc)
            return None
        except Exception:
            logger.exception("The turn of chat %s failed", chat_id)
            return None
        return reply


def _streamed(chunk: Any) -> None:
    """The turn's chunk callback: nothing to do, viewers read the event log."""


class InProcessRunner:
    """Runs turns as tasks of this process (an anyio task group), one chat at a time.

    Args:
        sessionmaker: makes the sessions turns run in (each turn its own).
        chat_cls: the ``@acts_as_chat`` class.
        prepare: called with each chat row before its turn (tools, instructions, ...).
        recover: at start-up, settle what turns of a process that died left (unfinished
            replies become ``interrupted``, their viewers are told).
    """

    strategy: PersistenceStrategy | None = None

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        chat_cls: type[Any],
        *,
        prepare: Prepare | None = None,
        recover: bool = True,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.chat_cls = chat_cls
        self.prepare = prepare
        self.recover = recover
        self._tasks: TaskGroup | None = None
        self._running: set[str] = set()
        self._again: set[str] = set()

    @asynccontextmanager
    async def run(self) -> AsyncIterator[InProcessRunner]:
        """Own the task group for the ``async with`` block (the app's lifespan). Leaving it
        cancels the turns in flight: each settles its reply as ``interrupted``."""
        if self.recover:
            async with self.sessionmaker() as session:
                report = await session.run_sync(lambda sync: repair_chats(sync, self.chat_cls))
            if report.chats:
                logger.warning("Settled the unfinished turns of %d chat(s)", len(report.chats))
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            try:
                yield self
            finally:
                self._tasks = None
                tasks.cancel_scope.cancel()

    async def submit(self, session: AsyncSession, chat_id: Any) -> None:
        """Answer the chat in the background (after what the request stored is committed).

        A chat already being answered gets one more pass afterwards instead of a second task.
        """
        if self._tasks is None:
            raise RuntimeError("InProcessRunner.submit outside `async with runner.run()`")
        if session.in_transaction():
            await session.commit()  # the turn's own session must see the user's message
        key = str(chat_id)
        if key in self._running:
            self._again.add(key)
            return
        self._running.add(key)
        self._tasks.start_soon(self._answer, chat_id, key)

    async def _answer(self, chat_id: Any, key: str) -> None:
        try:
            while True:
                self._again.discard(key)
                await answer_chat(self.sessionmaker, self.chat_cls, chat_id, prepare=self.prepare)
                if key not in self._again:
                    return
        finally:
            self._running.discard(key)

    @property
    def busy(self) -> int:
        """Chats being answered now."""
        return len(self._running)
