"""Wake-ups: a turn waiting for a busy chat learns that it was released.

Correctness never depends on a wake-up: a waiting turn polls with a growing delay and retries
its claim, and the claim decides. Wake-ups only cut the wait short:

* in-process (:data:`hub`): a turn that releases a chat wakes the waiters of this process at
  once, whatever the database;
* across processes and hosts on PostgreSQL: the release's ``pg_notify`` reaches a listener
  thread per database (:func:`listen`, one connection with ``LISTEN``, psycopg 3.2+), which
  wakes this process's waiters. Without psycopg, or when it cannot connect with the engine's
  URL, waiters poll.

Keys are strings (:func:`sa_llm._persisted.lease.wakeup_key`); a wake-up meant for another
tenant's chat of the same table and key only costs a claim that fails again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio.to_thread
from sqlalchemy.engine import URL

from sa_llm._flow import Effect, Scope

__all__ = ["Hub", "Listen", "WaitForWakeup", "Waiter", "hub", "listen"]

logger = logging.getLogger("sa_llm.persistence")


class Waiter:
    """One waiting turn: woken from any thread, waited on sync or async."""

    __slots__ = ("_async_event", "_event", "_loop", "key")

    def __init__(self, key: str) -> None:
        self.key = key
        self._event = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._async_event: asyncio.Event | None = None
        try:
            self._loop = asyncio.get_running_loop()
            self._async_event = asyncio.Event()
        except RuntimeError:
            pass

    def wake(self) -> None:
        """Wake the waiter (any thread)."""
        self._event.set()
        loop, event = self._loop, self._async_event
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(event.set)

    def clear(self) -> None:
        self._event.clear()
        if self._async_event is not None:
            self._async_event.clear()

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds; ``True`` when woken."""
        return self._event.wait(timeout)

    async def await_wakeup(self, seconds: float) -> bool:
        """Wait on the event loop up to ``seconds``; ``True`` when woken."""
        if self._async_event is not None:
            with anyio.move_on_after(seconds):
                await self._async_event.wait()
                return True
            return False
        # Not asyncio (trio): a worker thread waits on the thread event.
        return await anyio.to_thread.run_sync(self._event.wait, seconds, abandon_on_cancel=True)


class Hub:
    """The waiters of this process, by key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[Waiter]] = {}

    def add(self, waiter: Waiter) -> None:
        with self._lock:
            self._waiters.setdefault(waiter.key, set()).add(waiter)

    def remove(self, waiter: Waiter) -> None:
        with self._lock:
            waiters = self._waiters.get(waiter.key)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[waiter.key]

    def notify(self, key: str) -> None:
        """Wake every waiter of ``key`` (any thread)."""
        with self._lock:
            waiters = list(self._waiters.get(key, ()))
        for waiter in waiters:
            waiter.wake()


#: This process's waiters.
hub = Hub()


class Listen(Effect[Waiter]):
    """Effect: register a waiter for ``key`` for the rest of the drive (and, on PostgreSQL,
    make sure this process listens for releases in other processes)."""

    __slots__ = ("bind", "key")

    def __init__(self, key: str, bind: Any) -> None:
        self.key = key
        self.bind = bind

    def _register(self, scope: Scope) -> Waiter:
        waiter = Waiter(self.key)
        hub.add(waiter)
        scope.on_close(lambda: hub.remove(waiter))
        return waiter

    def run(self, scope: Scope) -> Waiter:
        waiter = self._register(scope)
        listen(self.bind)
        return waiter

    async def arun(self, scope: Scope) -> Waiter:
        waiter = self._register(scope)
        await anyio.to_thread.run_sync(listen, self.bind)  # may wait for LISTEN: off the loop
        return waiter


class WaitForWakeup(Effect[bool]):
    """Effect: wait until ``waiter`` is woken or ``timeout`` seconds pass; ``True``: woken."""

    __slots__ = ("timeout", "waiter")
    interruptible = True

    def __init__(self, waiter: Waiter, timeout: float) -> None:
        self.waiter = waiter
        self.timeout = timeout

    def run(self, scope: Scope) -> bool:
        woken = self.waiter.wait(self.timeout)
        self.waiter.clear()
        return woken

    async def arun(self, scope: Scope) -> bool:
        woken = await self.waiter.await_wakeup(self.timeout)
        self.waiter.clear()
        return woken


# -- PostgreSQL LISTEN ----------------------------------------------------------------------------

# libpq's connection parameters that may appear in a URL's query string; others (a driver's own
# options) would make libpq refuse the URI.
_LIBPQ_PARAMETERS = frozenset(
    {
        "application_name",
        "connect_timeout",
        "options",
        "passfile",
        "service",
        "sslcert",
        "sslcrl",
        "sslkey",
        "sslmode",
        "sslpassword",
        "sslrootcert",
        "target_session_attrs",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
    }
)
_RETRY_AFTER = 30.0  # seconds before a listener that could not connect tries again


class _Listener:
    """A thread with one PostgreSQL connection doing ``LISTEN``, waking this process's waiters."""

    def __init__(
        self, conninfo: str, channels: tuple[str, ...], on_payload: Callable[[str], None]
    ) -> None:
        self.conninfo = conninfo
        self.channels = channels
        self.on_payload = on_payload
        self.failed_at: float | None = None
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sa_llm-listen", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            import psycopg
        except ImportError:
            self.failed_at = time.monotonic()
            self.ready.set()
            return
        while True:
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as connection:
                    for channel in self.channels:
                        connection.execute(f"LISTEN {channel}")
                    self.failed_at = None
                    self.ready.set()
                    while True:
                        for notice in connection.notifies(timeout=1.0):
                            self.on_payload(notice.payload)
            except Exception as exc:
                # Waiters fall back to polling meanwhile; try again later.
                logger.debug("LISTEN failed (%s); polling instead", exc)
                self.failed_at = time.monotonic()
                self.ready.set()
                time.sleep(_RETRY_AFTER)


_listeners: dict[str, _Listener] = {}
_listeners_lock = threading.Lock()


def _conninfo(url: URL) -> str | None:
    """A libpq URI for ``url`` (any PostgreSQL driver), or ``None`` when it has no host part."""
    if url.get_backend_name() != "postgresql":
        return None
    query = {key: value for key, value in url.query.items() if key in _LIBPQ_PARAMETERS}
    plain = url.set(drivername="postgresql", query=query)
    return plain.render_as_string(hide_password=False)


def _on_payload(payload: str) -> None:
    """A NOTIFY: wake the waiters of its key (an event write's payload ends with ``:<seq>``)."""
    if payload.startswith("events:"):
        payload = payload.rpartition(":")[0]
    hub.notify(payload)


def listen(bind: Any) -> None:
    """Make sure this process listens for turn releases on ``bind``'s database (PostgreSQL with
    psycopg installed; elsewhere nothing: waiters poll)."""
    from sa_llm._persisted.events import CHANNEL as EVENTS
    from sa_llm._persisted.lease import CHANNEL as TURNS

    url = getattr(bind, "url", None)
    if not isinstance(url, URL):
        return
    conninfo = _conninfo(url)
    if conninfo is None:
        return
    with _listeners_lock:
        listener = _listeners.get(conninfo)
        if listener is not None and listener.alive:
            return
        listener = _listeners[conninfo] = _Listener(conninfo, (TURNS, EVENTS), _on_payload)
    # The first waiter waits (briefly) for LISTEN to be in place, so a release right after its
    # failed claim is not missed; a listener that cannot connect leaves it to polling.
    listener.ready.wait(2.0)
