"""The ``sa-llm`` command as a new user meets it: next steps that run as printed, where the
database URL comes from, one-line errors that name the fix, and the documented exit codes.

Exit codes (docs/cli.md): 0 success; 1 an error (one ``Error:`` line on stderr, no traceback);
2 a mistake in the command line (click's usage hint above the ``Error:`` line).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from click.testing import Result
from sqlalchemy import Engine, create_engine, func, select, text

from cli_support import Project, open_project, printed_commands
from sa_llm.registry_table import import_model_class


@pytest.fixture
def project(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    yield from open_project(tmp_path, db_url, monkeypatch)


def assert_error(result: Result, *fragments: str) -> str:
    """Exit 1 with one ``Error:`` line on stderr (no traceback); returns the line."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def assert_usage_error(result: Result, *fragments: str) -> None:
    """Exit 2 with click's usage hint, then the ``Error:`` line."""
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Usage: sa-llm "), result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: ")
    for fragment in fragments:
        assert fragment in error


# -- the printed next steps ---------------------------------------------------------------------


def test_the_printed_next_steps_run_as_printed(project: Project, engine: Engine) -> None:
    """Set SA_LLM_DATABASE_URL as the steps say, then run every printed command verbatim."""
    installed = project.run(f"sa-llm install --module {project.module_file} model:AIModel")
    assert installed.returncode == 0, installed.stderr
    assert "set SA_LLM_DATABASE_URL" in installed.stdout
    commands = printed_commands(installed.stdout)
    assert commands == [
        "alembic upgrade head",
        f"sa-llm models load --module {project.module_file} --class AIModel",
        f"sa-llm attachments gc --module {project.module_file}",
    ]
    for line in commands:
        ran = project.run(line)
        assert ran.returncode == 0, f"{line}\n{ran.stdout}\n{ran.stderr}"
        assert "Error" not in ran.stderr and "Traceback" not in ran.stderr, ran.stderr
    with engine.connect() as connection:
        count = connection.execute(text("SELECT count(*) FROM ai_models")).scalar_one()
        assert count > 100


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_install_force_does_not_ask_for_what_its_env_already_sets(project: Project) -> None:
    assert project.install().exit_code == 0
    forced = project.install("--uuid", "--force")
    assert forced.exit_code == 0, forced.output
    assert "target_metadata" not in forced.output
    assert "set SA_LLM_DATABASE_URL" in forced.output  # the generated env.py reads it


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_install_into_an_env_of_its_own_says_what_it_reads(project: Project) -> None:
    """An `alembic init` env.py reads alembic.ini, not SA_LLM_DATABASE_URL: the steps say so."""
    command.init(Config(str(project.root / "alembic.ini")), str(project.root / "alembic"))
    result = project.install()
    assert result.exit_code == 0, result.output
    assert f"set target_metadata = {project.module_name}.Base.metadata" in result.output
    assert "run `alembic upgrade head` (alembic/env.py picks the database)" in result.output


# -- where the database URL comes from ----------------------------------------------------------


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_database_url_flag_then_sa_llm_variable_then_database_url(
    project: Project, tmp_path: Path
) -> None:
    assert project.install().exit_code == 0
    model = import_model_class(project.root / project.module_file, "Model")
    urls = {name: f"sqlite:///{tmp_path / name}.sqlite3" for name in ("flag", "ours", "generic")}
    engines = {name: create_engine(url) for name, url in urls.items()}
    for engine in engines.values():
        model.metadata.create_all(engine)

    def rows() -> dict[str, int]:
        counts = {}
        for name, engine in engines.items():
            with engine.connect() as connection:
                query = select(func.count()).select_from(model.__table__)
                counts[name] = connection.execute(query).scalar_one()
        return counts

    load = ["models", "load", "--module", project.module_file]
    generic_only = {"SA_LLM_DATABASE_URL": None, "DATABASE_URL": urls["generic"]}
    assert project.cli(*load, env=generic_only).exit_code == 0
    assert rows()["generic"] > 0 and rows()["ours"] == rows()["flag"] == 0

    both = {"SA_LLM_DATABASE_URL": urls["ours"], "DATABASE_URL": urls["generic"]}
    assert project.cli(*load, env=both).exit_code == 0
    assert rows()["ours"] > 0 and rows()["flag"] == 0

    assert project.cli(*load, "--database-url", urls["flag"], env=both).exit_code == 0
    assert rows()["flag"] > 0
    for engine in engines.values():
        engine.dispose()


@pytest.mark.parametrize("args", [["models", "load"], ["models", "refresh"], ["attachments", "gc"]])
def test_help_names_the_database_variables_in_order(args: list[str]) -> None:
    result = Project(Path(), "models", "").cli(*args, "--help")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "default: $SA_LLM_DATABASE_URL, else $DATABASE_URL" in text
    assert "[env var: SA_LLM_DATABASE_URL, DATABASE_URL]" in text


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("args", [["models", "load"], ["attachments", "gc"]])
def test_no_database_url_is_a_usage_error(project: Project, args: list[str]) -> None:
    result = project.cli(*args, env={"SA_LLM_DATABASE_URL": None, "DATABASE_URL": None})
    assert_usage_error(result, "No database URL", "--database-url", "SA_LLM_DATABASE_URL")


# -- errors and exit codes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "module", "install"),
    [
        ("postgresql+psycopg://app@127.0.0.1:9/app", "psycopg", 'pip install "sa-llm[postgres]"'),
        ("postgresql+asyncpg://app@127.0.0.1:9/app", "asyncpg", 'pip install "sa-llm[postgres]"'),
        ("sqlite+aiosqlite:///app.db", "aiosqlite", 'pip install "sa-llm[sqlite-async]"'),
        ("mysql+pymysql://app@127.0.0.1:9/app", "pymysql", "pip install pymysql"),
    ],
)
@pytest.mark.parametrize("args", [["models", "load"], ["models", "refresh"], ["attachments", "gc"]])
def test_a_missing_driver_is_one_line_naming_the_install(
    monkeypatch: pytest.MonkeyPatch, url: str, module: str, install: str, args: list[str]
) -> None:
    # None in sys.modules makes `import module` fail as if it were not installed.
    monkeypatch.setitem(sys.modules, module, None)
    result = Project(Path(), "models", "").cli(*args, "--database-url", url)
    line = assert_error(result, f"no module {module!r}", install)
    assert url.partition("://")[0] in line
    assert result.stdout == ""  # the check runs before anything else


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_exit_codes(project: Project) -> None:
    assert project.install().exit_code == 0
    listed = project.cli("models", "list", "--provider", "openai")
    assert listed.exit_code == 0 and "gpt-4.1-nano" in listed.output  # 0: success

    # 1: an error of the database (the tables are not migrated yet), on one line.
    assert_error(project.cli("models", "load", "--module", project.module_file), "database error")
    # 1: a library error.
    assert_error(project.cli("models", "load", "--module", "missing.py"), "No models module")
    # 2: mistakes in the command line.
    assert_usage_error(project.cli("models", "load", "--bogus"), "No such option")
    assert_usage_error(project.cli("attachments", "gc", "--older-than", "soon"), "duration")
    assert_usage_error(project.cli("models", "lst"), "No such command")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--provider", "opnai"], ["unknown provider 'opnai'", "did you mean 'openai'"]),
        (["--capability", "visoin"], ["unknown capability 'visoin'", "did you mean 'vision'"]),
        (
            ["--capability", "vision", "--capability", "tooling"],
            ["unknown capability 'tooling'"],
        ),
        (["--capability", "zzzz"], ["unknown capability 'zzzz'", "known: batch", "vision"]),
    ],
)
def test_models_list_names_close_matches(args: list[str], fragments: list[str]) -> None:
    result = Project(Path(), "models", "").cli("models", "list", *args)
    assert_usage_error(result, *fragments)
    assert "0 models" not in result.output


def test_models_list_filters_known_values() -> None:
    result = Project(Path(), "models", "").cli(
        "models", "list", "--provider", "anthropic", "--capability", "vision"
    )
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert int(lines[-1].split()[0]) == len(lines) - 2 > 0
    assert all(line.startswith("anthropic ") for line in lines[1:-1])
