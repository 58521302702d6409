"""What every compared system offers the workloads, and the SQL statement counter they share.

A :class:`System` owns one database (a SQLite file; PostgreSQL for the concurrency workload) and
a base URL of the fake server; :meth:`System.new_chat` returns a :class:`Conversation` whose
``ask`` runs one user turn the way that library's documentation shows (tool rounds included)
and returns the reply text. Systems count their SQL with :class:`SqlCounter`, hooked to
SQLAlchemy's ``before_cursor_execute`` and ``commit`` events or to ``sqlite3``'s trace callback.

Example::

    counter = SqlCounter()
    counter.attach_engine(engine)
    ...
    counter.snapshot()   # {"SELECT": 2, "INSERT": 2, "UPDATE": 1, ..., "COMMIT": 3}
"""

from __future__ import annotations

import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import Engine, event

ChunkCallback = Callable[[str], None]
"""Receives each streamed text delta."""

MODEL = "gpt-4.1-nano"
VERBS = ("SELECT", "INSERT", "UPDATE", "DELETE")
WRITES = ("INSERT", "UPDATE", "DELETE")


def question(turn: int) -> str:
    """The user message of turn ``turn`` (the same for every system)."""
    return f"Question {turn}: what should I know about city number {turn}?"


def weather(city: str) -> str:
    """The tool every system offers: a fixed forecast for a city."""
    return f"{city}: 15°C and sunny"


TOOL_EVERY = 5
_FILLER = (
    "Paris is the capital of France, a city on the Seine with about two million people, "
    "known for its museums, its cafés and a tall iron tower built for the 1889 fair. "
)


def reply_text(turn: int) -> str:
    """The reply of turn ``turn``: about 330 characters, like a short real answer."""
    return f"Reply to turn {turn}. " + _FILLER * 2


def tool_turn(turn: int) -> bool:
    """Whether the fake server answers turn ``turn`` with a tool call (every fifth turn)."""
    return turn % TOOL_EVERY == 0


def tool_city(turn: int) -> str:
    return f"City {turn}"


JOURNAL_ENV = "SA_LLM_BENCH_JOURNAL"
JOURNAL_MODES = ("delete", "wal")


def journal_mode() -> str:
    """The SQLite journal mode of this run (``SA_LLM_BENCH_JOURNAL``; default ``delete``, the
    SQLite default): every system's file uses it, so that a commit costs all of them alike."""
    mode = os.environ.get(JOURNAL_ENV, "delete").lower()
    if mode not in JOURNAL_MODES:
        raise ValueError(f"{JOURNAL_ENV}={mode!r}: expected one of {', '.join(JOURNAL_MODES)}")
    return mode


def set_journal(dbapi_connection: Any) -> None:
    """Switch a new SQLite DBAPI connection (sqlite3 or aiosqlite's adapter) to the run's mode."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA journal_mode = {journal_mode()}")
    finally:
        cursor.close()


def apply_journal(engine: Engine) -> None:
    """Every new connection of ``engine`` (a SQLite one) uses the run's journal mode. Listeners
    added later run after this one: a library that sets its own mode must be overridden by
    calling this again after it registered its listener."""
    event.listen(engine, "connect", lambda dbapi_connection, record: set_journal(dbapi_connection))


def normalize(statement: str) -> str:
    """A statement's text with its whitespace collapsed (for comparing two systems' SQL)."""
    return " ".join(statement.split())


class SqlCounter:
    """Counts statements by leading verb (``WITH`` counts as SELECT) and commits.

    With :meth:`start_trace` it also keeps the statements' text and the commits in order, the
    way the parity check compares sa_llm with the limit.
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.trace: list[str] | None = None
        self._lock = threading.Lock()

    def start_trace(self) -> None:
        with self._lock:
            self.trace = []

    def take_trace(self) -> list[str]:
        """The statements and ``COMMIT``s since :meth:`start_trace` (or the last take)."""
        with self._lock:
            taken, self.trace = self.trace or [], [] if self.trace is not None else None
        return taken

    def record(self, statement: str) -> None:
        words = statement.lstrip().split(None, 1)
        if not words or words[0].startswith("--"):
            return  # sqlite3 traces trigger bodies as comments: not statements of their own
        if self.trace is not None and words[0].upper() not in ("BEGIN", "COMMIT"):
            with self._lock:
                if self.trace is not None:
                    self.trace.append(normalize(statement))
        verb = words[0].upper()
        if verb == "WITH":
            verb = "SELECT"
        elif verb == "REPLACE":
            verb = "INSERT"
        elif verb == "END":
            verb = "COMMIT"
        elif verb not in (*VERBS, "COMMIT", "BEGIN"):
            verb = "other"
        with self._lock:
            self.counts[verb] = self.counts.get(verb, 0) + 1

    def commit(self) -> None:
        with self._lock:
            self.counts["COMMIT"] = self.counts.get("COMMIT", 0) + 1
            if self.trace is not None:
                self.trace.append("COMMIT")

    def attach_engine(self, engine: Engine) -> None:
        """Count an engine's statements (COMMITs through the ``commit`` event)."""

        def statement(conn: Any, cursor: Any, text: str, *args: Any) -> None:
            self.record(text)

        def commit(conn: Any) -> None:
            self.commit()

        event.listen(engine, "before_cursor_execute", statement)
        event.listen(engine, "commit", commit)

    def attach_sqlite3(self, connection: sqlite3.Connection) -> None:
        """Count the statements of a raw ``sqlite3`` connection (what sqlite-utils uses)."""
        connection.set_trace_callback(self.record)

    def reset(self) -> None:
        with self._lock:
            self.counts = {}

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)


def statements(counts: dict[str, int]) -> int:
    """All statements but transaction control (BEGIN/COMMIT)."""
    return sum(n for verb, n in counts.items() if verb not in ("BEGIN", "COMMIT"))


def writes(counts: dict[str, int]) -> int:
    return sum(counts.get(verb, 0) for verb in WRITES)


@dataclass
class FailureReport:
    """What a system left behind after a failed turn (W4)."""

    user_turn_kept: bool
    empty_rows: int
    orphans: int
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ToolReport:
    """Whether a chat's tool calls and results are stored and linked (W5)."""

    calls: int
    results: int
    linked: int
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Conversation(ABC):
    """One chat of one system."""

    #: perf_counter_ns when the transport delivered the bytes of the first text delta of the
    #: last streamed turn, for systems that can observe their transport (else None).
    transport_first_ns: int | None = None

    @abstractmethod
    def ask(self, text: str, on_chunk: ChunkCallback | None = None) -> str:
        """Run one user turn (with any tool rounds); stream when ``on_chunk`` is given."""


class AsyncConversation(ABC):
    @abstractmethod
    async def aask(self, text: str, on_chunk: ChunkCallback | None = None) -> str:
        """Async twin of :meth:`Conversation.ask`; stream when ``on_chunk`` is given (W3
        async: sa_llm and the limit only)."""


class System(ABC):
    """One library (or the hand-written limit) set up against one database and fake server."""

    #: The OpenAI API the system uses by default.
    api: ClassVar[str] = "chat_completions"
    #: Why a workload cannot run, by workload id; such cells say so instead of a number.
    unsupported: ClassVar[dict[str, str]] = {}
    #: A reference that runs only the chat workloads (W1, W3): no storage to inspect.
    chat_only: ClassVar[bool] = False

    def __init__(self, db_path: Path, base_url: str) -> None:
        self.db_path = db_path
        self.base_url = base_url
        self.counter = SqlCounter()

    @abstractmethod
    def open(self) -> None:
        """Create the engine(s) and tables."""

    @abstractmethod
    def close(self) -> None:
        """Release connections (before the database file is measured or deleted)."""

    @abstractmethod
    def new_chat(self, key: str, *, tools: bool = False) -> Conversation:
        """A new conversation identified by ``key``; ``tools`` offers :func:`weather`."""

    @abstractmethod
    def rows(self) -> dict[str, int]:
        """Row count of each of the system's tables."""

    def journal(self) -> str:
        """The journal mode the system's own SQLite connection reports (see the parity check:
        every system of a run must report the run's mode)."""
        engine = getattr(self, "engine", None)
        if not isinstance(engine, Engine):
            raise NotImplementedError
        with engine.connect() as conn:
            return str(conn.exec_driver_sql("PRAGMA journal_mode").scalar()).lower()

    def db_bytes(self) -> int:
        """Bytes on disk: the database file and its journal or write-ahead log."""
        total = 0
        for suffix in ("", "-wal", "-journal", "-shm"):
            path = Path(f"{self.db_path}{suffix}")
            if suffix != "-shm" and path.exists():
                total += os.path.getsize(path)
        return total

    @abstractmethod
    def inspect_failure(self, key: str, failed: str) -> FailureReport:
        """After a failed turn whose question was ``failed``: what is stored for chat ``key``."""

    @abstractmethod
    def check_tools(self, key: str) -> ToolReport:
        """Tool calls and results stored for chat ``key``, and how many are linked."""

    @abstractmethod
    def seed(self, key: str, turns: int) -> str:
        """Write, through the system's own storage API, the history ``turns`` turns would leave
        (replies of :func:`reply_text`, a tool round on every fifth turn); returns the handle
        :meth:`rebuild` and :meth:`resume` take."""

    @abstractmethod
    def resume(self, handle: str) -> Conversation:
        """Continue a seeded chat as a later process would (no tools)."""

    @abstractmethod
    def rebuild(self, key: str) -> int:
        """Load chat ``key``'s history as the library would send it; returns its length."""

    def raw_rows(self, key: str) -> int:
        """A raw SELECT of the rows :meth:`rebuild` reads (the reference for W2)."""
        raise NotImplementedError

    # -- W6: async on PostgreSQL --

    async def aopen(self, url: str, schema: str | None) -> None:
        """Open the async side: PostgreSQL with ``schema`` as search path, or SQLite (None)."""
        raise NotImplementedError

    async def ajournal(self) -> str:
        """:meth:`journal` of the async engine."""
        raise NotImplementedError

    async def anew_chat(self, key: str) -> AsyncConversation:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    def pool_peak(self) -> int | None:
        """The most connections checked out at once during W6 (when the pool is observable)."""
        return None


class PoolWatcher:
    """Tracks checked-out connections of an engine's pool (the peak shows pool pressure)."""

    def __init__(self, engine: Engine) -> None:
        self.out = 0
        self.peak = 0
        self._lock = threading.Lock()
        event.listen(engine, "checkout", self._checkout)
        event.listen(engine, "checkin", self._checkin)

    def _checkout(self, *args: Any) -> None:
        with self._lock:
            self.out += 1
            self.peak = max(self.peak, self.out)

    def _checkin(self, *args: Any) -> None:
        with self._lock:
            self.out -= 1
