"""The history of a persisted chat: read from its rows, mapped to value messages, reused.

* :func:`load_history` rebuilds a chat's conversation with two Core SELECTs (three with stored
  files) whatever its length: rows are read as tuples and become
  :class:`~sa_llm.types.Message` values through one mapping (:func:`message_from_columns`),
  the same one :meth:`MessageMethods.to_llm` and the history cache use.
* :class:`HistoryCache` is what one chat row instance remembers between turns (D9): the next
  turn reuses it when one aggregate ``SELECT count(*), max(updated_at)`` of the chat's messages
  matches; :class:`Mirror` keeps it in step with the rows a turn writes.
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import bindparam, func, null, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import instance_state

from sa_llm._mapping import ChatSchema
from sa_llm._persisted import attachments as _attachments
from sa_llm.storage import Storage
from sa_llm.types import Content, Message, RawContent, Thinking, Tokens, ToolCall

__all__ = [
    "HistoryCache",
    "Mirror",
    "call_from_values",
    "history_fingerprint",
    "load_history",
    "message_from_columns",
    "mirror_row",
    "read_history",
    "reusable",
    "reuse_history",
    "row_to_message",
]

logger = logging.getLogger("sa_llm.persistence")


@dataclass
class HistoryCache:
    """What one chat row instance remembers of its history between turns (never persisted).

    A turn rebuilds the conversation from the database (D9); when the rows have not changed
    since the last turn on this instance, the messages it already holds are reused, checked by
    one aggregate ``SELECT count(*), max(updated_at)`` of the chat's messages instead of reading
    them all again. ``messages`` are exactly what a rebuild would read (built from the written
    rows' values, not from the provider's reply), so a reused history sends the same request as
    a rebuilt one.

    Attributes:
        messages: the history as a rebuild reads it, or ``None`` (nothing to reuse).
        rows: how many message rows it mirrors.
        last_updated: the newest ``updated_at`` among them (naive UTC).
        version: the turn gate's count it is valid for (another turn in this process clears it).
        chat_id: the chat it belongs to.
    """

    messages: tuple[Message, ...] | None = None
    rows: int = 0
    last_updated: Any = None
    version: int = -1
    chat_id: Any = None

    def clear(self) -> None:
        """Forget the history: the next turn reads it from the database."""
        self.messages = None


class Mirror:
    """The history as the database holds it, kept up to date by the turn's own writes."""

    __slots__ = ("last_updated", "messages", "noted", "rows")

    def __init__(self, history: list[Message], rows: int, last_updated: Any) -> None:
        self.messages: list[Message] | None = list(history)
        self.rows = rows
        self.last_updated = last_updated
        self.noted: set[Any] = set()

    def add(self, mirrored: tuple[Message, Any] | None, key: Any) -> None:
        """A row this turn wrote, as a rebuild reads it (``None``: unknown, stop mirroring)."""
        if self.messages is None:
            return
        if mirrored is None or key in self.noted:
            self.messages = None
            return
        message, updated_at = mirrored
        self.noted.add(key)
        self.rows += 1
        if message.role == "system":  # a rebuild puts system messages first
            self.messages.insert(sum(1 for m in self.messages if m.role == "system"), message)
        else:
            self.messages.append(message)
        if self.last_updated is None or updated_at > self.last_updated:
            self.last_updated = updated_at


_HISTORY_COLUMNS = (
    "id",
    "role",
    "content",
    "content_raw",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_creation_tokens",
    "thinking_text",
    "thinking_signature",
    "thinking_tokens",
    "updated_at",
)

_TOKEN_KEYS = (
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_creation_tokens",
    "thinking_tokens",
)


@dataclass(frozen=True)
class _HistoryQueries:
    """The history SELECTs of one chat schema, built once (the chat id is a parameter)."""

    schema: ChatSchema

    messages: Any
    calls: Any
    has_signature: bool
    attachments: Any = None
    fingerprint: Any = None  # count(*), max(updated_at); None without an updated_at column
    present: frozenset[str] = frozenset()  # the history columns the message table has
    server_set: frozenset[str] = frozenset()  # ... whose value the database may set itself


#: chat class -> its history queries (weak: classes made in tests come and go).
_QUERIES: weakref.WeakKeyDictionary[type[Any], _HistoryQueries] = weakref.WeakKeyDictionary()


def _queries(schema: ChatSchema) -> _HistoryQueries:
    cached = _QUERIES.get(schema.chat_cls)
    if cached is not None and cached.schema is schema:
        return cached
    # Core columns of the mapped tables, labelled with the attribute names: the statements
    # skip the ORM's per-row machinery, and renamed columns still read by attribute.
    m = sa_inspect(schema.message_cls).c
    tc_mapper = sa_inspect(schema.tool_call_cls)
    tc = tc_mapper.c
    chat_id: Any = bindparam("sa_llm_chat_id")
    parent = tc_mapper.local_table.alias("parent_call")
    parent_id = parent.c[tc["id"].key]

    # A fixed column layout (absent optional columns read as NULL), so rows unpack by position.
    def column(name: str) -> Any:
        return m[name].label(name) if name in m else null().label(name)

    columns: list[Any] = [column(name) for name in _HISTORY_COLUMNS]
    columns.append(parent.c[tc["tool_call_id"].key].label("parent_call_id"))
    if schema.model_cls is not None and schema.message_model_attr is not None:
        model = sa_inspect(schema.model_cls).c
        columns.append(model["model_id"].label("model_name"))
        joined = (
            m["id"]
            .table.outerjoin(parent, m[schema.message_parent_fk] == parent_id)
            .outerjoin(model["id"].table, m[schema.message_model_attr] == model["id"])
        )
    else:
        if schema.message_model_attr is not None:
            columns.append(m[schema.message_model_attr].label("model_name"))
        else:
            columns.append(null().label("model_name"))
        joined = m["id"].table.outerjoin(parent, m[schema.message_parent_fk] == parent_id)
    query = (
        select(*columns)
        .select_from(joined)
        .where(m[schema.message_chat_fk] == chat_id)
        .order_by(m["created_at"], m["id"])
    )
    message_fk = tc[schema.tool_call_message_fk]
    has_signature = "thought_signature" in schema.optional_tool_call
    call_columns = [message_fk, tc["tool_call_id"], tc["name"], tc["arguments"]]
    if has_signature:
        call_columns.append(tc["thought_signature"])
    calls = (
        select(*call_columns)
        .select_from(tc["id"].table.join(m["id"].table, message_fk == m["id"]))
        .where(m[schema.message_chat_fk] == chat_id)
        .order_by(tc["id"])
    )
    attachments = (
        _attachments.history_query(schema, chat_id) if schema.attachment_cls is not None else None
    )
    fingerprint = None
    if "updated_at" in m:
        fingerprint = select(func.count(), func.max(m["updated_at"])).where(
            m[schema.message_chat_fk] == chat_id
        )
    present = frozenset(name for name in _HISTORY_COLUMNS if name in m)
    server_set = frozenset(
        name
        for name in present
        if m[name].server_default is not None or m[name].server_onupdate is not None
    )
    built = _HistoryQueries(
        schema, query, calls, has_signature, attachments, fingerprint, present, server_set
    )
    _QUERIES[schema.chat_cls] = built
    return built


def load_history(
    session: Session, schema: ChatSchema, chat_id: Any, storage: Storage | None = None
) -> list[Message]:
    """The chat's messages as value objects: system messages first, then by (created_at, id).

    Two SELECTs whatever the length: the messages (joined with their model and parent call) and
    the tool calls of the chat; a third for the stored files when the message class has an
    attachment class and a ``storage`` is given. Rows are read as tuples, not ORM objects:
    rebuilding a long history stays close to the cost of the raw SELECT. Files are read from
    the storage only when a request is built.
    """
    return read_history(session, schema, chat_id, storage).messages


@dataclass
class _History:
    """A rebuilt history and the fingerprint of the rows it was read from."""

    messages: list[Message]
    rows: int
    last_updated: Any
    has_files: bool


def read_history(
    session: Session, schema: ChatSchema, chat_id: Any, storage: Storage | None
) -> _History:
    queries = _queries(schema)
    params = {"sa_llm_chat_id": chat_id}
    files: dict[Any, tuple[Any, ...]] = {}
    if queries.attachments is not None and storage is not None:
        files = _attachments.read_history(session.execute(queries.attachments, params), storage)
    collected: dict[Any, list[ToolCall]] = {}
    for call in session.execute(queries.calls, params):
        signature = call[4] if queries.has_signature else None
        collected.setdefault(call[0], []).append(
            ToolCall(
                id=call[1],
                name=call[2],
                arguments=_arguments(call[3]),
                extra={"thought_signature": signature} if signature else {},
            )
        )
    calls_by_message = {pk: tuple(calls) for pk, calls in collected.items()}
    system: list[Message] = []
    others: list[Message] = []
    no_calls: tuple[ToolCall, ...] = ()
    rows = 0
    last_updated: Any = None
    for (
        pk, role, content, raw, tokens_in, tokens_out, cached, cache_creation,
        thinking_text, thinking_signature, thinking_tokens, updated_at, parent_call_id,
        model_name,
    ) in session.execute(queries.messages, params):  # fmt: skip
        # This loop is the cost of a long history: positional unpacking, no per-row lookups.
        rows += 1
        if updated_at is not None and (last_updated is None or updated_at > last_updated):
            last_updated = updated_at
        message = message_from_columns(
            pk, role, content, raw, tokens_in, tokens_out, cached, cache_creation,
            thinking_text, thinking_signature, thinking_tokens, parent_call_id, model_name,
            calls_by_message.get(pk, no_calls), files,
        )  # fmt: skip
        (system if role == "system" else others).append(message)
    return _History(system + others, rows, _naive_utc(last_updated), bool(files))


def message_from_columns(
    pk: Any,
    role: Any,
    content: Any,
    raw: Any,
    tokens_in: Any,
    tokens_out: Any,
    cached: Any,
    cache_creation: Any,
    thinking_text: Any,
    thinking_signature: Any,
    thinking_tokens: Any,
    parent_call_id: Any,
    model_name: Any,
    calls: tuple[ToolCall, ...],
    files: Mapping[Any, tuple[Any, ...]],
) -> Message:
    """One history message from a row's values: the rebuild and the history cache share it."""
    tokens = None
    if not (
        tokens_in is None
        and tokens_out is None
        and cached is None
        and cache_creation is None
        and thinking_tokens is None
    ):
        tokens = Tokens(tokens_in, tokens_out, cached, cache_creation, thinking_tokens)
    value: Any = RawContent(raw) if raw is not None else content
    if files and pk in files:
        if raw is None:
            value = Content(content, files[pk])
        else:
            logger.warning("Message %s has raw content; its stored files are not sent", pk)
    return Message(
        role,
        value,
        calls,
        parent_call_id,
        tokens,
        model_name,
        Thinking(thinking_text, thinking_signature)
        if (thinking_text or thinking_signature)
        else None,
    )


def call_from_values(values: Mapping[str, Any], has_signature: bool) -> ToolCall | None:
    """A ``tool_calls`` row's values as a rebuild reads them (``None``: not all known)."""
    try:
        signature = values.get("thought_signature") if has_signature else None
        return ToolCall(
            id=values["tool_call_id"],
            name=values["name"],
            arguments=_arguments(values["arguments"]),
            extra={"thought_signature": signature} if signature else {},
        )
    except KeyError:
        return None


def _naive_utc(value: Any) -> Any:
    """``updated_at`` comparable across drivers: SQLite returns naive UTC, PostgreSQL aware."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def history_fingerprint(session: Session, schema: ChatSchema, chat_id: Any) -> tuple[int, Any]:
    """The chat's message count and newest ``updated_at`` (naive UTC): one aggregate SELECT."""
    query = _queries(schema).fingerprint
    assert query is not None, "the message table has no updated_at column"
    rows, last_updated = session.execute(query, {"sa_llm_chat_id": chat_id}).one()
    return int(rows), _naive_utc(last_updated)


def reusable(cache: HistoryCache, schema: ChatSchema, chat_id: Any, version: int) -> bool:
    """Whether ``cache`` may hold this chat's history: the rows decide (see reuse_history)."""
    return (
        cache.messages is not None
        and cache.chat_id == chat_id
        and cache.version == version
        and _queries(schema).fingerprint is not None
    )


def reuse_history(
    session: Session, schema: ChatSchema, chat_id: Any, cache: HistoryCache, version: int
) -> list[Message] | None:
    """The cached history when the chat's rows are as the cache left them, else ``None``.

    One aggregate SELECT (count and newest ``updated_at`` of the chat's messages). A turn of
    this chat in this process since (``version``), a row added, deleted or updated through
    SQLAlchemy by anyone (the mixins' ``updated_at`` has ``onupdate``) all mean ``None``.
    """
    if not reusable(cache, schema, chat_id, version) or cache.messages is None:
        return None
    if history_fingerprint(session, schema, chat_id) != (cache.rows, cache.last_updated):
        return None
    return list(cache.messages)


def mirror_row(
    schema: ChatSchema,
    written_calls: Mapping[Any, list[ToolCall | None]],
    model_name: str | None,
    row: Any,
    message: Message,
) -> tuple[Message, Any] | None:
    """What a rebuild would read back for ``row`` (just written), and its ``updated_at``.

    Built from the values the row was written with, so the cached history equals a rebuilt
    one. ``None`` when that is not known without reading: files (read from storage), a value
    the database sets itself (no ``updated_at`` in the row), tool calls written elsewhere.
    """
    state = instance_state(row)
    values = state.dict
    updated_at = values.get("updated_at")
    if state.key is None or updated_at is None or message.attachments:
        return None
    queries = _queries(schema)
    present = queries.present
    calls: tuple[ToolCall, ...] = ()
    if message.tool_calls:
        call_rows = written_calls.get(state.key[1][0])
        if call_rows is None:
            return None
        known = [call for call in call_rows if call is not None]
        if len(known) != len(call_rows):
            return None
        calls = tuple(known)
    parent_call_id = None
    if values.get(schema.message_parent_fk) is not None:
        parent_call_id = message.tool_call_id
    row_model = None
    if schema.message_model_attr is not None and values.get(schema.message_model_attr) is not None:
        row_model = model_name

    if any(name in queries.server_set and name not in values for name in present):
        return None  # the database chose a value this row does not hold

    def column(name: str) -> Any:
        return values.get(name) if name in present else None

    mirrored = message_from_columns(
        state.key[1][0],
        values.get("role"),
        column("content"),
        column("content_raw"),
        column("input_tokens"),
        column("output_tokens"),
        column("cached_tokens"),
        column("cache_creation_tokens"),
        column("thinking_text"),
        column("thinking_signature"),
        column("thinking_tokens"),
        parent_call_id,
        row_model,
        calls,
        {},
    )
    return mirrored, _naive_utc(updated_at)


def _arguments(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {"_raw": value}
    return dict(value) if isinstance(value, Mapping) else {}


def row_to_message(row: Mapping[Any, Any], tool_calls: Sequence[ToolCall] = ()) -> Message:
    """A value :class:`~sa_llm.types.Message` from a message row's columns (``to_llm``)."""
    raw = row.get("content_raw")
    content: str | RawContent | None
    content = RawContent(raw) if raw is not None else row.get("content")
    tokens = None
    # Most rows (user, system, tool) carry no counts: skip building a Tokens for them.
    if any(row.get(key) is not None for key in _TOKEN_KEYS):
        tokens = Tokens(
            input=row.get("input_tokens"),
            output=row.get("output_tokens"),
            cached=row.get("cached_tokens"),
            cache_creation=row.get("cache_creation_tokens"),
            reasoning=row.get("thinking_tokens"),
        )
    thinking = None
    if row.get("thinking_text") or row.get("thinking_signature"):
        thinking = Thinking(text=row.get("thinking_text"), signature=row.get("thinking_signature"))
    return Message(
        role=row["role"],
        content=content,
        tool_calls=tuple(tool_calls),
        tool_call_id=row.get("parent_call_id"),
        tokens=tokens,
        model_id=row.get("model_name"),
        thinking=thinking,
    )
