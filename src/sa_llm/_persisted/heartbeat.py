"""The heartbeat of a running turn: it renews the turn's lease and watches for a cancel.

While a turn runs, a heartbeat (one thread of the process beats for every sync turn; an async
turn has a task of its event loop) takes a connection from the engine's pool every
``turn_poll_interval`` seconds for one short transaction: it reads the chat's
``cancel_requested_at`` and, every third of the lease, renews ``turn_expires_at``. When a cancel
was requested it aborts the turn's drive with
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
import contextlib
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
        self._stopped = False  # set under _lock; nothing waits on it (a flag, not an Event)
        self._lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

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
            if self._stopped:
                return  # the turn is ending: it released the lease itself
            self._stopped = True
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
        """Stop beating (the turn is releasing its lease); no beat aborts the turn after this.

        An async heartbeat is woken, not cancelled: cancelling it inside a beat's transaction
        could leave the connection holding its read (a SQLite lock) in the pool.
        """
        with self._lock:
            self._stopped = True
        _beats.remove(self)
        wake, loop = self._wake, self._loop
        if wake is not None and loop is not None and not loop.is_closed():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                wake.set()
            else:
                loop.call_soon_threadsafe(wake.set)

    async def aclose(self) -> None:
        """Stop, and wait for the async heartbeat's task to end (its beat finishes first)."""
        self.stop()
        task = self._task
        if task is not None:
            await asyncio.wait([task])

    # -- drivers --

    def start_thread(self) -> None:
        _beats.add(self)

    def beat_now(self) -> None:
        """One beat on a connection of the engine's pool (called by the beating thread)."""
        try:
            with self.engine.begin() as connection:
                self.beat(connection)
        except Exception:
            logger.warning("A turn's heartbeat failed; retrying", exc_info=True)

    def start_task(self, engine: AsyncEngine) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = self._loop.create_task(self._arun(engine, self._wake))

    async def _arun(self, engine: AsyncEngine, wake: asyncio.Event) -> None:
        while not self._stopped:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), self.interval)
            if self._stopped:
                return
            try:
                async with engine.begin() as connection:
                    await connection.run_sync(self.beat)
            except Exception:
                logger.warning("A turn's heartbeat failed; retrying", exc_info=True)


class _Beats:
    """The thread that beats for every sync turn of the process.

    Starting a thread per turn would cost a turn more than its statements do (the new thread
    must be scheduled before ``start`` returns); one thread serves them all, started on demand
    and ending after a while without turns.
    """

    _IDLE = 5.0  # seconds without a turn before the thread ends

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._due: dict[Heartbeat, float] = {}
        self._changed = threading.Event()
        self._thread: threading.Thread | None = None
        self._sleeping_until = 0.0  # when the thread wakes next by itself

    def add(self, heartbeat: Heartbeat) -> None:
        due = time.monotonic() + heartbeat.interval
        with self._lock:
            self._due[heartbeat] = due
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="sa_llm-heartbeat", daemon=True
                )
                self._thread.start()
            wake = due < self._sleeping_until
        if wake:  # only when it would sleep past this beat: waking it costs the turn
            self._changed.set()

    def remove(self, heartbeat: Heartbeat) -> None:
        with self._lock:
            self._due.pop(heartbeat, None)

    def _run(self) -> None:
        idle_since = time.monotonic()
        while True:
            now = time.monotonic()
            with self._lock:
                if not self._due:
                    if now - idle_since >= self._IDLE:
                        self._thread = None
                        return
                    wait = self._IDLE
                else:
                    idle_since = now
                    due = [beat for beat, at in self._due.items() if at <= now]
                    for beat in due:
                        self._due[beat] = now + beat.interval
                    wait = max(0.0, min(self._due.values()) - now) if not due else 0.0
                self._sleeping_until = now + wait
            if wait:
                self._changed.wait(wait)
                self._changed.clear()
                continue
            for beat in due:
                beat.beat_now()


_beats = _Beats()


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
        scope.on_aclose(heartbeat.aclose)
        return heartbeat
