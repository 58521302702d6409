"""Async database URLs (``sqlite+aiosqlite://``, ``postgresql+asyncpg://``) work where a user puts
them: in ``SA_LLM_DATABASE_URL`` for the generated Alembic env.py, and for ``sa-llm models load``
and ``sa-llm attachments gc``. Each test checks the result through a sync engine on the same
database. PostgreSQL gets a database of its own: asyncpg takes no ``search_path`` option.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, func, make_url, select, text

from cli_support import Project, fresh_database, open_project, schema_diff, tables
from sa_llm.registry_table import import_model_class, load_models_url
from sa_llm.storage import LocalStorage

TABLES = {"chats", "messages", "tool_calls", "models", "attachments", "chat_events", "usages"}


@dataclass
class Database:
    """One database, by its async URL and a sync engine to check it with."""

    async_url: str
    engine: Engine


@pytest.fixture(
    params=[
        pytest.param("sqlite+aiosqlite", id="aiosqlite"),
        pytest.param("postgresql+asyncpg", id="asyncpg", marks=pytest.mark.postgres),
    ]
)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with ExitStack() as stack:
        if request.param == "sqlite+aiosqlite":
            sync_url = f"sqlite:///{tmp_path / 'app.sqlite3'}"
        else:
            sync_url = stack.enter_context(fresh_database(request))
        engine = create_engine(sync_url)
        stack.callback(engine.dispose)
        async_url = make_url(sync_url).set(drivername=request.param)
        yield Database(async_url.render_as_string(hide_password=False), engine)


@pytest.fixture
def project(
    tmp_path: Path, database: Database, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Project]:
    root = tmp_path / "project"
    root.mkdir()
    yield from open_project(root, database.async_url, monkeypatch)


def test_generated_env_migrates_with_an_async_url(project: Project, database: Database) -> None:
    assert project.install().exit_code == 0
    project.alembic("upgrade", "head")
    assert tables(database.engine) == TABLES
    models = project.models()
    assert schema_diff(database.engine, models) == []

    project.alembic("downgrade", "base")
    assert tables(database.engine) == set()
    project.alembic("upgrade", "head")
    assert schema_diff(database.engine, models) == []


def test_commands_work_with_an_async_url(project: Project, database: Database) -> None:
    assert project.install().exit_code == 0
    model = import_model_class(project.root / project.module_file, "Model")
    model.metadata.create_all(database.engine)  # without Alembic: the commands alone

    loaded = project.cli("models", "load", "--module", project.module_file)
    assert loaded.exit_code == 0, loaded.output
    with database.engine.connect() as connection:
        count = connection.execute(select(func.count()).select_from(model.__table__)).scalar_one()
    assert f"{count} models in models" in loaded.output and count > 100

    # Idempotent through the library function too.
    assert load_models_url(database.async_url, model) == count

    storage = LocalStorage(project.root / "storage" / "attachments")
    kept, orphan = storage.put(io.BytesIO(b"kept")), storage.put(io.BytesIO(b"orphan"))
    with database.engine.begin() as connection:
        now = "CURRENT_TIMESTAMP"
        connection.execute(
            text(f"INSERT INTO chats (id, created_at, updated_at) VALUES (1, {now}, {now})")
        )
        connection.execute(
            text(
                "INSERT INTO messages (id, chat_id, role, created_at, updated_at) "
                f"VALUES (1, 1, 'user', {now}, {now})"
            )
        )
        connection.execute(
            text(
                "INSERT INTO attachments (id, message_id, filename, content_type, byte_size, "
                f"sha256, storage_key, created_at) VALUES (1, 1, 'a.txt', 'text/plain', 4, "
                f":key, :key, {now})"
            ),
            {"key": kept},
        )
    swept = project.cli("attachments", "gc", "--module", project.module_file, "--older-than", "0")
    assert swept.exit_code == 0, swept.output
    assert "1 referenced, deleted 1 unreferenced" in swept.output
    assert set(storage.keys()) == {kept} and orphan != kept
