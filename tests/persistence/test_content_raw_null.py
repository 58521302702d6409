"""``messages.content_raw`` is SQL NULL on plain messages, so ``IS NULL`` tells them from raw ones.

Earlier releases wrote the JSON value ``null`` there (``'null'::jsonb`` on PostgreSQL, the text
``null`` on SQLite) on every plain message. Checked with SQL, not through the ORM, on SQLite and
PostgreSQL: with the column mixins (sync and async), with the models ``sa-llm install``
generates, and for the revision ``sa-llm upgrade`` writes to convert the rows of an existing
database (upgrade -> downgrade -> upgrade, and an empty autogenerate diff afterwards).
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import JSON, Engine, column, func, select, table, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

import sa_llm
from cli_support import OLD_TOOL_CALL_COLUMNS, Project, old_revision, open_project, schema_diff
from persisted import World, close_world, default_models, make_world
from sa_llm._install import SCHEMA_VERSION
from sa_llm.testing import FakeLLM, fake_llm
from sa_llm.types import RawContent

BLOCKS = [{"type": "text", "text": "long doc", "cache_control": {"type": "ephemeral"}}]


def roles_where(engine: Engine, condition: str, messages: str = "messages") -> list[str]:
    """The roles of the rows matching a SQL condition, in the order they were written."""
    with engine.connect() as connection:
        query = f"SELECT role FROM {messages} WHERE {condition} ORDER BY id"
        return list(connection.execute(text(query)).scalars())


# -- the mixins ---------------------------------------------------------------------------------


@pytest.fixture(params=["sync", "async"])
async def world(
    request: pytest.FixtureRequest, db_url: str, async_db_url: str
) -> AsyncIterator[World]:
    world = make_world(request.param, db_url, async_db_url, default_models())
    sa_llm.configure(max_retries=0)
    try:
        yield world
    finally:
        await close_world(world)
        sa_llm.reset_config()


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    with fake_llm(echo=False) as fake:
        yield fake


async def test_plain_messages_store_sql_null_with_the_mixins(world: World, fake: FakeLLM) -> None:
    fake.reply("hi").reply("noted")
    chat = world.Chat(model="fake-model", provider="fake")
    await world.add(chat)
    await world.call(chat.with_instructions, "Be brief.")
    await world.call(chat.ask, "hello")
    await world.call(chat.ask, RawContent(BLOCKS))

    engine = world.sync_engine
    assert roles_where(engine, "content_raw IS NULL") == [
        "system",
        "user",
        "assistant",
        "assistant",
    ]
    assert roles_where(engine, "content_raw IS NOT NULL") == ["user"]
    (raw,) = [m for m in world.messages() if m.content_raw is not None]
    assert (raw.content, raw.content_raw) == (None, BLOCKS)


# -- the generated models -----------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    yield from open_project(tmp_path, db_url, monkeypatch)


def test_plain_messages_store_sql_null_with_the_generated_models(
    project: Project, engine: Engine
) -> None:
    result = project.install("message:ChatMessage")
    assert result.exit_code == 0, result.output
    project.alembic("upgrade", "head")
    models = project.models()

    with fake_llm(echo=False) as fake, Session(engine) as session:
        fake.reply("hi").reply("noted")
        chat = models.Chat(model="fake-model", provider="fake")
        session.add(chat)
        session.commit()
        chat.ask("hello")
        chat.ask(RawContent(BLOCKS))

    plain = roles_where(engine, "content_raw IS NULL", "chat_messages")
    assert plain == ["user", "assistant", "assistant"]
    assert roles_where(engine, "content_raw IS NOT NULL", "chat_messages") == ["user"]


# -- converting the rows of an existing database ------------------------------------------------

# How earlier releases wrote content_raw: a Python None through plain JSON is the JSON value null.
OLD_JSON = JSON().with_variant(JSONB(), "postgresql")


def write_old_rows(engine: Engine, *, timestamps: bool) -> None:
    """A chat as earlier releases stored it: JSON null on two plain rows, SQL NULL on one."""
    now = {"created_at": func.current_timestamp(), "updated_at": func.current_timestamp()}
    extra = now if timestamps else {}
    chats = table("chats", column("id"), *(column(name) for name in extra))
    messages = table(
        "messages",
        column("id"),
        column("chat_id"),
        column("role"),
        column("content"),
        column("content_raw", OLD_JSON),
        *(column(name) for name in extra),
    )
    with engine.begin() as connection:
        connection.execute(chats.insert().values(id=1, **extra))
        for row in (
            {"id": 1, "role": "user", "content": "hi", "content_raw": None},
            {"id": 2, "role": "user", "content": None, "content_raw": BLOCKS},
            {"id": 3, "role": "assistant", "content": "ok", "content_raw": None},
        ):
            connection.execute(messages.insert().values(chat_id=1, **row, **extra))
        # Written without content_raw at all: SQL NULL already.
        connection.execute(
            messages.insert().values(id=4, chat_id=1, role="assistant", content="yes", **extra)
        )


def raw_value(engine: Engine) -> Any:
    messages = table("messages", column("id"), column("content_raw", OLD_JSON))
    with engine.connect() as connection:
        query = select(messages.c.content_raw).where(messages.c.id == 2)
        return connection.execute(query).scalar_one()


def test_upgrade_converts_the_rows_of_an_earlier_install(project: Project, engine: Engine) -> None:
    assert project.install().exit_code == 0
    (installed,) = (project.root / "alembic" / "versions").glob("*.py")
    # The install revision as an earlier release wrote it (schema version 1).
    source = installed.read_text()
    assert f"# sa_llm-revision: install schema={SCHEMA_VERSION}" in source
    installed.write_text(source.replace(f"install schema={SCHEMA_VERSION}", "install schema=1"))
    project.alembic("upgrade", "head")
    write_old_rows(engine, timestamps=True)
    assert roles_where(engine, "content_raw IS NULL") == ["assistant"]  # the bug, as it was

    result = project.cli("upgrade")
    assert result.exit_code == 0, result.output
    new = set((project.root / "alembic" / "versions").glob("*.py")) - {installed}
    assert len(new) == SCHEMA_VERSION - 1  # one upgrade revision per later schema version
    (written,) = [p for p in new if "# sa_llm-revision: upgrade schema=2" in p.read_text()]
    assert f"created alembic/versions/{written.name}" in result.output
    assert f"after {installed.name.partition('_')[0]}" in result.output

    project.alembic("upgrade", "head")
    assert roles_where(engine, "content_raw IS NULL") == ["user", "assistant", "assistant"]
    assert roles_where(engine, "content_raw IS NOT NULL") == ["user"]
    assert raw_value(engine) == BLOCKS
    models = project.models()
    assert schema_diff(engine, models) == []

    # The downgrade keeps the rows (SQL NULL reads as JSON null did); upgrading again is a no-op.
    project.alembic("downgrade", written.name.partition("_")[0] + "-1")
    assert roles_where(engine, "content_raw IS NULL") == ["user", "assistant", "assistant"]
    project.alembic("upgrade", "head")
    assert roles_where(engine, "content_raw IS NOT NULL") == ["user"]
    assert raw_value(engine) == BLOCKS
    assert schema_diff(engine, models) == []

    again = project.cli("upgrade")
    assert again.exit_code == 1 and "pass --force" in again.output


# An sa_llm schema of RubyLLM 1.9's shape: content_raw is plain JSON (json, not jsonb, on
# PostgreSQL), and the cache and thinking columns are missing.
OLD_SCHEMA = old_revision(
    "old0001",
    "An older chat schema with content_raw as JSON.",
    messages=['sa.Column("content_raw", sa.JSON())'],
    tool_calls=OLD_TOOL_CALL_COLUMNS,
)


def test_upgrade_converts_json_columns_of_an_older_schema(project: Project, engine: Engine) -> None:
    command.init(Config(str(project.root / "alembic.ini")), str(project.root / "migrations"))
    (project.root / "migrations" / "versions" / "old0001_old.py").write_text(OLD_SCHEMA)
    config = Config()  # the generic env.py of `alembic init` reads sqlalchemy.url
    config.set_main_option("script_location", str(project.root / "migrations"))
    config.set_main_option("sqlalchemy.url", project.db_url.replace("%", "%%"))
    command.upgrade(config, "head")
    write_old_rows(engine, timestamps=False)

    result = project.cli("upgrade", "--alembic-dir", "migrations")
    assert result.exit_code == 0, result.output
    # The columns, the rows, then the lease and status columns.
    assert result.output.count("created migrations/versions/") == SCHEMA_VERSION
    command.upgrade(config, "head")
    assert roles_where(engine, "content_raw IS NULL") == ["user", "assistant", "assistant"]
    assert raw_value(engine) == BLOCKS
    # (Down to old0001, the columns revision would drop content_raw: it cannot know the column
    # was there before it.)
    command.downgrade(config, "-2")  # below the rows revision (upgrade_v2)
    assert roles_where(engine, "content_raw IS NOT NULL") == ["user"]
    command.upgrade(config, "head")
    assert roles_where(engine, "content_raw IS NULL") == ["user", "assistant", "assistant"]


def test_upgrade_revision_in_offline_mode(project: Project, engine: Engine) -> None:
    """``alembic upgrade --sql`` writes the UPDATE in the database's own terms."""
    assert project.install().exit_code == 0
    (installed,) = (project.root / "alembic" / "versions").glob("*.py")
    source = installed.read_text()
    installed.write_text(source.replace(f"install schema={SCHEMA_VERSION}", "install schema=1"))
    assert project.cli("upgrade").exit_code == 0
    buffer = io.StringIO()
    config = project.config()
    config.output_buffer = buffer
    # From the install revision on: its batch operations cannot run offline on SQLite.
    command.upgrade(config, f"{installed.name.partition('_')[0]}:head", sql=True)
    sql = buffer.getvalue()
    assert "UPDATE messages SET content_raw=NULL WHERE" in sql
    if engine.dialect.name == "postgresql":
        assert "jsonb_typeof(CAST(messages.content_raw AS JSONB)) = 'null'" in sql
    else:
        assert "messages.content_raw = 'null'" in sql
