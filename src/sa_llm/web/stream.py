"""The live event stream of one chat, for a server-sent events endpoint: replay from the
database after the client's position, then tail, with a full re-render when the position is
gone.

Each event goes out as one SSE message whose ``id`` is its ``seq`` and whose ``data`` is JSON:
``seq``, ``prev`` (the ``seq`` of the message sent before it on this connection, or the
position the client resumed from), ``kind``, ``message_id`` and what the client needs to apply
it: ``html`` (a message's partial, an error partial, or the whole message list for ``reset``)
or ``text`` + ``offset`` (streamed text). ``prev`` lets a client apply messages strictly in
order even when they reach it out of order, and drop the ones it has already applied.

Wake-ups come from :func:`sa_llm.events.subscribe_events` (this process's writes at once,
other processes' through PostgreSQL ``NOTIFY``); the stream also re-reads every
``poll_interval`` seconds (the only wake-up between processes on SQLite) and sends a ``ping``
event every ``heartbeat`` seconds, so a dead connection fails a write and a client notices a
silent one.

Example (Starlette/FastAPI)::

    return StreamingResponse(
        chat_event_stream(engine, Chat, chat_id, cursor=parse_cursor(header, after),
                          render_message=..., render_turn_end=..., render_snapshot=...),
        media_type="text/event-stream", headers=HEADERS,
    )
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from sa_llm._mapping import chat_schema
from sa_llm.events import ChatEvent, aread_events, subscribe_events
from sa_llm.web.sse import comment, frame
from sa_llm.web.views import MessageView, TurnEnd, view_from_event

__all__ = ["chat_event_stream", "default_poll_interval", "last_turn_end"]

RenderMessage = Callable[[MessageView], str]
RenderTurnEnd = Callable[[TurnEnd], str]
RenderSnapshot = Callable[[], Awaitable[str]]


def default_poll_interval(engine: AsyncEngine) -> float:
    """Seconds between re-reads when no wake-up came: short on SQLite (other processes cannot
    wake a viewer there), long on PostgreSQL (``NOTIFY`` does; the re-read only covers a
    listener that is reconnecting)."""
    return 0.5 if engine.dialect.name == "sqlite" else 5.0


async def last_turn_end(engine: AsyncEngine, chat_cls: type[Any], chat_id: Any) -> TurnEnd | None:
    """How the chat's last turn ended when it failed, was cancelled or interrupted (from the
    event log); ``None`` when it completed, is still running, or the log no longer says."""
    schema = chat_schema(chat_cls)
    E = schema.event_cls
    if E is None:
        return None
    chat_fk = getattr(E, schema.event_chat_fk or "chat_id")
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                select(E.kind, E.data)
                .where(chat_fk == chat_id, E.kind.in_(("turn.started", "turn.ended")))
                .order_by(E.seq.desc())
                .limit(1)
            )
        ).first()
    if row is None or row[0] != "turn.ended":
        return None
    data = row[1] or {}
    if data.get("outcome") in (None, "complete"):
        return None
    return TurnEnd(str(data["outcome"]), data.get("error"))


async def _tool_name(engine: AsyncEngine, chat_cls: type[Any], message_id: str) -> str | None:
    """The name of the tool call a tool result answers (completed events do not carry it)."""
    schema = chat_schema(chat_cls)
    M, TC = schema.message_cls, schema.tool_call_cls
    key_type = M.__table__.c.id.type.python_type
    async with engine.connect() as connection:
        value = (
            await connection.execute(
                select(TC.name)
                .join(M, getattr(M, schema.message_parent_fk) == TC.id)
                .where(M.id == key_type(message_id))
            )
        ).scalar()
    return None if value is None else str(value)


async def chat_event_stream(
    engine: AsyncEngine,
    chat_cls: type[Any],
    chat_id: Any,
    *,
    cursor: int | None,
    render_message: RenderMessage,
    render_turn_end: RenderTurnEnd,
    render_snapshot: RenderSnapshot,
    heartbeat: float = 15.0,
    poll_interval: float | None = None,
    retry_ms: int = 1000,
    batch: int = 500,
) -> AsyncIterator[bytes]:
    """The chat's events after ``cursor`` as SSE bytes, then its new events as they come.

    A ``cursor`` of ``None``, past the chat's last event (a foreign id, a restored database)
    or older than the log holds (pruned) first gets a ``reset``: the whole message list
    rendered by ``render_snapshot`` (read after the position it stands for, so nothing is
    missed), then the tail. The generator runs until the client goes away (the server cancels
    it); nothing here cancels a turn.

    Args:
        engine: the async engine the chats live in.
        chat_cls: the ``@acts_as_chat`` class (with an ``@acts_as_event`` log).
        chat_id: the chat.
        cursor: the last ``seq`` the client has applied (``Last-Event-ID`` or ``?after=``).
        render_message: a message's partial (HTML) from its view.
        render_turn_end: the partial for a turn that failed, was cancelled or interrupted.
        render_snapshot: every message of the chat, rendered now.
        heartbeat: seconds between ``ping`` events on an idle stream.
        poll_interval: seconds between re-reads without a wake-up (see
            :func:`default_poll_interval`).
        retry_ms: the reconnection delay the client is told.
        batch: events read per query.
    """
    poll = poll_interval if poll_interval is not None else default_poll_interval(engine)
    stream = uuid.uuid4().hex[:8]
    yield frame(json.dumps({"kind": "hello", "stream": stream}), event="hello", retry=retry_ms)
    tool_names: dict[str, str] = {}
    prev = cursor
    next_ping = time.monotonic() + heartbeat
    async with subscribe_events(engine, chat_cls, chat_id) as subscription:
        while True:
            page = await aread_events(
                engine, chat_cls, chat_id, after=max(cursor or 0, 0), limit=batch
            )
            if cursor is None or page.reset or cursor > page.last_seq:
                # Everything up to last_seq is in the rows now: render them, go on from there.
                html = await render_snapshot()
                payload = {"seq": page.last_seq, "prev": prev, "kind": "reset", "html": html}
                yield frame(json.dumps(payload), id=page.last_seq)
                cursor = prev = page.last_seq
                continue
            for event in page.events:
                payload = await _payload(
                    engine, chat_cls, event, tool_names, render_message, render_turn_end
                )
                payload.update(seq=event.seq, prev=prev, kind=event.kind)
                payload["message_id"] = event.message_id
                yield frame(json.dumps(payload), id=event.seq)
                cursor = prev = event.seq
            if len(page.events) == batch:
                continue
            now = time.monotonic()
            if now >= next_ping:
                yield frame(json.dumps({"kind": "ping", "last_seq": cursor}), event="ping")
                next_ping = now + heartbeat
                continue
            await subscription.wait(min(poll, next_ping - now))


async def _payload(
    engine: AsyncEngine,
    chat_cls: type[Any],
    event: ChatEvent,
    tool_names: dict[str, str],
    render_message: RenderMessage,
    render_turn_end: RenderTurnEnd,
) -> dict[str, Any]:
    data = event.data
    if event.kind == "message.delta":
        return {"text": data.get("text", ""), "offset": int(data.get("offset", 0))}
    if event.kind == "turn.ended":
        outcome = str(data.get("outcome") or "complete")
        end = {"outcome": outcome}
        if outcome != "complete":
            end["html"] = render_turn_end(TurnEnd(outcome, data.get("error")))
        return end
    if event.kind == "message.created" and data.get("name") and event.message_id:
        tool_names[event.message_id] = str(data["name"])
    name = None
    if data.get("role") == "tool" and event.message_id:
        name = tool_names.get(event.message_id)
        if name is None and event.kind == "message.completed":
            name = await _tool_name(engine, chat_cls, event.message_id)
    view = view_from_event(event, name)
    if view is None:
        return {}
    return {"html": render_message(view), "role": view.role, "status": view.status}


def keepalive() -> bytes:
    """A comment frame (for servers that want to probe a connection without an event)."""
    return comment("keepalive")
