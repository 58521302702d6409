"""Shared test fixtures: a network ban for the whole suite, and databases (SQLite + PostgreSQL).

Databases
---------
``db_url`` is parametrized over ``sqlite`` and ``postgresql`` (test ids ``[sqlite]`` /
``[postgresql]``), so every test that uses it, or ``engine``, ``async_engine``, ``session`` or
``async_session``, runs on both:

* SQLite: a fresh database file in the test's ``tmp_path``.
* PostgreSQL: the server in ``SA_LLM_TEST_POSTGRES_URL`` (``scripts/test.py`` and ``.ci/run`` start
  one); skipped when that is unset, failed instead when ``SA_LLM_TEST_REQUIRE_POSTGRES=1`` (CI).
  Every test gets its own schema ``t_<uuid>``, dropped (CASCADE) after the test. The URL carries
  ``?options=-csearch_path%3Dt_<uuid>``, so engines that tests build themselves from ``db_url``
  (``create_engine(db_url)`` with psycopg, sync or async) are isolated the same way. Such engines
  must be disposed by the test (the schema cannot be dropped under an open transaction).
  ``async_db_url`` is the async-driver variant (``sqlite+aiosqlite`` / ``postgresql+psycopg``).
  The PostgreSQL variant is marked ``postgres`` so ``-m "not postgres"`` deselects it.

Models: declare a ``DeclarativeBase`` subclass inside the test (or use ``fresh_base``, whose
registry is disposed after the test), then ``Base.metadata.create_all(engine)``.

Network
-------
An autouse session fixture makes every connection to anything but loopback (127.0.0.0/8, ::1,
``localhost``) or a unix socket raise ``RuntimeError("network access is forbidden in tests")``:
``socket.socket.connect`` / ``connect_ex``, ``socket.create_connection`` and name resolution of
non-local hosts with ``socket.getaddrinfo`` are patched (asyncio and httpx go through these).
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import NullPool

import sa_llm
from persisted import World, close_world, default_models, make_world
from sa_llm.testing import FakeLLM, fake_llm

# pytester runs sa_llm's pytest plugin in isolated pytest runs (tests/testing/test_pytest_plugin);
# docs_summary prints the executed-docs count (tests/docs), in the xdist controller too.
pytest_plugins = ["pytester", "docs_summary"]

POSTGRES_URL_ENV = "SA_LLM_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_ENV = "SA_LLM_TEST_REQUIRE_POSTGRES"

# --------------------------------------------------------------------------------------------
# Network ban
# --------------------------------------------------------------------------------------------

NETWORK_FORBIDDEN = "network access is forbidden in tests"
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_INET_FAMILIES = frozenset({socket.AF_INET, socket.AF_INET6})


def is_loopback_host(host: object) -> bool:
    """Whether ``host`` (a name or an IP literal) is this machine's loopback."""
    if isinstance(host, bytes):
        host = host.decode("ascii", errors="replace")
    if not isinstance(host, str):
        return False
    name = host.strip().strip("[]").split("%", 1)[0].rstrip(".").lower()
    if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


def _check_address(family: int, address: Any) -> None:
    if family not in _INET_FAMILIES or isinstance(address, (str, bytes, os.PathLike)):
        return  # unix sockets and other local families
    host = address[0] if isinstance(address, tuple) and address else address
    if not is_loopback_host(host):
        raise RuntimeError(f"{NETWORK_FORBIDDEN}: connect to {address!r}")


@pytest.fixture(autouse=True, scope="session")
def _forbid_network() -> Iterator[None]:
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_create_connection = socket.create_connection
    real_getaddrinfo = socket.getaddrinfo
    own_names = {socket.gethostname().lower()}

    def connect(self: socket.socket, address: Any) -> None:
        _check_address(self.family, address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        _check_address(self.family, address)
        return real_connect_ex(self, address)

    def create_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        if not is_loopback_host(address[0]):
            raise RuntimeError(f"{NETWORK_FORBIDDEN}: create_connection({address!r})")
        return real_create_connection(address, *args, **kwargs)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode("ascii", errors="replace") if isinstance(host, bytes) else host
        allowed = (
            name is None
            or not isinstance(name, str)
            or is_loopback_host(name)
            or _is_ip_literal(name)  # no lookup happens; connect() is checked separately
            or name.lower() in own_names
        )
        if not allowed:
            raise RuntimeError(f"{NETWORK_FORBIDDEN}: resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    for guard in (connect, connect_ex, create_connection, getaddrinfo):
        guard.__dict__["__sa_llm_network_guard__"] = True

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", connect)
        patch.setattr(socket.socket, "connect_ex", connect_ex)
        patch.setattr(socket, "create_connection", create_connection)
        patch.setattr(socket, "getaddrinfo", getaddrinfo)
        yield


# --------------------------------------------------------------------------------------------
# Databases
# --------------------------------------------------------------------------------------------


def sync_url(url: str | URL) -> URL:
    """``url`` with a sync driver: ``sqlite`` (pysqlite) or ``postgresql+psycopg``."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite")
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    return parsed


def async_url(url: str | URL) -> URL:
    """``url`` with an async driver: ``sqlite+aiosqlite``, or ``postgresql+psycopg`` unless the
    URL already names ``asyncpg``."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend == "postgresql" and parsed.get_driver_name() != "asyncpg":
        return parsed.set(drivername="postgresql+psycopg")
    return parsed


def _server_settings(options: str) -> dict[str, str]:
    """``-ckey=value`` libpq options as asyncpg ``server_settings``."""
    settings: dict[str, str] = {}
    words = shlex.split(options)
    for index, word in enumerate(words):
        if word == "-c" and index + 1 < len(words):
            word = "-c" + words[index + 1]
        if word.startswith("-c") and "=" in word:
            key, _, value = word[2:].partition("=")
            settings[key.replace("-", "_")] = value
    return settings


def engine_arguments(url: str | URL) -> tuple[URL, dict[str, Any]]:
    """URL and ``connect_args`` for ``create_engine`` / ``create_async_engine``.

    psycopg takes the ``options`` query parameter (``-csearch_path=...``) as it is; asyncpg
    needs it as ``connect_args={"server_settings": {...}}``.
    """
    parsed = make_url(url)
    options = parsed.query.get("options")
    if parsed.get_driver_name() == "asyncpg" and isinstance(options, str):
        settings = _server_settings(options)
        return parsed.difference_update_query(["options"]), {"server_settings": settings}
    return parsed, {}


def _postgres_base_url(request: pytest.FixtureRequest) -> str:
    url = os.environ.get(POSTGRES_URL_ENV, "").strip()
    if url:
        return url
    reason = (
        f"PostgreSQL tests need {POSTGRES_URL_ENV} "
        "(python3 scripts/test.py starts a server when PostgreSQL is installed)"
    )
    if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
        pytest.fail(f"{reason}; {REQUIRE_POSTGRES_ENV}=1 forbids skipping them")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def _postgres_admin_engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    engine = create_engine(sync_url(_postgres_base_url(request)), poolclass=NullPool)
    yield engine
    engine.dispose()


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database: SQLite file, or a fresh PostgreSQL schema (see module doc)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.sqlite3'}"
        return
    admin: Engine = request.getfixturevalue("_postgres_admin_engine")
    schema = f"t_{uuid.uuid4().hex}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    base = make_url(os.environ[POSTGRES_URL_ENV])
    options = base.query.get("options")
    # The schema's name is the connections' application_name too: a test that kills
    # connections (tests/persistence/test_db_faults.py) kills only its own, not those of the
    # tests that other xdist workers run at the same time.
    extra = f"-csearch_path={schema} -capplication_name={schema}"
    options = f"{options} {extra}" if isinstance(options, str) and options else extra
    url = base.update_query_dict({"options": options})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '30s'"))
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def async_db_url(db_url: str) -> str:
    """``db_url`` with an async driver (``sqlite+aiosqlite`` / ``postgresql+psycopg``)."""
    return async_url(db_url).render_as_string(hide_password=False)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A sync ``Engine`` on ``db_url``; disposed after the test."""
    url, connect_args = engine_arguments(sync_url(db_url))
    engine = create_engine(url, connect_args=connect_args)
    yield engine
    engine.dispose()


@pytest.fixture
async def async_engine(async_db_url: str) -> AsyncIterator[AsyncEngine]:
    """An ``AsyncEngine`` on ``db_url`` (aiosqlite / psycopg async); disposed after the test."""
    url, connect_args = engine_arguments(async_db_url)
    engine = create_async_engine(url, connect_args=connect_args)
    yield engine
    await engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A ``Session`` on ``engine`` (``expire_on_commit=False``); closed after the test."""
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory() as session:
        yield session


@pytest.fixture
async def async_session(async_engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """An ``AsyncSession`` on ``async_engine`` (``expire_on_commit=False``); closed after."""
    factory = async_sessionmaker(async_engine, expire_on_commit=False)
    async with factory() as session:
        yield session


@pytest.fixture
def fresh_base() -> Iterator[type[DeclarativeBase]]:
    """A new ``DeclarativeBase`` subclass with its own registry, disposed after the test."""

    class Base(DeclarativeBase):
        pass

    yield Base
    Base.registry.dispose()


# --------------------------------------------------------------------------------------------
# Persisted chats: one harness for sync and async (see persisted.py)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    """The scripted fake model, active for the test (no echo: unscripted requests fail)."""
    with fake_llm(echo=False) as fake:
        yield fake


@pytest.fixture
def no_retries() -> Iterator[None]:
    """sa_llm configured not to retry (a scripted error fails at once); reset after."""
    sa_llm.configure(max_retries=0, retry_interval=0)
    yield
    sa_llm.reset_config()


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    """The API form under test: ``"sync"`` or ``"async"``."""
    return str(request.param)


@pytest.fixture
def world_models() -> dict[str, Any]:
    """The models ``world`` declares; a test module overrides it to use others."""
    return default_models()


@pytest.fixture
def world_settings() -> dict[str, Any]:
    """``sa_llm.configure(...)`` settings for the test (reset after); modules override it."""
    return {}


@pytest.fixture
def world_engine_options() -> dict[str, Any]:
    """``create_engine(...)`` keywords of the world's engines; modules override it."""
    return {}


@pytest.fixture(params=["sync", "async"])
async def world(
    request: pytest.FixtureRequest,
    db_url: str,
    async_db_url: str,
    world_models: dict[str, Any],
    world_settings: dict[str, Any],
    world_engine_options: dict[str, Any],
) -> AsyncIterator[World]:
    """``world_models`` on a fresh database (SQLite and PostgreSQL), used sync and async."""
    world = make_world(request.param, db_url, async_db_url, world_models, world_engine_options)
    if world_settings:
        sa_llm.configure(**world_settings)
    try:
        yield world
    finally:
        await close_world(world)
        if world_settings:
            sa_llm.reset_config()
