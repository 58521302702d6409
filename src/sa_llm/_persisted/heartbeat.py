"""The heartbeat of a running turn: it renews the turn's lease and watches for a cancel.

While a turn runs, a heartbeat (a thread for sync turns, a task of the event loop for async
ones) takes a connection from the engine's pool every ``turn_poll_interval`` seconds for one
short transaction: it reads the chat's ``cancel_requested_at`` and, every third of the lease,
renews ``turn_expires_at``. When a cancel was requested it aborts the turn's drive with
:class:`~sa_llm.errors.TurnCancelledError`; when the lease is no longer the turn's (it expired
and another turn took over) with :class:`~sa_llm.errors.TurnLeaseLostError`. Between beats no
connection is held. A beat that fails (the database restarts) is logged and the next one tries
again; the lease expires only if no beat gets through for its whole length.

The heartbeat needs its own connections: it does not run on a session bound to a single
connection, on an engine whose pool hands every thread the same connection (SQLite in memory),
or inside a transaction the caller keeps open (``InTransactionStrategy``, where the lease
is not visible to anyone before the caller commits anyway).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import SingletonThreadPool, StaticPool

from sa_llm._flow import Effect, Scope
from sa_llm._mapping import ChatSchema
from sa_llm._persisted.lease import Lease, lease_state, renew
from sa_llm.errors import TurnCancelledError, TurnLeaseLostError

__all__ = ["Heartbeat", "StartHeartbeat", "heartbeat_engine"]

logger = logging.getLogger("sa_llm.persistence")


def heartbeat_engine(bind: Any) -> Engine | None:
    """The engine a heartbeat may open its own connections on, or ``None`` (see module doc)."""
    if not isinstance(bind, Engine):
        return None  # a session bound to one connection
    if isinstance(bind.pool, StaticPool | SingletonThreadPool):
        return None  # SQLite in memory: every connection is the same one
    return bind


class Heartbeat:
    """Renews one turn's lease and reads its cancel flag until stopped."""

    def __init__(
        self, schema: ChatSchema, lease: Lease, scope: Scope, interval: float, engine: Engine
    ) -> None:
        self.schema = schema
        self.lease = lease
        self.scope = scope
        self.interval = interval
        self.engine = engine
        self.renew_every = max(interval, lease.ttl / 3)
        self._renewed = time.monotonic()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None

    # -- one beat, written once over a sync connection --

    def beat(self, connection: Connection) -> None:
        """Renew the lease when due and read the cancel flag; abort the turn if needed."""
        lease = self.lease
        if time.monotonic() - self._renewed >= self.renew_every:
            if not renew(connection, self.schema, lease):
                self._abort(lost=True)
                return
            self._renewed = time.monotonic()
        state = lease_state(connection, self.schema, lease.chat_id)
        if state.token != lease.token:
            self._abort(lost=True)
        elif state.cancel_requested_at is not None:
            self._abort(lost=False)

    def _abort(self, *, lost: bool) -> None:
        with self._lock:
            if self._stopped.is_set():
                return  # the turn is ending: it released the lease itself
            self._stopped.set()
        error: BaseException
        if lost:
            error = TurnLeaseLostError(
                "This turn's lease on the chat expired (its heartbeat could not renew it in "
                f"{self.lease.ttl:g} s) and another turn took the chat over."
            )
        else:
            error = TurnCancelledError("The turn was cancelled (chat.cancel()).")
        self.scope.abort(error)

    def stop(self) -> None:
        """Stop beating (the turn is releasing its lease); no beat aborts the turn after this."""
        with self._lock:
            self._stopped.set()
        task = self._task
        if task is not None and not task.done():
            task.cancel()

    # -- drivers --

    def start_thread(self) -> None:
        thread = threading.Thread(target=self._run, name="sa_llm-heartbeat", daemon=True)
        thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                with self.engine.begin() as connection:
                    self.beat(connection)
            except Exception:
                logger.warning("A turn's heartbeat failed; retrying", exc_info=True)

    def start_task(self, engine: AsyncEngine) -> None:
        self._task = asyncio.get_running_loop().create_task(self._arun(engine))

    async def _arun(self, engine: AsyncEngine) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if self._stopped.is_set():
                return
            try:
                async with engine.begin() as connection:
                    await connection.run_sync(self.beat)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("A turn's heartbeat failed; retrying", exc_info=True)


class StartHeartbeat(Effect[Heartbeat | None]):
    """Effect: start the heartbeat of a turn that holds ``lease`` (stopped with the drive).

    ``None`` when the session's bind cannot give the heartbeat connections of its own, or under
    an event loop other than asyncio's (the turn then still notices a cancel at each flush).
    """

    __slots__ = ("async_bind", "bind", "interval", "lease", "schema")

    def __init__(
        self,
        schema: ChatSchema,
        lease: Lease,
        interval: float,
        bind: Any,
        async_bind: Callable[[], AsyncEngine | None] | None = None,
    ) -> None:
        self.schema = schema
        self.lease = lease
        self.interval = interval
        self.bind = bind
        self.async_bind = async_bind

    def run(self, scope: Scope) -> Heartbeat | None:
        engine = heartbeat_engine(self.bind)
        if engine is None:
            return None
        heartbeat = Heartbeat(self.schema, self.lease, scope, self.interval, engine)
        scope.abortable = True
        heartbeat.start_thread()
        scope.on_close(heartbeat.stop)
        return heartbeat

    async def arun(self, scope: Scope) -> Heartbeat | None:
        engine = heartbeat_engine(self.bind)
        async_engine = self.async_bind() if self.async_bind is not None else None
        if engine is None or async_engine is None:
            return None
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return None
        heartbeat = Heartbeat(self.schema, self.lease, scope, self.interval, engine)
        scope.abortable = True
        heartbeat.start_task(async_engine)
        scope.on_close(heartbeat.stop)
        return heartbeat
