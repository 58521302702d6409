"""The fault matrix: every fault x sync/async x whole/streamed x SQLite/PostgreSQL x five APIs.

A persisted chat talks real HTTP to :class:`~sa_llm.testing.faults.FaultInjectingServer`, which
replays recorded replies of Chat Completions (OpenRouter), Responses (OpenAI), Anthropic, Gemini
and Bedrock with one fault injected. Every case checks what a user of the chat would notice:

* the typed error of :mod:`sa_llm.errors` is raised (exactly that class);
* the server saw exactly the requests the retry rules promise: ``1 + max_retries`` for
  connection failures, timeouts and retryable statuses (and, for a whole body, a connection
  dropped while it was read), ``1`` for everything else, including any fault after a stream
  has started;
* the database holds the user's message once, no blank assistant row, no tool call without
  its result;
* the next ``ask`` on the same chat succeeds, and the request it sends carries the earlier
  question once and no empty assistant message.

A second table puts a complete tool round before the fault: the round is kept and sent again.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import httpx
import pytest
import pytest_asyncio
from sqlalchemy import Engine, create_engine, event, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session

import sa_llm
from conftest import POSTGRES_URL_ENV, async_url, sync_url
from faults_support import SPECS, ApiSpec, first_content_event, history, reply_text, tool_names
from persisted import World, default_models
from sa_llm import errors
from sa_llm.persistence import enable_sqlite_savepoints
from sa_llm.testing.faults import (
    Answer,
    Api,
    EndEarly,
    FaultInjectingServer,
    Garbled,
    InjectedFault,
    RecordedReply,
)
from sa_llm.testing.server import CloseAfter, Drip, ErrorEvent, Failure, Hang, Malformed, Refuse

MAX_RETRIES = 2
# Only a hang waits for the timeout; every other reply arrives in milliseconds, so the rest get
# a timeout no loaded machine reaches.
HANG_TIMEOUT = 0.05
TIMEOUT = 10.0
FIRST, SECOND = "What is the first answer?", "And the second one?"


# -- the faults -----------------------------------------------------------------------------------

ErrorFor = Callable[[Api, bool], "type[Exception] | None"]


@dataclass(frozen=True)
class Row:
    """One fault of the matrix and what a user must see when it strikes.

    Attributes:
        name: the test id.
        fault: the fault for an API, given where a mid-stream fault strikes (see
            :func:`position`).
        error: the exact error class for (api, streamed); ``None``: the ask succeeds.
        retried: for (streamed,): whether the transport must retry it.
    """

    name: str
    fault: Callable[[ApiSpec, int], InjectedFault | None]
    error: ErrorFor
    retried: Callable[[bool], bool]

    def __str__(self) -> str:
        return self.name


def always(error: type[Exception] | None) -> ErrorFor:
    return lambda api, streamed: error


def by_mode(whole: type[Exception], streamed: type[Exception]) -> ErrorFor:
    return lambda api, is_streamed: streamed if is_streamed else whole


def error_event_error(api: Api, streamed: bool) -> type[Exception]:
    # Bedrock never sends an error object with status 200: as a whole body it is simply not a
    # Converse reply. Everywhere else the error object is read as the server error it names.
    return errors.ResponseParseError if api == "bedrock" and not streamed else errors.ServerError


def yes(streamed: bool) -> bool:
    return True


def no(streamed: bool) -> bool:
    return False


def while_not_streamed(streamed: bool) -> bool:
    # A whole body is read inside the attempt, so losing the connection there is retried; a
    # stream is never retried once it has opened (chunks may have reached the caller).
    return not streamed


def overloaded(spec: ApiSpec, position: int) -> Failure:
    # Anthropic says "overloaded" with its own 529; the others with 503.
    return Failure(529 if spec.api == "anthropic" else 503, "The model is overloaded.")


ROWS = [
    Row("success", lambda spec, k: None, always(None), no),
    Row("drip", lambda spec, k: Drip(interval=0.001, size=257), always(None), no),
    Row("refuse", lambda spec, k: Refuse(), always(errors.APIConnectionError), yes),
    Row("hang", lambda spec, k: Hang(seconds=5.0), always(errors.APITimeoutError), yes),
    Row(
        "rate_limited",
        lambda spec, k: Failure(429, "Rate limit reached.", headers={"retry-after": "0"}),
        always(errors.RateLimitError),
        yes,
    ),
    Row("server_error", lambda spec, k: Failure(500), always(errors.ServerError), yes),
    Row("overloaded", overloaded, always(errors.OverloadedError), yes),
    Row(
        "auth",
        lambda spec, k: Failure(401, "Invalid API key provided."),
        always(errors.AuthenticationError),
        no,
    ),
    Row(
        "close_after",
        lambda spec, k: CloseAfter(chunks=k),
        always(errors.APIConnectionError),
        while_not_streamed,
    ),
    Row(
        "ends_early",
        lambda spec, k: EndEarly(after=k),
        by_mode(errors.ResponseParseError, errors.StreamInterruptedError),
        no,
    ),
    Row(
        "malformed_json", lambda spec, k: Malformed(after=k), always(errors.ResponseParseError), no
    ),
    Row("garbled", lambda spec, k: Garbled(after=k), always(errors.ResponseParseError), no),
    Row("error_event", lambda spec, k: ErrorEvent(after=k), error_event_error, no),
]
ROW = {row.name: row for row in ROWS}


def position(spec: ApiSpec, reply: RecordedReply) -> int:
    """Where a mid-stream fault strikes: just after the reply's first text (or tool call)."""
    return first_content_event(spec.api, reply) + 1 if reply.streamed else 1


# -- the harness ----------------------------------------------------------------------------------


def fast_sqlite(engine: Engine) -> None:
    """SAVEPOINTs as the library needs them, and no fsync per commit (SQLite only).

    The cases commit a few thousand times; durability across a power cut is not what they test.
    """
    enable_sqlite_savepoints(engine)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _no_sync)


def _no_sync(dbapi_connection: Any, record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous = OFF")
    cursor.close()


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    return default_models()


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ],
)
def database(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    models: dict[str, Any],
) -> Iterator[Engine]:
    """One database per module with the tables created: a SQLite file, or a PostgreSQL schema.

    Every case has a chat of its own and reads back only that chat's rows, so the cases can
    share the tables; creating them 320 times would take longer than the faults themselves.
    """
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('fault-matrix') / 'matrix.sqlite3'}"
        schema = None
    else:
        admin: Engine = request.getfixturevalue("_postgres_admin_engine")
        schema = f"t_{uuid.uuid4().hex}"
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        base = make_url(os.environ[POSTGRES_URL_ENV])
        options = f"-csearch_path={schema}"
        url = base.update_query_dict({"options": options}).render_as_string(hide_password=False)
    engine = create_engine(sync_url(url))
    fast_sqlite(engine)
    models["Base"].metadata.create_all(engine)
    try:
        yield engine
    finally:
        engine.dispose()
        if schema is not None:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def async_engine(database: Engine) -> AsyncIterator[AsyncEngine]:
    url = async_url(database.url).render_as_string(hide_password=False)
    engine = create_async_engine(url)
    fast_sqlite(engine.sync_engine)
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture(params=["sync", "async"], loop_scope="module")
async def world(
    request: pytest.FixtureRequest,
    database: Engine,
    async_engine: AsyncEngine,
    models: dict[str, Any],
) -> AsyncIterator[World]:
    if request.param == "sync":
        with Session(database) as session:
            yield World("sync", database, None, models, session)
        return
    async with AsyncSession(async_engine, expire_on_commit=False) as async_session:
        yield World("async", database, async_engine, models, async_session)


@contextlib.asynccontextmanager
async def connected(
    spec: ApiSpec, request_timeout: float
) -> AsyncIterator[tuple[FaultInjectingServer, sa_llm.Context]]:
    """A server for ``spec`` and a context whose own HTTP client talks to it.

    Each case gets its own client, so no pooled connection to an earlier case's server (whose
    port the system may hand out again) can add a failure the case did not inject.
    """
    async with (
        FaultInjectingServer(spec.api, idle_timeout=10, max_seconds=60) as server,
        httpx.AsyncClient(verify=False) as async_client,
    ):
        with httpx.Client(verify=False) as sync_client:
            context = sa_llm.context(
                **spec.settings(
                    server,
                    max_retries=MAX_RETRIES,
                    retry_interval=0,
                    request_timeout=request_timeout,
                    http_client=sync_client,
                    async_http_client=async_client,
                )
            )
            yield server, context


async def new_chat(world: World, spec: ApiSpec, context: sa_llm.Context) -> Any:
    chat = world.Chat(
        model=spec.model, provider=spec.provider, assume_model_exists=True, context=context
    )
    await world.add(chat)
    return chat


async def ask(world: World, chat: Any, prompt: str, streamed: bool, chunks: list[Any]) -> Any:
    return await world.call(chat.ask, prompt, on_chunk=chunks.append if streamed else None)


@dataclass(frozen=True)
class Saved:
    """A message row as a user's app would read it back."""

    role: str
    content: str | None
    calls: tuple[str, ...]
    answers: str | None  # the name of the call a tool result answers


def saved(world: World, chat: Any) -> list[Saved]:
    """The chat's messages in the database, read through a separate session."""
    Message, ToolCall = world.Message, world.ToolCall
    with Session(world.sync_engine) as session:
        rows = session.scalars(
            select(Message)
            .where(Message.chat_id == chat.id)
            .order_by(Message.created_at, Message.id)
        ).all()
        ids = [row.id for row in rows]
        calls = session.scalars(
            select(ToolCall).where(ToolCall.message_id.in_(ids)).order_by(ToolCall.id)
        ).all()
        names = {call.id: call.name for call in calls}
        return [
            Saved(
                row.role,
                row.content,
                tuple(call.name for call in calls if call.message_id == row.id),
                names.get(row.tool_call_id) if row.tool_call_id is not None else None,
            )
            for row in rows
        ]


def assert_valid(world: World, rows: list[Saved]) -> None:
    """No blank assistant row, every tool call answered by exactly one tool result, and no tool
    call left behind by a message that was deleted (anywhere in the database)."""
    assert [r for r in rows if r.role == "assistant" and not r.content and not r.calls] == []
    asked = [name for r in rows for name in r.calls]
    answered = [r.answers or "" for r in rows if r.role == "tool"]
    assert sorted(answered) == sorted(asked)
    Message, ToolCall = world.Message, world.ToolCall
    with Session(world.sync_engine) as session:
        orphans = select(ToolCall.id).where(ToolCall.message_id.not_in(select(Message.id)))
        assert session.scalars(orphans).all() == []


def assert_sends(spec: ApiSpec, body: Any, users: list[str], kinds: list[str]) -> None:
    """The request's conversation: these user questions, in order and once each, no empty
    assistant message, and (assistant text aside) these kinds of entries."""
    sent = history(spec.api, body)
    assert ("assistant", "") not in sent
    assert [text for kind, text in sent if kind == "user"] == users
    assert [kind for kind, _ in sent if kind not in ("assistant", "system")] == kinds


async def seen(server: FaultInjectingServer, expected: int) -> int:
    """The server's request count once it has caught up with the client.

    A client that timed out may be ahead of the handler thread that is still to admit its
    request; every other fault answers only after the request was counted.
    """
    await anyio.to_thread.run_sync(server.wait_for_requests, expected, 2.0)
    return server.request_count


def attempts(row: Row, streamed: bool) -> int:
    return 1 + MAX_RETRIES if row.retried(streamed) else 1


# -- the matrix -----------------------------------------------------------------------------------


# One event loop for the module: the async engine and its pooled connections serve every case.
@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("row", ROWS, ids=str)
@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("api", list(SPECS))
async def test_a_fault_leaves_a_chat_that_continues(
    world: World, api: str, streamed: bool, row: Row
) -> None:
    spec = SPECS[api]
    reply = spec.replies(streamed).text
    text = reply_text(spec.api, reply)
    fault = row.fault(spec, position(spec, reply))
    expected = row.error(spec.api, streamed)
    tries = attempts(row, streamed)
    timeout = HANG_TIMEOUT if isinstance(fault, Hang) else TIMEOUT
    async with connected(spec, timeout) as (server, context):
        chat = await new_chat(world, spec, context)
        server.queue(*[Answer(reply, fault)] * tries, Answer(reply))
        chunks: list[Any] = []

        if expected is None:
            message = await ask(world, chat, FIRST, streamed, chunks)
            assert message.text == text
            kept = [Saved("user", FIRST, (), None), Saved("assistant", text, (), None)]
        else:
            with pytest.raises(expected) as caught:
                await ask(world, chat, FIRST, streamed, chunks)
            assert type(caught.value) is expected
            kept = [Saved("user", FIRST, (), None)]
        assert await seen(server, tries) == tries
        assert all(r.stream is streamed for r in server.requests)
        for failed in server.requests:  # a retry re-sends the question, never doubles it
            assert_sends(spec, failed.body, [FIRST], ["user"])
        if streamed and row.name in ("close_after", "ends_early"):
            # Text reached the caller before the stream broke: the reply had begun.
            assert any(chunk.content for chunk in chunks)
        rows = saved(world, chat)
        assert rows == kept
        assert_valid(world, rows)

        if isinstance(fault, Hang):
            # The same chat, now with a timeout the recovery reply cannot miss.
            chat.with_context(context.replace(request_timeout=TIMEOUT))
        recovered = await ask(world, chat, SECOND, streamed, [])
        assert recovered.text == text
        assert server.request_count == tries + 1
        users, kinds = [FIRST, SECOND], ["user", "user"]
        assert_sends(spec, server.requests[-1].body, users, kinds)
        if expected is None:
            assert ("assistant", text) in history(spec.api, server.requests[-1].body)
        rows = saved(world, chat)
        assert rows == [*kept, Saved("user", SECOND, (), None), Saved("assistant", text, (), None)]
        assert_valid(world, rows)


# -- a fault after a complete tool round ----------------------------------------------------------


def recorded_tool(name: str) -> type[sa_llm.Tool]:
    """A tool answering to ``name`` that accepts whatever arguments the recording passes."""

    def execute(self: sa_llm.Tool, **arguments: Any) -> str:
        return f"{name} ran"

    return type(f"Recorded_{name}", (sa_llm.Tool,), {"name": name, "execute": execute})


TOOL_ROUND_ROWS = [ROW[name] for name in ("server_error", "close_after", "error_event")]


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("row", TOOL_ROUND_ROWS, ids=str)
@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("api", list(SPECS))
async def test_a_fault_after_a_tool_round_keeps_the_round(
    world: World, api: str, streamed: bool, row: Row
) -> None:
    spec = SPECS[api]
    replies = spec.replies(streamed)
    names = tool_names(spec.api, replies.tool_call)
    assert names
    text = reply_text(spec.api, replies.text)
    fault = row.fault(spec, position(spec, replies.text))
    expected = row.error(spec.api, streamed)
    assert expected is not None
    tries = attempts(row, streamed)
    async with connected(spec, TIMEOUT) as (server, context):
        chat = await new_chat(world, spec, context)
        chat.with_tools(*[recorded_tool(name) for name in names])
        server.queue(
            Answer(replies.tool_call), *[Answer(replies.text, fault)] * tries, Answer(replies.text)
        )

        with pytest.raises(expected) as caught:
            await ask(world, chat, FIRST, streamed, [])
        assert type(caught.value) is expected
        assert await seen(server, 1 + tries) == 1 + tries
        round_kinds = ["tool_call"] * len(names) + ["tool_result"] * len(names)
        for failed in server.requests[1:]:
            assert_sends(spec, failed.body, [FIRST], ["user", *round_kinds])
        rows = saved(world, chat)
        assert [(r.role, r.calls) for r in rows] == [
            ("user", ()),
            ("assistant", tuple(names)),
            *[("tool", ()) for _ in names],
        ]
        assert [r.content for r in rows if r.role == "tool"] == [f"{n} ran" for n in names]
        assert_valid(world, rows)

        recovered = await ask(world, chat, SECOND, streamed, [])
        assert recovered.text == text
        assert server.request_count == 2 + tries
        assert_sends(
            spec, server.requests[-1].body, [FIRST, SECOND], ["user", *round_kinds, "user"]
        )
        after = saved(world, chat)
        assert after == [*rows, Saved("user", SECOND, (), None), Saved("assistant", text, (), None)]
        assert_valid(world, after)


# -- a fault inside a streamed tool call ---------------------------------------------------------

INSIDE_CALL_ROWS = [ROW[name] for name in ("close_after", "ends_early", "garbled")]


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("row", INSIDE_CALL_ROWS, ids=str)
@pytest.mark.parametrize("api", list(SPECS))
async def test_a_stream_broken_inside_a_tool_call_leaves_no_half_round(
    world: World, api: str, row: Row
) -> None:
    """The call was announced but never finished: no assistant row, no tool-call row, no tool
    ran, and the next turn sends the question alone."""
    spec = SPECS[api]
    replies = spec.streamed
    names = tool_names(spec.api, replies.tool_call)
    fault = row.fault(spec, position(spec, replies.tool_call))
    expected = row.error(spec.api, True)
    assert expected is not None
    ran: list[str] = []

    def execute(self: sa_llm.Tool, **arguments: Any) -> str:
        ran.append(self.name)
        return "ran"

    tools = [type(f"Recorded_{n}", (sa_llm.Tool,), {"name": n, "execute": execute}) for n in names]
    async with connected(spec, TIMEOUT) as (server, context):
        chat = await new_chat(world, spec, context)
        chat.with_tools(*tools)
        server.queue(Answer(replies.tool_call, fault), Answer(replies.text))

        with pytest.raises(expected) as caught:
            await ask(world, chat, FIRST, True, [])
        assert type(caught.value) is expected
        assert await seen(server, 1) == 1
        assert ran == []
        rows = saved(world, chat)
        assert rows == [Saved("user", FIRST, (), None)]
        assert_valid(world, rows)

        recovered = await ask(world, chat, SECOND, True, [])
        assert recovered.text == reply_text(spec.api, replies.text)
        assert_sends(spec, server.requests[-1].body, [FIRST, SECOND], ["user", "user"])
        assert_valid(world, saved(world, chat))


# -- error kinds and statuses in each provider's format -------------------------------------------


@contextlib.contextmanager
def plain_chat(spec: ApiSpec, *answers: Answer) -> Iterator[tuple[FaultInjectingServer, Any]]:
    """An in-memory chat (no database, no retries) against a server with ``answers`` queued."""
    with FaultInjectingServer(spec.api, answers) as server, httpx.Client(verify=False) as client:
        context = sa_llm.context(**spec.settings(server, max_retries=0, http_client=client))
        yield server, context.chat(spec.model, provider=spec.provider, assume_model_exists=True)


def plain_ask(chat: Any, streamed: bool) -> Any:
    return chat.ask(FIRST, on_chunk=(lambda chunk: None) if streamed else None)


STATUSES: list[tuple[int, type[errors.APIStatusError]]] = [
    (400, errors.BadRequestError),
    (403, errors.PermissionDeniedError),
    (404, errors.NotFoundError),
]


@pytest.mark.parametrize(("status", "error"), STATUSES, ids=[str(s) for s, _ in STATUSES])
@pytest.mark.parametrize("api", list(SPECS))
def test_each_status_in_the_providers_own_format(
    api: str, status: int, error: type[errors.APIStatusError]
) -> None:
    spec = SPECS[api]
    reply = spec.whole.text
    answer = Answer(reply, Failure(status, "Not for you."))
    with (
        plain_chat(spec, answer) as (server, chat),
        pytest.raises(error, match="Not for") as caught,
    ):
        plain_ask(chat, False)
    assert type(caught.value) is error
    assert caught.value.status == status
    assert server.request_count == 1


KINDS = [("overloaded", errors.OverloadedError), ("rate_limit_exceeded", errors.RateLimitError)]


@pytest.mark.parametrize(("code", "error"), KINDS, ids=[code for code, _ in KINDS])
@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("api", list(SPECS))
def test_an_error_event_is_typed_by_its_kind(
    api: str, streamed: bool, code: str, error: type[Exception]
) -> None:
    """The first event is the error: Responses' bare ``error`` (no response yet), Anthropic's
    ``overloaded_error`` / ``rate_limit_error``, Gemini's 503 / 429 object, Bedrock's
    ``serviceUnavailableException`` / ``throttlingException`` frame."""
    spec = SPECS[api]
    reply = spec.replies(streamed).text
    fault = ErrorEvent(after=0, message="Try again later.", code=code)
    if api == "bedrock" and not streamed:
        error = errors.ResponseParseError  # Bedrock has no error object in a 200 reply
    with plain_chat(spec, Answer(reply, fault)) as (server, chat), pytest.raises(error) as caught:
        plain_ask(chat, streamed)
    assert type(caught.value) is error
    assert server.request_count == 1  # an error inside a reply is never retried


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("api", list(SPECS))
def test_words_in_an_error_message_do_not_change_its_kind(api: str, streamed: bool) -> None:
    """A server error whose message happens to contain "rate" (gene*rate*, mode*rate*) is
    still a server error, not a rate limit a caller would back off from."""
    spec = SPECS[api]
    reply = spec.replies(streamed).text
    fault = ErrorEvent(after=1, message="The model failed to generate a response.")
    expected = error_event_error(spec.api, streamed)
    with (
        plain_chat(spec, Answer(reply, fault)) as (_, chat),
        pytest.raises(errors.ProviderError) as caught,
    ):
        plain_ask(chat, streamed)
    assert type(caught.value) is expected


# -- the server itself ----------------------------------------------------------------------------


def test_an_error_frame_is_a_valid_event_stream_frame() -> None:
    from sa_llm.providers.bedrock._eventstream import EventStreamDecoder
    from sa_llm.testing.faults import encode_frame

    headers = {":message-type": "exception", ":exception-type": "throttlingException"}
    frame = encode_frame(headers, b'{"message":"slow down"}')
    decoder = EventStreamDecoder("bedrock")
    messages = [m for byte in range(len(frame)) for m in decoder.feed(frame[byte : byte + 1])]
    decoder.flush()
    assert [(m.headers, m.json()) for m in messages] == [(headers, {"message": "slow down"})]


def test_a_request_nobody_queued_an_answer_for_is_refused_clearly() -> None:
    spec = SPECS["anthropic"]
    with (
        plain_chat(spec) as (server, chat),
        pytest.raises(errors.BadRequestError, match="No answer is queued for request 1"),
    ):
        plain_ask(chat, False)
    assert server.request_count == 1


def test_the_server_stops_after_max_requests() -> None:
    spec = SPECS["gemini"]
    reply = spec.whole.text
    with FaultInjectingServer(spec.api, fallback=Answer(reply), max_requests=2) as server:
        with httpx.Client(verify=False) as client:
            context = sa_llm.context(**spec.settings(server, max_retries=0, http_client=client))
            chat = context.chat(spec.model, provider=spec.provider, assume_model_exists=True)
            for _ in range(2):
                plain_ask(chat, False)
            with pytest.raises(errors.OverloadedError):  # a 503 in Gemini's format
                plain_ask(chat, False)
        assert server.wait_stopped(5)
    assert server.stop_reason == "max_requests"
    assert server.request_count == 3


def test_the_server_stops_by_itself_when_idle() -> None:
    server = FaultInjectingServer("responses", idle_timeout=0.1).start()
    try:
        assert server.wait_stopped(5)
        assert server.stop_reason == "idle_timeout"
        assert not server.running
    finally:
        server.stop()


@pytest.mark.asyncio(loop_scope="module")
async def test_the_server_is_an_async_context_manager() -> None:
    spec = SPECS["bedrock"]
    reply = spec.streamed.text
    async with (
        FaultInjectingServer(spec.api, [Answer(reply, Drip(0.0, 7))]) as server,
        httpx.AsyncClient(verify=False) as client,
    ):
        context = sa_llm.context(**spec.settings(server, async_http_client=client))
        chat = context.chat(spec.model, provider=spec.provider, assume_model_exists=True)
        message = await chat.aask(FIRST, on_chunk=lambda chunk: None)
        assert message.text == reply_text(spec.api, reply)
        assert [r.stream for r in server.requests] == [True]
    assert not server.running
