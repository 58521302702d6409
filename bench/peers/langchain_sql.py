"""LangChain: ``SQLChatMessageHistory`` (``langchain-community``) with ``ChatOpenAI``.

The turn is the pattern of LangChain's chat-history docs, written out
(``RunnableWithMessageHistory`` is deprecated): append the user message, invoke the model on
``history.messages``, append the reply; for a tool call, append the call, the ``ToolMessage``
and invoke again. Streaming sums the chunks and appends the sum. Sync on a SQLite file; async
(``aadd_message``, ``ainvoke``) on PostgreSQL::

    history = SQLChatMessageHistory(session_id=key, connection=engine)
    history.add_message(HumanMessage(question))
    history.add_message(model.invoke(history.messages))
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # langchain-community announces its sunset on import
    from langchain_community.chat_message_histories import SQLChatMessageHistory

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolMessage,
)
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from sqlalchemy import Engine, create_engine, text
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


@tool("weather")
def weather_tool(city: str) -> str:
    """Gets the current weather for a city."""
    return weather(city)


def _model(base_url: str, tools: bool) -> Any:
    model = ChatOpenAI(model=MODEL, base_url=base_url, api_key="x", max_retries=0)
    return model.bind_tools([weather_tool]) if tools else model


class LangChainConversation(Conversation):
    def __init__(self, history: SQLChatMessageHistory, model: Any) -> None:
        self.history = history
        self.model = model

    def _call(self, on_chunk: ChunkCallback | None) -> AIMessage:
        messages = self.history.messages
        if on_chunk is None:
            reply: AIMessage = self.model.invoke(messages)
            return reply
        total: AIMessageChunk | None = None
        for chunk in self.model.stream(messages):
            if chunk.content:
                on_chunk(str(chunk.content))
            total = chunk if total is None else total + chunk
        assert total is not None
        return total

    def ask(self, text: str, on_chunk: ChunkCallback | None = None) -> str:
        self.history.add_message(HumanMessage(text))
        while True:
            reply = self._call(on_chunk)
            self.history.add_message(reply)
            if not reply.tool_calls:
                return str(reply.content)
            for call in reply.tool_calls:
                output = weather_tool.invoke(call["args"])
                self.history.add_message(ToolMessage(output, tool_call_id=call["id"]))


class LangChainAsyncConversation(AsyncConversation):
    def __init__(self, history: SQLChatMessageHistory, model: Any) -> None:
        self.history = history
        self.model = model

    async def aask(self, text: str, on_chunk: ChunkCallback | None = None) -> str:
        if on_chunk is not None:
            raise NotImplementedError("W3 async runs sa_llm and the limit only")
        await self.history.aadd_message(HumanMessage(text))
        reply = await self.model.ainvoke(await self.history.aget_messages())
        await self.history.aadd_message(reply)
        return str(reply.content)


class LangChainSQL(System):
    api = "chat_completions"

    def __init__(self, db_path: Path, base_url: str) -> None:
        super().__init__(db_path, base_url)
        self.engine: Engine | None = None
        self.async_engine: AsyncEngine | None = None
        self.watcher: PoolWatcher | None = None

    def open(self) -> None:
        self.engine = create_engine(f"sqlite:///{self.db_path}")
        apply_journal(self.engine)
        SQLChatMessageHistory(session_id="setup", connection=self.engine)  # creates the table
        self.counter.attach_engine(self.engine)
        self.models = {tools: _model(self.base_url, tools) for tools in (False, True)}

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()

    def new_chat(self, key: str, *, tools: bool = False) -> Conversation:
        history = SQLChatMessageHistory(session_id=key, connection=self.engine)
        return LangChainConversation(history, self.models[tools])

    def rows(self) -> dict[str, int]:
        assert self.engine is not None
        with self.engine.connect() as conn:
            count = conn.execute(text("SELECT count(*) FROM message_store")).scalar_one()
        return {"message_store": int(count)}

    def _messages(self, key: str) -> list[dict[str, Any]]:
        assert self.engine is not None
        with self.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT message FROM message_store WHERE session_id = :key ORDER BY id"),
                {"key": key},
            )
            return [json.loads(row[0]) for row in rows]

    def inspect_failure(self, key: str, failed: str) -> FailureReport:
        stored = self._messages(key)
        kept = any(m["type"] == "human" and m["data"]["content"] == failed for m in stored)
        empty = [
            m
            for m in stored
            if m["type"] in ("ai", "AIMessageChunk")
            and not str(m["data"].get("content") or "").strip()
            and not m["data"].get("tool_calls")
        ]
        calls = {c["id"] for m in stored for c in m["data"].get("tool_calls") or ()}
        answered = {m["data"].get("tool_call_id") for m in stored if m["type"] == "tool"}
        return FailureReport(kept, len(empty), len(calls - answered), f"{len(stored)} messages")

    def check_tools(self, key: str) -> ToolReport:
        stored = self._messages(key)
        seen: set[str] = set()
        calls = results = linked = 0
        for message in stored:
            for call in message["data"].get("tool_calls") or ():
                calls += 1
                seen.add(call["id"])
            if message["type"] == "tool":
                results += 1
                linked += message["data"].get("tool_call_id") in seen
        return ToolReport(
            calls, results, linked, "call ids inside the JSON text of the AI and tool messages"
        )

    def seed(self, key: str, turns: int) -> str:
        messages: list[BaseMessage] = []
        for turn in range(1, turns + 1):
            messages.append(HumanMessage(question(turn)))
            if tool_turn(turn):
                call_id = f"call_seed_{turn}"
                call = {"name": "weather", "args": {"city": tool_city(turn)}, "id": call_id}
                messages.append(AIMessage("", tool_calls=[call]))
                messages.append(ToolMessage(weather(tool_city(turn)), tool_call_id=call_id))
            messages.append(AIMessage(reply_text(turn)))
        SQLChatMessageHistory(session_id=key, connection=self.engine).add_messages(messages)
        return key

    def resume(self, handle: str) -> Conversation:
        return self.new_chat(handle)

    def rebuild(self, key: str) -> int:
        messages: list[BaseMessage] = SQLChatMessageHistory(
            session_id=key, connection=self.engine
        ).messages
        return len(messages)

    def raw_rows(self, key: str) -> int:
        assert self.engine is not None
        with self.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT message FROM message_store WHERE session_id = :key"), {"key": key}
            )
            return len(rows.all())

    # -- W6 --

    async def aopen(self, url: str, schema: str | None) -> None:
        self.async_engine = create_async_engine(
            url, connect_args={"server_settings": {"search_path": schema}}
        )
        # Each history creates the table on first use; 200 doing it at once would race.
        await SQLChatMessageHistory(
            session_id="setup", connection=self.async_engine
        )._acreate_table_if_not_exists()
        self.watcher = PoolWatcher(self.async_engine.sync_engine)
        self.async_model = _model(self.base_url, False)

    async def anew_chat(self, key: str) -> AsyncConversation:
        history = SQLChatMessageHistory(session_id=key, connection=self.async_engine)
        return LangChainAsyncConversation(history, self.async_model)

    async def aclose(self) -> None:
        if self.async_engine is not None:
            await self.async_engine.dispose()

    def pool_peak(self) -> int | None:
        return self.watcher.peak if self.watcher is not None else None
