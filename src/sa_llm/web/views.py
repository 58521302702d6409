"""What a chat page shows of each message, built alike from the rows (a page render) and from
the event log (a live update), so one set of templates serves both.

A :class:`MessageView` is plain data: the role, the status, the text, the thinking, the tool
calls, the tool a result answers. :meth:`MessageView.partials` names the templates that render
it, most specific first, as RubyLLM's chat UI chooses its partials: a tool result looks for
``tool_results/_<tool name>.html`` before ``tool_results/_default.html``; an assistant
message with tool calls renders its text **and** each call (``tool_calls/_<name>.html``).

Example::

    views = await load_views(session, Chat, chat_id)
    html = "".join(templates.get_template(v.partials()[0]).render(message=v) for v in views)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from sa_llm._mapping import chat_schema
from sa_llm._persisted.events import ChatEvent
from sa_llm.web.markdown import render_markdown

__all__ = [
    "MessageView",
    "ToolCallView",
    "TurnEnd",
    "load_views",
    "tool_call_partials",
    "view_from_event",
]

#: Statuses of a message a turn is still writing.
STREAMING = frozenset({"pending", "streaming"})


@dataclass(frozen=True)
class ToolCallView:
    """A tool call an assistant message asked for."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class MessageView:
    """One message as a chat page shows it.

    Attributes:
        id: the row's primary key, as a string (DOM ids are ``message-<id>``).
        role: ``user``, ``assistant``, ``system`` or ``tool``.
        status: ``pending``/``streaming`` (being written), ``complete``, ``failed``,
            ``cancelled`` or ``interrupted``.
        content: the text (for a streaming reply: what has arrived so far).
        thinking: the model's reasoning text, if it showed any.
        tool_calls: the calls an assistant message asked for.
        tool_name: the tool a tool result answers (``None`` when unknown).
        created_at: when the row was written.
    """

    id: str
    role: str
    status: str
    content: str
    thinking: str | None = None
    tool_calls: tuple[ToolCallView, ...] = ()
    tool_name: str | None = None
    created_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def streaming(self) -> bool:
        """Whether a turn is still writing this message (its text grows)."""
        return self.status in STREAMING

    @property
    def html(self) -> str:
        """The text as sanitised HTML (Markdown; escaped plain text without the ``ui`` extra)."""
        return render_markdown(self.content)

    @property
    def length(self) -> int:
        """Characters of text so far: where the next streamed delta starts (``offset``)."""
        return len(self.content)

    def partials(self) -> list[str]:
        """Template names for this message, most specific first."""
        if self.role == "tool":
            return [
                f"tool_results/_{_slug(self.tool_name or '')}.html",
                "tool_results/_default.html",
            ]
        if self.role in ("user", "assistant", "system"):
            return [f"messages/_{self.role}.html"]
        return ["messages/_assistant.html"]


@dataclass(frozen=True)
class TurnEnd:
    """How the last turn of a chat ended, when it did not complete (for an error partial)."""

    outcome: str  # failed, cancelled, interrupted
    error: str | None


def _slug(name: str) -> str:
    """A tool name as a template file name (``Get-Weather`` -> ``get_weather``)."""
    return re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_") or "default"


def tool_call_partials(call: ToolCallView) -> list[str]:
    """Template names for one tool call, most specific first."""
    return [f"tool_calls/_{_slug(call.name)}.html", "tool_calls/_default.html"]


def _views(session: Session, chat_cls: type[Any], chat_id: Any) -> list[MessageView]:
    schema = chat_schema(chat_cls)
    M, TC = schema.message_cls, schema.tool_call_cls
    rows = session.scalars(
        select(M).where(getattr(M, schema.message_chat_fk) == chat_id).order_by(M.created_at, M.id)
    ).all()
    if not rows:
        return []
    call_fk = getattr(TC, schema.tool_call_message_fk)
    calls: dict[Any, list[ToolCallView]] = {}
    names: dict[Any, str] = {}
    for call in session.scalars(
        select(TC).where(call_fk.in_([row.id for row in rows])).order_by(TC.id)
    ):
        message_id = getattr(call, schema.tool_call_message_fk)
        calls.setdefault(message_id, []).append(
            ToolCallView(str(call.tool_call_id), call.name, dict(call.arguments or {}))
        )
        names[call.id] = call.name
    views = []
    for row in rows:
        views.append(
            MessageView(
                id=str(row.id),
                role=row.role,
                status=getattr(row, "status", None) or "complete",
                content=row.content or "",
                thinking=getattr(row, "thinking_text", None),
                tool_calls=tuple(calls.get(row.id, ())),
                tool_name=names.get(getattr(row, schema.message_parent_fk, None)),
                created_at=getattr(row, "created_at", None),
            )
        )
    return views


async def load_views(session: AsyncSession, chat_cls: type[Any], chat_id: Any) -> list[MessageView]:
    """Every message of the chat, in order ``(created_at, id)``, as views."""
    return await session.run_sync(lambda sync: _views(sync, chat_cls, chat_id))


def view_from_event(event: ChatEvent, tool_name: str | None = None) -> MessageView | None:
    """The view a ``message.created``/``message.completed``/``message.status`` event describes
    (``None`` for other kinds)."""
    if event.message_id is None or event.kind not in (
        "message.created",
        "message.completed",
        "message.status",
    ):
        return None
    data = event.data
    status = data.get("status") or ("complete" if event.kind == "message.completed" else "pending")
    calls = tuple(
        ToolCallView(str(call.get("id")), str(call.get("name")), dict(call.get("arguments") or {}))
        for call in data.get("tool_calls") or ()
    )
    return MessageView(
        id=event.message_id,
        role=str(data.get("role") or "assistant"),
        status=str(status),
        content=str(data.get("content") or ""),
        thinking=data.get("thinking"),
        tool_calls=calls,
        tool_name=tool_name or data.get("name"),
        created_at=event.created_at,
    )
