"""A chat's event log, for viewers: read what happened after a position, wait for more, prune.

A chat class with an ``@acts_as_event`` class (:class:`~sa_llm.mixins.EventMixin`) gets every
change a viewer needs as a row: a message created, streamed text (in batches), a reply completed,
failed, cancelled or interrupted, a turn started or ended. Each carries the chat's next ``seq``
(1, 2, 3, ... with no gap) and is written in the transaction of the change it describes, so the
database is the stream: a viewer replays what it missed after its last ``seq`` and tails the
rest, across reloads, reconnects and server processes. Kinds and their data are listed in
``docs/chat-ui.md``.

Example (the loop of a server-sent events endpoint)::

    after = last_event_id
    while True:
        page = await aread_events(engine, Chat, chat_id, after=after)
        if page.reset:            # the position was pruned: re-render the chat from its rows
            yield render_all(...)
        for event in page.events:
            yield event.to_json()
        after = page.last_seq
        await await_events(engine, Chat, chat_id, after=after, timeout=15)
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from sa_llm._mapping import chat_schema
from sa_llm._persisted import events as _events
from sa_llm._persisted.events import ChatEvent
from sa_llm._persisted.wakeups import Waiter, hub, listen
from sa_llm.errors import ConfigurationError

__all__ = [
    "ChatEvent",
    "EventPage",
    "EventSubscription",
    "aprune_events",
    "aread_events",
    "await_events",
    "prune_events",
    "read_events",
    "subscribe_events",
    "wait_for_events",
]


@dataclass(frozen=True)
class EventPage:
    """What :func:`read_events` found.

    Attributes:
        events: the events after the position asked for, in ``seq`` order.
        last_seq: the chat's last ``seq`` now (ask after this next time).
        reset: the position is older than the log holds (old events were pruned): render the
            chat from its rows, then go on from ``last_seq`` (``events`` is then empty).
    """

    events: list[ChatEvent]
    last_seq: int
    reset: bool = False


def _schema(chat_cls: type[Any]) -> Any:
    schema = chat_schema(chat_cls)
    if schema.event_cls is None:
        raise ConfigurationError(
            f"{chat_cls.__name__} has no event log: declare an @acts_as_event class for it "
            "(sa_llm.mixins.EventMixin) and an event_seq column on the chat."
        )
    return schema


def read_events(
    bind: Engine, chat_cls: type[Any], chat_id: Any, *, after: int = 0, limit: int = 1000
) -> EventPage:
    """The chat's events after ``after`` (at most ``limit``), read on a connection of its own
    in one short transaction (no snapshot or SQLite lock outlives the call: viewers wait
    between reads).

    Raises:
        ConfigurationError: the chat class has no event log.
    """
    with bind.connect() as connection:
        return _read(connection, chat_cls, chat_id, after, limit)


async def aread_events(
    bind: AsyncEngine, chat_cls: type[Any], chat_id: Any, *, after: int = 0, limit: int = 1000
) -> EventPage:
    """Async twin of :func:`read_events`."""
    async with bind.connect() as connection:
        return await connection.run_sync(lambda sync: _read(sync, chat_cls, chat_id, after, limit))


def _read(connection: Any, chat_cls: type[Any], chat_id: Any, after: int, limit: int) -> EventPage:
    schema = _schema(chat_cls)
    events, last = _events.read(connection, schema, chat_id, after, limit)
    reset = False
    if after > 0 and after < last and (not events or events[0].seq > after + 1):
        E = schema.event_cls
        oldest = connection.execute(
            select(func.min(E.seq)).where(getattr(E, schema.event_chat_fk) == chat_id)
        ).scalar()
        # A gap at the start of the log is pruning (a completed message's deltas leave gaps
        # later on, which its message.completed covers).
        reset = oldest is None or int(oldest) > after + 1
        if reset:
            events = []
    return EventPage(events, last, reset)


def _key(chat_cls: type[Any], chat_id: Any) -> str:
    return _events.events_key(_schema(chat_cls), chat_id)


def wait_for_events(bind: Engine, chat_cls: type[Any], chat_id: Any, *, timeout: float) -> bool:
    """Block until the chat's log may have grown (a write in this process, or a PostgreSQL
    ``NOTIFY`` from another), or ``timeout`` seconds pass; then read again.

    ``True`` when woken. A viewer polls too (it reads after each wait), so a missed wake-up
    only delays it; SQLite across processes has no wake-ups: keep ``timeout`` short there.
    """
    waiter = Waiter(_key(chat_cls, chat_id))
    hub.add(waiter)
    try:
        listen(bind)
        return waiter.wait(timeout)
    finally:
        hub.remove(waiter)


async def await_events(
    bind: Engine | AsyncEngine, chat_cls: type[Any], chat_id: Any, *, timeout: float
) -> bool:
    """Async twin of :func:`wait_for_events` (``bind``: the engine the events are written on)."""

    waiter = Waiter(_key(chat_cls, chat_id))
    hub.add(waiter)
    try:
        started = time.monotonic()
        await _alisten(bind)
        return await waiter.await_wakeup(max(0.0, timeout - (time.monotonic() - started)))
    finally:
        hub.remove(waiter)


async def _alisten(bind: Any) -> None:
    """Make sure this process listens for other processes' writes (PostgreSQL only: elsewhere
    there is nothing to listen to, and no thread is borrowed)."""
    import anyio.to_thread

    sync_bind = getattr(bind, "sync_engine", bind)
    if getattr(getattr(sync_bind, "dialect", None), "name", None) == "postgresql":
        await anyio.to_thread.run_sync(listen, sync_bind)  # may wait for LISTEN: off the loop


class EventSubscription:
    """A viewer's standing wake-up for one chat (see :func:`subscribe_events`)."""

    def __init__(self, waiter: Waiter) -> None:
        self._waiter = waiter

    async def wait(self, timeout: float) -> bool:
        """Wait until the chat's log may have grown since the last wait, or ``timeout``
        seconds pass; ``True`` when woken. Read the log after each wait."""
        woken = await self._waiter.await_wakeup(timeout)
        self._waiter.clear()  # before the caller reads: a later write wakes the next wait
        return woken


@asynccontextmanager
async def subscribe_events(
    bind: Engine | AsyncEngine, chat_cls: type[Any], chat_id: Any
) -> AsyncIterator[EventSubscription]:
    """Wake-ups for one chat for as long as the block runs: the loop of a live viewer.

    Unlike :func:`await_events`, the subscription is registered once, before the first read, so
    a write between a read and the next wait still wakes that wait; and waiting costs no
    thread (an ``asyncio`` event, set from a write in this process or from the PostgreSQL
    listener thread this process shares). ::

        async with subscribe_events(engine, Chat, chat_id) as subscription:
            while True:
                page = await aread_events(engine, Chat, chat_id, after=after)
                ...
                await subscription.wait(timeout=5)
    """
    waiter = Waiter(_key(chat_cls, chat_id))
    hub.add(waiter)
    try:
        await _alisten(bind)
        yield EventSubscription(waiter)
    finally:
        hub.remove(waiter)


def prune_events(
    session: Session, chat_cls: type[Any], *, older_than: datetime, chat_ids: Any = None
) -> int:
    """Delete events written before ``older_than`` (retention) and commit; returns how many.

    A viewer that asks for a pruned position gets ``reset`` (re-render from the rows).
    """
    count = _events.prune(session, _schema(chat_cls), older_than=older_than, chat_ids=chat_ids)
    session.commit()
    return count


async def aprune_events(
    session: AsyncSession, chat_cls: type[Any], *, older_than: datetime, chat_ids: Any = None
) -> int:
    """Async twin of :func:`prune_events`."""
    return await session.run_sync(
        lambda sync: prune_events(sync, chat_cls, older_than=older_than, chat_ids=chat_ids)
    )
