"""Test harness for persisted chats: models on a fresh Base, and one API for sync and async.

``World`` owns an engine (sync or async) on SQLite or PostgreSQL, the declared models and a
session. Its ``call`` runs a record method in the mode under test: ``await w.call(chat.ask,
"Hi")`` calls ``chat.ask("Hi")`` in sync mode and ``await chat.aask("Hi")`` in async mode, so
every behaviour test runs four ways (two databases x two modes) from one body.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import sa_llm
from sa_llm.declarative import (
    acts_as_attachment,
    acts_as_chat,
    acts_as_event,
    acts_as_message,
    acts_as_model,
    acts_as_tool_call,
    acts_as_usage,
)
from sa_llm.mixins import (
    AttachmentMixin,
    ChatMixin,
    EventMixin,
    MessageMixin,
    ModelMixin,
    ToolCallMixin,
    UsageMixin,
)
from sa_llm.persistence import enable_sqlite_savepoints


class _Titled:
    """A ``title`` column, as most apps give their chats."""

    title: Mapped[str | None] = mapped_column(default=None)


# Class name -> (decorator, mixins, table): how every harness here declares each model.
Declaration = tuple[Callable[[], Callable[[type], type]], tuple[type, ...], str]
MODEL_DECLARATIONS: dict[str, Declaration] = {
    "Chat": (acts_as_chat, (ChatMixin, _Titled), "chats"),
    "Message": (acts_as_message, (MessageMixin,), "messages"),
    "ToolCall": (acts_as_tool_call, (ToolCallMixin,), "tool_calls"),
    "Model": (acts_as_model, (ModelMixin,), "models"),
    "ChatEvent": (acts_as_event, (EventMixin,), "chat_events"),
    "Usage": (acts_as_usage, (UsageMixin,), "usages"),
    "Attachment": (acts_as_attachment, (AttachmentMixin,), "attachments"),
}


def default_models(*extra: str, base: Any = None, **declared: Any) -> dict[str, Any]:
    """Chat, Message, ToolCall and Model on a new declarative base.

    ``extra`` names optional models to declare too (``"ChatEvent"``, ``"Usage"``,
    ``"Attachment"``). A test that needs one model of its own declares it on its own ``base``
    and passes it by name in ``declared``: it stands in for the default of that name (``None``
    leaves that model out), and the others are declared beside it on ``base``. Every class is
    returned: SQLAlchemy's registry holds classes weakly, and one nothing refers to would be
    collected.
    """
    if base is None:

        class Base(DeclarativeBase):
            pass

        base = Base
    models: dict[str, Any] = {"Base": base, **declared}
    for name in ("Chat", "Message", "ToolCall", "Model", *extra):
        if name not in models:
            decorator, mixins, table = MODEL_DECLARATIONS[name]
            body = {"__tablename__": table, "__module__": __name__, "__qualname__": name}
            models[name] = decorator()(type(name, (*mixins, base), body))
    return {name: cls for name, cls in models.items() if cls is not None}


def models_source(*extra: str) -> str:
    """The source of a models module that declares the default models (without the chat's
    ``title``) and ``extra`` on its own ``Base``: for a test that loads models by import path
    or in another process."""
    lines = [
        "from sqlalchemy.orm import DeclarativeBase",
        "from sa_llm.declarative import *",
        "from sa_llm.mixins import *",
        "",
        "class Base(DeclarativeBase):",
        "    pass",
    ]
    for name in ("Chat", "Message", "ToolCall", "Model", *extra):
        decorator, mixins, table = MODEL_DECLARATIONS[name]
        lines += ["", f"@{decorator.__name__}()", f"class {name}({mixins[0].__name__}, Base):"]
        lines.append(f"    __tablename__ = {table!r}")
    return "\n".join(lines) + "\n"


def attachment_models() -> dict[str, Any]:
    """The default models plus an ``@acts_as_attachment`` class on the same base."""
    return default_models("Attachment")


@dataclass
class World:
    """One database, one mode, one set of models."""

    mode: str
    sync_engine: Engine
    async_engine: AsyncEngine | None
    models: dict[str, Any]
    session: Any  # Session or AsyncSession

    @property
    def Chat(self) -> Any:
        return self.models["Chat"]

    @property
    def Message(self) -> Any:
        return self.models["Message"]

    @property
    def ToolCall(self) -> Any:
        return self.models["ToolCall"]

    @property
    def Model(self) -> Any:
        return self.models["Model"]

    def sync_engine_for_async(self) -> Engine:
        """The engine the session's statements run on (an async engine's sync one)."""
        return self.async_engine.sync_engine if self.async_engine is not None else self.sync_engine

    async def call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``method`` in sync mode, its ``a``-prefixed twin in async mode."""
        if self.mode == "async":
            twin = getattr(method.__self__, "a" + method.__name__)  # type: ignore[attr-defined]
            result = twin(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result
        return method(*args, **kwargs)

    async def add(self, *rows: Any) -> None:
        for row in rows:
            self.session.add(row)
        await self.commit()

    async def commit(self) -> None:
        result = self.session.commit()
        if inspect.isawaitable(result):
            await result

    async def refresh(self, row: Any) -> None:
        result = self.session.refresh(row)
        if inspect.isawaitable(result):
            await result

    def rows(self, cls: Any, *criteria: Any) -> list[Any]:
        """Rows read through a separate sync session: what is really in the database."""
        with Session(self.sync_engine) as session:
            query = select(cls).where(*criteria)
            if hasattr(cls, "created_at"):
                query = query.order_by(cls.created_at, cls.id)
            else:
                query = query.order_by(cls.id)
            rows = list(session.scalars(query).all())
            session.expunge_all()
            return rows

    def messages(self) -> list[Any]:
        return self.rows(self.Message)


async def new_chat(world: World, **kwargs: Any) -> Any:
    """A chat saved in ``world``: on the fake provider's ``fake-model`` unless ``kwargs`` say."""
    chat = world.Chat(**{"model": "fake-model", "provider": "fake", **kwargs})
    await world.add(chat)
    return chat


def make_world(
    mode: str,
    sync_url: str,
    async_url: str,
    models: dict[str, Any],
    engine_options: Mapping[str, Any] | None = None,
) -> World:
    """``models`` on a new database engine (``engine_options``: ``create_engine``'s keywords)."""
    options = dict(engine_options or {})
    sync_engine = create_engine(sync_url, **options)
    enable_sqlite_savepoints(sync_engine)
    models["Base"].metadata.create_all(sync_engine)
    if mode == "async":
        async_engine = create_async_engine(async_url, **options)
        enable_sqlite_savepoints(async_engine)
        session: Any = AsyncSession(async_engine, expire_on_commit=False)
    else:
        async_engine = None
        session = Session(sync_engine)
    return World(mode, sync_engine, async_engine, models, session)


async def close_world(world: World) -> None:
    if isinstance(world.session, AsyncSession):
        await world.session.close()
    else:
        world.session.close()
    if world.async_engine is not None:
        await world.async_engine.dispose()
    world.sync_engine.dispose()


def configure_worker(job: Mapping[str, Any]) -> None:
    """sa_llm in a worker process: the fake OpenAI server at ``job["server"]`` (Chat
    Completions, no retries), plus the job's own ``settings``."""
    sa_llm.configure(
        openai_base_url=job["server"],
        openai_api_key="test-key",
        openai_api="chat_completions",
        max_retries=0,
        **job.get("settings", {}),
    )


class StatementCounter:
    """Counts the SQL statements an engine runs, by verb (SELECT, INSERT, UPDATE, DELETE)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.statements: list[str] = []
        self.sql: list[str] = []
        event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sql = " ".join(statement.split())
        verb = sql.split(None, 1)[0].upper()
        self.statements.append("NOTIFY" if sql.startswith("SELECT pg_notify(") else verb)
        self.sql.append(sql)

    def count(self, *verbs: str) -> int:
        """Statements whose verb is one of ``verbs``; a verb with a table (``"UPDATE chats"``)
        counts the statements that start so. PostgreSQL's ``SELECT pg_notify(...)`` (a
        released chat wakes its waiters) is counted as ``NOTIFY``, not as a read."""
        plain = {verb for verb in verbs if " " not in verb}
        prefixed = [verb.upper() for verb in verbs if " " in verb]
        return sum(
            1
            for verb, sql in zip(self.statements, self.sql, strict=True)
            if verb in plain or any(sql.upper().startswith(prefix) for prefix in prefixed)
        )

    def reset(self) -> None:
        self.statements.clear()
        self.sql.clear()

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)
