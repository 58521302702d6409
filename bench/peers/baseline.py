"""The limit: sa_llm's default strategy, its statements and commits, written by hand in Core.

A fair reference for sa_llm must do the same database work: the same rows, the same SQL and the
same number of commits per turn, so that what is left between the two is the library's own
cost. This module issues, with SQLAlchemy Core on sa_llm's tables, exactly what sa_llm's default
strategy (``PersistenceStrategy``, commit at each step) issues for a turn:

* the turn's first transaction claims the chat's lease (``UPDATE chats SET turn_token ... WHERE
  id = :chat AND turn_token IS NULL``), then reads the history (a chat's first turn: the tool
  calls, then the messages joined with their parent call and model row, sa_llm's two history
  SELECTs) or checks it (``SELECT count(*), max(updated_at)`` of the chat's messages), then
  inserts the user message and, when not streamed, the empty assistant row: **one** commit;
* after the reply, the assistant row's UPDATE (content, tokens, model, status) and the lease's
  release (``UPDATE chats ... WHERE turn_token = :token``, plus ``pg_notify`` on PostgreSQL) in a
  second;
* a streamed ``ask``: the empty assistant row in its own commit **when the stream opens**
  (status and headers in, before its first event is read), the UPDATE and release in a third;
* a tool round: the call's UPDATE with its ``tool_calls`` INSERT, the tool result's empty row,
  its UPDATE into a ``tool`` message, then the next reply's empty row, each committed;
* a new chat: sa_llm's lookup of its model's row (``Chat(model=...)`` reads it whole, so the
  first turn needs no step of its own), then the chat's INSERT, in one commit.

``bench_peers.py`` checks that this holds: a parity run captures both systems' statements with
a ``before_cursor_execute`` listener and fails loudly when the text of any statement or the
number of commits of a turn differs. The history lives in a Python list of request items,
updated from the values written, and is reused while the check says the rows are unchanged
(as sa_llm reuses its own). Requests go through one ``httpx`` client, like sa_llm's default
(the same pool limits), bodies built as sa_llm builds them, replies parsed with ``json`` alone::

    client.post(f"{base_url}/responses", json={"model": MODEL, "input": history, ...})
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from time import perf_counter_ns
from typing import Any, cast

import httpx
from sqlalchemy import (
    Connection,
    Engine,
    Interval,
    Table,
    and_,
    bindparam,
    create_engine,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from peers.common import (
    MODEL,
    AsyncConversation,
    ChunkCallback,
    Conversation,
    apply_journal,
    weather,
)
from peers.sa_llm_peer import CHATS, MESSAGES, TOOL_CALLS, Base, Model, SaLLMSync, seed_rows
from peers.transports import DEFAULT_LIMITS as LIMITS
from peers.transports import async_client
from sa_llm.registry_table import INFO_ATTRIBUTES

MODELS = cast(Table, Model.__table__)
#: sa_llm's lookup of a new chat's model (``registry_table.find_model``): the row's key and
#: the columns of its ``ModelInfo``, by model id, at most two rows (an ambiguous id is none).
MODEL_LOOKUP = (
    select(
        MODELS.c.id,
        *(
            prop.columns[0]
            for name in INFO_ATTRIBUTES
            if (prop := Model.__mapper__.column_attrs.get(name)) is not None
        ),
    )
    .where(MODELS.c.model_id == bindparam("model"))
    .limit(2)
)

TOOLS = [
    {
        "type": "function",
        "name": "weather",
        "description": "Gets the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city"}},
            "required": ["city"],
        },
        "strict": False,
    }
]

# -- the statements (Core, built once) -----------------------------------------------------------

CHAT_ID: Any = bindparam("chat_id")
_PARENT = TOOL_CALLS.alias("parent_call")
_OPTIONAL = (
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_creation_tokens",
    "thinking_text",
    "thinking_signature",
    "thinking_tokens",
    "thinking_raw",
)
HISTORY_MESSAGES = (
    select(
        *(
            MESSAGES.c[name].label(name)
            for name in ("id", "role", "status", "content", "content_raw", *_OPTIONAL, "updated_at")
        ),
        _PARENT.c.tool_call_id.label("parent_call_id"),
        _PARENT.c.message_id.label("parent_message_id"),
        MODELS.c.model_id.label("model_name"),
    )
    .select_from(
        MESSAGES.outerjoin(_PARENT, MESSAGES.c.tool_call_id == _PARENT.c.id).outerjoin(
            MODELS, MESSAGES.c.model_id == MODELS.c.id
        )
    )
    .where(MESSAGES.c.chat_id == CHAT_ID)
    .order_by(MESSAGES.c.created_at, MESSAGES.c.id)
)
HISTORY_CALLS = (
    select(
        TOOL_CALLS.c.message_id,
        TOOL_CALLS.c.tool_call_id,
        TOOL_CALLS.c.name,
        TOOL_CALLS.c.arguments,
        TOOL_CALLS.c.thought_signature,
        TOOL_CALLS.c.approval,
    )
    .select_from(TOOL_CALLS.join(MESSAGES, TOOL_CALLS.c.message_id == MESSAGES.c.id))
    .where(MESSAGES.c.chat_id == CHAT_ID)
    .order_by(TOOL_CALLS.c.id)
)
FINGERPRINT = select(func.count(), func.max(MESSAGES.c.updated_at)).where(
    MESSAGES.c.chat_id == CHAT_ID
)
INSERT_MESSAGE = insert(MESSAGES)
INSERT_CALL = insert(TOOL_CALLS)
UPDATE_MESSAGE = update(MESSAGES).where(MESSAGES.c.id == bindparam("message_id"))
_NO_TOKENS = dict.fromkeys(_OPTIONAL)
LEASE_SECONDS = 30.0


_TAKE_PG = {
    "turn_token": bindparam("lease_token"),
    "turn_expires_at": func.now() + bindparam("lease_ttl", type_=Interval()),
    "cancel_requested_at": None,
}
_TAKE_LOCAL = _TAKE_PG | {
    "turn_expires_at": bindparam("lease_expires", type_=CHATS.c.turn_expires_at.type)
}
_FREE = and_(CHATS.c.id == bindparam("lease_chat"), CHATS.c.turn_token.is_(None))
_HELD = and_(CHATS.c.id == bindparam("lease_chat"), CHATS.c.turn_token == bindparam("lease_token"))
CLAIM = {
    "postgresql": update(CHATS).where(_FREE).values(_TAKE_PG),
    "sqlite": update(CHATS).where(_FREE).values(_TAKE_LOCAL),
}
RELEASE = (
    update(CHATS)
    .where(_HELD)
    .values(turn_token=None, turn_expires_at=None, cancel_requested_at=None)
)
NOTIFY = select(func.pg_notify(bindparam("channel"), bindparam("payload")))


def _claim(conn: Any, chat_id: int, token: str) -> tuple[Any, dict[str, Any]]:
    """sa_llm's claim of the chat's lease (``_persisted/lease.claim``), the first statement of a
    turn's first transaction; the time is PostgreSQL's ``now()`` there, this process's on SQLite.
    Prebuilt statements with their parameters, as sa_llm's."""
    params: dict[str, Any] = {"lease_chat": chat_id, "lease_token": token}
    if conn.dialect.name == "postgresql":
        params["lease_ttl"] = timedelta(seconds=LEASE_SECONDS)
        return CLAIM["postgresql"], params
    here = datetime.now(timezone.utc)
    params["lease_now"] = here
    params["lease_expires"] = here + timedelta(seconds=LEASE_SECONDS)
    return CLAIM["sqlite"], params


def _release(chat_id: int, token: str) -> tuple[Any, dict[str, Any]]:
    return RELEASE, {"lease_chat": chat_id, "lease_token": token}


def _notify(conn: Any, chat_id: int) -> tuple[Any, dict[str, Any]] | None:
    """sa_llm's wake-up of the turns waiting for the chat (PostgreSQL only)."""
    if conn.dialect.name != "postgresql":
        return None
    return NOTIFY, {"channel": "sa_llm_turns", "payload": f"turn:chats:{chat_id}"}


def _user_row(chat_id: int, text: str) -> dict[str, Any]:
    # The columns sa_llm's INSERT of a user message names (created_at, updated_at: defaults).
    return {
        "model_id": None,
        "role": "user",
        "status": "complete",
        "content": text,
        "content_raw": None,
        **_NO_TOKENS,
        "chat_id": chat_id,
        "tool_call_id": None,
    }


def _placeholder_row(chat_id: int, streaming: bool = False) -> dict[str, Any]:
    return {
        "model_id": None,
        "role": "assistant",
        "content": "",
        "content_raw": None,
        "status": "streaming" if streaming else "pending",
        **_NO_TOKENS,
        "chat_id": chat_id,
        "tool_call_id": None,
    }


def _changes(values: dict[str, Any]) -> dict[str, Any]:
    """The columns of an UPDATE that fills an empty row: those whose value differs from the
    empty row's (sa_llm's UPDATE sets only what changed, as a flush does)."""
    empty = _placeholder_row(0)
    return {key: value for key, value in values.items() if value != empty.get(key, value)}


def _pk(result: Any) -> int:
    """The primary key an INSERT wrote (``cursor.lastrowid`` on SQLite, RETURNING elsewhere:
    what the ORM reads too)."""
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _naive_utc(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


class _Reply:
    """What one model call returned: text, tool calls, usage."""

    def __init__(self) -> None:
        self.text = ""
        self.calls: list[dict[str, Any]] = []
        self.usage: dict[str, Any] = {}

    def absorb(self, response: dict[str, Any]) -> None:
        for item in response.get("output") or ():
            if item.get("type") == "message":
                self.text += "".join(part.get("text", "") for part in item.get("content") or ())
            elif item.get("type") == "function_call":
                self.calls.append(item)
        self.usage = response.get("usage") or {}

    def completion(self, model_row: int | None) -> dict[str, Any]:
        """The values of sa_llm's UPDATE that fills the assistant row."""
        usage = self.usage
        return {
            "model_id": model_row,
            "status": "complete",
            "content": self.text or None,
            "content_raw": None,
            "input_tokens": usage.get("input_tokens"),
            "output_tokens": usage.get("output_tokens"),
            "cached_tokens": (usage.get("input_tokens_details") or {}).get("cached_tokens"),
            "cache_creation_tokens": None,
            "thinking_text": None,
            "thinking_signature": None,
            "thinking_tokens": (usage.get("output_tokens_details") or {}).get("reasoning_tokens"),
        }


def _tool_result(output: str, call_row: int) -> dict[str, Any]:
    """The values of sa_llm's UPDATE that turns an empty row into a tool result."""
    return {
        "role": "tool",
        "status": "complete",
        "content": output,
        "content_raw": None,
        **_NO_TOKENS,
    } | {"tool_call_id": call_row}


def _call_row(message_id: int, call: dict[str, Any]) -> dict[str, Any]:
    return {
        "tool_call_id": call["call_id"],
        "name": call["name"],
        "arguments": json.loads(call["arguments"] or "{}"),
        "thought_signature": None,
        "approval": None,
        "approval_arguments_hash": None,
        "approval_decided_by": None,
        "approval_decided_at": None,
        "approval_reason": None,
        "message_id": message_id,
    }


def _sse_payload(line: str) -> dict[str, Any] | None:
    """The event of one line of a server-sent event stream (``None``: not a data line)."""
    if line.startswith("data: "):
        data = line[6:]
        if data != "[DONE]":
            payload: dict[str, Any] = json.loads(data)
            return payload
    return None


def _sse_payloads(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        payload = _sse_payload(line)
        if payload is not None:
            yield payload


def history_items(messages: Sequence[Any], calls: Sequence[Any]) -> list[dict[str, Any]]:
    """The rows of sa_llm's two history SELECTs as the request's input items."""
    by_message: dict[int, list[Any]] = {}
    for call in calls:
        by_message.setdefault(call[0], []).append(call)
    items: list[dict[str, Any]] = []
    for row in messages:
        role, content = row.role, row.content
        if role == "tool":
            items.append(
                {"type": "function_call_output", "call_id": row.parent_call_id, "output": content}
            )
            continue
        if content:
            items.append(_item(role, content))
        for call in by_message.get(row.id, ()):
            items.append(
                {
                    "type": "function_call",
                    "call_id": call[1],
                    "name": call[2],
                    "arguments": json.dumps(call[3]),
                }
            )
    return items


def _item(role: str, text: str) -> dict[str, Any]:
    if role == "assistant":
        return {"role": role, "content": [{"type": "output_text", "text": text}]}
    return {"role": role, "content": text}


class _Chat:
    """What one chat keeps between turns: its history and the fingerprint of its rows."""

    def __init__(self, system: Baseline, chat_id: int, tools: bool) -> None:
        self.system = system
        self.chat_id = chat_id
        self.tools = tools
        self.history: list[dict[str, Any]] | None = None  # None: read it on the next turn
        self.rows = 0
        self.last_updated: Any = None
        self.ids = {"chat_id": chat_id}

    def loaded(self, messages: Sequence[Any], calls: Sequence[Any]) -> None:
        self.history = history_items(messages, calls)
        self.rows = len(messages)
        stamps = [_naive_utc(row.updated_at) for row in messages if row.updated_at is not None]
        self.last_updated = max(stamps) if stamps else None

    def wrote(self, params: Any, new_row: bool) -> None:
        """A row written (the statement's parameters): the fingerprint the next turn's check
        expects."""
        self.rows += new_row
        stamp = _naive_utc(params["updated_at"])
        if self.last_updated is None or stamp > self.last_updated:
            self.last_updated = stamp

    def body(self, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": MODEL, "input": self.history, "stream": stream}
        body["store"] = False
        if self.tools:
            body["tools"] = TOOLS
        return body


class BaselineConversation(Conversation):
    """A sync chat: sa_llm's statements on a ``Connection`` per step."""

    def __init__(self, system: Baseline, chat_id: int, tools: bool) -> None:
        self.chat = _Chat(system, chat_id, tools)
        self.system = system

    # -- steps (each one transaction, committed) --

    def _read_history(self, conn: Connection) -> None:
        chat = self.chat
        calls = conn.execute(HISTORY_CALLS, chat.ids).all()
        chat.loaded(conn.execute(HISTORY_MESSAGES, chat.ids).all(), calls)

    def _insert(self, conn: Connection, row: dict[str, Any]) -> int:
        result = conn.execute(INSERT_MESSAGE, row)
        self.chat.wrote(result.last_inserted_params(), True)
        return _pk(result)

    def _update(self, conn: Connection, message_id: int, values: dict[str, Any]) -> None:
        result = conn.execute(UPDATE_MESSAGE, {"message_id": message_id, **_changes(values)})
        self.chat.wrote(result.last_updated_params(), False)

    def _user_step(self, text: str, placeholder: bool, token: str) -> int | None:
        """Claim + history check (or read) + user row (+ the empty reply row when not
        streaming): one commit, as sa_llm's begin step."""
        chat = self.chat
        with self.system.sync_engine.begin() as conn:
            conn.execute(*_claim(conn, chat.chat_id, token))
            if chat.history is not None:
                rows, last = conn.execute(FINGERPRINT, chat.ids).one()
                if (rows, _naive_utc(last)) != (chat.rows, chat.last_updated):
                    chat.history = None  # changed elsewhere: read it again
            if chat.history is None:  # the chat's first turn on this object
                self._read_history(conn)
            self._insert(conn, _user_row(chat.chat_id, text))
            empty = self._insert(conn, _placeholder_row(chat.chat_id)) if placeholder else None
        assert chat.history is not None
        chat.history.append(_item("user", text))
        return empty

    def _placeholder_step(self, streaming: bool = False) -> int:
        with self.system.sync_engine.begin() as conn:
            return self._insert(conn, _placeholder_row(self.chat.chat_id, streaming))

    def _call(self, on_chunk: ChunkCallback | None, empty: int | None) -> tuple[_Reply, int]:
        """One model call; the empty row is written before it, or when the stream opens."""
        system = self.system
        reply = _Reply()
        if on_chunk is None:
            if empty is None:
                empty = self._placeholder_step()
            response = system.client.post(system.responses_url, json=self.chat.body(False))
            response.raise_for_status()
            reply.absorb(response.json())
            return reply, empty
        with system.client.stream(
            "POST", system.responses_url, json=self.chat.body(True)
        ) as response:
            response.raise_for_status()
            # The reply has begun: headers in, no event read.
            empty = self._placeholder_step(streaming=True)
            for payload in _sse_payloads(response.iter_lines()):
                kind = payload.get("type")
                if kind == "response.output_text.delta":
                    if self.transport_first_ns is None:
                        self.transport_first_ns = system.transport.first_ns
                    on_chunk(payload["delta"])
                elif kind == "response.completed":
                    reply.absorb(payload["response"])
        return reply, empty

    def ask(self, text: str, on_chunk: ChunkCallback | None = None) -> str:
        system, chat = self.system, self.chat
        system.transport.first_ns = None
        self.transport_first_ns = None
        token = uuid.uuid4().hex
        empty = self._user_step(text, placeholder=on_chunk is None, token=token)
        assert chat.history is not None
        while True:
            try:
                reply, empty = self._call(on_chunk, empty)
            except BaseException:
                self._clean_up(empty)
                raise
            with system.sync_engine.begin() as conn:
                self._update(conn, empty, reply.completion(system.model_row))
                call_rows = {
                    call["call_id"]: _pk(conn.execute(INSERT_CALL, _call_row(empty, call)))
                    for call in reply.calls
                }
                if not reply.calls:  # the turn's last reply releases the chat
                    conn.execute(*_release(chat.chat_id, token))
                    notify = _notify(conn, chat.chat_id)
                    if notify is not None:
                        conn.execute(*notify)
            if reply.text:
                chat.history.append(_item("assistant", reply.text))
            if not reply.calls:
                return reply.text
            for call in reply.calls:
                chat.history.append(
                    {
                        "type": "function_call",
                        "call_id": call["call_id"],
                        "name": call["name"],
                        "arguments": call["arguments"],
                    }
                )
                result_row = self._placeholder_step(streaming=False)
                output = weather(**json.loads(call["arguments"] or "{}"))
                with system.sync_engine.begin() as conn:
                    self._update(conn, result_row, _tool_result(output, call_rows[call["call_id"]]))
                chat.history.append(
                    {"type": "function_call_output", "call_id": call["call_id"], "output": output}
                )
            empty = None
            if on_chunk is not None:
                pass  # the next reply's row is written when its stream opens

    def _clean_up(self, empty: int | None) -> None:
        """A failed call: delete the empty reply row (the user message stays), as sa_llm does."""
        self.chat.history = None  # read the rows again on the next turn
        if empty is None:
            return
        with self.system.sync_engine.begin() as conn:
            conn.execute(delete(MESSAGES).where(MESSAGES.c.id == empty, MESSAGES.c.content == ""))


class BaselineAsyncConversation(AsyncConversation):
    """An async chat (no tools): the same statements on an ``AsyncConnection`` per step;
    streamed (W3 async), the empty reply row is written when the stream opens, as in sync."""

    def __init__(self, system: Baseline, chat_id: int) -> None:
        self.chat = _Chat(system, chat_id, tools=False)
        self.system = system

    async def _insert(self, conn: AsyncConnection, row: dict[str, Any]) -> int:
        result = await conn.execute(INSERT_MESSAGE, row)
        self.chat.wrote(result.last_inserted_params(), True)
        return _pk(result)

    async def _user_step(self, text: str, placeholder: bool, token: str) -> int | None:
        """Claim + history check (or read) + user row (+ the empty reply row when not
        streaming): one commit, as sa_llm's begin step."""
        chat = self.chat
        async with self.system.async_db.begin() as conn:
            await conn.execute(*_claim(conn, chat.chat_id, token))
            if chat.history is not None:
                rows, last = (await conn.execute(FINGERPRINT, chat.ids)).one()
                if (rows, _naive_utc(last)) != (chat.rows, chat.last_updated):
                    chat.history = None
            if chat.history is None:
                calls = (await conn.execute(HISTORY_CALLS, chat.ids)).all()
                chat.loaded((await conn.execute(HISTORY_MESSAGES, chat.ids)).all(), calls)
            await self._insert(conn, _user_row(chat.chat_id, text))
            empty = None
            if placeholder:
                empty = await self._insert(conn, _placeholder_row(chat.chat_id))
        assert chat.history is not None
        chat.history.append(_item("user", text))
        return empty

    async def _call(
        self, client: httpx.AsyncClient, on_chunk: ChunkCallback | None, empty: int | None
    ) -> tuple[_Reply, int]:
        """The model call; streamed, the empty row is written when the stream opens."""
        system, reply = self.system, _Reply()
        if on_chunk is None:
            assert empty is not None
            response = await client.post(system.responses_url, json=self.chat.body(False))
            response.raise_for_status()
            reply.absorb(response.json())
            return reply, empty
        async with client.stream(
            "POST", system.responses_url, json=self.chat.body(True)
        ) as response:
            response.raise_for_status()
            async with system.async_db.begin() as conn:
                empty = await self._insert(conn, _placeholder_row(self.chat.chat_id, True))
            async for line in response.aiter_lines():
                payload = _sse_payload(line)
                if payload is None:
                    continue
                kind = payload.get("type")
                if kind == "response.output_text.delta":
                    on_chunk(payload["delta"])
                elif kind == "response.completed":
                    reply.absorb(payload["response"])
        return reply, empty

    async def aask(self, text: str, on_chunk: ChunkCallback | None = None) -> str:
        system, chat = self.system, self.chat
        engine = system.async_db
        token = uuid.uuid4().hex
        empty = await self._user_step(text, placeholder=on_chunk is None, token=token)
        assert chat.history is not None
        client = system.async_client
        assert client is not None
        try:
            reply, empty = await self._call(client, on_chunk, empty)
        except BaseException:
            chat.history = None
            async with engine.begin() as conn:
                if empty is not None:
                    await conn.execute(delete(MESSAGES).where(MESSAGES.c.id == empty))
                await conn.execute(*_release(chat.chat_id, token))
            raise
        async with engine.begin() as conn:
            values = {"message_id": empty, **_changes(reply.completion(system.model_row))}
            result = await conn.execute(UPDATE_MESSAGE, values)
            chat.wrote(result.last_updated_params(), False)
            await conn.execute(*_release(chat.chat_id, token))
            notify = _notify(conn, chat.chat_id)
            if notify is not None:
                await conn.execute(*notify)
        chat.history.append(_item("assistant", reply.text))
        return reply.text


class _TimedStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, owner: _TimedTransport) -> None:
        self.inner = inner
        self.owner = owner

    def __iter__(self) -> Iterator[bytes]:
        for piece in self.inner:
            if self.owner.first_ns is None and b"response.output_text.delta" in piece:
                self.owner.first_ns = perf_counter_ns()
            yield piece

    def close(self) -> None:
        self.inner.close()


class _TimedTransport(httpx.BaseTransport):
    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport(limits=LIMITS)
        self.first_ns: int | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        assert isinstance(response.stream, httpx.SyncByteStream)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_TimedStream(response.stream, self),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self.inner.close()


class Baseline(SaLLMSync):
    """httpx + sa_llm's statements in SQLAlchemy Core on sa_llm's tables (the limit)."""

    def __init__(self, db_path: Path, base_url: str) -> None:
        super().__init__(db_path, base_url)
        self.transport = _TimedTransport()
        self.client = httpx.Client(
            transport=self.transport,
            headers={"authorization": "Bearer x"},
            follow_redirects=True,
        )
        self.responses_url = f"{base_url}/responses"
        self.model_row: int | None = None

    @property
    def sync_engine(self) -> Engine:
        assert self.engine is not None
        return self.engine

    @property
    def async_db(self) -> AsyncEngine:
        assert self.async_engine is not None
        return self.async_engine

    def open(self) -> None:
        self.engine = create_engine(f"sqlite:///{self.db_path}")
        apply_journal(self.engine)
        Base.metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            self.model_row = self._model_row(conn)
        self.counter.attach_engine(self.engine)

    @staticmethod
    def _model_row(conn: Connection) -> int:
        found = conn.execute(select(MODELS.c.id).where(MODELS.c.model_id == MODEL)).scalar()
        if found is not None:
            return int(found)
        values = {"model_id": MODEL, "name": MODEL, "provider": "openai"}
        return _pk(conn.execute(insert(MODELS), values))

    def close(self) -> None:
        self.client.close()
        super().close()

    def _new_chat_row(self, conn: Connection, key: str) -> int:
        # sa_llm's Chat(model=...) finds the model's row (read whole) before the INSERT.
        found = conn.execute(MODEL_LOOKUP, {"model": MODEL}).all()
        assert [row[0] for row in found] == [self.model_row]
        row = {"title": key, "model_id": self.model_row}
        return _pk(conn.execute(insert(CHATS), row))

    def new_chat(self, key: str, *, tools: bool = False) -> Conversation:
        with self.sync_engine.begin() as conn:
            chat_id = self._new_chat_row(conn, key)
        return BaselineConversation(self, chat_id, tools)

    def seed(self, key: str, turns: int) -> str:
        with self.sync_engine.begin() as conn:
            seed_rows(conn, self._new_chat_row(conn, key), self.model_row, turns)
        return key

    def _chat_id(self, conn: Connection, key: str) -> int:
        return int(conn.execute(select(CHATS.c.id).where(CHATS.c.title == key)).scalar_one())

    def resume(self, handle: str) -> Conversation:
        with self.sync_engine.connect() as conn:
            chat_id = self._chat_id(conn, handle)
        return BaselineConversation(self, chat_id, tools=False)

    def rebuild(self, key: str) -> int:
        """sa_llm's history SELECTs, by hand, turned into the request's input list."""
        with self.sync_engine.begin() as conn:
            chat = _Chat(self, self._chat_id(conn, key), tools=False)
            ids = chat.ids
            calls = conn.execute(HISTORY_CALLS, ids).all()
            chat.loaded(conn.execute(HISTORY_MESSAGES, ids).all(), calls)
        assert chat.history is not None
        return len(chat.history)

    # -- async: W1 on aiosqlite, W6 on PostgreSQL --

    async def aopen(self, url: str, schema: str | None) -> None:
        await self._open_async_engine(url, schema)
        async with self.async_db.begin() as conn:
            self.model_row = await conn.run_sync(self._model_row)
        if self.async_transport == "aiohttp":
            # sa_llm's own aiohttp transport, as async_http_backend="aiohttp" builds it: the
            # limit runs on the same transport as the sa_llm variant it is compared with.
            from sa_llm.providers.aiohttp_transport import AiohttpTransport

            transport = AiohttpTransport(limit=LIMITS.max_connections or 0)
            client = httpx.AsyncClient(transport=transport, follow_redirects=True)
        else:
            client = async_client(self.async_transport) or httpx.AsyncClient(
                limits=LIMITS, follow_redirects=True
            )
        client.headers["authorization"] = "Bearer x"
        self.async_client = client

    async def anew_chat(self, key: str) -> AsyncConversation:
        async with self.async_db.begin() as conn:
            chat_id = await conn.run_sync(lambda sync: self._new_chat_row(sync, key))
        return BaselineAsyncConversation(self, chat_id)

    async def aclose(self) -> None:
        if self.async_client is not None:
            await self.async_client.aclose()
        if self.async_engine is not None:
            await self.async_engine.dispose()
