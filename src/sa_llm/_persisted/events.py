"""The event log of a chat: every change a viewer needs, in order, in the database.

A chat whose class has an ``@acts_as_event`` class gets one row per event: a per-chat sequence
number (``seq``: gap-free and increasing, allocated from the chat row's ``event_seq`` counter),
a ``kind``, the message it is about and a JSON ``data``. Events are written **in the same
transaction as the row change they describe**: a viewer that reads event N knows the rows are
as event N says, and a rolled-back step leaves neither. Streamed text is written as
``message.delta`` events in batches (every ``stream_event_interval`` seconds), never per chunk;
a message's deltas are deleted when it completes, because its ``message.completed`` event
carries the whole text.

Kinds and their data:

* ``turn.started`` / ``turn.ended`` (``outcome``: complete, failed, cancelled, interrupted,
  awaiting_approval with the waiting ``tool_calls``; ``error``): a turn took / released the
  chat.
* ``tool_call.decided`` (``tool_call_id``, ``approval``, ``decided_by``, ``reason``): a
  decision about a parked call (:mod:`sa_llm.approval`).
* ``message.created`` (``role``, ``status``, ``content``): a row was written (a user message, a
  reply's placeholder, a tool result's placeholder).
* ``message.delta`` (``text``, ``offset``: where the text starts in the message): streamed text.
* ``message.completed`` (``role``, ``status``, ``content``, ``thinking``, ``tool_calls``,
  ``tokens``): the row is final.
* ``message.status`` (``status``, ``content``, ``error``): a reply ended failed, cancelled or
  interrupted (with the text kept, if any).
* ``message.deleted``: a placeholder was removed (a failed turn's blank reply).

Readers: :mod:`sa_llm.events`. Wake-ups: each write notifies this process's waiters and, on
PostgreSQL, sends one ``NOTIFY`` per transaction (channel ``sa_llm_events``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

from sa_llm._mapping import ChatSchema

__all__ = ["CHANNEL", "ChatEvent", "EventBuffer", "events_key", "prune", "read", "write"]

#: The PostgreSQL channel event writes are announced on (payload: ``events_key`` + ``:seq``).
CHANNEL = "sa_llm_events"


@dataclass(frozen=True)
class ChatEvent:
    """One event of a chat's log (see the module docstring for the kinds).

    Attributes:
        seq: its place in the chat's log (1, 2, 3, ... with no gap).
        kind: what happened, e.g. ``"message.delta"``.
        message_id: the message it is about (as a string), or ``None``.
        data: the details, JSON.
        created_at: when it was written.
    """

    seq: int
    kind: str
    message_id: str | None
    data: Mapping[str, Any]
    created_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready (what a server-sent event carries)."""
        return {
            "seq": self.seq,
            "kind": self.kind,
            "message_id": self.message_id,
            "data": dict(self.data),
        }


@dataclass
class EventBuffer:
    """Events a step is about to write, in order (appended by the step, written at its end)."""

    items: list[tuple[str, str | None, dict[str, Any]]] = field(default_factory=list)

    def add(self, kind: str, message_id: Any = None, **data: Any) -> None:
        self.items.append((kind, None if message_id is None else str(message_id), data))


def events_key(schema: ChatSchema, chat_id: Any) -> str:
    """What names a chat's event log among waiters (and in NOTIFY payloads)."""
    return f"events:{schema.chat_table_name}:{chat_id}"


def _chat_columns(schema: ChatSchema) -> tuple[Any, Any, Any]:
    mapper = schema.chat_mapper
    return mapper.local_table, mapper.primary_key[0], mapper.column_attrs["event_seq"].columns[0]


def write(
    session: Session | Connection,
    schema: ChatSchema,
    chat_id: Any,
    items: Sequence[tuple[str, str | None, dict[str, Any]]],
) -> int | None:
    """Append ``items`` to the chat's log in the session's transaction; the last ``seq``.

    The numbers come from the chat row's counter (one ``UPDATE ... RETURNING``): concurrent
    writers are ordered by its row lock, and a rolled-back transaction gives its numbers back,
    so the log has no gap. ``None`` when there is nothing to write or no event class.
    """
    if not items or schema.event_cls is None:
        return None
    table, pk, counter = _chat_columns(schema)
    last = session.execute(
        update(table)
        .where(pk == chat_id)
        .values({counter.key: func.coalesce(counter, 0) + len(items)})
        .returning(counter)
    ).scalar_one()
    first = int(last) - len(items) + 1
    event_table = sa_inspect(schema.event_cls).local_table
    columns = sa_inspect(schema.event_cls).column_attrs
    fk = columns[schema.event_chat_fk or "chat_id"].columns[0].key
    now = datetime.now(timezone.utc)
    rows = [
        {
            fk: chat_id,
            columns["seq"].columns[0].key: first + offset,
            columns["kind"].columns[0].key: kind,
            columns["message_id"].columns[0].key: message_id,
            columns["data"].columns[0].key: data,
            **({columns["created_at"].columns[0].key: now} if "created_at" in columns else {}),
        }
        for offset, (kind, message_id, data) in enumerate(items)
    ]
    session.execute(event_table.insert(), rows)
    bind = session.get_bind() if isinstance(session, Session) else session
    if bind.dialect.name == "postgresql":
        session.execute(
            select(
                func.pg_notify(
                    bindparam("channel", CHANNEL), f"{events_key(schema, chat_id)}:{last}"
                )
            )
        )
    return int(last)


def forget_deltas(
    session: Session | Connection, schema: ChatSchema, chat_id: Any, message_id: Any
) -> None:
    """Delete a message's ``message.delta`` events (its ``message.completed`` has the text)."""
    if schema.event_cls is None:
        return
    E = schema.event_cls
    session.execute(
        delete(E.__table__).where(
            getattr(E, schema.event_chat_fk or "chat_id") == chat_id,
            E.message_id == str(message_id),
            E.kind == "message.delta",
        )
    )


def read(
    connection: Session | Connection,
    schema: ChatSchema,
    chat_id: Any,
    after: int = 0,
    limit: int | None = None,
) -> tuple[list[ChatEvent], int]:
    """The chat's events after ``after`` in order, and the chat's last ``seq`` now."""
    if schema.event_cls is None:
        return [], 0
    E = schema.event_cls
    chat_fk = getattr(E, schema.event_chat_fk or "chat_id")
    query = (
        select(E.seq, E.kind, E.message_id, E.data, getattr(E, "created_at", None) or E.seq)
        .where(chat_fk == chat_id, E.seq > after)
        .order_by(E.seq)
    )
    if limit is not None:
        query = query.limit(limit)
    events = [
        ChatEvent(
            int(seq),
            kind,
            message_id,
            data or {},
            created if isinstance(created, datetime) else None,
        )
        for seq, kind, message_id, data, created in connection.execute(query)
    ]
    _, pk, counter = _chat_columns(schema)
    last = connection.execute(select(counter).where(pk == chat_id)).scalar()
    return events, int(last or 0)


def prune(
    session: Session | Connection,
    schema: ChatSchema,
    *,
    older_than: datetime,
    chat_ids: Iterable[Any] | None = None,
) -> int:
    """Delete events written before ``older_than`` (retention); returns how many.

    Viewers asking for a position that was pruned get the chat re-rendered from its rows (see
    :func:`sa_llm.events.read_events`): nothing a viewer needs is lost.
    """
    if schema.event_cls is None:
        return 0
    E = schema.event_cls
    statement = delete(E.__table__).where(E.created_at < older_than)
    if chat_ids is not None:
        statement = statement.where(
            getattr(E, schema.event_chat_fk or "chat_id").in_(list(chat_ids))
        )
    return int(session.execute(statement).rowcount)  # type: ignore[attr-defined]
