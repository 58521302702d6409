"""The turn lease: one turn per chat across sessions, processes and hosts, kept in the chat row.

A turn claims its chat with one conditional ``UPDATE`` of three columns of the chat row
(``turn_token``, ``turn_expires_at``, ``cancel_requested_at``), in the same transaction as its
first rows (the user message), so claiming costs no commit of its own::

    UPDATE chats SET turn_token = :token, turn_expires_at = :now + ttl, cancel_requested_at = NULL
     WHERE id = :chat AND turn_token IS NULL

When no row matches, a second statement takes over a lease whose holder stopped renewing it
(``... AND turn_expires_at < :now``); the turn that takes over first settles what the dead turn
left (:func:`settle`). Nothing stays locked: no transaction, row lock or connection is held while
the provider answers. The holder renews the lease from a heartbeat (:mod:`.heartbeat`), which
also reads the cancel flag, and releases it in the commit that completes the turn (or cleans it
up), where a ``NOTIFY`` (PostgreSQL) wakes the turns waiting for the chat.

Time comes from the database on PostgreSQL (``now()``, one clock for every host); elsewhere
(SQLite: one host) from this process, in UTC.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Connection, Interval, and_, bindparam, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import instance_state, set_committed_value

from sa_llm._mapping import LEASE_COLUMNS, ChatSchema
from sa_llm._persisted.approvals import parked_calls
from sa_llm._persisted.events import EventBuffer
from sa_llm._persisted.events import write as write_events

__all__ = [
    "CHANNEL",
    "Claim",
    "Lease",
    "LeaseState",
    "RepairReport",
    "claim",
    "lease_state",
    "notify_released",
    "release",
    "renew",
    "repair",
    "request_cancel",
    "settle",
    "wakeup_key",
]

logger = logging.getLogger("sa_llm.persistence")

#: The PostgreSQL channel released turns are announced on (payload: :func:`wakeup_key`).
CHANNEL = "sa_llm_turns"

#: The content of the result that closes a tool call whose turn died before it returned.
INTERRUPTED_TOOL_RESULT = json.dumps(
    {"error": "The turn was interrupted before this tool call returned a result."}
)

#: Statuses of rows a turn is still writing.
UNFINISHED = ("pending", "streaming")


@dataclass
class Lease:
    """One turn's hold on its chat (never persisted: the row has the token, this the rest).

    Attributes:
        chat_id: the chat's primary key.
        token: this turn's token, unique across hosts (a random UUID).
        ttl: seconds the lease lasts without a renewal.
        held: whether the turn holds the lease now (set by claim, cleared by release).
        stale: a token of an earlier turn of this chat in this process whose release failed
            (the database was down): the next claim may take it over at once.
    """

    chat_id: Any
    ttl: float
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    held: bool = False
    stale: str | None = None


class Claim:
    """What a claim found: the chat was free (``CLAIMED``), held by a dead turn that is taken
    over (``TAKEN_OVER``), or held by a running turn (``BUSY``)."""

    CLAIMED = "claimed"
    TAKEN_OVER = "taken over"
    BUSY = "busy"


@dataclass(frozen=True)
class LeaseState:
    """The lease columns of a chat row as read now."""

    token: str | None
    expires_at: datetime | None
    cancel_requested_at: datetime | None

    @property
    def running(self) -> bool:
        """Whether a turn holds the chat (its lease may have expired: the holder died)."""
        return self.token is not None


def _columns(schema: ChatSchema) -> tuple[Any, Any, Any, Any, Any]:
    """The chat table, its primary key and the three lease columns (Core)."""
    mapper = schema.chat_mapper
    table = mapper.local_table
    columns = [mapper.column_attrs[name].columns[0] for name in LEASE_COLUMNS]
    return table, mapper.primary_key[0], columns[0], columns[1], columns[2]


@dataclass(frozen=True)
class _LeaseSql:
    """The lease statements of one chat class on one dialect, built once (every turn runs
    them: building and caching a statement costs more than running it on SQLite).

    Parameters: ``lease_chat``, ``lease_token``, ``lease_stale``, and the clock: on PostgreSQL
    ``now()`` serves every host with one clock and ``lease_ttl`` is an interval; elsewhere
    (SQLite serves one host) ``lease_now`` / ``lease_expires`` are this process's UTC time,
    bound with the column's own type so values compare as stored.
    """

    claim: Any
    claim_or_stale: Any
    take_over: Any
    renew: Any
    release: Any
    read: Any
    cancel: Any
    server_clock: bool


_statements: dict[tuple[type[Any], str], _LeaseSql] = {}


def _sql(schema: ChatSchema, dialect: str) -> _LeaseSql:
    try:
        return _statements[(schema.chat_cls, dialect)]
    except KeyError:
        pass
    table, pk, token_col, expires_col, cancel_col = _columns(schema)
    server_clock = dialect == "postgresql"
    if server_clock:
        now: Any = func.now()
        expires: Any = func.now() + bindparam("lease_ttl", type_=Interval())
    else:
        now = bindparam("lease_now", type_=expires_col.type)
        expires = bindparam("lease_expires", type_=expires_col.type)
    this_chat = pk == bindparam("lease_chat")
    held = token_col == bindparam("lease_token")
    take = {token_col.key: bindparam("lease_token"), expires_col.key: expires, cancel_col.key: None}
    free = token_col.is_(None)
    sql = _LeaseSql(
        claim=update(table).where(this_chat, free).values(take),
        claim_or_stale=update(table)
        .where(this_chat, or_(free, token_col == bindparam("lease_stale")))
        .values(take),
        take_over=update(table)
        .where(this_chat, and_(token_col.is_not(None), expires_col < now))
        .values(take),
        renew=update(table).where(this_chat, held).values({expires_col.key: expires}),
        release=update(table)
        .where(this_chat, held)
        .values({token_col.key: None, expires_col.key: None, cancel_col.key: None}),
        read=select(token_col, expires_col, cancel_col).where(this_chat),
        cancel=update(table)
        .where(this_chat, token_col.is_not(None), cancel_col.is_(None))
        .values({cancel_col.key: now}),
        server_clock=server_clock,
    )
    _statements[(schema.chat_cls, dialect)] = sql
    return sql


def _connection(session: Session | Connection, schema: ChatSchema) -> Connection:
    """The connection of ``session``'s transaction for the chat table (Core, not the ORM's
    execute: these statements load no objects)."""
    if isinstance(session, Session):
        return session.connection(bind_arguments={"mapper": schema.chat_mapper})
    return session


def _clock(sql: _LeaseSql, ttl: float) -> tuple[dict[str, Any], datetime]:
    """The clock parameters of a lease statement, and this process's UTC time now."""
    here = datetime.now(timezone.utc)
    if sql.server_clock:
        return {"lease_ttl": timedelta(seconds=ttl)}, here
    return {"lease_now": here, "lease_expires": here + timedelta(seconds=ttl)}, here


def _set_loaded(record: Any, values: dict[str, Any]) -> None:
    """Make the chat row instance show the lease as written (without loading anything)."""
    if record is None:
        return
    state = instance_state(record)
    for name, value in values.items():
        if name in state.mapper.column_attrs and name not in state.committed_state:
            set_committed_value(record, name, value)


def claim(session: Session, schema: ChatSchema, lease: Lease, record: Any = None) -> str:
    """Claim the chat for ``lease`` in the session's transaction; a :class:`Claim` value.

    Runs first in its transaction, so on SQLite the write lock is taken before any read (a read
    transaction that later writes can fail at once instead of waiting). The caller commits.
    """
    connection = _connection(session, schema)
    sql = _sql(schema, connection.dialect.name)
    params, here = _clock(sql, lease.ttl)
    params["lease_chat"] = lease.chat_id
    params["lease_token"] = lease.token
    if lease.stale is not None:
        params["lease_stale"] = lease.stale
        result = connection.execute(sql.claim_or_stale, params)
    else:
        result = connection.execute(sql.claim, params)
    outcome = Claim.CLAIMED
    if result.rowcount != 1:
        params.pop("lease_stale", None)
        if connection.execute(sql.take_over, params).rowcount != 1:
            return Claim.BUSY
        outcome = Claim.TAKEN_OVER
    elif lease.stale is not None:
        outcome = Claim.TAKEN_OVER  # our own earlier turn, which could not clean up
    lease.held = True
    lease.stale = None
    _set_loaded(
        record,
        {
            "turn_token": lease.token,
            "turn_expires_at": here + timedelta(seconds=lease.ttl),
            "cancel_requested_at": None,
        },
    )
    return outcome


def renew(connection: Session | Connection, schema: ChatSchema, lease: Lease) -> bool:
    """Extend the lease by its ttl; ``False`` when this turn no longer holds it."""
    conn = _connection(connection, schema)
    sql = _sql(schema, conn.dialect.name)
    params, _ = _clock(sql, lease.ttl)
    params["lease_chat"] = lease.chat_id
    params["lease_token"] = lease.token
    return bool(conn.execute(sql.renew, params).rowcount == 1)


def lease_state(connection: Session | Connection, schema: ChatSchema, chat_id: Any) -> LeaseState:
    """The chat's lease columns, read now (one primary-key SELECT)."""
    conn = _connection(connection, schema)
    row = conn.execute(_sql(schema, conn.dialect.name).read, {"lease_chat": chat_id}).first()
    if row is None:
        return LeaseState(None, None, None)
    return LeaseState(row[0], row[1], row[2])


def release(session: Session, schema: ChatSchema, lease: Lease, record: Any = None) -> bool:
    """Give the chat up in the session's transaction (the caller commits): ``False`` when the
    lease was no longer this turn's (it expired and another turn took the chat over)."""
    connection = _connection(session, schema)
    sql = _sql(schema, connection.dialect.name)
    result = connection.execute(
        sql.release, {"lease_chat": lease.chat_id, "lease_token": lease.token}
    )
    lease.held = False
    released = bool(result.rowcount == 1)
    if released:
        notify_released(connection, schema, lease.chat_id)
        _set_loaded(
            record, {"turn_token": None, "turn_expires_at": None, "cancel_requested_at": None}
        )
    return released


def wakeup_key(schema: ChatSchema, chat_id: Any) -> str:
    """What names a chat among waiters: its table and key (a NOTIFY payload too)."""
    return f"turn:{schema.chat_table_name}:{chat_id}"


def notify_released(session: Session | Connection, schema: ChatSchema, chat_id: Any) -> None:
    """On PostgreSQL, ``pg_notify`` the release: delivered to listeners when this commits."""
    connection = _connection(session, schema)
    if connection.dialect.name == "postgresql":
        connection.execute(_NOTIFY, {"channel": CHANNEL, "payload": wakeup_key(schema, chat_id)})


_NOTIFY = select(func.pg_notify(bindparam("channel"), bindparam("payload")))


def request_cancel(session: Session | Connection, schema: ChatSchema, chat_id: Any) -> bool:
    """Ask the turn running on the chat to stop (the caller commits); ``False``: none runs."""
    connection = _connection(session, schema)
    sql = _sql(schema, connection.dialect.name)
    params, _ = _clock(sql, 0)
    params["lease_chat"] = chat_id
    if connection.execute(sql.cancel, params).rowcount == 1:
        return True
    return lease_state(connection, schema, chat_id).running  # already requested: still running


def settle(
    session: Session, schema: ChatSchema, chat_id: Any, events: EventBuffer | None = None
) -> int:
    """Put right what a turn that died on this chat left behind; returns the rows changed.

    * a placeholder it was writing (status ``pending`` / ``streaming``): deleted when blank,
      else (its text was flushed: ``keep_partial_output``) kept as ``interrupted``;
    * tool calls it asked for without a result: each gets a result saying the turn was
      interrupted, so the model sees every call answered and the chat can continue (a round
      parked for approval is left to its decisions).

    Call it with the chat's lease held (after a takeover) or while no turn runs (repair).
    ``events`` (the step's event buffer) receives what changed, for the chat's event log.
    """
    M, TC = schema.message_cls, schema.tool_call_cls
    chat_fk = getattr(M, schema.message_chat_fk)
    changed = 0
    if "status" in schema.optional:
        unfinished = session.scalars(
            select(M).where(chat_fk == chat_id, M.status.in_(UNFINISHED)).order_by(M.id)
        ).all()
        for row in unfinished:
            blank = not row.content and getattr(row, "content_raw", None) in (None, "", [], {})
            calls = session.scalars(
                select(TC.id).where(getattr(TC, schema.tool_call_message_fk) == row.id)
            ).first()
            if calls is not None:  # a hook wrote the calls but not the status: complete
                row.status = "complete"
            elif blank:  # nothing came (or, without keep_partial_output, nothing was kept)
                if events is not None:
                    events.add("message.deleted", row.id)
                session.delete(row)
            else:  # the text flushed so far (keep_partial_output)
                row.status = "interrupted"
                if events is not None:
                    events.add("message.status", row.id, status="interrupted", content=row.content)
            changed += 1
        session.flush()
    changed += _close_unanswered_calls(session, schema, chat_id, events)
    if changed and events is not None:
        events.add("turn.ended", outcome="interrupted", error="The process running it stopped.")
    if changed:
        logger.warning("Settled %d row(s) a dead turn left on chat %s", changed, chat_id)
    return changed


def _close_unanswered_calls(
    session: Session, schema: ChatSchema, chat_id: Any, events: EventBuffer | None = None
) -> int:
    """Answer every tool call of the chat that has no result with an "interrupted" result."""
    M, TC = schema.message_cls, schema.tool_call_cls
    chat_fk = getattr(M, schema.message_chat_fk)
    parent_fk = getattr(M, schema.message_parent_fk)
    call_message_fk = getattr(TC, schema.tool_call_message_fk)
    answered = select(parent_fk).where(parent_fk.is_not(None))
    query = (
        select(TC.id, TC.tool_call_id)
        .join(M, call_message_fk == M.id)
        .where(chat_fk == chat_id, TC.id.not_in(answered))
        .order_by(TC.id)
    )
    if schema.approval:  # a round parked for approval waits for a person, not a process
        query = query.where(call_message_fk.not_in(parked_calls(schema)))
    open_calls = session.execute(query).all()
    rows = []
    for call_pk, _provider_id in open_calls:
        row = schema.message_cls()
        setattr(row, schema.message_chat_fk, chat_id)
        row.role = "tool"
        row.content = INTERRUPTED_TOOL_RESULT
        setattr(row, schema.message_parent_fk, call_pk)
        if "status" in schema.optional:
            row.status = "complete"
        session.add(row)
        rows.append((row, _provider_id))
    if open_calls:
        session.flush()
    if events is not None:
        for row, provider_id in rows:
            events.add(
                "message.completed", row.id, role="tool", status="complete",
                content=INTERRUPTED_TOOL_RESULT, tool_call_id=provider_id,
            )  # fmt: skip
    return len(open_calls)


@dataclass(frozen=True)
class RepairReport:
    """What :func:`repair_chats` did.

    Attributes:
        chats: the chats whose rows were put right.
        rows: the message rows deleted, re-labelled or added (closed tool calls).
        busy: chats skipped because a turn holds them now (a live lease).
    """

    chats: tuple[Any, ...]
    rows: int
    busy: tuple[Any, ...]


def repair(session: Session, schema: ChatSchema, chat_ids: Any = None) -> RepairReport:
    """Settle what dead turns left in every chat (or those in ``chat_ids``) that no turn holds.

    Each chat is taken with a lease of its own while it is settled, so a turn cannot start on
    it meanwhile; chats held by a live turn are skipped. Commits per chat.
    """
    M = schema.message_cls
    chat_fk = getattr(M, schema.message_chat_fk)
    found: list[Any] = []
    if "status" in schema.optional:  # without it, nothing tells a placeholder from a reply
        candidates = select(chat_fk).distinct().where(M.status.in_(UNFINISHED))
        if chat_ids is not None:
            candidates = candidates.where(chat_fk.in_(list(chat_ids)))
        found += session.scalars(candidates).all()
    found += _chats_with_open_calls(session, schema, chat_ids)
    session.commit()
    repaired: list[Any] = []
    busy: list[Any] = []
    rows = 0
    for chat_id in dict.fromkeys(found):
        lease = Lease(chat_id, ttl=60.0)
        try:
            outcome = claim(session, schema, lease) if schema.lease else Claim.CLAIMED
            if outcome == Claim.BUSY:
                session.rollback()
                busy.append(chat_id)
                continue
            events = EventBuffer()
            changed = settle(session, schema, chat_id, events)
            write_events(session, schema, chat_id, events.items)
            if schema.lease:
                release(session, schema, lease)
            session.commit()
        except BaseException:
            session.rollback()
            raise
        if changed:
            repaired.append(chat_id)
            rows += changed
    return RepairReport(tuple(repaired), rows, tuple(busy))


def _chats_with_open_calls(session: Session, schema: ChatSchema, chat_ids: Any) -> list[Any]:
    M, TC = schema.message_cls, schema.tool_call_cls
    chat_fk = getattr(M, schema.message_chat_fk)
    parent_fk = getattr(M, schema.message_parent_fk)
    query = (
        select(chat_fk)
        .distinct()
        .join(TC, getattr(TC, schema.tool_call_message_fk) == M.id)
        .where(TC.id.not_in(select(parent_fk).where(parent_fk.is_not(None))))
    )
    if schema.approval:
        message_fk = getattr(TC, schema.tool_call_message_fk)
        query = query.where(message_fk.not_in(parked_calls(schema)))
    if chat_ids is not None:
        query = query.where(chat_fk.in_(list(chat_ids)))
    return list(session.scalars(query).all())
