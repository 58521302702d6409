"""Tool approval in the database: parked rounds and decisions, kept in the tool-call rows.

A round is **parked** when a reply's tool calls carry an approval state (``approval`` not
``NULL``: the calls that needed a decision are ``pending``, ``approved`` or ``denied``) and not
every call of the reply has its result yet. The state is columns of the ``tool_calls`` rows
(:data:`~sa_llm._mapping.APPROVAL_COLUMNS`), so any process reads and writes it:

* :func:`mark_pending`: the parking turn marks the calls that wait (with their arguments' hash)
  in the transaction that releases the chat;
* :func:`decide`: ``chat.approve`` / ``chat.deny`` record a decision, who and when, from any
  process, refusing a decision about arguments the person did not see;
* :func:`at_begin`: the next turn, in its first transaction (with the chat's lease), finds the
  parked round: ``complete()`` gets what to run (or a typed error while a call waits, or
  when a decision is stale, which then waits again); ``ask()`` gets an error, or with
  ``on_new_question="deny"`` the round is closed with denials before the new question.

Rounds with an approval state are left alone by the clean-up of a failed turn and by the
settling of a dead one (:mod:`.lease`): their calls wait for a person, not for a process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple

from sqlalchemy import Connection, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

from sa_llm._mapping import ChatSchema
from sa_llm._persisted.events import EventBuffer
from sa_llm._persisted.events import write as write_events
from sa_llm._persisted.history import read_message, tool_call_from_columns
from sa_llm.approval import (
    APPROVED,
    DENIED,
    PENDING,
    SUPERSEDED,
    ApprovalState,
    Decision,
    ParkedRound,
    arguments_hash,
    denial_content,
)
from sa_llm.errors import ApprovalPendingError, ConfigurationError, StaleApprovalError
from sa_llm.types import Message

__all__ = [
    "OpenCall",
    "Resume",
    "Verdict",
    "at_begin",
    "decide",
    "mark_pending",
    "parked_calls",
    "pending_query",
    "round_has_approvals",
]


class OpenCall(NamedTuple):
    """A call of a parked round, as its row holds it."""

    pk: Any
    call_id: str
    name: str
    arguments_hash: str  # of the arguments the row holds now
    decision: Decision | None
    answered: bool


@dataclass
class Resume:
    """A parked round whose calls are all decided: what the resuming turn sends and runs.

    Attributes:
        message: the reply that asked for the calls (all of them), as a rebuild reads it.
        answered: the results already written (a resuming turn that died part-way).
        round: the calls still to answer, with their decisions.
    """

    message: Message
    answered: list[Message]
    round: ParkedRound


@dataclass
class Verdict:
    """What the first transaction of a turn found about a parked round."""

    resume: Resume | None = None
    error: ApprovalPendingError | None = None
    changed: list[Any] = field(default_factory=list)


def _column(cls: type[Any], name: str) -> Any:
    """The Core column behind attribute ``name`` (whatever the column is called)."""
    return sa_inspect(cls).column_attrs[name].columns[0]


def _answered(schema: ChatSchema) -> Any:
    parent_fk = getattr(schema.message_cls, schema.message_parent_fk)
    return select(parent_fk).where(parent_fk.is_not(None))


def _open_in_chat(schema: ChatSchema, chat_id: Any) -> list[Any]:
    """WHERE clauses: calls of the chat's messages that have an approval state and no result."""
    M, TC = schema.message_cls, schema.tool_call_cls
    return [
        getattr(M, schema.message_chat_fk) == chat_id,
        TC.approval.is_not(None),
        TC.id.not_in(_answered(schema)),
    ]


def _joined(schema: ChatSchema, *columns: Any) -> Any:
    M, TC = schema.message_cls, schema.tool_call_cls
    return select(*columns).join(M, getattr(TC, schema.tool_call_message_fk) == M.id)


def round_has_approvals(session: Session | Connection, schema: ChatSchema, message_pk: Any) -> bool:
    """Whether the reply ``message_pk`` asked for calls that carry an approval state."""
    if not schema.approval:
        return False
    TC = schema.tool_call_cls
    fk = getattr(TC, schema.tool_call_message_fk)
    found = session.execute(
        select(TC.id).where(fk == message_pk, TC.approval.is_not(None)).limit(1)
    ).first()
    return found is not None


def parked_calls(schema: ChatSchema) -> Any:
    """A SELECT of the message keys of parked rounds (to leave their calls alone)."""
    TC = schema.tool_call_cls
    return select(getattr(TC, schema.tool_call_message_fk)).where(TC.approval.is_not(None))


def pending_query(schema: ChatSchema, chat_id: Any) -> Any:
    """The chat's tool-call rows that wait for a decision, in call order (ORM entities)."""
    TC = schema.tool_call_cls
    return (
        _joined(schema, TC)
        .where(*_open_in_chat(schema, chat_id), TC.approval == PENDING)
        .order_by(TC.id)
    )


def _open_round(
    session: Session | Connection, schema: ChatSchema, chat_id: Any
) -> tuple[Any, list[OpenCall]] | None:
    """The parked round of the chat (its latest), as the reply's key and all its calls."""
    TC = schema.tool_call_cls
    fk = getattr(TC, schema.tool_call_message_fk)
    message_pk = session.execute(
        _joined(schema, fk).where(*_open_in_chat(schema, chat_id)).order_by(TC.id.desc()).limit(1)
    ).scalar()
    if message_pk is None:
        return None
    rows = session.execute(
        select(
            TC.id, TC.tool_call_id, TC.name, TC.arguments, TC.approval,
            TC.approval_arguments_hash, TC.approval_decided_by, TC.approval_decided_at,
            TC.approval_reason,
        ).where(fk == message_pk).order_by(TC.id)
    ).all()  # fmt: skip
    parent_fk = getattr(schema.message_cls, schema.message_parent_fk)
    answered = set(
        session.scalars(select(parent_fk).where(parent_fk.in_([row[0] for row in rows]))).all()
    )
    calls = []
    for pk, call_id, name, arguments, state, digest, by, at, reason in rows:
        current = arguments_hash(tool_call_from_columns(call_id, name, arguments).arguments)
        decision = Decision(state, digest, by, at, reason) if state is not None else None
        calls.append(OpenCall(pk, call_id, name, current, decision, pk in answered))
    return message_pk, calls


def at_begin(
    session: Session,
    schema: ChatSchema,
    chat_id: Any,
    *,
    asking: bool,
    deny: bool,
    events: EventBuffer | None,
) -> Verdict:
    """What a turn does about the chat's parked round, in its first transaction.

    ``asking`` (a new question): an error, or (``deny``) the round closed with denials.
    Otherwise (``complete()``): the round to run, or an error while a call waits; a decision
    about other arguments than the call now has is reset to ``pending`` (with the new hash)
    and reported as :class:`StaleApprovalError`.
    """
    found = _open_round(session, schema, chat_id)
    if found is None:
        return Verdict()
    message_pk, calls = found
    open_calls = [call for call in calls if not call.answered]
    ids = [call.call_id for call in open_calls]
    if asking:
        if not deny:
            return Verdict(
                error=ApprovalPendingError(
                    f"Tool calls of this chat wait for a decision ({', '.join(ids)}): approve "
                    "or deny them and call complete() first, or use "
                    "with_approval(on_new_question='deny').",
                    ids,
                )
            )
        _close_with_denials(session, schema, chat_id, open_calls, events)
        return Verdict()
    stale = [
        call
        for call in open_calls
        if call.decision is not None
        and call.decision.state != PENDING
        and call.decision.arguments_hash != call.arguments_hash
    ]
    if stale:
        for call in stale:
            _set(session, schema, call.pk, PENDING, call.arguments_hash, None, None, None)
            if events is not None:
                events.add("tool_call.decided", tool_call_id=call.call_id, approval=PENDING)
        names = ", ".join(call.call_id for call in stale)
        return Verdict(
            error=StaleApprovalError(
                f"The arguments of tool call(s) {names} changed after the decision; they wait "
                "for a new one.",
                [call.call_id for call in stale],
            )
        )
    waiting = [c.call_id for c in open_calls if c.decision and c.decision.state == PENDING]
    if waiting:
        return Verdict(
            error=ApprovalPendingError(
                f"Tool call(s) {', '.join(waiting)} wait for approve() or deny().", waiting
            )
        )
    message = read_message(session, schema, chat_id, message_pk)
    if message is None:  # pragma: no cover - the calls' message is there: they were just read
        return Verdict()
    answered = _results(session, schema, chat_id, [c.pk for c in calls if c.answered])
    still = set(ids)
    decisions = {c.call_id: c.decision for c in open_calls if c.decision is not None}
    run = message.copy(tool_calls=tuple(call for call in message.tool_calls if call.id in still))
    return Verdict(resume=Resume(message, answered, ParkedRound(run, decisions)))


def _results(
    session: Session, schema: ChatSchema, chat_id: Any, call_pks: Sequence[Any]
) -> list[Message]:
    """The result messages of the calls ``call_pks``, in call order."""
    if not call_pks:
        return []
    M = schema.message_cls
    parent_fk = getattr(M, schema.message_parent_fk)
    order = {pk: index for index, pk in enumerate(call_pks)}
    rows = sorted(
        session.execute(select(M.id, parent_fk).where(parent_fk.in_(list(call_pks)))).all(),
        key=lambda row: order[row[1]],
    )
    found = [read_message(session, schema, chat_id, row[0]) for row in rows]
    return [message for message in found if message is not None]


def _set(
    session: Session | Connection,
    schema: ChatSchema,
    call_pk: Any,
    state: ApprovalState,
    digest: str | None,
    by: str | None,
    at: datetime | None,
    reason: str | None,
) -> None:
    TC = schema.tool_call_cls
    table = sa_inspect(TC).local_table
    values = {
        _column(TC, "approval").key: state,
        _column(TC, "approval_arguments_hash").key: digest,
        _column(TC, "approval_decided_by").key: by,
        _column(TC, "approval_decided_at").key: at,
        _column(TC, "approval_reason").key: reason,
    }
    session.execute(update(table).where(_column(TC, "id") == call_pk).values(values))


def mark_pending(session: Session, schema: ChatSchema, calls: Mapping[Any, str]) -> None:
    """Mark the calls ``{call key: arguments hash}`` as waiting for a decision."""
    for call_pk, digest in calls.items():
        _set(session, schema, call_pk, PENDING, digest, None, None, None)


def _close_with_denials(
    session: Session,
    schema: ChatSchema,
    chat_id: Any,
    calls: Sequence[OpenCall],
    events: EventBuffer | None,
) -> None:
    """Answer every open call of a parked round with a denial (a new question came first)."""
    now = datetime.now(timezone.utc)
    content = denial_content(SUPERSEDED)
    rows = []
    for call in calls:
        _set(session, schema, call.pk, DENIED, call.arguments_hash, None, now, SUPERSEDED)
        row = schema.message_cls()
        setattr(row, schema.message_chat_fk, chat_id)
        row.role = "tool"
        row.content = content
        setattr(row, schema.message_parent_fk, call.pk)
        if "status" in schema.optional:
            row.status = "complete"
        session.add(row)
        rows.append((row, call))
    session.flush()
    if events is not None:
        for row, call in rows:
            events.add("tool_call.decided", tool_call_id=call.call_id, approval=DENIED,
                       reason=SUPERSEDED)  # fmt: skip
            events.add("message.completed", row.id, role="tool", status="complete",
                       content=content, tool_call_id=call.call_id)  # fmt: skip


def decide(
    connection: Session | Connection,
    schema: ChatSchema,
    chat_id: Any,
    call: Any,
    state: ApprovalState,
    *,
    by: str | None,
    reason: str | None,
    expected_hash: str | None,
) -> Decision:
    """Record a decision about the parked call ``call`` (its provider id, or its row) of the
    chat; the caller commits.

    Raises:
        ConfigurationError: the chat has no open call of that id with an approval state.
        StaleApprovalError: ``expected_hash`` is not the hash of the call's arguments now.
    """
    if state not in (APPROVED, DENIED):
        raise ConfigurationError(f"A decision is 'approved' or 'denied', not {state!r}.")
    TC = schema.tool_call_cls
    if isinstance(call, str):
        which = TC.tool_call_id == call
        shown = call
    else:
        identity = sa_inspect(call).identity
        if identity is None:
            raise ConfigurationError(f"{call!r} is not a saved tool-call row.")
        which = TC.id == identity[0]
        shown = str(getattr(call, "tool_call_id", identity[0]))
    row = connection.execute(
        _joined(schema, TC.id, TC.tool_call_id, TC.name, TC.arguments)
        .where(*_open_in_chat(schema, chat_id), which)
        .order_by(TC.id.desc())
        .limit(1)
    ).first()
    if row is None:
        raise ConfigurationError(f"No tool call {shown!r} of this chat awaits a decision.")
    pk, call_id, name, arguments = row
    current = arguments_hash(tool_call_from_columns(call_id, name, arguments).arguments)
    if expected_hash is not None and expected_hash != current:
        raise StaleApprovalError(
            f"The arguments of tool call {call_id!r} changed since they were shown; decide "
            "again on the current ones.",
            [call_id],
        )
    now = datetime.now(timezone.utc)
    _set(connection, schema, pk, state, current, by, now, reason)
    write_events(
        connection, schema, chat_id,
        [("tool_call.decided", None,
          {"tool_call_id": call_id, "approval": state, "decided_by": by, "reason": reason})],
    )  # fmt: skip
    return Decision(state, current, by, now, reason)
