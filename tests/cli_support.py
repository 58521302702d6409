"""A user's project for the tests of the ``sa-llm`` command: a directory, a database, the CLI.

``open_project`` makes ``tmp_path`` the working directory of an empty project whose
``SA_LLM_DATABASE_URL`` names the test's database (and ``DATABASE_URL`` unset, so a command that
reads the wrong variable fails). ``Project.cli`` runs ``sa-llm`` in-process with click's runner;
``Project.run`` runs a command line as printed (``sa-llm ...``, ``alembic ...``) in a
subprocess, the way a user types it. ``fresh_database`` gives a whole PostgreSQL database rather
than a schema, for drivers that cannot take the ``search_path`` option of ``db_url`` (asyncpg).
"""

from __future__ import annotations

import importlib
import os
import re
import shlex
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner, Result
from sqlalchemy import Engine, inspect, make_url, text

from conftest import POSTGRES_URL_ENV
from sa_llm.cli import main

BIN = Path(sys.executable).parent


@dataclass
class Project:
    """A user's project directory and the database its ``SA_LLM_DATABASE_URL`` names."""

    root: Path
    module_name: str
    db_url: str

    @property
    def module_file(self) -> str:
        return f"{self.module_name}.py"

    def cli(self, *args: str, env: Mapping[str, str | None] | None = None) -> Result:
        """``sa-llm ARGS`` in-process."""
        return CliRunner().invoke(main, list(args), env=env, prog_name="sa-llm")

    def install(self, *args: str) -> Result:
        """``sa-llm install ARGS`` with this project's unique module name."""
        return self.cli("install", *args, "--module", self.module_file)

    def config(self) -> Config:
        config = Config(str(self.root / "alembic.ini"))
        # The generated env.py leaves the test run's logging alone with this.
        config.attributes["configure_logger"] = False
        return config

    def alembic(self, action: str, revision: str, **kwargs: Any) -> None:
        importlib.invalidate_caches()  # files written within the same second
        getattr(command, action)(self.config(), revision, **kwargs)

    def models(self) -> ModuleType:
        """The generated module."""
        importlib.invalidate_caches()
        return importlib.import_module(self.module_name)

    def files(self) -> dict[str, bytes]:
        """The project's files by relative path (no caches, no SQLite databases)."""
        return {
            p.relative_to(self.root).as_posix(): p.read_bytes()
            for p in sorted(self.root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".sqlite3"
        }

    def run(self, command_line: str) -> subprocess.CompletedProcess[str]:
        """A command line as printed, in a subprocess, with this project's environment."""
        argv = shlex.split(command_line)
        program = BIN / argv[0]
        assert program.exists(), f"{argv[0]} is not installed next to {sys.executable}"
        env = {**os.environ, "SA_LLM_DATABASE_URL": self.db_url}
        env.pop("DATABASE_URL", None)
        return subprocess.run(
            [str(program), *argv[1:]],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )


def open_project(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    """An empty project as the working directory; sys.path and sys.modules restored after."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SA_LLM_DATABASE_URL", db_url)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    # Alembic prepends alembic.ini's prepend_sys_path to sys.path for good.
    monkeypatch.setattr(sys, "path", [*sys.path])
    project = Project(tmp_path, f"chat_models_{uuid.uuid4().hex[:12]}", db_url)
    yield project
    # The generated module, imported by env.py and the test, and by `sa-llm models load`.
    for name in [project.module_name, *(m for m in sys.modules if m.startswith("_sa_llm_user"))]:
        module = sys.modules.pop(name, None)
        if module is not None and hasattr(module, "Base"):
            module.Base.registry.dispose()


def printed_commands(output: str) -> list[str]:
    """The command lines in backquotes of ``sa-llm install``'s next steps, in order."""
    _, _, steps = output.partition("Next steps:")
    return [c for c in re.findall(r"`([^`]+)`", steps) if c.startswith(("sa-llm ", "alembic "))]


def schema_diff(engine: Engine, models: ModuleType) -> list[Any]:
    with engine.connect() as connection:
        diff: list[Any] = compare_metadata(
            MigrationContext.configure(connection), models.Base.metadata
        )
        return diff


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


# -- older schemas, as revisions ------------------------------------------------------------------

# The columns every older sa_llm schema had, by table (in creation order).
_OLD_TABLES = {
    "chats": ['sa.Column("id", sa.Integer(), primary_key=True)'],
    "messages": [
        'sa.Column("id", sa.Integer(), primary_key=True)',
        'sa.Column("chat_id", sa.Integer(), sa.ForeignKey("chats.id"), nullable=False)',
        'sa.Column("role", sa.String(20), nullable=False)',
        'sa.Column("content", sa.Text())',
    ],
    "tool_calls": [
        'sa.Column("id", sa.Integer(), primary_key=True)',
        'sa.Column("message_id", sa.Integer(), sa.ForeignKey("messages.id"), nullable=False)',
    ],
}

#: The tool-call columns of an older schema that stored calls.
OLD_TOOL_CALL_COLUMNS = (
    'sa.Column("tool_call_id", sa.String(255), nullable=False)',
    'sa.Column("name", sa.String(255), nullable=False)',
    'sa.Column("arguments", sa.JSON())',
)


def old_revision(revision: str, doc: str, **columns: Sequence[str]) -> str:
    """The source of an Alembic revision (with no parent) that creates an older schema: the
    chats, messages and tool calls with their ids and links, plus ``columns`` by table name
    (``sa.Column(...)`` source lines, one per line of the revision)."""
    created = "\n".join(
        f'    op.create_table(\n        "{table}",\n'
        + "".join(f"        {column},\n" for column in [*base, *columns.get(table, ())])
        + "    )"
        for table, base in _OLD_TABLES.items()
    )
    dropped = "\n".join(f'    op.drop_table("{table}")' for table in reversed(_OLD_TABLES))
    return f'''"""{doc}"""

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
{created}


def downgrade() -> None:
{dropped}
'''


@contextmanager
def fresh_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """A new, empty PostgreSQL database (sync URL), dropped after the test."""
    admin: Engine = request.getfixturevalue("_postgres_admin_engine")
    name = f"t_{uuid.uuid4().hex}"
    with admin.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(os.environ[POSTGRES_URL_ENV]).set(database=name)
        yield url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT")
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
