"""sa_llm: a persisted chat row (``@acts_as_chat``) in a sync ``Session`` on a SQLite file, and
in an ``AsyncSession`` on a SQLite file (aiosqlite, W1 async) and on PostgreSQL (asyncpg, the
concurrency workload); also a plain, unpersisted ``Chat`` (the reference for the first chunk).

The models are the standard mixins, declared as ``sa-llm install`` writes them (plus a
``title`` column that holds the benchmark's chat key). The strategy is the default one (commit
at each step). Turns are ``chat.ask(text, on_chunk=...)`` / ``await chat.aask(text)`` through a
context pointed at the fake server::

    ctx = sa_llm.context(openai_base_url=base_url, openai_api_key="x", max_retries=0)
    chat = ChatRow(title=key, model="gpt-4.1-nano").with_context(ctx)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from time import perf_counter_ns
from typing import Annotated, Any, cast

import httpx
from sqlalchemy import Connection, Engine, Table, create_engine, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import sa_llm
from peers.common import (
    MODEL,
    AsyncConversation,
    ChunkCallback,
    Conversation,
    FailureReport,
    PoolWatcher,
    System,
    ToolReport,
    apply_journal,
    question,
    reply_text,
    tool_city,
    tool_turn,
    weather,
)
from peers.transports import SETTINGS, async_client
from sa_llm.declarative import acts_as_chat, acts_as_message, acts_as_model, acts_as_tool_call
from sa_llm.mixins import ChatMixin, MessageMixin, ModelMixin, ToolCallMixin
from sa_llm.types import Chunk


class Base(DeclarativeBase):
    pass


@acts_as_chat()
class ChatRow(ChatMixin, Base):
    __tablename__ = "chats"
    title: Mapped[str | None] = mapped_column(default=None, index=True)


@acts_as_message(chat="chat", chat_class="ChatRow")
class Message(MessageMixin, Base):
    __tablename__ = "messages"


@acts_as_tool_call()
class ToolCall(ToolCallMixin, Base):
    __tablename__ = "tool_calls"


@acts_as_model(chat_class="ChatRow")
class Model(ModelMixin, Base):
    __tablename__ = "models"


CHATS = cast(Table, ChatRow.__table__)
MESSAGES = cast(Table, Message.__table__)
TOOL_CALLS = cast(Table, ToolCall.__table__)
TABLES = (CHATS, MESSAGES, TOOL_CALLS, cast(Table, Model.__table__))


def seed_rows(conn: Connection, chat_id: int, model_id: Any, turns: int) -> None:
    """The messages and tool calls ``turns`` turns leave, written with Core (ids returned)."""
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    position = 0

    def add(**values: Any) -> int:
        nonlocal position
        at = start + timedelta(milliseconds=position)
        position += 1
        row = {"chat_id": chat_id, "created_at": at, "updated_at": at, **values}
        return int(conn.execute(insert(MESSAGES).returning(MESSAGES.c.id), row).scalar_one())

    for turn in range(1, turns + 1):
        add(role="user", content=question(turn))
        assistant = {"role": "assistant", "model_id": model_id, "input_tokens": 100}
        if tool_turn(turn):
            asking = add(**assistant, output_tokens=12)
            call = conn.execute(
                insert(TOOL_CALLS).returning(TOOL_CALLS.c.id),
                {
                    "message_id": asking,
                    "tool_call_id": f"call_seed_{turn}",
                    "name": "weather",
                    "arguments": {"city": tool_city(turn)},
                    "created_at": start,
                },
            ).scalar_one()
            add(role="tool", content=weather(tool_city(turn)), tool_call_id=call)
        add(**assistant, content=reply_text(turn), output_tokens=80)


class Weather(sa_llm.Tool):
    """Gets the current weather for a city."""

    name = "weather"

    def execute(self, city: Annotated[str, "The city"]) -> str:
        return weather(city)


# -- seeing the transport's first text delta --------------------------------------------------


class _TimedStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, owner: TimedTransport) -> None:
        self.inner = inner
        self.owner = owner

    def __iter__(self) -> Iterator[bytes]:
        for piece in self.inner:
            if self.owner.first_ns is None and TimedTransport.MARKER in piece:
                self.owner.first_ns = perf_counter_ns()
            yield piece

    def close(self) -> None:
        self.inner.close()


class TimedTransport(httpx.BaseTransport):
    """An ``HTTPTransport`` that notes when the first text delta's bytes leave it."""

    MARKER = b"response.output_text.delta"

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

    def close(self) -> None:
        self.inner.close()


# -- the system -------------------------------------------------------------------------------


def _text_callback(deliver: ChunkCallback) -> Callable[[Chunk], None]:
    """sa_llm's chunk callback for a workload's: the text of each chunk that has some."""

    def callback(chunk: Chunk) -> None:
        if chunk.content:
            deliver(chunk.content)

    return callback


class SaLLMConversation(Conversation):
    def __init__(self, chat: ChatRow, transport: TimedTransport | None) -> None:
        self.chat = chat
        self.transport = transport

    def ask(self, text: str, on_chunk: ChunkCallback | None = None) -> str:
        callback = None if on_chunk is None else _text_callback(on_chunk)
        if self.transport is not None:
            self.transport.first_ns = None
        reply = self.chat.ask(text, on_chunk=callback)
        if self.transport is not None:
            self.transport_first_ns = self.transport.first_ns
        return reply.text or ""


class SaLLMAsyncConversation(AsyncConversation):
    def __init__(self, chat: ChatRow) -> None:
        self.chat = chat

    async def aask(self, text: str, on_chunk: ChunkCallback | None = None) -> str:
        if on_chunk is None:
            reply = await self.chat.aask(text)
        else:
            reply = await self.chat.aask(text, on_chunk=_text_callback(on_chunk))
        return reply.text or ""


class SaLLMSync(System):
    """sa_llm, sync ``Session`` on a SQLite file (``AsyncSession`` + asyncpg for W6)."""

    api = "responses"

    def __init__(self, db_path: Path, base_url: str) -> None:
        super().__init__(db_path, base_url)
        self.engine: Engine | None = None
        self.session: Session | None = None
        self.observe_transport = False
        self._clients: list[httpx.Client] = []
        self.async_engine: AsyncEngine | None = None
        self.watcher: PoolWatcher | None = None
        self._async_sessions: list[AsyncSession] = []
        #: The async HTTP transport (see ASYNC_TRANSPORTS).
        self.async_transport = "httpx"
        self.async_client: httpx.AsyncClient | None = None

    def context(
        self,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        **extra: Any,
    ) -> sa_llm.Context:
        settings: dict[str, Any] = dict(extra)
        if http_client is not None:
            settings["http_client"] = http_client
        if async_http_client is not None:
            settings["async_http_client"] = async_http_client
        return sa_llm.context(
            openai_base_url=self.base_url, openai_api_key="x", max_retries=0, **settings
        )

    def open(self) -> None:
        self.engine = create_engine(f"sqlite:///{self.db_path}")
        apply_journal(self.engine)
        Base.metadata.create_all(self.engine)
        self.counter.attach_engine(self.engine)
        self.session = Session(self.engine)

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
        for client in self._clients:
            client.close()
        if self.engine is not None:
            self.engine.dispose()

    def new_chat(self, key: str, *, tools: bool = False) -> Conversation:
        assert self.session is not None
        transport = TimedTransport() if self.observe_transport else None
        client = None
        if transport is not None:
            client = httpx.Client(transport=transport)
            self._clients.append(client)
        chat = ChatRow(title=key, model=MODEL).with_context(self.context(client))
        if tools:
            chat.with_tool(Weather)
        self.session.add(chat)
        self.session.commit()
        return SaLLMConversation(chat, transport)

    def rows(self) -> dict[str, int]:
        assert self.engine is not None
        with self.engine.connect() as conn:
            return {
                table.name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
                for table in TABLES
            }

    def _messages(self, key: str) -> list[Any]:
        assert self.engine is not None
        with self.engine.connect() as conn:
            chat_id = conn.execute(select(CHATS.c.id).where(CHATS.c.title == key)).scalar_one()
            query = (
                select(MESSAGES)
                .where(MESSAGES.c.chat_id == chat_id)
                .order_by(MESSAGES.c.created_at, MESSAGES.c.id)
            )
            return list(conn.execute(query).all())

    def _calls(self, key: str) -> list[Any]:
        assert self.engine is not None
        with self.engine.connect() as conn:
            query = (
                select(TOOL_CALLS)
                .join(MESSAGES, TOOL_CALLS.c.message_id == MESSAGES.c.id)
                .join(CHATS, MESSAGES.c.chat_id == CHATS.c.id)
                .where(CHATS.c.title == key)
            )
            return list(conn.execute(query).all())

    def inspect_failure(self, key: str, failed: str) -> FailureReport:
        messages = self._messages(key)
        calls = self._calls(key)
        with_calls = {call.message_id for call in calls}
        empty = [
            m
            for m in messages
            if m.role == "assistant" and not (m.content or "").strip() and m.id not in with_calls
        ]
        answered = {m.tool_call_id for m in messages if m.role == "tool"}
        orphans = [call for call in calls if call.id not in answered]
        kept = any(m.role == "user" and m.content == failed for m in messages)
        return FailureReport(
            kept,
            len(empty),
            len(orphans),
            f"{len(messages)} messages; the failed turn left its user message and no reply row"
            if kept and not empty
            else f"{len(messages)} messages",
        )

    def check_tools(self, key: str) -> ToolReport:
        messages = self._messages(key)
        calls = {call.id: call for call in self._calls(key)}
        order = {m.id: position for position, m in enumerate(messages)}
        results = [m for m in messages if m.role == "tool"]
        linked = 0
        for result in results:
            call = calls.get(result.tool_call_id)
            if call is not None and order.get(call.message_id, 1 << 30) < order[result.id]:
                linked += 1
        return ToolReport(
            len(calls),
            len(results),
            linked,
            "`messages.tool_call_id` is a foreign key to `tool_calls.id`",
        )

    def seed(self, key: str, turns: int) -> str:
        assert self.session is not None
        assert self.engine is not None
        chat = ChatRow(title=key, model=MODEL).with_context(self.context())
        self.session.add(chat)
        self.session.commit()
        with self.engine.begin() as conn:
            seed_rows(conn, chat.id, chat.model_id, turns)
        return key

    def resume(self, handle: str) -> Conversation:
        assert self.session is not None
        chat = self.session.scalars(select(ChatRow).where(ChatRow.title == handle)).one()
        chat.with_context(self.context())
        return SaLLMConversation(chat, None)

    def rebuild(self, key: str) -> int:
        assert self.engine is not None
        with Session(self.engine) as session:
            chat = session.scalars(select(ChatRow).where(ChatRow.title == key)).one()
            chat.with_context(self.context())
            return len(chat.to_llm().messages)

    def raw_rows(self, key: str) -> int:
        assert self.engine is not None
        with Session(self.engine) as session:
            where = CHATS.c.title == key
            messages = session.execute(
                select(MESSAGES).join(CHATS, MESSAGES.c.chat_id == CHATS.c.id).where(where)
            ).all()
            session.execute(
                select(TOOL_CALLS)
                .join(MESSAGES, TOOL_CALLS.c.message_id == MESSAGES.c.id)
                .join(CHATS, MESSAGES.c.chat_id == CHATS.c.id)
                .where(where)
            ).all()
            return len(messages)

    # -- async: W1 on aiosqlite (``schema`` None), W6 on PostgreSQL --

    async def _open_async_engine(self, url: str, schema: str | None) -> None:
        if schema is None:
            self.async_engine = create_async_engine(url)
            apply_journal(self.async_engine.sync_engine)
        else:
            self.async_engine = create_async_engine(
                url, connect_args={"server_settings": {"search_path": schema}}
            )
        self.counter.attach_engine(self.async_engine.sync_engine)
        async with self.async_engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        self.watcher = PoolWatcher(self.async_engine.sync_engine)

    async def aopen(self, url: str, schema: str | None) -> None:
        await self._open_async_engine(url, schema)
        setting = SETTINGS.get(self.async_transport)
        if setting is not None:
            # The library's own setting (the aiohttp extra, or httpx2 as its HTTP library).
            self.async_context = self.context(None, None, **setting)
            return
        self.async_client = async_client(self.async_transport)
        # None: sa_llm's default client (httpx, its own pool limits).
        self.async_context = self.context(async_http_client=self.async_client)

    async def ajournal(self) -> str:
        assert self.async_engine is not None
        async with self.async_engine.connect() as conn:
            found = await conn.exec_driver_sql("PRAGMA journal_mode")
            return str(found.scalar()).lower()

    async def anew_chat(self, key: str) -> AsyncConversation:
        assert self.async_engine is not None
        session = AsyncSession(self.async_engine, expire_on_commit=False)
        self._async_sessions.append(session)
        chat = ChatRow(title=key, model=MODEL).with_context(self.async_context)
        session.add(chat)
        await session.commit()
        return SaLLMAsyncConversation(chat)

    async def aclose(self) -> None:
        for session in self._async_sessions:
            await session.close()
        if self.async_client is not None:
            await self.async_client.aclose()
        if self.async_engine is not None:
            await self.async_engine.dispose()

    def pool_peak(self) -> int | None:
        return self.watcher.peak if self.watcher is not None else None


class PlainConversation(Conversation):
    def __init__(self, chat: sa_llm.Chat, transport: TimedTransport | None) -> None:
        self.chat = chat
        self.transport = transport

    def ask(self, text: str, on_chunk: ChunkCallback | None = None) -> str:
        callback = None if on_chunk is None else _text_callback(on_chunk)
        if self.transport is not None:
            self.transport.first_ns = None
        reply = self.chat.ask(text, on_chunk=callback)
        if self.transport is not None:
            self.transport_first_ns = self.transport.first_ns
        return reply.text or ""


class SaLLMPlain(SaLLMSync):
    """sa_llm's plain ``Chat`` (``ctx.chat(model)``), nothing stored: what a persisted chat's
    rows cost is measured against it (the first chunk of W3 above all)."""

    chat_only = True

    def open(self) -> None:
        pass

    def close(self) -> None:
        for client in self._clients:
            client.close()

    def journal(self) -> str:
        return "none"

    def new_chat(self, key: str, *, tools: bool = False) -> Conversation:
        transport = TimedTransport() if self.observe_transport else None
        client = None
        if transport is not None:
            client = httpx.Client(transport=transport)
            self._clients.append(client)
        chat = self.context(client).chat(MODEL, provider="openai")
        if tools:
            chat.with_tool(Weather)
        return PlainConversation(chat, transport)

    def rows(self) -> dict[str, int]:
        return {}

    def db_bytes(self) -> int:
        return 0
