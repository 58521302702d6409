"""The procrastinate runner against a real PostgreSQL: the "answer chat N" job is deferred on
the request's own connection, so it commits (or rolls back) with the user's message, and a
procrastinate worker answers the chat (streamed into the event log) exactly once."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import create_engine, func, make_url, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from conftest import POSTGRES_URL_ENV
from persisted import default_models
from sa_llm.events import aread_events
from sa_llm.persistence import use_strategy
from sa_llm.testing import fake_llm

procrastinate = pytest.importorskip("procrastinate", reason='pip install "sa-llm[queue]"')
pytestmark = pytest.mark.postgres


def models() -> dict[str, Any]:
    return default_models("ChatEvent")


@pytest.fixture
async def database(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, str]]:
    """A fresh schema: (SQLAlchemy async URL on psycopg, libpq conninfo for procrastinate)."""
    admin = request.getfixturevalue("_postgres_admin_engine")
    schema = f"t_{uuid.uuid4().hex}"
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    base = make_url(os.environ[POSTGRES_URL_ENV])
    url = base.set(drivername="postgresql+psycopg").update_query_dict(
        {"options": f"-csearch_path={schema}"}
    )
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        yield url.render_as_string(hide_password=False), conninfo
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


async def count(engine: AsyncEngine, statement: Any) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(statement)).scalar_one())


async def test_the_job_commits_with_the_message_and_a_worker_answers(
    database: tuple[str, str],
) -> None:
    from sa_llm.web.queue import ProcrastinateRunner

    url, conninfo = database
    m = models()
    Chat, Message = m["Chat"], m["Message"]
    sync_engine = create_engine(url, poolclass=NullPool)
    m["Base"].metadata.create_all(sync_engine)
    sync_engine.dispose()
    engine = create_async_engine(url, poolclass=NullPool)
    Session = async_sessionmaker(engine, expire_on_commit=False)
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo))
    runner = ProcrastinateRunner(app, Session, Chat)
    assert runner.strategy is not None
    use_strategy(Session, runner.strategy)
    jobs = text("SELECT count(*) FROM procrastinate_jobs")
    try:
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            with fake_llm() as fake:
                async with Session() as session:
                    chat = Chat(model="fake-model", provider="fake")
                    session.add(chat)
                    await session.commit()
                    chat_id = chat.id
                    # A request that fails after the defer: neither the message nor the job.
                    await chat.acreate_user_message("lost question")
                    await runner.submit(session, chat_id)
                    await session.rollback()
                assert await count(engine, jobs) == 0
                assert await count(engine, select(func.count()).select_from(Message)) == 0
                async with Session() as session:
                    chat = await session.get_one(Chat, chat_id)
                    await chat.acreate_user_message("capital of France?")
                    await runner.submit(session, chat_id)
                    await runner.submit(session, chat_id)  # a double submit: one answer
                    await session.commit()
                assert await count(engine, jobs) == 2
                fake.reply("Paris", chunks=3)
                await app.run_worker_async(queues=["sa_llm"], wait=False)
            async with Session() as session:
                rows = (
                    await session.execute(
                        select(Message.role, Message.content, Message.status).order_by(Message.id)
                    )
                ).all()
            assert [tuple(row) for row in rows] == [
                ("user", "capital of France?", "complete"),
                ("assistant", "Paris", "complete"),
            ]
            page = await aread_events(engine, Chat, chat_id)
            assert [e.kind for e in page.events][-2:] == ["message.completed", "turn.ended"]
            done = text("SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'")
            assert await count(engine, done) == 2
    finally:
        await engine.dispose()
        m["Base"].registry.dispose()
