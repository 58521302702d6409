"""``sa-llm install`` and ``sa-llm upgrade``, end to end in a throwaway project.

Each test works in its own project directory (``tmp_path``, the working directory) the way a
user would: the CLI writes the models module and the Alembic environment and revision, Alembic
migrates the database (in-process, URL from ``SA_LLM_DATABASE_URL``), the generated module is
imported and a chat turn runs through the scripted fake model. The schema must survive
upgrade -> downgrade -> upgrade and match the generated models exactly (an empty autogenerate
diff) on SQLite and PostgreSQL. Reference: sections 5 and 10 of ruby_llm_behaviour.md.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from click.testing import CliRunner, Result
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.orm import Session

import cli_support
from cli_support import OLD_TOOL_CALL_COLUMNS, old_revision, open_project, schema_diff, tables
from sa_llm.cli import main
from sa_llm.testing import Replay, fake_llm
from sa_llm.types import Tokens

WIRE = Path(__file__).parents[1] / "fixtures" / "wire" / "openai"

# -- harness --------------------------------------------------------------------------------------


class Project(cli_support.Project):
    """The project, where ``sa-llm install`` gets this project's unique module name."""

    def cli(self, *args: str, env: Mapping[str, str | None] | None = None) -> Result:
        """``sa-llm ARGS``; ``install`` gets this project's unique module name."""
        if args[:1] == ("install",) and "--module" not in args:
            args = (*args, "--module", self.module_file)
        return super().cli(*args, env=env)


@pytest.fixture
def project(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    for opened in open_project(tmp_path, db_url, monkeypatch):
        monkeypatch.setenv("DATABASE_URL", db_url)  # for `sa-llm models load`
        yield Project(opened.root, opened.module_name, opened.db_url)


#: The tables ``sa-llm install`` creates with its default names.
DEFAULT_TABLES = {
    "chats",
    "messages",
    "tool_calls",
    "models",
    "attachments",
    "chat_events",
    "usages",
}


def upgraded(project: Project, engine: Engine, expected: set[str]) -> ModuleType:
    """``alembic upgrade head``: the ``expected`` tables exist and match the generated models
    (returned)."""
    project.alembic("upgrade", "head")
    assert tables(engine) == expected
    models = project.models()
    assert schema_diff(engine, models) == []
    return models


def assert_down_and_up(project: Project, engine: Engine, models: ModuleType) -> None:
    """``downgrade base`` leaves no table; ``upgrade head`` again matches ``models``."""
    project.alembic("downgrade", "base")
    assert tables(engine) == set()
    project.alembic("upgrade", "head")
    assert schema_diff(engine, models) == []


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0]


def assert_the_docs_table_matches(engine: Engine) -> None:
    """docs/migrations.md's table of what the install revision creates names every table and
    every column the revision created, each in backticks, and nothing the revision lacks."""
    page = (Path(__file__).parents[2] / "docs" / "migrations.md").read_text()
    section = page.split("It creates:", 1)[1].split("\n\n", 2)[1]
    documented: dict[str, set[str]] = {}
    for row in section.splitlines()[2:]:
        cells = row.split("|")
        spans = [s for s in re.findall(r"`([^`]+)`", cells[2]) if not s.startswith("-")]
        documented[cells[1].strip(" `")] = {w for span in spans for w in re.findall(r"\w+", span)}
    inspector = inspect(engine)
    assert set(documented) == tables(engine)
    for table, words in documented.items():
        columns = {column["name"] for column in inspector.get_columns(table)}
        assert columns <= words, (table, columns - words)
        # A backticked lower-case name that is no column (and no table) is a stale one.
        stale = {w for w in words if w.islower() and w not in columns} - set(documented)
        assert not stale, (table, stale)


def run_turn(engine: Engine, chat_cls: type[Any], *, tool_call: bool = False) -> Any:
    """One persisted turn through the fake model; returns the chat's primary key."""
    with fake_llm(echo=False) as fake, Session(engine) as session:
        if tool_call:
            fake.tool_call("lookup", {"city": "Paris"}, id="call_1")
        fake.reply("hi", tokens=Tokens(input=3, output=1, cached=2))
        chat = chat_cls(model="fake-model", provider="fake")
        session.add(chat)
        session.commit()
        if tool_call:

            def lookup(city: str) -> str:
                """Looks a city up."""
                return f"{city}: sunny"

            chat.with_tool(lookup)
        assert chat.ask("hello").text == "hi"
        return chat.id


# -- install ------------------------------------------------------------------------------------


def test_install_writes_a_working_schema(project: Project, engine: Engine) -> None:
    result = project.cli("install")
    assert result.exit_code == 0, result.output
    for path in ("alembic.ini", "alembic/env.py", "alembic/script.py.mako", project.module_file):
        assert f"created {path}" in result.output
    assert "alembic upgrade head" in result.output

    models = upgraded(project, engine, DEFAULT_TABLES)
    assert_the_docs_table_matches(engine)

    loaded = project.cli("models", "load", "--module", project.module_file)
    assert loaded.exit_code == 0, loaded.output
    with Session(engine) as session:
        registry = session.scalars(select(models.Model).where(models.Model.provider == "openai"))
        assert any(row.model_id == "gpt-4.1-nano" for row in registry)

    chat_id = run_turn(engine, models.Chat)
    with Session(engine) as session:
        rows = session.scalars(select(models.Message).order_by(models.Message.id)).all()
        assert [(m.role, m.content) for m in rows] == [("user", "hello"), ("assistant", "hi")]
        assert rows[1].cached_tokens == 2 and rows[1].input_tokens == 3
        chat = session.get(models.Chat, chat_id)
        assert chat is not None and chat.model is not None
        assert (chat.model.model_id, chat.model.provider) == ("fake-model", "fake")
        assert rows[1].model_id == chat.model_id

    # A recorded OpenAI exchange through the generated models, on the loaded registry row.
    recording = WIRE / "activerecord_actsas_basic_chat_functionality_persists_chat_history.json"
    replay = Replay.from_file(recording)
    recorded = json.loads(replay.recording["interactions"][0]["response"]["body"])
    with Session(engine) as session:
        chat = models.Chat(model="gpt-4.1-nano", context=replay.context())
        session.add(chat)
        session.commit()
        reply = chat.ask("What's your favorite Ruby feature?")
        assert reply.tokens is not None
        assert reply.tokens.input == recorded["usage"]["input_tokens"]
        stored = session.scalars(
            select(models.Message).where(models.Message.chat_id == chat.id)
        ).all()
        assert [m.role for m in stored] == ["user", "assistant"]
        assert stored[1].content == reply.text
        assert chat.model.model_id == "gpt-4.1-nano"
    replay.assert_all_used()

    assert_down_and_up(project, engine, models)
    assert tables(engine) == DEFAULT_TABLES


def test_install_custom_names(project: Project, engine: Engine) -> None:
    result = project.cli(
        "install",
        "chat:Conversation",
        "message:ChatMessage",
        "tool_call:FunctionCall",
        "model:AIModel",
        "--skip-attachments",
    )
    assert result.exit_code == 0, result.output
    assert "--class AIModel" in result.output  # the registry command names the custom class
    source = (project.root / project.module_file).read_text()
    assert "class Attachment" not in source
    assert '@acts_as_chat(messages="chat_messages", model="ai_model", model_class="AIModel")' in (
        source
    )

    custom_tables = {"conversations", "chat_messages", "function_calls", "ai_models"}
    models = upgraded(project, engine, {*custom_tables, "chat_events", "usages"})

    # The registry command the install printed works as printed.
    (load,) = re.findall(r"`sa-llm (models load [^`]*)`", result.output)
    loaded = project.cli(*load.split())
    assert loaded.exit_code == 0, loaded.output
    assert "models in ai_models" in loaded.output

    chat_id = run_turn(engine, models.Conversation, tool_call=True)
    with Session(engine) as session:
        chat = session.get(models.Conversation, chat_id)
        assert chat is not None
        roles = [m.role for m in chat.chat_messages]
        assert roles == ["user", "assistant", "tool", "assistant"]
        call = session.scalars(select(models.FunctionCall)).one()
        assert (call.name, call.arguments, call.tool_call_id) == (
            "lookup",
            {"city": "Paris"},
            "call_1",
        )
        assert call.chat_message is chat.chat_messages[1]
        assert chat.chat_messages[2].parent_tool_call is call
        assert chat.chat_messages[2].content == "Paris: sunny"
        assert chat.ai_model.model_id == "fake-model"

    assert_down_and_up(project, engine, models)


def test_install_namespaced_with_uuid_keys(project: Project, engine: Engine) -> None:
    result = project.cli(
        "install",
        "chat:llm.Chat",
        "message:llm.Message",
        "tool_call:llm.ToolCall",
        "model:llm.Model",
        "--uuid",
    )
    assert result.exit_code == 0, result.output
    models = upgraded(project, engine, {f"llm_{table}" for table in DEFAULT_TABLES})

    chat_id = run_turn(engine, models.Chat, tool_call=True)
    assert isinstance(chat_id, uuid.UUID)
    with Session(engine) as session:
        chat = session.get(models.Chat, chat_id)
        assert chat is not None
        assert [m.role for m in chat.llm_messages] == ["user", "assistant", "tool", "assistant"]
        assert all(isinstance(m.id, uuid.UUID) for m in chat.llm_messages)
        assert chat.llm_messages[2].llm_tool_call_id == chat.llm_messages[1].llm_tool_calls[0].id
        attachment = models.Attachment(
            llm_message_id=chat.llm_messages[0].id,
            filename="a.txt",
            content_type="text/plain",
            byte_size=3,
            sha256="0" * 64,
            storage_key="ab/cd",
        )
        session.add(attachment)
        session.commit()

    assert_down_and_up(project, engine, models)


def test_generated_code_is_lint_and_type_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The files land in users' repositories: they pass ruff and mypy --strict as written."""
    pytest.importorskip("mypy")
    pytest.importorskip("ruff")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        main, ["install", "chat:llm.Chat", "message:ChatMessage", "model:AIModel", "--uuid"]
    )
    assert result.exit_code == 0, result.output
    (tmp_path / "use.py").write_text(
        "from __future__ import annotations\n\n"
        "from typing import assert_type\n\n"
        "import sa_llm.types\n"
        "from models import AIModel, Chat, ChatMessage, ToolCall\n\n\n"
        "def check(chat: Chat) -> None:\n"
        '    assert_type(chat.ask("hi"), sa_llm.types.Message)\n'
        "    assert_type(chat.chat_messages, list[ChatMessage])\n"
        "    assert_type(chat.ai_model, AIModel | None)\n"
        "    assert_type(chat.chat_messages[0].parent_tool_call, ToolCall | None)\n"
    )
    # And the upgrade revision, written into a plain `alembic init` environment.
    old = tmp_path / "old"
    old.mkdir()
    command.init(Config(str(old / "alembic.ini")), str(old / "migrations"))
    monkeypatch.chdir(old)
    assert CliRunner().invoke(main, ["upgrade", "--alembic-dir", "migrations"]).exit_code == 0
    monkeypatch.chdir(tmp_path)
    files = [
        "models.py",
        "use.py",
        "alembic/env.py",
        *(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("alembic/versions/*.py")),
        *(p.relative_to(tmp_path).as_posix() for p in old.glob("migrations/versions/*.py")),
    ]
    assert len(files) == 7  # models, use, env.py, the install and the three upgrade revisions
    ruff = [sys.executable, "-m", "ruff"]
    isolated = ["--isolated", "--line-length", "100"]
    lint = subprocess.run(
        [*ruff, "check", *isolated, "--select", "E,F,W,UP,B,SIM,RUF", *files],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout
    fmt = subprocess.run(
        [*ruff, "format", "--check", *isolated, *files], capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout
    from mypy import api

    out, err, status = api.run(["--strict", "--no-incremental", "--python-version", "3.11", *files])
    assert status == 0, out + err


# -- chaining, reinstalling ----------------------------------------------------------------------


USER_REVISION = '''"""The user's own table."""

import sqlalchemy as sa
from alembic import op

revision = "{rev}"
down_revision = {down!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("{table}", sa.Column("id", sa.Integer(), primary_key=True))


def downgrade() -> None:
    op.drop_table("{table}")
'''


def write_user_revision(versions: Path, rev: str, down: str | None, table: str) -> None:
    versions.mkdir(parents=True, exist_ok=True)
    (versions / f"{rev}_user.py").write_text(USER_REVISION.format(rev=rev, down=down, table=table))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_install_chains_after_the_current_heads(project: Project, engine: Engine) -> None:
    versions = project.root / "alembic" / "versions"
    write_user_revision(versions, "aaa111", None, "accounts")
    write_user_revision(versions, "bbb222", "aaa111", "teams")
    write_user_revision(versions, "ccc333", "aaa111", "projects")  # a second head

    result = project.cli("install")
    assert result.exit_code == 0, result.output
    scripts = ScriptDirectory.from_config(project.config())
    head = scripts.get_revision("head")
    assert head is not None
    assert set(head.down_revision or ()) == {"bbb222", "ccc333"}  # merges both heads
    assert f"after {head.down_revision[0]}, {head.down_revision[1]}" in result.output  # type: ignore[index]

    project.alembic("upgrade", "head")
    assert {"accounts", "teams", "projects", "chats"} <= tables(engine)
    assert schema_diff(engine, project.models()) != []  # the user's tables are not in the models
    project.alembic("downgrade", "bbb222")
    assert tables(engine) == {"accounts", "teams", "projects"}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_install_into_an_existing_environment_leaves_it_alone(project: Project) -> None:
    command.init(Config(str(project.root / "alembic.ini")), str(project.root / "alembic"))
    before = project.files()
    result = project.cli("install")
    assert result.exit_code == 0, result.output
    after = project.files()
    assert {name: after[name] for name in before} == before
    (revision,) = [name for name in after if name.startswith("alembic/versions/")]
    assert f"created {revision}" in result.output
    assert f"set target_metadata = {project.module_name}.Base.metadata" in result.output


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_install_twice_is_refused_and_force_keeps_the_revision(project: Project) -> None:
    assert project.cli("install").exit_code == 0
    before = project.files()

    again = project.cli("install", "--uuid")
    assert_one_line_error(again, project.module_file, "install revision", "--force")
    assert project.files() == before

    (project.root / "alembic" / "env.py").write_text("# the user's own env.py\n")
    forced = project.cli("install", "--uuid", "--force")
    assert forced.exit_code == 0, forced.output
    after = project.files()
    assert after["alembic/env.py"] == b"# the user's own env.py\n"  # never overwritten
    assert b"uuid.UUID" in after[project.module_file]
    assert after[f"{project.module_file}.bak"] == before[project.module_file]
    revisions = [name for name in after if name.startswith("alembic/versions/")]
    assert len(revisions) == 2 and any(name.endswith(".py.bak") for name in revisions)
    (revision,) = [name for name in revisions if name.endswith(".py")]
    assert revision in before  # same file, same revision id
    assert b"sa.Uuid()" in after[revision]
    assert "set target_metadata" in forced.output  # env.py existed: the user wires it


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("mappings", "fragment"),
    [
        (["conversation:Chat"], "unknown key 'conversation'"),
        (["chat"], "expected key:ClassName"),
        (["chat:"], "expected key:ClassName"),
        (["chat:Chat-Room"], "not a class name"),
        (["chat:A", "chat:B"], "mapped twice"),
        (["chat:Message"], "Two classes would be called 'Message'"),
        (["message:Attachment"], "--skip-attachments"),
        (["chat:Role"], "two attributes called 'role'"),
    ],
)
def test_install_rejects_bad_mappings(project: Project, mappings: list[str], fragment: str) -> None:
    result = project.cli("install", *mappings)
    assert_one_line_error(result, fragment)
    assert project.files() == {}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_install_rejects_bad_module_paths_and_foreign_alembic_ini(project: Project) -> None:
    assert_one_line_error(project.cli("install", "--module", "my-models.py"), "importable")
    assert_one_line_error(project.cli("install", "--module", "models.txt"), ".py file")
    assert_one_line_error(project.cli("install", "--module", "json.py"), "would hide")
    (project.root / "alembic.ini").write_text("[alembic]\nscript_location = %(here)s/migrations\n")
    assert_one_line_error(project.cli("install"), "--alembic-dir migrations")
    assert set(project.files()) == {"alembic.ini"}


# -- upgrade -------------------------------------------------------------------------------------

OLD_SCHEMA = old_revision(
    "old0001",
    "An sa_llm schema from before raw content, cache tokens and thinking.",
    chats=['sa.Column("model_id", sa.String(255))'],
    messages=[
        'sa.Column("input_tokens", sa.Integer())',
        'sa.Column("output_tokens", sa.Integer())',
        'sa.Column("tool_call_id", sa.Integer())',
    ],
    tool_calls=OLD_TOOL_CALL_COLUMNS,
)

NEW_MESSAGE_COLUMNS = {
    "content_raw",
    "cached_tokens",
    "cache_creation_tokens",
    "thinking_text",
    "thinking_signature",
    "thinking_tokens",
}


def columns(engine: Engine, table: str) -> set[str]:
    return {column["name"] for column in inspect(engine).get_columns(table)}


def test_upgrade_migrates_an_old_schema_and_back(project: Project, engine: Engine) -> None:
    # The user's own Alembic environment, made by `alembic init` in a non-default directory.
    init = Config(str(project.root / "alembic.ini"))
    command.init(init, str(project.root / "migrations"))
    (project.root / "migrations" / "versions" / "old0001_old.py").write_text(OLD_SCHEMA)
    config = Config()  # the generic env.py reads sqlalchemy.url (and no logging setup)
    config.set_main_option("script_location", str(project.root / "migrations"))
    config.set_main_option("sqlalchemy.url", project.db_url.replace("%", "%%"))
    command.upgrade(config, "head")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO chats (id, model_id) VALUES (1, 'gpt-4.1-nano')"))
        connection.execute(
            text(
                "INSERT INTO messages (id, chat_id, role, content) VALUES "
                "(1, 1, 'user', 'hello'), (2, 1, 'assistant', 'hi')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO tool_calls (id, message_id, tool_call_id, name) "
                "VALUES (1, 2, 'c1', 'f')"
            )
        )

    assert_one_line_error(project.cli("upgrade"), "--alembic-dir migrations")
    result = project.cli("upgrade", "--alembic-dir", "migrations")
    assert result.exit_code == 0, result.output
    assert "after old0001" in result.output

    command.upgrade(config, "head")
    assert columns(engine, "messages") >= NEW_MESSAGE_COLUMNS
    assert "thought_signature" in columns(engine, "tool_calls")
    assert "total_cost" in columns(engine, "usages")  # the usage ledger, made by upgrade_v3
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT id, role, content FROM messages ORDER BY id")).all()
        assert [tuple(row) for row in rows] == [(1, "user", "hello"), (2, "assistant", "hi")]
        assert connection.execute(text("SELECT name FROM tool_calls")).scalar_one() == "f"

    command.downgrade(config, "old0001")  # through both upgrade revisions
    assert "usages" not in tables(engine)
    assert columns(engine, "messages") == {
        "id",
        "chat_id",
        "role",
        "content",
        "input_tokens",
        "output_tokens",
        "tool_call_id",
    }
    assert columns(engine, "tool_calls") == {
        "id",
        "message_id",
        "tool_call_id",
        "name",
        "arguments",
    }
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM messages")).scalar_one() == 2
        assert connection.execute(text("SELECT count(*) FROM tool_calls")).scalar_one() == 1

    # Twice: refused; --force rewrites the same revision.
    assert_one_line_error(project.cli("upgrade", "--alembic-dir", "migrations"), "--force")
    forced = project.cli("upgrade", "--alembic-dir", "migrations", "--force")
    assert forced.exit_code == 0, forced.output
    assert "rewrote" in forced.output
    command.upgrade(config, "head")
    assert columns(engine, "messages") >= NEW_MESSAGE_COLUMNS


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_upgrade_with_custom_names_keeps_present_columns(project: Project, engine: Engine) -> None:
    init = Config(str(project.root / "alembic.ini"))
    command.init(init, str(project.root / "alembic"))
    old = OLD_SCHEMA.replace('"messages"', '"chat_messages"').replace(
        "messages.id", "chat_messages.id"
    )
    # A schema that had raw content already (a 1.9-level one).
    old = old.replace(
        'sa.Column("content", sa.Text()),',
        'sa.Column("content", sa.Text()),\n        sa.Column("content_raw", sa.JSON()),',
    )
    (project.root / "alembic" / "versions" / "old0001_old.py").write_text(old)
    result = project.cli("upgrade", "message:ChatMessage")
    assert result.exit_code == 0, result.output
    config = Config()
    config.set_main_option("script_location", str(project.root / "alembic"))
    config.set_main_option("sqlalchemy.url", project.db_url)
    command.upgrade(config, "head")
    assert columns(engine, "chat_messages") >= NEW_MESSAGE_COLUMNS


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_upgrade_needs_an_alembic_environment(project: Project) -> None:
    result = project.cli("upgrade")
    assert_one_line_error(result, "No Alembic environment in alembic/", "`sa-llm install`")
    assert project.files() == {}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_upgrade_after_install_has_nothing_to_do(project: Project) -> None:
    assert project.cli("install").exit_code == 0
    before = project.files()
    result = project.cli("upgrade")
    assert result.exit_code == 0, result.output
    assert "Nothing to do" in result.output
    assert project.files() == before


# -- help ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["install"],
        ["upgrade"],
        ["models"],
        ["models", "load"],
        ["models", "refresh"],
        ["models", "list"],
    ],
)
def test_help(args: list[str]) -> None:
    result = CliRunner().invoke(main, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: ")
