"""The test infrastructure itself: database fixtures (SQLite, PostgreSQL) and the network ban."""

from __future__ import annotations

import asyncio
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, String, create_engine, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from conftest import engine_arguments


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "infra_item"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


# --------------------------------------------------------------------------------------------
# Databases
# --------------------------------------------------------------------------------------------


def test_sync_roundtrip(engine: Engine, session: Session) -> None:
    Base.metadata.create_all(engine)
    session.add_all([Item(name="a"), Item(name="b")])
    session.commit()
    names = session.scalars(select(Item.name).order_by(Item.id)).all()
    assert names == ["a", "b"]


async def test_async_roundtrip(async_engine: AsyncEngine, async_session: AsyncSession) -> None:
    async with async_engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    async_session.add(Item(name="async"))
    await async_session.commit()
    item = (await async_session.scalars(select(Item))).one()
    assert item.name == "async"  # expire_on_commit=False: no lazy load after commit
    assert async_session.sync_session.bind is not None


def test_each_test_gets_an_empty_database(engine: Engine, session: Session) -> None:
    """Together with test_sync_roundtrip: no rows (or tables) leak between tests."""
    Base.metadata.create_all(engine)
    assert session.scalars(select(Item)).all() == []


def test_db_url_is_isolated_for_own_engines(db_url: str, engine: Engine) -> None:
    """An engine built from db_url by a test sees the same database/schema as ``engine``."""
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(Item).values(name="shared"))
    own = create_engine(db_url)
    try:
        with own.connect() as conn:
            assert conn.execute(select(Item.name)).scalars().all() == ["shared"]
            if own.dialect.name == "postgresql":
                schema = conn.execute(text("select current_schema()")).scalar_one()
                assert schema.startswith("t_")
    finally:
        own.dispose()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_postgres_schema_is_per_test(db_url: str, engine: Engine) -> None:
    assert engine.dialect.name == "postgresql"
    with engine.connect() as conn:
        schema = conn.execute(text("select current_schema()")).scalar_one()
    assert schema.startswith("t_")
    assert schema in db_url


async def test_async_postgres_schema(async_engine: AsyncEngine) -> None:
    async with async_engine.connect() as conn:
        if async_engine.dialect.name == "postgresql":
            schema = (await conn.execute(text("select current_schema()"))).scalar_one()
            assert schema.startswith("t_")
        else:
            assert (await conn.execute(text("select 1"))).scalar_one() == 1


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_asyncpg_gets_the_same_schema(db_url: str, engine: Engine) -> None:
    """``engine_arguments`` moves the search_path option into asyncpg's server_settings."""
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(Item).values(name="via psycopg"))
    url, connect_args = engine_arguments(make_url(db_url).set(drivername="postgresql+asyncpg"))
    assert "search_path" in connect_args["server_settings"]
    own = create_async_engine(url, connect_args=connect_args)
    try:
        async with own.connect() as conn:
            names = (await conn.execute(select(Item.name))).scalars().all()
    finally:
        await own.dispose()
    assert names == ["via psycopg"]


def test_fresh_base(fresh_base: type[DeclarativeBase], engine: Engine) -> None:
    class Thing(fresh_base):  # type: ignore[misc,valid-type]
        __tablename__ = "thing"
        id: Mapped[int] = mapped_column(primary_key=True)

    fresh_base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(Thing())
        session.commit()
        assert len(session.scalars(select(Thing)).all()) == 1


# --------------------------------------------------------------------------------------------
# Network ban
# --------------------------------------------------------------------------------------------


def _assert_guarded() -> None:
    # Checked first so that a missing guard fails the test without sending anything.
    assert getattr(socket.socket.connect, "__sa_llm_network_guard__", False)
    assert getattr(socket.socket.connect_ex, "__sa_llm_network_guard__", False)
    assert getattr(socket.create_connection, "__sa_llm_network_guard__", False)
    assert getattr(socket.getaddrinfo, "__sa_llm_network_guard__", False)


@pytest.fixture
def loopback_server() -> Iterator[int]:
    _assert_guarded()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


@pytest.mark.parametrize("address", [("10.0.0.1", 80), ("example.com", 80)])
def test_network_connect_is_forbidden(address: tuple[str, int]) -> None:
    _assert_guarded()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        with pytest.raises(RuntimeError, match="network access is forbidden in tests"):
            sock.connect(address)
        with pytest.raises(RuntimeError, match="network access is forbidden in tests"):
            sock.connect_ex(address)
    with pytest.raises(RuntimeError, match="network access is forbidden in tests"):
        socket.create_connection(address, timeout=1)


def test_network_ipv6_is_forbidden() -> None:
    _assert_guarded()
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
        with pytest.raises(RuntimeError, match="network access is forbidden in tests"):
            sock.connect(("2001:db8::1", 80, 0, 0))
        with pytest.raises(RuntimeError, match="network access is forbidden in tests"):
            sock.connect(("::ffff:10.0.0.1", 80, 0, 0))


def test_dns_lookup_is_forbidden() -> None:
    _assert_guarded()
    with pytest.raises(RuntimeError, match="network access is forbidden in tests"):
        socket.getaddrinfo("example.com", 443)


async def test_asyncio_connection_is_forbidden() -> None:
    _assert_guarded()
    with pytest.raises(RuntimeError, match="network access is forbidden in tests"):
        await asyncio.open_connection("10.0.0.1", 80)
    with pytest.raises(RuntimeError, match="network access is forbidden in tests"):
        await asyncio.open_connection("example.com", 80)


def test_loopback_is_allowed(loopback_server: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.connect(("127.0.0.1", loopback_server))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        assert sock.connect_ex(("127.0.0.1", loopback_server)) == 0
    socket.create_connection(("127.0.0.1", loopback_server), timeout=5).close()
    assert socket.getaddrinfo("localhost", loopback_server)


async def test_asyncio_loopback_is_allowed(loopback_server: int) -> None:
    _reader, writer = await asyncio.open_connection("127.0.0.1", loopback_server)
    writer.close()
    await writer.wait_closed()


def test_unix_socket_is_allowed() -> None:
    _assert_guarded()
    if not hasattr(socket, "AF_UNIX"):
        pytest.skip("no unix sockets here")
    with tempfile.TemporaryDirectory() as directory:
        path = str(Path(directory) / "s")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            server.bind(path)
            server.listen(1)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.connect(path)
