"""The limit: the least a program must do to hold a persisted chat, written by hand.

One ``httpx`` POST to the Responses API per model call, with the history kept in a Python list
(no reads), and sa_llm's row writes in SQLAlchemy Core on sa_llm's own tables: the user message
INSERT (committed before the call), the assistant INSERT when the reply starts, then its UPDATE
with content and tokens (committed), plus the tool call and tool result rows of a tool round.
It parses replies with ``json.loads`` and nothing else, so no library can do the same work with
less::

    client.post(f"{base_url}/responses", json={"model": MODEL, "input": history})
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from time import perf_counter_ns
from typing import Any, cast

import httpx
from sqlalchemy import Connection, Engine, Table, create_engine, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from peers.common import (
    MODEL,
    AsyncConversation,
    ChunkCallback,
    Conversation,
    PoolWatcher,
    weather,
)
from peers.sa_llm_peer import CHATS, MESSAGES, TOOL_CALLS, Base, Model, SaLLMSync, seed_rows

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


def _now() -> datetime:
    return datetime.now(timezone.utc)


class _Turn:
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


def _sse_payloads(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if line.startswith("data: "):
            data = line[6:]
            if data != "[DONE]":
                yield json.loads(data)


class BaselineConversation(Conversation):
    def __init__(self, system: Baseline, chat_id: int, tools: bool) -> None:
        self.system = system
        self.chat_id = chat_id
        self.tools = tools
        self.history: list[dict[str, Any]] = []

    # -- rows --

    def _insert_message(self, conn: Connection, **values: Any) -> int:
        now = _now()
        row = {"chat_id": self.chat_id, "created_at": now, "updated_at": now, **values}
        return int(conn.execute(insert(MESSAGES).returning(MESSAGES.c.id), row).scalar_one())

    def _complete(self, conn: Connection, message_id: int, turn: _Turn) -> None:
        usage = turn.usage
        conn.execute(
            update(MESSAGES)
            .where(MESSAGES.c.id == message_id)
            .values(
                content=turn.text or None,
                input_tokens=usage.get("input_tokens"),
                output_tokens=usage.get("output_tokens"),
                cached_tokens=(usage.get("input_tokens_details") or {}).get("cached_tokens"),
                updated_at=_now(),
            )
        )

    # -- the call --

    def _call(self, on_chunk: ChunkCallback | None, placeholder: list[int]) -> _Turn:
        """POST once; insert the empty assistant row when the reply starts (``placeholder``)."""
        body: dict[str, Any] = {"model": MODEL, "input": self.history, "store": False}
        if self.tools:
            body["tools"] = TOOLS
        client = self.system.client
        engine = self.system.sync_engine
        turn = _Turn()
        if on_chunk is None:
            response = client.post(f"{self.system.base_url}/responses", json=body)
            response.raise_for_status()
            with engine.begin() as conn:
                placeholder.append(self._insert_message(conn, role="assistant"))
            turn.absorb(response.json())
            return turn
        body["stream"] = True
        with client.stream("POST", f"{self.system.base_url}/responses", json=body) as response:
            response.raise_for_status()
            for payload in _sse_payloads(response.iter_lines()):
                kind = payload.get("type")
                if kind == "response.output_text.delta":
                    if not placeholder:
                        self.transport_first_ns = self.system.transport.first_ns
                        with engine.begin() as conn:
                            placeholder.append(self._insert_message(conn, role="assistant"))
                    on_chunk(payload["delta"])
                elif kind == "response.completed":
                    turn.absorb(payload["response"])
        if not placeholder:
            with engine.begin() as conn:
                placeholder.append(self._insert_message(conn, role="assistant"))
        return turn

    def ask(self, text: str, on_chunk: ChunkCallback | None = None) -> str:
        engine = self.system.sync_engine
        self.system.transport.first_ns = None
        with engine.begin() as conn:
            self._insert_message(conn, role="user", content=text)
        self.history.append({"role": "user", "content": text})
        while True:
            placeholder: list[int] = []
            turn = self._call(on_chunk, placeholder)
            (message_id,) = placeholder
            with engine.begin() as conn:
                self._complete(conn, message_id, turn)
                call_rows = {}
                for call in turn.calls:
                    call_rows[call["call_id"]] = conn.execute(
                        insert(TOOL_CALLS).returning(TOOL_CALLS.c.id),
                        {
                            "message_id": message_id,
                            "tool_call_id": call["call_id"],
                            "name": call["name"],
                            "arguments": json.loads(call["arguments"] or "{}"),
                            "created_at": _now(),
                        },
                    ).scalar_one()
            if turn.text:
                self.history.append({"role": "assistant", "content": turn.text})
            if not turn.calls:
                return turn.text
            for call in turn.calls:
                self.history.append(
                    {
                        "type": "function_call",
                        "call_id": call["call_id"],
                        "name": call["name"],
                        "arguments": call["arguments"],
                    }
                )
                output = weather(**json.loads(call["arguments"] or "{}"))
                with engine.begin() as conn:
                    self._insert_message(
                        conn, role="tool", content=output, tool_call_id=call_rows[call["call_id"]]
                    )
                self.history.append(
                    {"type": "function_call_output", "call_id": call["call_id"], "output": output}
                )


class BaselineAsyncConversation(AsyncConversation):
    def __init__(self, system: Baseline, chat_id: int) -> None:
        self.system = system
        self.chat_id = chat_id
        self.history: list[dict[str, Any]] = []

    async def _insert(self, conn: AsyncConnection, **values: Any) -> int:
        now = _now()
        row = {"chat_id": self.chat_id, "created_at": now, "updated_at": now, **values}
        result = await conn.execute(insert(MESSAGES).returning(MESSAGES.c.id), row)
        return int(result.scalar_one())

    async def aask(self, text: str) -> str:
        engine = self.system.async_engine
        assert engine is not None
        async with engine.begin() as conn:
            await self._insert(conn, role="user", content=text)
        self.history.append({"role": "user", "content": text})
        body = {"model": MODEL, "input": self.history, "store": False}
        client = self.system.async_client
        assert client is not None
        response = await client.post(f"{self.system.base_url}/responses", json=body)
        response.raise_for_status()
        async with engine.begin() as conn:
            message_id = await self._insert(conn, role="assistant")
        turn = _Turn()
        turn.absorb(response.json())
        async with engine.begin() as conn:
            usage = turn.usage
            await conn.execute(
                update(MESSAGES)
                .where(MESSAGES.c.id == message_id)
                .values(
                    content=turn.text,
                    input_tokens=usage.get("input_tokens"),
                    output_tokens=usage.get("output_tokens"),
                    updated_at=_now(),
                )
            )
        self.history.append({"role": "assistant", "content": turn.text})
        return turn.text


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
        self.inner = httpx.HTTPTransport()
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


class Baseline(SaLLMSync):
    """Raw httpx + SQLAlchemy Core on sa_llm's tables (reads and checks are sa_llm's)."""

    def __init__(self, db_path: Path, base_url: str) -> None:
        super().__init__(db_path, base_url)
        self.transport = _TimedTransport()
        self.client = httpx.Client(transport=self.transport)
        self.model_row: int | None = None

    @property
    def sync_engine(self) -> Engine:
        assert self.engine is not None
        return self.engine

    def open(self) -> None:
        self.engine = create_engine(f"sqlite:///{self.db_path}")
        Base.metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            self.model_row = self._model_row(conn)
        self.counter.attach_engine(self.engine)

    @staticmethod
    def _model_row(conn: Connection) -> int:
        models = cast(Table, Model.__table__)
        found = conn.execute(select(models.c.id).where(models.c.model_id == MODEL)).scalar()
        if found is not None:
            return int(found)
        now = _now()
        values = {
            "model_id": MODEL,
            "name": MODEL,
            "provider": "openai",
            "created_at": now,
            "updated_at": now,
        }
        return int(conn.execute(insert(models).returning(models.c.id), values).scalar_one())

    def close(self) -> None:
        self.client.close()
        super().close()

    def _new_chat_row(self, conn: Connection, key: str) -> int:
        now = _now()
        row = {"title": key, "model_id": self.model_row, "created_at": now, "updated_at": now}
        return int(conn.execute(insert(CHATS).returning(CHATS.c.id), row).scalar_one())

    def new_chat(self, key: str, *, tools: bool = False) -> Conversation:
        with self.sync_engine.begin() as conn:
            chat_id = self._new_chat_row(conn, key)
        return BaselineConversation(self, chat_id, tools)

    def seed(self, key: str, turns: int) -> str:
        with self.sync_engine.begin() as conn:
            seed_rows(conn, self._new_chat_row(conn, key), self.model_row, turns)
        return key

    def resume(self, handle: str) -> Conversation:
        with self.sync_engine.connect() as conn:
            chat_id = conn.execute(select(CHATS.c.id).where(CHATS.c.title == handle)).scalar_one()
        chat = BaselineConversation(self, chat_id, tools=False)
        chat.history = self._history(handle)
        return chat

    def rebuild(self, key: str) -> int:
        """The raw SELECTs turned into the input list the next request would send."""
        return len(self._history(key))

    def _history(self, key: str) -> list[dict[str, Any]]:
        with self.sync_engine.connect() as conn:
            where = CHATS.c.title == key
            messages = conn.execute(
                select(MESSAGES.c.id, MESSAGES.c.role, MESSAGES.c.content, MESSAGES.c.tool_call_id)
                .join(CHATS, MESSAGES.c.chat_id == CHATS.c.id)
                .where(where)
                .order_by(MESSAGES.c.created_at, MESSAGES.c.id)
            ).all()
            calls = conn.execute(
                select(
                    TOOL_CALLS.c.id,
                    TOOL_CALLS.c.message_id,
                    TOOL_CALLS.c.tool_call_id,
                    TOOL_CALLS.c.name,
                    TOOL_CALLS.c.arguments,
                )
                .join(MESSAGES, TOOL_CALLS.c.message_id == MESSAGES.c.id)
                .join(CHATS, MESSAGES.c.chat_id == CHATS.c.id)
                .where(where)
            ).all()
        by_message: dict[int, list[Any]] = {}
        provider_ids = {}
        for call in calls:
            by_message.setdefault(call.message_id, []).append(call)
            provider_ids[call.id] = call.tool_call_id
        history: list[dict[str, Any]] = []
        for message in messages:
            if message.role == "tool":
                history.append(
                    {
                        "type": "function_call_output",
                        "call_id": provider_ids.get(message.tool_call_id),
                        "output": message.content,
                    }
                )
                continue
            if message.content:
                history.append({"role": message.role, "content": message.content})
            for call in by_message.get(message.id, ()):
                history.append(
                    {
                        "type": "function_call",
                        "call_id": call.tool_call_id,
                        "name": call.name,
                        "arguments": json.dumps(call.arguments),
                    }
                )
        return history

    # -- W6 --

    async def aopen(self, url: str, schema: str) -> None:
        self.async_engine: AsyncEngine | None = create_async_engine(
            url, connect_args={"server_settings": {"search_path": schema}}
        )
        async with self.async_engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
            self.model_row = await conn.run_sync(self._model_row)
        self.watcher = PoolWatcher(self.async_engine.sync_engine)
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        self.async_client = self.new_async_client() or httpx.AsyncClient(limits=limits)

    def new_async_client(self) -> httpx.AsyncClient | None:
        """W6's client: httpx's own pool (None), or httpx on the benchmark's aiohttp transport
        (the limit has no library setting for it)."""
        if not self.aiohttp_transport:
            return None
        from peers.aiohttp_transport import AiohttpTransport

        return httpx.AsyncClient(transport=AiohttpTransport(limit=200))

    async def anew_chat(self, key: str) -> AsyncConversation:
        assert self.async_engine is not None
        async with self.async_engine.begin() as conn:
            chat_id = await conn.run_sync(lambda sync: self._new_chat_row(sync, key))
        return BaselineAsyncConversation(self, chat_id)

    async def aclose(self) -> None:
        assert self.async_client is not None
        await self.async_client.aclose()
        if self.async_engine is not None:
            await self.async_engine.dispose()
