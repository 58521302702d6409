"""The database URL of a web app: the async driver for a URL written for a sync one.

``sa-llm install`` writes ``SA_LLM_DATABASE_URL`` for Alembic (``sqlite:///app.sqlite3``,
``postgresql://...``); an async web app wants the same database through an async driver.

Example::

    async_database_url("sqlite:///app.sqlite3")       # 'sqlite+aiosqlite:///app.sqlite3'
    async_database_url("postgresql://app@db/app")      # 'postgresql+psycopg://app@db/app'

:func:`share_sqlite` makes a SQLite file fit for a web app's many readers and its writers.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import URL, event, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["async_database_url", "share_sqlite"]

#: How long a write waits for SQLite's lock before it fails ("database is locked").
SQLITE_BUSY_SECONDS = 30.0

# psycopg 3 serves sync and async alike, and its connections take a procrastinate job
# (sa_llm.web.queue); asyncpg URLs are kept as they are.
_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg"}


def async_database_url(url: str | URL) -> str:
    """``url`` with an async driver: kept when it has one already, else aiosqlite for SQLite
    and psycopg (3) for PostgreSQL."""
    parsed = make_url(url)
    if parsed.get_dialect().is_async:
        return parsed.render_as_string(hide_password=False)
    backend = parsed.get_backend_name()
    driver = _ASYNC_DRIVERS.get(backend)
    if driver is None:
        raise ValueError(f"No async driver known for {backend!r}; give an async URL.")
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def share_sqlite(engine: AsyncEngine, busy_seconds: float = SQLITE_BUSY_SECONDS) -> None:
    """On SQLite, open every connection of ``engine`` in WAL mode, waiting up to
    ``busy_seconds`` for a lock; nothing on other databases.

    In SQLite's default journal (DELETE) a reader's lock holds a writer's commit back, and a
    chat page's event stream reads many times a second: with a hundred viewers a reply's writes
    and a posted message waited past SQLite's default five seconds and failed with "database is
    locked". In WAL mode readers never block the writer nor the writer them; the writers still
    take turns, and the longer wait covers a slow disk.
    """
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_connection: Any, connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_seconds * 1000)}")
            cursor.execute("PRAGMA journal_mode = WAL")  # 'memory' for an in-memory database
        finally:
            cursor.close()
