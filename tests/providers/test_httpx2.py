"""httpx2 clients everywhere an httpx client is accepted: the configured sync and async clients
(and their MockTransport), their own timeouts and exceptions mapped to sa_llm's errors, the
shared clients, the fake model's and a Replay's made with ``http_library="httpx2"``, and real
sockets on loopback. The whole suite also runs with ``SA_LLM_HTTP_LIBRARY=httpx2``
(``nox -s tests_httpx2``); these tests pin the seams in either run."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import sa_llm
from sa_llm.config import Config
from sa_llm.errors import (
    APIConnectionError,
    APITimeoutError,
    ConfigurationError,
    MissingDependencyError,
)
from sa_llm.providers._transport import default_async_client, default_client
from sa_llm.testing import Replay, fake_llm
from sa_llm.testing.server import FakeOpenAIServer
from wire_responses import WIRE

httpx2 = pytest.importorskip("httpx2")  # Python 3.11+

MODEL = "gpt-4.1-nano"
RECORDING = (
    WIRE
    / "openai"
    / "chat_basic_chat_functionality_openai_gpt-5-nano_can_have_a_basic_conversation.json"
)


def completion(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": MODEL,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }


def sse(*texts: str) -> bytes:
    events = [
        {"id": "c", "model": MODEL, "choices": [{"index": 0, "delta": {"content": t}}]}
        for t in texts
    ]
    body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    return body + b"data: [DONE]\n\n"


async def ask(chat: Any, mode: str, text: str, **options: Any) -> sa_llm.Message:
    if mode == "sync":
        return chat.ask(text, **options)  # type: ignore[no-any-return]
    return await chat.aask(text, **options)  # type: ignore[no-any-return]


def context(handler: Callable[[Any], Any], **settings: Any) -> sa_llm.Context:
    transport = httpx2.MockTransport(handler)
    return sa_llm.context(
        openai_api_key="k",
        openai_api="chat_completions",
        http_client=httpx2.Client(transport=transport),
        async_http_client=httpx2.AsyncClient(transport=transport),
        **settings,
    )


def test_the_config_takes_httpx2_clients_and_refuses_other_objects() -> None:
    client, async_client = httpx2.Client(), httpx2.AsyncClient()
    config = Config(http_client=client, async_http_client=async_client)
    assert config.http_client is client and config.async_http_client is async_client
    with pytest.raises(ConfigurationError, match=r"httpx\.Client or httpx2\.Client"):
        sa_llm.context(http_client=async_client)
    with pytest.raises(ConfigurationError, match=r"httpx\.AsyncClient or httpx2\.AsyncClient"):
        sa_llm.context(async_http_client=httpx.Client())
    with pytest.raises(ConfigurationError, match=r"httpx\.Client or httpx2\.Client, not str"):
        sa_llm.context(http_client="a client")


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_turn_through_a_users_httpx2_client(mode: str) -> None:
    seen: list[Any] = []

    def handler(request: Any) -> Any:
        seen.append(request)
        return httpx2.Response(200, json=completion("Paris."))

    chat = context(handler, request_timeout=30, connect_timeout=4).chat(MODEL)
    reply = chat.ask("Capital?") if mode == "sync" else await chat.aask("Capital?")
    assert reply.text == "Paris."
    assert reply.tokens is not None and reply.tokens.input == 5
    (request,) = seen
    assert isinstance(request, httpx2.Request)
    assert json.loads(request.content)["messages"] == [{"role": "user", "content": "Capital?"}]
    # The timeout went out as the client's own library's (httpx2 takes no httpx.Timeout).
    assert request.extensions["timeout"] == {"connect": 4, "read": 30, "write": 30, "pool": 30}


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_streamed_turn_through_a_users_httpx2_client(mode: str) -> None:
    def handler(request: Any) -> Any:
        return httpx2.Response(
            200, headers={"content-type": "text/event-stream"}, content=sse("Pa", "ris", ".")
        )

    chat = context(handler).chat(MODEL)
    pieces: list[str] = []
    if mode == "sync":
        reply = chat.ask("Capital?", on_chunk=lambda c: pieces.append(c.content or ""))
    else:
        reply = await chat.aask("Capital?", on_chunk=lambda c: pieces.append(c.content or ""))
    assert reply.text == "Paris."
    assert "".join(pieces) == "Paris."


@pytest.mark.parametrize(
    ("raised", "error", "message"),
    [
        ("ConnectTimeout", APITimeoutError, "Connecting to openai timed out after 4s"),
        ("ReadTimeout", APITimeoutError, "Request to openai timed out after 30s"),
        ("ConnectError", APIConnectionError, "Connection to openai failed: ConnectError"),
        ("RemoteProtocolError", APIConnectionError, "RemoteProtocolError"),
    ],
)
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_httpx2_errors_are_sa_llm_errors_and_are_retried(
    mode: str, raised: str, error: type[Exception], message: str
) -> None:
    attempts: list[Any] = []

    def handler(request: Any) -> Any:
        attempts.append(request)
        raise getattr(httpx2, raised)("boom", request=request)

    chat = context(
        handler, max_retries=1, retry_interval=0, request_timeout=30, connect_timeout=4
    ).chat(MODEL)
    with pytest.raises(error) as caught:
        await ask(chat, mode, "Hi")
    assert type(caught.value) is error
    assert message in str(caught.value)
    assert len(attempts) == 2  # retried once, like an httpx error


@pytest.mark.parametrize("library", ["httpx", "httpx2"])
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_the_fake_model_answers_through_the_configured_library(
    library: str, mode: str
) -> None:
    sa_llm.configure(http_library=library)
    try:
        with fake_llm(echo=False) as fake:
            fake.broken_stream("A long answer", after_chunks=1).reply("Done.")
            chat = sa_llm.chat("any-model", provider="fake")
            # A stream cut off mid-way is the configured library's error, mapped as ever.
            with pytest.raises(APIConnectionError, match="RemoteProtocolError"):
                await ask(chat, mode, "Tell me", on_chunk=lambda c: None)
            reply = chat.ask("Again") if mode == "sync" else await chat.aask("Again")
            assert reply.text == "Done."
            clients = chat.provider.http_clients()
            assert clients is not None
            assert type(clients[0]).__module__.partition(".")[0] == library
    finally:
        sa_llm.reset_config()


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_replay_under_httpx2_clients(mode: str) -> None:
    replay = Replay.from_file(RECORDING)
    ctx = replay.context(http_library="httpx2")
    assert isinstance(ctx.config.http_client, httpx2.Client)
    assert isinstance(ctx.config.async_http_client, httpx2.AsyncClient)
    chat = ctx.chat("gpt-5-nano")
    reply = chat.ask("What's 2 + 2?") if mode == "sync" else await chat.aask("What's 2 + 2?")
    assert reply.text == "4"
    replay.assert_all_used()


def test_a_replay_as_the_transport_of_an_httpx2_client() -> None:
    replay = Replay.from_file(RECORDING)
    client = httpx2.Client(transport=replay)
    ctx = sa_llm.context(openai_api_key="k", http_client=client, max_retries=0)
    assert ctx.chat("gpt-5-nano").ask("What's 2 + 2?").text == "4"
    assert replay.seen[0].body["input"][0]["content"] == "What's 2 + 2?"


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_the_shared_clients_are_httpx2_on_real_sockets(mode: str) -> None:
    assert isinstance(default_client(httpx2), httpx2.Client)
    async with FakeOpenAIServer(reply="Paris.", chunks=3) as server:
        ctx = sa_llm.context(
            openai_base_url=server.url,
            openai_api_key="x",
            openai_api="chat_completions",
            max_retries=0,
            http_library="httpx2",
        )
        chat = ctx.chat(MODEL)
        if mode == "sync":
            reply = chat.ask("Capital?", on_chunk=lambda c: None)
        else:
            assert isinstance(default_async_client("httpx", httpx2), httpx2.AsyncClient)
            reply = await chat.aask("Capital?", on_chunk=lambda c: None)
        assert reply.text == "Paris."
        assert server.exchanges[0].received.headers["user-agent"].startswith("python-httpx2/")


def test_http_library_from_the_environment_and_its_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SA_LLM_HTTP_LIBRARY", "httpx2")
    assert Config().http_module() is httpx2
    assert Config(http_library="httpx").http_module() is httpx  # the setting wins
    monkeypatch.setenv("SA_LLM_HTTP_LIBRARY", "requests")
    with pytest.raises(ConfigurationError, match="'httpx' or 'httpx2', not 'requests'"):
        Config().http_module()
    monkeypatch.delenv("SA_LLM_HTTP_LIBRARY")
    assert Config().http_module() is httpx
    monkeypatch.setitem(sys.modules, "httpx2", None)  # as if it were not installed
    with pytest.raises(MissingDependencyError, match=r'pip install "sa-llm\[httpx2\]"'):
        Config(http_library="httpx2").http_module()
