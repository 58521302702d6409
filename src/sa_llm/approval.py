"""Tool approval (human in the loop): tool calls that wait for a person's decision.

A tool marked ``requires_approval = True``, or a call a chat's policy picks
(``chat.with_approval(policy)``), is not run when the model calls it: the turn **parks**. The
reply that asked for the calls is kept (as a persisted row, with its ``tool_calls`` rows marked
``approval = "pending"`` and the hash of their arguments), the turn ends cleanly (a persisted
chat's lease is released) and ``ask`` / ``complete`` return that reply. A decision,
``chat.approve(call_id)`` or ``chat.deny(call_id, reason)``, may come from any process later; it
is recorded with who and when. The next ``complete()`` runs the round: approved calls execute,
denied ones are answered with an error result the model reads, calls that needed no approval
run as usual, and the model is asked again. Every call of a parked round waits, none runs before
the decisions: results are written in call order, as in any round.

A decision applies to the arguments it was made about: the hash of the call's arguments is
stored with it (:func:`arguments_hash`), and a call whose arguments no longer match is not run
(:class:`~sa_llm.errors.StaleApprovalError`, the call waits again). A new question while a round
is parked raises :class:`~sa_llm.errors.ApprovalPendingError`, or, with
``with_approval(..., on_new_question="deny")``, closes the round with denials first.

Tools run after an approval may run again if a process dies while running them (the round is
still open when the next turn takes over): write them to be idempotent.

Example::

    class Refund(sa_llm.Tool):
        \"\"\"Refunds an order.\"\"\"

        requires_approval = True

        def execute(self, order_id: str) -> str: ...

    reply = chat.with_tool(Refund).ask("Refund order 42")  # parks: reply.tool_calls
    for call in chat.pending_approvals():                  # (rows of a persisted chat)
        chat.approve(call.tool_call_id, by="alice")        # from any process
    chat.complete()                                        # runs the refund, then answers
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from sa_llm.types import Message, ToolCall

__all__ = [
    "APPROVED",
    "DENIED",
    "PENDING",
    "ApprovalPolicy",
    "ApprovalState",
    "Decision",
    "ParkedRound",
    "arguments_hash",
    "denial_content",
]

ApprovalState = Literal["pending", "approved", "denied"]
PENDING: Final = "pending"
APPROVED: Final = "approved"
DENIED: Final = "denied"

#: Decides per call whether it needs approval (may be ``async def``); ``True``: every call.
ApprovalPolicy = Callable[[ToolCall], Any]

#: The reason given to the model for calls closed because a new question came first.
SUPERSEDED = "The user sent a new message instead of deciding; the call was not run."


def arguments_hash(arguments: Mapping[str, Any]) -> str:
    """The SHA-256 of a call's arguments in canonical JSON (sorted keys, no spaces), hex.

    Key order and JSON formatting do not change it (a JSONB column reorders keys); any change
    of a value does.
    """
    canonical = json.dumps(
        dict(arguments), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Decision:
    """Where one call's approval stands.

    Attributes:
        state: ``pending`` (waiting), ``approved`` or ``denied``.
        arguments_hash: the hash of the arguments the call had when the state was set.
        decided_by: who decided (any string the application passes, e.g. a user id).
        decided_at: when (UTC).
        reason: why a call was denied (sent to the model).
    """

    state: ApprovalState
    arguments_hash: str | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    reason: str | None = None

    def matches(self, call: ToolCall) -> bool:
        """Whether the decision is about the arguments ``call`` has now."""
        return self.arguments_hash == arguments_hash(call.arguments)


@dataclass
class ParkedRound:
    """A reply whose tool calls wait for (or have got) decisions.

    Attributes:
        message: the assistant message that asked for the calls.
        decisions: call id -> decision, for the calls that need one (the others run as usual).
    """

    message: Message
    decisions: dict[str, Decision] = field(default_factory=dict)

    def waiting(self) -> list[str]:
        """The ids of calls without a decision that applies: pending, or about other
        arguments than the call has (stale)."""
        calls = {call.id: call for call in self.message.tool_calls}
        return [
            call_id
            for call_id, decision in self.decisions.items()
            if decision.state == PENDING
            or (call_id in calls and not decision.matches(calls[call_id]))
        ]

    def stale(self) -> list[str]:
        """The ids of calls decided about other arguments than the call has now."""
        calls = {call.id: call for call in self.message.tool_calls}
        return [
            call_id
            for call_id, decision in self.decisions.items()
            if decision.state != PENDING
            and call_id in calls
            and not decision.matches(calls[call_id])
        ]


def denial_content(reason: str | None) -> str:
    """The result the model reads for a denied call (a JSON error, as for a failed tool)."""
    message = "The user denied this tool call; it was not run."
    if reason:
        message += f" Reason: {reason}"
    return json.dumps({"error": message}, ensure_ascii=False)
