"""Connecting has its own, short timeout: a host that never answers fails in seconds.

``request_timeout`` (300 s by default, for long replies) bounds each read, write and pool wait;
``connect_timeout`` (``SA_LLM_CONNECT_TIMEOUT``, else 10 s, never more than
``request_timeout``) bounds opening the connection. The first tests read the timeout every
request really carries (the httpx ``timeout`` extension, what httpcore and the aiohttp transport
obey); the last ones connect to a loopback port whose accept queue is full, so the kernel drops
the handshake as a black-holed host would, through httpx (sync and async) and aiohttp.
"""

from __future__ import annotations

import contextlib
import importlib.util
import select
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import sa_llm
from sa_llm.config import CONNECT_TIMEOUT_ENV_VAR, Config
from wire_responses import CHAT_COMPLETION_REPLY

REPLY = CHAT_COMPLETION_REPLY


class TimeoutSpy:
    """An httpx transport that answers every request and keeps the timeout it was sent with."""

    def __init__(self) -> None:
        self.timeouts: list[dict[str, float | None]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.timeouts.append(dict(request.extensions["timeout"]))
        return httpx.Response(200, json=REPLY)


def spied_context(spy: TimeoutSpy, **settings: Any) -> sa_llm.Context:
    transport = httpx.MockTransport(spy)
    return sa_llm.context(
        openai_api_key="k",
        openai_api="chat_completions",
        max_retries=0,
        http_client=httpx.Client(transport=transport),
        async_http_client=httpx.AsyncClient(transport=transport),
        **settings,
    )


async def ask(ctx: sa_llm.Context, mode: str) -> sa_llm.Message:
    chat = ctx.chat("gpt-4.1-nano")
    return chat.ask("Hello") if mode == "sync" else await chat.aask("Hello")


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONNECT_TIMEOUT_ENV_VAR, raising=False)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_connecting_gets_ten_seconds_and_reading_the_request_timeout(mode: str) -> None:
    spy = TimeoutSpy()
    reply = await ask(spied_context(spy), mode)
    assert reply.text == "Hi"
    assert spy.timeouts == [{"connect": 10.0, "read": 300.0, "write": 300.0, "pool": 300.0}]


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_the_connect_timeout_is_a_setting(mode: str) -> None:
    spy = TimeoutSpy()
    await ask(spied_context(spy, connect_timeout=2.5, request_timeout=60), mode)
    assert spy.timeouts == [{"connect": 2.5, "read": 60.0, "write": 60.0, "pool": 60.0}]


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_the_environment_variable_is_the_fallback(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONNECT_TIMEOUT_ENV_VAR, "4")
    spy = TimeoutSpy()
    await ask(spied_context(spy), mode)
    await ask(spied_context(spy, connect_timeout=1.5), mode)  # the setting wins
    assert [t["connect"] for t in spy.timeouts] == [4.0, 1.5]


def test_connecting_never_gets_longer_than_the_request_timeout() -> None:
    assert Config(request_timeout=3).timeout() == httpx.Timeout(3, connect=3)
    assert Config(request_timeout=3, connect_timeout=30).connect_seconds() == 3


@pytest.mark.parametrize("raw", ["soon", "0", "-1", "inf", "nan"])
def test_a_bad_environment_value_names_the_variable(
    raw: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONNECT_TIMEOUT_ENV_VAR, raw)
    with pytest.raises(sa_llm.ConfigurationError, match=CONNECT_TIMEOUT_ENV_VAR):
        Config().timeout()


@pytest.mark.parametrize("value", [0, -1, "soon"])
def test_a_bad_setting_is_refused(value: Any) -> None:
    with pytest.raises(sa_llm.ConfigurationError, match="connect_timeout"):
        sa_llm.context(connect_timeout=value)


# -- a host that never completes the handshake ---------------------------------------------------


@contextlib.contextmanager
def black_hole() -> Iterator[int]:
    """A loopback port that accepts no further connection: its accept queue is full.

    The listener never accepts; connections are opened until one stays unanswered, after
    which the kernel drops every new handshake (SYN) for the port, as a firewall that drops
    packets would, so a client's connect waits for its timeout.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(64):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            fillers.append(filler)
            filler.connect_ex(("127.0.0.1", port))
            _, writable, _ = select.select([], [filler], [], 0.5)
            if not writable:
                break  # this one is left waiting: the queue is full
        else:  # pragma: no cover - a kernel that queues without limit
            pytest.skip("the kernel kept accepting handshakes on a full accept queue")
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


BACKENDS = [
    pytest.param("sync", "httpx", id="sync-httpx"),
    pytest.param("async", "httpx", id="async-httpx"),
    pytest.param(
        "async",
        "aiohttp",
        id="async-aiohttp",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("aiohttp") is None, reason="needs the aiohttp extra"
        ),
    ),
]


@pytest.mark.parametrize(("mode", "backend"), BACKENDS)
async def test_a_black_holed_host_fails_on_the_connect_timeout(mode: str, backend: str) -> None:
    with black_hole() as port:
        ctx = sa_llm.context(
            openai_api_key="k",
            openai_api="chat_completions",
            openai_base_url=f"http://127.0.0.1:{port}/v1",
            max_retries=0,
            # Without a connect timeout of its own the connect would wait these 20 seconds.
            request_timeout=20,
            connect_timeout=0.5,
            async_http_backend=backend,
        )
        with pytest.raises(sa_llm.APITimeoutError) as caught:
            await ask(ctx, mode)
    assert "Connecting to openai timed out after 0.5s (ConnectTimeout)" in str(caught.value)
    assert caught.value.status is None
