"""Work on a database given by URL, with a sync or an async driver alike.

The ``sa-llm`` commands and :func:`sa_llm.registry_table.load_models_url` take a URL from the
user, and the docs' own recipes use async ones (``sqlite+aiosqlite://``,
``postgresql+asyncpg://``). The database work is written once over a sync ``Session``; an async
URL runs it through an ``AsyncEngine`` with ``AsyncSession.run_sync``, as the persisted chats do
(docs/decisions.md D22), so the driver the user named is the one used. A driver that is not
installed becomes a :class:`~sa_llm.errors.MissingDependencyError` that says how to install it.

Example::

    count = run_in_session("sqlite+aiosqlite:///app.db", lambda s: load_models(s, Model))
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import URL, create_engine, make_url
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from sa_llm.errors import MissingDependencyError

__all__ = ["check_driver", "is_async_url", "run_in_session"]

T = TypeVar("T")

# The sa_llm extra that installs a driver, by the top-level module SQLAlchemy failed to import.
_DRIVER_EXTRAS = {"psycopg": "postgres", "asyncpg": "postgres", "aiosqlite": "sqlite-async"}
# What installs the drivers no extra provides.
_DRIVER_INSTALL = {
    "psycopg2": "pip install psycopg2-binary",
    "pymysql": "pip install pymysql",
    "MySQLdb": "pip install mysqlclient",
    "aiomysql": "pip install aiomysql",
    "asyncmy": "pip install asyncmy",
    "oracledb": "pip install oracledb",
    "pyodbc": "pip install pyodbc",
}


def is_async_url(url: str | URL) -> bool:
    """Whether ``url`` names an async driver (``sqlite+aiosqlite``, ``postgresql+asyncpg``).

    Raises:
        sqlalchemy.exc.ArgumentError: not a URL.
        sqlalchemy.exc.NoSuchModuleError: a dialect SQLAlchemy does not know.
    """
    return bool(make_url(url).get_dialect().is_async)


def check_driver(url: str | URL) -> None:
    """Import the URL's driver now, so a missing one fails before any work starts.

    Raises:
        MissingDependencyError: the driver is not installed (the message says how to install
            it).
        sqlalchemy.exc.ArgumentError: not a URL.
        sqlalchemy.exc.NoSuchModuleError: a dialect SQLAlchemy does not know.
    """
    with _driver_of(url):
        make_url(url).get_dialect().import_dbapi()


def run_in_session(url: str | URL, work: Callable[[Session], T]) -> T:
    """``work(session)`` in one transaction on the database at ``url``, committed.

    An async URL runs ``work`` through ``AsyncSession.run_sync`` in a new event loop, so this
    is for synchronous callers (a command, a script); async code calls
    ``await async_session.run_sync(work)`` itself.

    Raises:
        MissingDependencyError: the URL's driver is not installed (the message says how to
            install it).
    """
    if is_async_url(url):
        return asyncio.run(_arun(url, work))
    with _driver_of(url):
        engine = create_engine(url)
    try:
        with Session(engine) as session:
            result = work(session)
            session.commit()
            return result
    finally:
        engine.dispose()


async def _arun(url: str | URL, work: Callable[[Session], T]) -> T:
    with _driver_of(url):
        engine = create_async_engine(url)
    try:
        async with AsyncSession(engine) as session:
            result = await session.run_sync(work)
            await session.commit()
            return result
    finally:
        await engine.dispose()


@contextmanager
def _driver_of(url: str | URL) -> Iterator[None]:
    """Creating an engine imports the driver: a missing one is a one-line, fixable error."""
    try:
        yield
    except ModuleNotFoundError as exc:
        module = (exc.name or "").partition(".")[0]
        extra = _DRIVER_EXTRAS.get(module)
        install = (
            f'pip install "sa-llm[{extra}]"'
            if extra
            else _DRIVER_INSTALL.get(module, f"install the package that provides {module!r}")
        )
        driver = make_url(url).drivername
        raise MissingDependencyError(
            f"The database driver for {driver}:// is not installed (no module {module!r}): "
            f"{install}",
            module,
            extra,
        ) from exc
