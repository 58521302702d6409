"""Background turns on a PostgreSQL job queue (procrastinate), for several web processes and
worker processes: the job is deferred **inside the request's transaction**, so the user's
message and the job that answers it commit together (or neither does).

Needs the ``queue`` extra (``pip install "sa-llm[queue]"``: procrastinate >= 3.8, which takes an
external psycopg connection) and an app engine on psycopg (``postgresql+psycopg://``): the
job's ``INSERT`` runs on the very connection of the request's ``AsyncSession``. The request's
session must use :class:`~sa_llm.persistence.InTransactionStrategy` (``runner.strategy``), so
storing the user's message does not commit on its own.

Example::

    queue_app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=...))
    runner = ProcrastinateRunner(queue_app, Session, Chat)
    use_strategy(Session, runner.strategy)
    # web:    await chat.acreate_user_message(text); await runner.submit(session, chat.id);
    #         await session.commit()
    # worker: procrastinate --app=chat_app.queue_app worker --queues=sa_llm
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sa_llm._optional import require
from sa_llm.persistence import InTransactionStrategy, PersistenceStrategy
from sa_llm.web.runner import Prepare, answer_chat

__all__ = ["ProcrastinateRunner"]


class ProcrastinateRunner:
    """Defers "answer chat N" jobs to procrastinate; its workers run them.

    Jobs of one chat share a procrastinate ``lock``: they run one after the other, and a job
    that finds the chat answered already does nothing.

    Args:
        app: the procrastinate app (its connector reaches the same database).
        sessionmaker: makes the sessions turns run in (in the worker).
        chat_cls: the ``@acts_as_chat`` class.
        prepare: called with each chat row before its turn (tools, instructions, ...).
        queue: the procrastinate queue the jobs go to.
        task_name: the task's name (workers find it by this name).
    """

    def __init__(
        self,
        app: Any,
        sessionmaker: async_sessionmaker[AsyncSession],
        chat_cls: type[Any],
        *,
        prepare: Prepare | None = None,
        queue: str = "sa_llm",
        task_name: str = "sa_llm.answer_chat",
    ) -> None:
        require("procrastinate", extra="queue", feature="the procrastinate runner")
        self.sessionmaker = sessionmaker
        self.chat_cls = chat_cls
        self.strategy: PersistenceStrategy | None = InTransactionStrategy()

        async def answer(chat_id: str) -> None:
            key_type = chat_cls.__table__.c.id.type.python_type
            await answer_chat(sessionmaker, chat_cls, key_type(chat_id), prepare=prepare)

        self.task = app.task(name=task_name, queue=queue)(answer)

    async def submit(self, session: AsyncSession, chat_id: Any) -> None:
        """Defer the job on the session's own connection; the caller commits (both the
        message and the job) or rolls back (neither)."""
        connection = await session.connection()
        raw = await connection.get_raw_connection()
        psycopg_connection = raw.driver_connection
        module = type(psycopg_connection).__module__
        if not module.startswith("psycopg"):
            raise TypeError(
                "ProcrastinateRunner needs the app's engine on psycopg "
                f"(postgresql+psycopg://), not {module}."
            )
        lock = f"sa_llm-chat-{chat_id}"
        await self.task.configure(connection=psycopg_connection, lock=lock).defer_async(
            chat_id=str(chat_id)
        )
