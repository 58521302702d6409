"""The history of a persisted chat: read from its rows, mapped to value messages, reused.

* :func:`read_history` rebuilds a chat's conversation with two Core SELECTs (three with stored
  files) whatever its length: rows are read as tuples and become
  :class:`~sa_llm.types.Message` values through one mapping (:func:`message_from_columns`),
  which :func:`row_to_message` (``message.to_llm()``) and the history cache use too.
* Only a **valid** history is rebuilt, whatever the table holds (rows left by a process that
  died, by raw SQL, by an older version): assistant rows that are unfinished or kept only as
  partial output (any ``status`` but ``complete``), blank assistant rows, and tool calls
  without a result are left out; tool results follow the message that asked for them, in call
  order. The table keeps every row; ``chat.messages`` shows them all.
* :class:`HistoryCache` is what one chat row instance remembers between turns (D9):
  :meth:`HistoryCache.current` reuses it when one aggregate ``SELECT count(*),
  max(updated_at)`` of the chat's messages matches; :class:`Mirror` keeps it in step with the
  rows a turn writes.
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import bindparam, func, null, select, type_coerce
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.types import NullType

from sa_llm._mapping import CACHE_AND_THINKING_COLUMNS, ChatSchema
from sa_llm._persisted import attachments as _attachments
from sa_llm.storage import Storage
from sa_llm.types import Content, Message, RawContent, Thinking, Tokens, ToolCall

__all__ = [
    "History",
    "HistoryCache",
    "Mirror",
    "history_fingerprint",
    "load_history",
    "message_from_columns",
    "mirror_row",
    "read_history",
    "read_message",
    "row_to_message",
    "tool_call_from_columns",
]

logger = logging.getLogger("sa_llm.persistence")

#: Assistant statuses a history sends (``None``: rows of releases without the column).
_SENT = (None, "complete")
#: Statuses of rows a turn is still writing.
_UNFINISHED = ("pending", "streaming")


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


class HistoryCache:
    """What one chat row instance remembers of its history between turns (never persisted).

    A turn reads the conversation from the database (D9); when the chat's rows have not changed
    since the last turn on this instance, the messages it holds are reused, checked by one
    aggregate ``SELECT count(*), max(updated_at)`` of the chat's messages instead of reading
    them all again. The messages are exactly what a rebuild would read (built from the written
    rows' values, not from the provider's reply), so a reused history sends the same request as
    a rebuilt one. Rows added, deleted or edited through SQLAlchemy anywhere change the
    fingerprint (the mixins' ``updated_at`` has ``onupdate``); an UPDATE in raw SQL that leaves
    ``updated_at`` alone does not: :meth:`clear` (``chat.expire_history()``) forces a rebuild.
    """

    __slots__ = ("chat_id", "last_updated", "messages", "parked", "rows")

    def __init__(self) -> None:
        self.messages: tuple[Message, ...] | None = None
        self.rows = 0
        self.last_updated: Any = None
        self.chat_id: Any = None
        #: Whether the history :meth:`current` returned last has a round parked for approval
        #: (never kept between turns: a reused history has none).
        self.parked = False

    def clear(self) -> None:
        """Forget the history: the next turn reads it from the database."""
        self.messages = None

    def current(
        self, session: Session, schema: ChatSchema, chat_id: Any, storage: Storage | None
    ) -> tuple[list[Message], Mirror | None]:
        """The chat's history as its rows hold it now, and a mirror to follow this turn's writes.

        Reused when the fingerprint matches (one SELECT), else read (two or three). The mirror
        is ``None`` when the history cannot be kept (no ``updated_at`` column, stored files).
        """
        queries = _queries(schema)
        self.parked = False
        if (
            self.messages is not None
            and self.chat_id == chat_id
            and queries.fingerprint is not None
            and history_fingerprint(session, schema, chat_id) == (self.rows, self.last_updated)
        ):
            return list(self.messages), Mirror(list(self.messages), self.rows, self.last_updated)
        history = read_history(session, schema, chat_id, storage)
        self.clear()
        self.parked = history.parked
        if history.has_files or history.parked or queries.fingerprint is None:
            return history.messages, None
        return history.messages, Mirror(history.messages, history.rows, history.last_updated)

    def keep(self, mirror: Mirror | None, chat_id: Any) -> None:
        """Remember what ``mirror`` followed (a turn ended well), or forget (``None``)."""
        if mirror is None or mirror.messages is None:
            self.clear()
            return
        self.messages = tuple(mirror.messages)
        self.rows = mirror.rows
        self.last_updated = mirror.last_updated
        self.chat_id = chat_id


_HISTORY_COLUMNS = (
    "id",
    "role",
    "status",
    "content",
    "content_raw",
    "input_tokens",
    "output_tokens",
    *CACHE_AND_THINKING_COLUMNS,
    "updated_at",
)


#: The history columns read as the driver returns them and converted only where needed: a JSON
#: value only when it is not NULL (most rows have none), ``updated_at`` only for the newest
#: (the fingerprint needs no other). On SQLite the conversions are Python calls per row: a
#: regular-expression parse per datetime, two calls per JSON value, NULL or not.
_LATE_COLUMNS = ("content_raw", "thinking_raw", "updated_at")


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
    #: the types of :data:`_LATE_COLUMNS` (``None``: absent), whose conversions the rows skip
    late_types: tuple[Any, ...] = (None, None, None)
    #: dialect -> the result conversions of ``late_types`` (``None``: the driver's value is it)
    converters: weakref.WeakKeyDictionary[Dialect, tuple[Any, ...]] = field(
        default_factory=weakref.WeakKeyDictionary
    )

    def late(self, dialect: Dialect) -> tuple[Any, ...]:
        """The conversions of the late columns' values on ``dialect`` (as a result would run)."""
        found = self.converters.get(dialect)
        if found is None:
            found = tuple(
                None if kind is None else kind.dialect_impl(dialect).result_processor(dialect, None)
                for kind in self.late_types
            )
            self.converters[dialect] = found
        return found


#: chat class -> its history queries (weak: classes made in tests come and go).
_QUERIES: weakref.WeakKeyDictionary[type[Any], _HistoryQueries] = weakref.WeakKeyDictionary()


def _queries(schema: ChatSchema) -> _HistoryQueries:
    cached = _QUERIES.get(schema.chat_cls)
    if cached is not None and cached.schema is schema:
        return cached
    # Core columns of the mapped tables, labelled with the attribute names: the statements
    # skip the ORM's per-row machinery, and renamed columns still read by attribute.
    m = schema.message_mapper.c
    tc_mapper = sa_inspect(schema.tool_call_cls)
    tc = tc_mapper.c
    chat_id: Any = bindparam("sa_llm_chat_id")
    parent = tc_mapper.local_table.alias("parent_call")
    parent_id = parent.c[tc["id"].key]

    # A fixed column layout (absent optional columns read as NULL), so rows unpack by position.
    def column(name: str) -> Any:
        if name not in m:
            return null().label(name)
        if name in _LATE_COLUMNS:  # the driver's value: converted by the reader when needed
            return type_coerce(m[name], NullType()).label(name)
        return m[name].label(name)

    columns: list[Any] = [column(name) for name in _HISTORY_COLUMNS]
    columns.append(parent.c[tc["tool_call_id"].key].label("parent_call_id"))
    # The message that asked for the call a tool result answers: results are sent after it.
    columns.append(parent.c[tc[schema.tool_call_message_fk].key].label("parent_message_id"))
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
    if schema.approval:  # last: a round parked for approval is found while reading
        call_columns.append(tc["approval"])
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
    late_types = tuple(m[name].type if name in m else None for name in _LATE_COLUMNS)
    built = _HistoryQueries(
        schema, query, calls, has_signature, attachments, fingerprint, present, server_set,
        late_types,
    )  # fmt: skip
    _QUERIES[schema.chat_cls] = built
    return built


def load_history(
    session: Session, schema: ChatSchema, chat_id: Any, storage: Storage | None = None
) -> list[Message]:
    """The chat's valid history as value objects: system messages first, then by
    (created_at, id), tool results right after the message that asked for them.

    Two SELECTs whatever the length: the messages (joined with their model and parent call) and
    the tool calls of the chat; a third for the stored files when the message class has an
    attachment class and a ``storage`` is given. Rows are read as tuples, not ORM objects:
    rebuilding a long history stays close to the cost of the raw SELECT. Files are read from
    the storage only when a request is built.
    """
    return read_history(session, schema, chat_id, storage).messages


@dataclass
class History:
    """A rebuilt history and the fingerprint of the rows it was read from."""

    messages: list[Message]
    rows: int
    last_updated: Any
    has_files: bool
    parked: bool = False  # a round of tool calls waits for approval (sa_llm.approval)


def read_history(
    session: Session, schema: ChatSchema, chat_id: Any, storage: Storage | None
) -> History:
    """Read the chat's valid history (see the module docstring) and its fingerprint."""
    queries = _queries(schema)
    params = {"sa_llm_chat_id": chat_id}
    # Core on the session's connection (the rows are values, not objects), every row fetched
    # at once: the DB-API's fetchall, not a Python-level fetch per row.
    connection = session.connection(bind_arguments={"mapper": schema.message_mapper})
    files: dict[Any, tuple[Any, ...]] = {}
    if queries.attachments is not None and storage is not None:
        files = _attachments.read_history(connection.execute(queries.attachments, params), storage)
    collected: dict[Any, list[ToolCall]] = {}
    approvals = queries.schema.approval
    decided: set[Any] = set()  # messages whose calls carry an approval state
    for call in connection.execute(queries.calls, params).all():
        signature = call[4] if queries.has_signature else None
        collected.setdefault(call[0], []).append(
            tool_call_from_columns(call[1], call[2], call[3], signature)
        )
        if approvals and call[-1] is not None:
            decided.add(call[0])
    system: list[Message] = []
    others: list[tuple[Any, Message]] = []
    results: dict[Any, dict[str, Message]] = {}  # asking message -> call id -> its result
    no_calls: tuple[ToolCall, ...] = ()
    rows = 0
    # The newest updated_at as the driver returns it; on SQLite that is the stored text, which
    # the fingerprint's max() compares too. Only it is converted, after the loop.
    newest: Any = None
    raw_value, thinking_value, updated_value = queries.late(connection.dialect)
    for (
        pk, role, status, content, raw, tokens_in, tokens_out, cached, cache_creation,
        thinking_text, thinking_signature, thinking_tokens, thinking_raw, updated_at,
        parent_call_id, parent_message_id, model_name,
    ) in connection.execute(queries.messages, params).all():  # fmt: skip
        # This loop is the cost of a long history: positional unpacking, no per-row lookups.
        rows += 1
        if updated_at is not None and (newest is None or updated_at > newest):
            newest = updated_at
        if raw is not None and raw_value is not None:
            raw = raw_value(raw)
        if thinking_raw is not None and thinking_value is not None:
            thinking_raw = thinking_value(thinking_raw)
        calls = collected.get(pk)
        if role == "assistant":
            if status not in _SENT or (not calls and not content and _blank(raw)):
                continue  # unfinished, kept partial output, or a placeholder left behind
        elif role == "tool" and (status in _UNFINISHED or parent_message_id is None):
            continue  # a result still being written, or one whose call is gone
        message = message_from_columns(
            pk, role, content, raw, tokens_in, tokens_out, cached, cache_creation,
            thinking_text, thinking_signature, thinking_tokens, parent_call_id, model_name,
            tuple(calls) if calls else no_calls, files, thinking_raw,
        )  # fmt: skip
        if role == "tool":
            results.setdefault(parent_message_id, {}).setdefault(parent_call_id, message)
        elif role == "system":
            system.append(message)
        else:
            others.append((pk, message))
    # A round parked for approval: calls with an approval state, not all answered yet.
    parked = any(not all(c.id in results.get(pk, {}) for c in collected[pk]) for pk in decided)
    if newest is not None and updated_value is not None:
        newest = updated_value(newest)
    return History(system + _paired(others, results), rows, _naive_utc(newest), bool(files), parked)


def read_message(session: Session, schema: ChatSchema, chat_id: Any, pk: Any) -> Message | None:
    """One message of the chat as a rebuild maps it, with its tool calls, whatever its status
    (a round parked for approval, which the history leaves out until it is answered)."""
    queries = _queries(schema)
    m = schema.message_mapper.c
    tc = sa_inspect(schema.tool_call_cls).c
    params = {"sa_llm_chat_id": chat_id}
    connection = session.connection(bind_arguments={"mapper": schema.message_mapper})
    row = connection.execute(queries.messages.where(m["id"] == pk), params).first()
    if row is None:
        return None
    calls = tuple(
        tool_call_from_columns(c[1], c[2], c[3], c[4] if queries.has_signature else None)
        for c in connection.execute(
            queries.calls.where(tc[schema.tool_call_message_fk] == pk), params
        )
    )
    (
        pk, role, _status, content, raw, tokens_in, tokens_out, cached, cache_creation,
        thinking_text, thinking_signature, thinking_tokens, thinking_raw, _updated_at,
        parent_call_id, _parent_message_id, model_name,
    ) = row  # fmt: skip
    raw_value, thinking_value, _ = queries.late(connection.dialect)
    if raw is not None and raw_value is not None:
        raw = raw_value(raw)
    if thinking_raw is not None and thinking_value is not None:
        thinking_raw = thinking_value(thinking_raw)
    return message_from_columns(
        pk, role, content, raw, tokens_in, tokens_out, cached, cache_creation, thinking_text,
        thinking_signature, thinking_tokens, parent_call_id, model_name, calls, {}, thinking_raw,
    )  # fmt: skip


def _blank(raw: Any) -> bool:
    return raw is None or raw in ("", [], {})


def _paired(
    messages: list[tuple[Any, Message]], results: Mapping[Any, Mapping[str, Message]]
) -> list[Message]:
    """The messages with each tool call's result right after the message that asked, in call
    order; a message whose calls are not all answered is left out, with its results."""
    if not results and not any(message.tool_calls for _, message in messages):
        return [message for _, message in messages]
    paired: list[Message] = []
    for pk, message in messages:
        if not message.tool_calls:
            paired.append(message)
            continue
        answers = results.get(pk, {})
        if all(call.id in answers for call in message.tool_calls):
            paired.append(message)
            paired.extend(answers[call.id] for call in message.tool_calls)
    return paired


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
    thinking_raw: Any = None,
) -> Message:
    """One message from a row's column values: the one mapping of rows to messages (the
    rebuild, the history cache and ``message.to_llm()`` all use it).

    ``thinking_raw`` is the reply's provider-native reasoning data (``Thinking.extra``: every
    thinking block with its signature, reasoning items, ...), replayed as it came."""
    tokens = None
    # Most rows (user, system, tool) carry no counts: skip building a Tokens for them.
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
        Thinking(thinking_text, thinking_signature, thinking_raw or {})
        if (thinking_text or thinking_signature or thinking_raw)
        else None,
    )


def row_to_message(row: Mapping[str, Any], tool_calls: Sequence[ToolCall] = ()) -> Message:
    """A message row's column values (by attribute name) as a value message (``to_llm``)."""
    return message_from_columns(
        None,
        row["role"],
        row.get("content"),
        row.get("content_raw"),
        row.get("input_tokens"),
        row.get("output_tokens"),
        row.get("cached_tokens"),
        row.get("cache_creation_tokens"),
        row.get("thinking_text"),
        row.get("thinking_signature"),
        row.get("thinking_tokens"),
        row.get("parent_call_id"),
        row.get("model_name"),
        tuple(tool_calls),
        {},
        row.get("thinking_raw"),
    )


def tool_call_from_columns(
    call_id: Any, name: Any, arguments: Any, signature: Any = None
) -> ToolCall:
    """One tool call from a ``tool_calls`` row's values (the rebuild, the cache, ``to_llm``).

    Arguments stored as JSON text are parsed; text that is not JSON reads as ``{"_raw": text}``
    (what the model sent when its arguments were not valid JSON).
    """
    return ToolCall(
        id=call_id,
        name=name,
        arguments=_arguments(arguments),
        extra={"thought_signature": signature} if signature else {},
    )


def call_from_values(values: Mapping[str, Any], has_signature: bool) -> ToolCall | None:
    """A ``tool_calls`` row just written, as a rebuild reads it (``None``: not all known)."""
    try:
        signature = values.get("thought_signature") if has_signature else None
        return tool_call_from_columns(
            values["tool_call_id"], values["name"], values["arguments"], signature
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
    # Core on the session's connection: an aggregate loads no objects, and the ORM's execute
    # costs more than the statement on SQLite.
    connection = session.connection(bind_arguments={"mapper": schema.message_mapper})
    rows, last_updated = connection.execute(query, {"sa_llm_chat_id": chat_id}).one()
    return int(rows), _naive_utc(last_updated)


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

    if not queries.server_set.isdisjoint(present) and any(
        name in queries.server_set and name not in values for name in present
    ):
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
        column("thinking_raw"),
    )
    return mirrored, _naive_utc(updated_at)


def _arguments(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {"_raw": value}
    return dict(value) if isinstance(value, Mapping) else {}
