"""sa_llm's pytest plugin (``sa_llm.testing.pytest_plugin``), loaded through its ``pytest11``
entry point in isolated pytest runs (``pytester``, in a subprocess): a user's own test suite
with its own models gets the scripted model, a recorded-traffic replay and a throwaway database
per test, on SQLite and on PostgreSQL (a fresh schema per test)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import POSTGRES_URL_ENV
from persisted import models_source
from sa_llm.testing.pytest_plugin import DATABASE_URL_ENV

RECORDING = (
    Path(__file__).resolve().parents[1]
    / "fixtures/wire/openai"
    / "chat_basic_chat_functionality_openai_gpt-5-nano_can_have_a_basic_conversation.json"
)

# The user's conftest: their models, and the fixture that hands the plugin their Base.
USER_CONFTEST = (
    "import pytest\n"
    + models_source()
    + """

@pytest.fixture
def sa_llm_base():
    return Base
"""
)

USER_TESTS = """
import os

import pytest
from sqlalchemy import func, select

import sa_llm
from conftest import Chat, Message


@pytest.mark.parametrize("turn", [1, 2])  # the second run sees a fresh database again
def test_a_persisted_turn(sa_llm_session, sa_llm_fake, turn):
    assert sa_llm_session.scalar(select(func.count()).select_from(Message)) == 0
    sa_llm_fake.reply("Paris.")
    chat = Chat(model="any-model", provider="fake")
    sa_llm_session.add(chat)
    sa_llm_session.commit()
    assert chat.ask("Capital of France?").text == "Paris."
    assert [m.role for m in chat.messages] == ["user", "assistant"]
    assert sa_llm_fake.requests[0]["messages"][-1]["content"] == "Capital of France?"


def test_the_database(sa_llm_engine, sa_llm_database_url):
    assert sa_llm_engine.dialect.name == os.environ["EXPECTED_DIALECT"]
    assert str(sa_llm_engine.url.render_as_string(hide_password=False)) == sa_llm_database_url


@pytest.mark.asyncio
async def test_an_async_turn(sa_llm_async_sessionmaker, sa_llm_fake):
    sa_llm_fake.reply("Madrid.")
    async with sa_llm_async_sessionmaker() as session:
        chat = Chat(model="any-model", provider="fake")
        session.add(chat)
        await session.commit()
        reply = await chat.aask("Capital of Spain?")
        assert reply.text == "Madrid."
        rows = (await session.scalars(select(Message.role).order_by(Message.id))).all()
        assert rows == ["user", "assistant"]


@pytest.mark.sa_llm_fake(echo=False)
def test_the_marker_configures_the_fake(sa_llm_fake):
    with pytest.raises(sa_llm.errors.BadRequestError, match="script is empty"):
        sa_llm.chat("any-model", provider="fake").ask("Unscripted")
    assert len(sa_llm_fake.requests) == 1  # an unscripted call is not retried


def test_an_unscripted_fake_echoes(sa_llm_fake):
    assert sa_llm.chat("any-model", provider="fake").ask("Hi").text == "echo: Hi"


def test_a_replay(sa_llm_replay):
    replay = sa_llm_replay("recording.json")
    assert sa_llm.chat("gpt-5-nano").ask("What's 2 + 2?").text == "4"
    assert replay.seen[0].body["input"][0]["content"] == "What's 2 + 2?"


def test_the_replay_is_gone_after_the_test():
    assert sa_llm.config.get_config().http_client is None


def test_the_plugin_came_through_its_entry_point(pytestconfig):
    assert pytestconfig.pluginmanager.has_plugin("sa_llm")
"""


@pytest.fixture
def user_suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(USER_CONFTEST)
    pytester.makepyfile(test_user=USER_TESTS)
    shutil.copy(RECORDING, pytester.path / "recording.json")
    pytester.makeini(
        "[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n"
    )
    return pytester


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_a_users_suite_gets_a_model_a_replay_and_a_database_per_test(
    user_suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, database: str
) -> None:
    if database == "postgresql":
        server = os.environ.get(POSTGRES_URL_ENV)
        if not server:
            pytest.skip(f"PostgreSQL tests need {POSTGRES_URL_ENV}")
        monkeypatch.setenv(DATABASE_URL_ENV, server)
    else:
        monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    monkeypatch.setenv("EXPECTED_DIALECT", database)
    result = user_suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=9)
    if database == "postgresql":
        # Every schema the run made was dropped after its test.
        from sqlalchemy import create_engine, text

        engine = create_engine(os.environ[POSTGRES_URL_ENV].replace("+asyncpg", "+psycopg"))
        try:
            with engine.connect() as connection:
                left = connection.scalar(
                    text("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'sa_llm_%'")
                )
        finally:
            engine.dispose()
        assert left == 0


def test_a_recorded_call_never_made_fails_the_test(pytester: pytest.Pytester) -> None:
    shutil.copy(RECORDING, pytester.path / "recording.json")
    pytester.makepyfile(
        test_unused="""
        def test_forgets_to_ask(sa_llm_replay):
            sa_llm_replay("recording.json")

        def test_fails_on_its_own(sa_llm_replay):
            sa_llm_replay("recording.json")
            assert False, "the test's own failure"
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    # The first passes its call and errors in its teardown; the second only fails.
    result.assert_outcomes(passed=1, failed=1, errors=1)
    result.stdout.fnmatch_lines(["*recorded interactions not replayed: https://api.openai.com*"])
    assert "the test's own failure" in result.stdout.str()
    # The failing test reports its own failure only, not the call it never made as well.
    result.stdout.fnmatch_lines(["ERROR test_unused.py::test_forgets_to_ask*"])
    result.stdout.no_fnmatch_line("ERROR test_unused.py::test_fails_on_its_own*")
