"""sa_llm's pytest plugin: fixtures for your own test suite (loaded through the ``pytest11``
entry point when sa_llm is installed; every name starts with ``sa_llm_``).

* ``sa_llm_fake``: the scripted fake model (:func:`sa_llm.testing.fake_llm`), active for the
  test; configure it with ``@pytest.mark.sa_llm_fake(echo=False, chunk_size=4)``.
* ``sa_llm_replay``: ``sa_llm_replay("recordings/weather.json")`` serves a recording
  (:class:`sa_llm.testing.Replay`) to every sa_llm call of the test, and fails the test when a
  recorded model call was never made.
* ``sa_llm_database_url``: a throwaway database per test: a SQLite file in ``tmp_path``, or,
  with ``--sa-llm-database-url`` / ``SA_LLM_PYTEST_DATABASE_URL`` / the ``sa_llm_database_url``
  ini option naming a PostgreSQL server, a fresh schema dropped after the test.
* ``sa_llm_engine``, ``sa_llm_session``: a sync ``Engine`` and ``Session`` on it, with the
  tables of ``sa_llm_base`` (override that fixture to return your ``DeclarativeBase``) created.
* ``sa_llm_async_engine``, ``sa_llm_async_sessionmaker``: the same for ``AsyncSession`` (plain
  fixtures, so they work with any async test plugin)::

      @pytest.fixture
      def sa_llm_base():
          return Base

      def test_ask(sa_llm_session, sa_llm_fake):
          sa_llm_fake.reply("Paris.")
          chat = Chat(model="any-model", provider="fake")
          sa_llm_session.add(chat)
          sa_llm_session.commit()
          assert chat.ask("Capital of France?").text == "Paris."
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# sa_llm and SQLAlchemy are imported by the fixtures that need them: the plugin loads in every
# pytest run of an environment that has sa_llm installed, and must cost those runs nothing.
if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
    from sqlalchemy.orm import Session

    from sa_llm.config import Config
    from sa_llm.testing.fake import FakeLLM
    from sa_llm.testing.replay import Replay

__all__ = [
    "DATABASE_URL_ENV",
    "sa_llm_async_engine",
    "sa_llm_async_sessionmaker",
    "sa_llm_base",
    "sa_llm_database_url",
    "sa_llm_engine",
    "sa_llm_fake",
    "sa_llm_replay",
    "sa_llm_session",
]

#: The environment variable naming the database server the plugin's databases live on.
DATABASE_URL_ENV = "SA_LLM_PYTEST_DATABASE_URL"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sa_llm", "sa_llm test databases")
    group.addoption(
        "--sa-llm-database-url",
        default=None,
        help=(
            "PostgreSQL server for the sa_llm_database_url fixture (a fresh schema per test); "
            f"default: ${DATABASE_URL_ENV}, else a SQLite file per test."
        ),
    )
    parser.addini("sa_llm_database_url", "PostgreSQL server for sa_llm_database_url.")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "sa_llm_fake(echo=True, chunk_size=8): options of the sa_llm_fake fixture's FakeLLM.",
    )


# -- the model --------------------------------------------------------------------------------


@pytest.fixture
def sa_llm_fake(request: pytest.FixtureRequest) -> Iterator[FakeLLM]:
    """A scripted fake model (provider ``"fake"``) answering every sa_llm call of the test.

    Options come from ``@pytest.mark.sa_llm_fake(...)`` (``echo``, ``chunk_size``); without
    a script it echoes, as :func:`~sa_llm.testing.fake_llm` does.
    """
    from sa_llm.testing.fake import fake_llm

    marker = request.node.get_closest_marker("sa_llm_fake")
    options = dict(marker.kwargs) if marker is not None else {}
    with fake_llm(**options) as fake:
        yield fake


@pytest.fixture
def sa_llm_replay(request: pytest.FixtureRequest) -> Iterator[Callable[..., Replay]]:
    """Serve recorded HTTP traffic to every sa_llm call of the test.

    ``sa_llm_replay(path, **options)`` loads a recording (the JSON format of
    :class:`~sa_llm.testing.Replay`; a relative path is taken from the test file's directory)
    and makes sa_llm's configuration send through it, with test keys for the providers that
    have none and no retries, until the test ends. Recorded model calls that were never made
    fail the test (unless it failed already).
    """
    from sa_llm.config import get_config
    from sa_llm.testing.replay import Replay

    saved = get_config()
    replays: list[Replay] = []

    def load(path: str | os.PathLike[str], **options: Any) -> Replay:
        file = Path(path)
        if not file.is_absolute():
            file = Path(request.path).parent / file
        replay = Replay.from_file(file, **options)
        replays.append(replay)
        _restore(replay.context(saved).config)
        return replay

    try:
        yield load
    finally:
        _restore(saved)
    failed = getattr(request.node, "_sa_llm_call_failed", False)
    if not failed:
        for replay in replays:
            replay.assert_all_used()


def _restore(config: Config) -> None:
    """Make ``config`` the process-wide configuration (every setting, not only changed ones)."""
    from sa_llm.config import configure

    configure(**{name: getattr(config, name) for name in type(config).model_fields})


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    # Remembered for sa_llm_replay's teardown: a failed test need not also report unused calls.
    report = yield
    if report.when == "call" and report.failed:
        item._sa_llm_call_failed = True  # type: ignore[attr-defined]
    return report


# -- databases --------------------------------------------------------------------------------


def _server_url(config: pytest.Config) -> str | None:
    url = (
        config.getoption("--sa-llm-database-url")
        or os.environ.get(DATABASE_URL_ENV)
        or config.getini("sa_llm_database_url")
    )
    return str(url).strip() or None


def _sync(url: URL) -> URL:
    if url.get_backend_name() == "postgresql":
        return url.set(drivername="postgresql+psycopg")
    return url.set(drivername=url.get_backend_name())


def _async(url: URL) -> URL:
    if url.get_backend_name() == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    if url.get_backend_name() == "postgresql":
        return url.set(drivername="postgresql+psycopg")
    return url


@pytest.fixture(scope="session")
def _sa_llm_server(pytestconfig: pytest.Config) -> Iterator[Engine | None]:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    url = _server_url(pytestconfig)
    if url is None:
        yield None
        return
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise pytest.UsageError(
            f"sa_llm's test databases live on SQLite files or a PostgreSQL server, not {url!r}."
        )
    engine = create_engine(_sync(parsed), poolclass=NullPool)
    yield engine
    engine.dispose()


@pytest.fixture
def sa_llm_database_url(_sa_llm_server: Engine | None, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database for this test (sync driver: ``sqlite`` or
    ``postgresql+psycopg``): a SQLite file in ``tmp_path``, or a fresh PostgreSQL schema
    (``search_path`` set in the URL's ``options``) dropped after the test. Engines a test makes
    from it must be disposed before it ends."""
    from sqlalchemy import text

    if _sa_llm_server is None:
        yield f"sqlite:///{tmp_path / 'sa_llm_test.sqlite3'}"
        return
    schema = f"sa_llm_{uuid.uuid4().hex}"
    with _sa_llm_server.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    base = _sa_llm_server.url
    options = base.query.get("options")
    extra = f"-csearch_path={schema}"
    options = f"{options} {extra}" if isinstance(options, str) and options else extra
    try:
        yield base.update_query_dict({"options": options}).render_as_string(hide_password=False)
    finally:
        with _sa_llm_server.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def sa_llm_base() -> Any:
    """Your declarative base (or anything with a ``metadata``) whose tables the engines create;
    override this fixture in your ``conftest.py``. ``None`` (the default): no tables."""
    return None


@pytest.fixture
def sa_llm_engine(sa_llm_database_url: str, sa_llm_base: Any) -> Iterator[Engine]:
    """A sync ``Engine`` on the test's database with ``sa_llm_base``'s tables; disposed after."""
    from sqlalchemy import create_engine

    engine = create_engine(sa_llm_database_url)
    if sa_llm_base is not None:
        sa_llm_base.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sa_llm_session(sa_llm_engine: Engine) -> Iterator[Session]:
    """A ``Session`` on ``sa_llm_engine`` (``expire_on_commit=False``); closed after."""
    from sqlalchemy.orm import sessionmaker

    with sessionmaker(sa_llm_engine, expire_on_commit=False)() as session:
        yield session


@pytest.fixture
def sa_llm_async_engine(sa_llm_database_url: str, sa_llm_base: Any) -> AsyncEngine:
    """An ``AsyncEngine`` on the test's database (``sqlite+aiosqlite`` or
    ``postgresql+psycopg``) with ``sa_llm_base``'s tables.

    It pools no connection (``NullPool``), so it belongs to no event loop and needs no
    ``await engine.dispose()``: any async test plugin (pytest-asyncio, anyio) can use it.
    """
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    if sa_llm_base is not None:
        setup = create_engine(sa_llm_database_url)
        try:
            sa_llm_base.metadata.create_all(setup)
        finally:
            setup.dispose()
    return create_async_engine(_async(make_url(sa_llm_database_url)), poolclass=NullPool)


@pytest.fixture
def sa_llm_async_sessionmaker(
    sa_llm_async_engine: AsyncEngine,
) -> async_sessionmaker[AsyncSession]:
    """``async with sa_llm_async_sessionmaker() as session: ...`` on the test's database
    (``expire_on_commit=False``)."""
    from sqlalchemy.ext.asyncio import async_sessionmaker

    return async_sessionmaker(sa_llm_async_engine, expire_on_commit=False)
