"""simonw/llm: a ``Conversation`` whose responses are logged with ``log_to_db``.

llm keeps its log in SQLite through sqlite-utils (``llm.migrations.migrate`` makes the tables);
since 0.36 it writes content-addressed threads, turns, messages and parts. The model is llm's
own OpenAI Chat Completions class pointed at the fake server (as ``extra-openai-models.yaml``
with ``api_base`` would), with the OpenAI client's retries turned off like every other system
here. A turn is what ``llm chat`` does: prompt (a ``chain`` when tools are offered), read the
reply, log it::

    response = conversation.prompt(question, key="x", stream=False)
    response.text()
    response.log_to_db(db)

llm has no PostgreSQL storage, so the concurrency workload (W6) does not apply.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar

os.environ.setdefault("LLM_USER_PATH", tempfile.mkdtemp(prefix="bench-llm-"))

import llm.cli
import sqlite_utils
from llm.default_plugins.openai_models import Chat
from llm.migrations import migrate
from llm.parts import Message, TextPart, ToolCallPart, ToolResultPart

from peers.common import (
    MODEL,
    ChunkCallback,
    Conversation,
    FailureReport,
    System,
    ToolReport,
    journal_mode,
    question,
    reply_text,
    tool_city,
    tool_turn,
)
from peers.common import weather as forecast


def weather(city: str) -> str:
    """Gets the current weather for a city."""
    return forecast(city)


class NoRetryChat(Chat):
    """llm's Chat Completions model; the OpenAI client does not retry (as for every system)."""

    def get_client(self, key: Any, *, async_: bool = False) -> Any:
        client = super().get_client(key, async_=async_)  # type: ignore[no-untyped-call]
        return client.with_options(max_retries=0)


class LLMConversation(Conversation):
    def __init__(self, system: SimonwLLM, tools: bool, conversation: Any = None) -> None:
        self.system = system
        self.tools = tools
        if conversation is None:
            conversation = system.model.conversation(tools=[weather] if tools else None)
        self.conversation = conversation

    def ask(self, text: str, on_chunk: ChunkCallback | None = None) -> str:
        stream = on_chunk is not None
        response: Any
        if self.tools:
            response = self.conversation.chain(text, key="x", stream=stream)
        else:
            response = self.conversation.prompt(text, key="x", stream=stream)
        if on_chunk is not None:
            for chunk in response:
                on_chunk(chunk)
        reply = str(response.text())
        response.log_to_db(self.system.db)
        return reply


class SimonwLLM(System):
    api = "chat_completions"
    unsupported: ClassVar[dict[str, str]] = {
        "W6": "SQLite only (sqlite-utils): no PostgreSQL storage, no async logging"
    }

    def __init__(self, db_path: Path, base_url: str) -> None:
        super().__init__(db_path, base_url)
        self.model = NoRetryChat(  # type: ignore[no-untyped-call]
            MODEL, api_base=base_url, supports_tools=True
        )
        self.chats: dict[str, LLMConversation] = {}

    def open(self) -> None:
        self.db = sqlite_utils.Database(self.db_path)
        self.db.execute(f"PRAGMA journal_mode = {journal_mode()}")
        migrate(self.db)  # type: ignore[no-untyped-call]
        self.counter.attach_sqlite3(self.db.conn)

    def close(self) -> None:
        self.db.close()

    def journal(self) -> str:
        return str(self.db.execute("PRAGMA journal_mode").fetchone()[0]).lower()

    def new_chat(self, key: str, *, tools: bool = False) -> Conversation:
        chat = LLMConversation(self, tools)
        self.chats[key] = chat
        return chat

    def rows(self) -> dict[str, int]:
        skip = ("_llm_migrations",)
        return {
            name: int(self.db.execute(f"SELECT count(*) FROM [{name}]").fetchone()[0])
            for name in self.db.table_names()
            if name not in skip
        }

    def _chain(self, key: str) -> list[dict[str, Any]]:
        """The thread's messages (role, parts) from its tip back along ``parent_hash``."""
        thread = self.chats[key].conversation.id
        rows = self.db.execute(
            """
            WITH RECURSIVE chain(hash, depth) AS (
                SELECT tip_message_hash, 0 FROM threads WHERE id = ?
                UNION ALL
                SELECT m.parent_hash, chain.depth + 1 FROM messages m
                JOIN chain ON m.hash = chain.hash WHERE m.parent_hash IS NOT NULL
            )
            SELECT m.hash, m.role, p.type, p.text, p.payload
            FROM chain JOIN messages m ON m.hash = chain.hash
            LEFT JOIN parts p ON p.message_hash = m.hash
            ORDER BY chain.depth DESC, p.position
            """,
            [thread],
        ).fetchall()
        return [
            {"hash": h, "role": role, "type": kind, "text": text, "payload": payload}
            for h, role, kind, text, payload in rows
        ]

    def inspect_failure(self, key: str, failed: str) -> FailureReport:
        parts = self._chain(key)
        logged = self.db.execute("SELECT count(*) FROM parts WHERE text = ?", [failed]).fetchone()
        kept = bool(logged[0])
        empty = [p for p in parts if p["role"] == "assistant" and p["type"] is None]
        detail = f"{len({p['hash'] for p in parts})} messages in the thread"
        if not kept:
            detail += "; nothing of the failed turn is logged (only completed responses are)"
        return FailureReport(kept, len(empty), 0, detail)

    def check_tools(self, key: str) -> ToolReport:
        import json

        parts = self._chain(key)
        seen: set[str] = set()
        calls = results = linked = 0
        for part in parts:
            payload = json.loads(part["payload"]) if part["payload"] else {}
            if part["type"] == "tool_call":
                calls += 1
                seen.add(str(payload.get("tool_call_id")))
            elif part["type"] == "tool_result":
                results += 1
                linked += str(payload.get("tool_call_id")) in seen
        return ToolReport(
            calls, results, linked, "`parts` rows; call ids inside their JSON `payload`"
        )

    def seed(self, key: str, turns: int) -> str:
        """All turns but the last as ``messages=`` history, the last one asked for real and
        logged: llm stores the whole chain of a logged response, so one log writes the thread."""
        history: list[Message] = []
        for turn in range(1, turns):
            history.append(Message(role="user", parts=[TextPart(text=question(turn))]))
            if tool_turn(turn):
                call_id = f"call_seed_{turn}"
                arguments = {"city": tool_city(turn)}
                call = ToolCallPart(name="weather", arguments=arguments, tool_call_id=call_id)
                history.append(Message(role="assistant", parts=[call]))
                output = forecast(tool_city(turn))
                result = ToolResultPart(name="weather", output=output, tool_call_id=call_id)
                history.append(Message(role="tool", parts=[result]))
            history.append(Message(role="assistant", parts=[TextPart(text=reply_text(turn))]))
        chat = LLMConversation(self, tools=False)
        response = chat.conversation.prompt(
            question(turns), messages=history, key="x", stream=False
        )
        response.text()
        response.log_to_db(self.db)
        self.chats[key] = chat
        return str(chat.conversation.id)

    def resume(self, handle: str) -> Conversation:
        conversation = llm.cli.load_conversation(handle, database=str(self.db_path))
        assert conversation is not None
        # The loaded conversation names the registry's model, which would call api.openai.com.
        conversation.model = self.model
        return LLMConversation(self, tools=False, conversation=conversation)

    def rebuild(self, key: str) -> int:
        counter = self.counter
        thread = self.chats[key].conversation.id if key in self.chats else key

        class CountingDatabase(sqlite_utils.Database):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                counter.attach_sqlite3(self.conn)

        # load_conversation opens its own database: count through the class it instantiates.
        original = sqlite_utils.Database
        sqlite_utils.Database = CountingDatabase  # type: ignore[misc]
        try:
            conversation = llm.cli.load_conversation(thread, database=str(self.db_path))
        finally:
            sqlite_utils.Database = original  # type: ignore[misc]
        assert conversation is not None
        loaded = getattr(conversation, "loaded_messages", None)
        return len(loaded) if loaded else 2 * len(conversation.responses)

    def thread_id(self, key: str) -> str:
        return str(self.chats[key].conversation.id)
