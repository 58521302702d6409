"""The OpenAI Agents SDK: ``Runner.run`` with its ``SQLAlchemySession`` (``[sqlalchemy]`` extra).

The SDK is async-only and its session needs an ``AsyncEngine``: on SQLite that is aiosqlite (the
SDK switches the file to WAL), on PostgreSQL asyncpg. The sync workloads drive it from one
event loop kept for the whole run, which is what ``Runner.run_sync`` does for a script. Tracing
is turned off (it would upload to OpenAI). The tables are created once, as the SDK's docs advise
for production (``create_tables=False`` on each session). The SDK switches a SQLite file to WAL
on every connection; the benchmark sets the run's journal mode after it, as for every system::

    agent = Agent(name="bench", model=OpenAIResponsesModel(model=MODEL, openai_client=client))
    await Runner.run(agent, question, session=SQLAlchemySession(key, engine=engine))
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any, TypeVar

os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")

from agents import (
    Agent,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession
from openai import AsyncOpenAI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

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

T = TypeVar("T")
set_tracing_disabled(True)


@function_tool(name_override="weather")
def weather_tool(city: str) -> str:
    """Gets the current weather for a city."""
    return weather(city)


class AgentsConversation(Conversation):
    def __init__(self, system: AgentsSDK, session: SQLAlchemySession, agent: Agent[Any]) -> None:
        self.system = system
        self.session = session
        self.agent = agent

    async def _ask(self, question: str, on_chunk: ChunkCallback | None) -> str:
        if on_chunk is None:
            result = await Runner.run(self.agent, question, session=self.session)
            return str(result.final_output)
        streamed = Runner.run_streamed(self.agent, question, session=self.session)
        async for event in streamed.stream_events():
            if event.type == "raw_response_event" and event.data.type == (
                "response.output_text.delta"
            ):
                on_chunk(event.data.delta)
        return str(streamed.final_output)

    def ask(self, text: str, on_chunk: ChunkCallback | None = None) -> str:
        reply: str = self.system.run(self._ask(text, on_chunk))
        return reply


class AgentsAsyncConversation(AsyncConversation):
    def __init__(self, session: SQLAlchemySession, agent: Agent[Any]) -> None:
        self.session = session
        self.agent = agent

    async def aask(self, text: str, on_chunk: ChunkCallback | None = None) -> str:
        if on_chunk is not None:
            raise NotImplementedError("W3 async runs sa_llm and the limit only")
        result = await Runner.run(self.agent, text, session=self.session)
        return str(result.final_output)


class AgentsSDK(System):
    api = "responses"

    def __init__(self, db_path: Path, base_url: str) -> None:
        super().__init__(db_path, base_url)
        self.loop = asyncio.new_event_loop()
        self.engine: AsyncEngine | None = None
        self.watcher: PoolWatcher | None = None
        self.clients: list[AsyncOpenAI] = []

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def _agent(self, tools: bool) -> Agent[Any]:
        client = AsyncOpenAI(base_url=self.base_url, api_key="x", max_retries=0)
        self.clients.append(client)
        model = OpenAIResponsesModel(model=MODEL, openai_client=client)
        return Agent(name="bench", model=model, tools=[weather_tool] if tools else [])

    async def _create_tables(self, engine: AsyncEngine) -> None:
        session = SQLAlchemySession("setup", engine=engine, create_tables=True)
        await session.get_items()

    def open(self) -> None:
        self.engine = create_async_engine(f"sqlite+aiosqlite:///{self.db_path}")
        # The session's constructor registers the SDK's own PRAGMAs (WAL): the run's mode goes
        # after them, before the first connection.
        SQLAlchemySession("setup", engine=self.engine)
        apply_journal(self.engine.sync_engine)
        self.run(self._create_tables(self.engine))
        self.counter.attach_engine(self.engine.sync_engine)
        self.agents = {tools: self._agent(tools) for tools in (False, True)}

    async def _close(self) -> None:
        for client in self.clients:
            await client.close()
        if self.engine is not None:
            await self.engine.dispose()

    def close(self) -> None:
        self.run(self._close())
        self.loop.close()

    def new_chat(self, key: str, *, tools: bool = False) -> Conversation:
        assert self.engine is not None
        session = SQLAlchemySession(key, engine=self.engine)
        return AgentsConversation(self, session, self.agents[tools])

    def journal(self) -> str:
        async def read() -> str:
            assert self.engine is not None
            async with self.engine.connect() as conn:
                found = await conn.exec_driver_sql("PRAGMA journal_mode")
                return str(found.scalar()).lower()

        mode: str = self.run(read())
        return mode

    def rows(self) -> dict[str, int]:
        async def count() -> dict[str, int]:
            assert self.engine is not None
            async with self.engine.connect() as conn:
                return {
                    table: int(
                        (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
                    )
                    for table in ("agent_sessions", "agent_messages")
                }

        result: dict[str, int] = self.run(count())
        return result

    def _items(self, key: str) -> list[dict[str, Any]]:
        async def read() -> list[dict[str, Any]]:
            assert self.engine is not None
            async with self.engine.connect() as conn:
                rows = await conn.execute(
                    text(
                        "SELECT message_data FROM agent_messages WHERE session_id = :key "
                        "ORDER BY created_at, id"
                    ),
                    {"key": key},
                )
                return [json.loads(row[0]) for row in rows]

        items: list[dict[str, Any]] = self.run(read())
        return items

    def inspect_failure(self, key: str, failed: str) -> FailureReport:
        items = self._items(key)
        kept = any(item.get("role") == "user" and item.get("content") == failed for item in items)
        empty = [
            item
            for item in items
            if item.get("type") == "message" and not _message_text(item).strip()
        ]
        calls = {i.get("call_id") for i in items if i.get("type") == "function_call"}
        outputs = {i.get("call_id") for i in items if i.get("type") == "function_call_output"}
        detail = f"{len(items)} items"
        if not kept:
            detail += "; the failed turn's input is not in the session"
        return FailureReport(kept, len(empty), len(calls - outputs), detail)

    def check_tools(self, key: str) -> ToolReport:
        items = self._items(key)
        seen: set[Any] = set()
        calls = results = linked = 0
        for item in items:
            if item.get("type") == "function_call":
                calls += 1
                seen.add(item.get("call_id"))
            elif item.get("type") == "function_call_output":
                results += 1
                linked += item.get("call_id") in seen
        return ToolReport(
            calls, results, linked, "call and output items match by `call_id` inside JSON text"
        )

    def seed(self, key: str, turns: int) -> str:
        """The items ``Runner.run`` stores for those turns (their shape as the SDK writes them)."""
        items: list[Any] = []
        for turn in range(1, turns + 1):
            items.append({"content": question(turn), "role": "user"})
            if tool_turn(turn):
                call_id = f"call_seed_{turn}"
                arguments = json.dumps({"city": tool_city(turn)}, separators=(",", ":"))
                items.append(
                    {
                        "arguments": arguments,
                        "call_id": call_id,
                        "name": "weather",
                        "type": "function_call",
                        "id": f"fc_{call_id}",
                        "status": "completed",
                    }
                )
                items.append(
                    {
                        "call_id": call_id,
                        "output": weather(tool_city(turn)),
                        "type": "function_call_output",
                    }
                )
            items.append(
                {
                    "id": f"msg_seed_{turn}",
                    "content": [
                        {"annotations": [], "text": reply_text(turn), "type": "output_text"}
                    ],
                    "role": "assistant",
                    "status": "completed",
                    "type": "message",
                }
            )
        assert self.engine is not None
        self.run(SQLAlchemySession(key, engine=self.engine).add_items(items))
        return key

    def resume(self, handle: str) -> Conversation:
        return self.new_chat(handle)

    def rebuild(self, key: str) -> int:
        assert self.engine is not None
        session = SQLAlchemySession(key, engine=self.engine)
        return len(self.run(session.get_items()))

    def raw_rows(self, key: str) -> int:
        async def read() -> int:
            assert self.engine is not None
            async with self.engine.connect() as conn:
                rows = await conn.execute(
                    text("SELECT message_data FROM agent_messages WHERE session_id = :key"),
                    {"key": key},
                )
                return len(rows.all())

        count: int = self.run(read())
        return count

    # -- W6 --

    async def aopen(self, url: str, schema: str | None) -> None:
        self.async_engine = create_async_engine(
            url, connect_args={"server_settings": {"search_path": schema}}
        )
        await self._create_tables(self.async_engine)
        self.watcher = PoolWatcher(self.async_engine.sync_engine)
        self.async_agent = self._agent(False)

    async def anew_chat(self, key: str) -> AsyncConversation:
        session = SQLAlchemySession(key, engine=self.async_engine)
        return AgentsAsyncConversation(session, self.async_agent)

    async def aclose(self) -> None:
        for client in self.clients:
            await client.close()
        await self.async_engine.dispose()
        self.loop.close()

    def pool_peak(self) -> int | None:
        return self.watcher.peak if self.watcher is not None else None


def _message_text(item: dict[str, Any]) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    return "".join(str(part.get("text", "")) for part in content or () if isinstance(part, dict))
