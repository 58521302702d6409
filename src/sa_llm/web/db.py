"""The database URL of a web app: the async driver for a URL written for a sync one.

``sa-llm install`` writes ``SA_LLM_DATABASE_URL`` for Alembic (``sqlite:///app.sqlite3``,
``postgresql://...``); an async web app wants the same database through an async driver.

Example::

    async_database_url("sqlite:///app.sqlite3")       # 'sqlite+aiosqlite:///app.sqlite3'
    async_database_url("postgresql://app@db/app")      # 'postgresql+psycopg://app@db/app'
"""

from __future__ import annotations

from sqlalchemy import URL, make_url

__all__ = ["async_database_url"]

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
