"""Alembic environment for the sa_llm models in ``${module_file}``.

Written by ``sa-llm install``; yours to edit (sa-llm never overwrites it). The database URL is
``SA_LLM_DATABASE_URL``, else ``DATABASE_URL``, else ``sqlalchemy.url`` in alembic.ini; a
sync driver (``sqlite://``, ``postgresql+psycopg://``) or an async one (``sqlite+aiosqlite://``,
``postgresql+asyncpg://``), which runs the migrations through ``AsyncConnection.run_sync`` as
Alembic's ``async`` template does. ``target_metadata`` is the models' metadata, so
``alembic revision --autogenerate`` and ``alembic check`` compare the database with the models.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, create_engine, make_url, pool
from sqlalchemy.ext.asyncio import create_async_engine

from ${module_name} import Base

config = context.config

# Programs that run Alembic in-process keep their own logging setup by setting
# config.attributes["configure_logger"] = False.
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def database_url() -> str:
    """The database to migrate: the environment first, so credentials stay out of files."""
    url = (
        os.environ.get("SA_LLM_DATABASE_URL")
        or os.environ.get("DATABASE_URL")
        or config.get_main_option("sqlalchemy.url")
    )
    if not url:
        raise RuntimeError(
            "No database URL: set SA_LLM_DATABASE_URL (or DATABASE_URL), "
            "or sqlalchemy.url in alembic.ini."
        )
    return url


def run_migrations_offline() -> None:
    """Write the SQL to stdout (``alembic upgrade head --sql``) instead of running it."""
    url = database_url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        # SQLite alters a table by copying it, so autogenerate writes batch operations there.
        render_as_batch=make_url(url).get_backend_name() == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    """Run the migrations on ``connection`` in one transaction."""
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations(url: str) -> None:
    """Connect with the URL's async driver and run the migrations in its greenlet bridge."""
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    """Connect to the database and run the migrations in one transaction."""
    url = database_url()
    if make_url(url).get_dialect().is_async:
        asyncio.run(run_async_migrations(url))
        return
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            do_run_migrations(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
