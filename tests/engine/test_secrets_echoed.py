"""Secrets beyond the API key fields: credentials written into a base URL, keys echoed back.

* A base URL such as ``https://user:pass@gateway`` shows its credentials as ``***`` in the
  config's repr and dumps and in log lines, and they are never sent: the request carries the
  provider's own authentication (a bearer key, ``x-api-key``, ``x-goog-api-key``), not an HTTP
  Basic header that httpx would build from the URL.
* An error body that echoes a secret (a proxy repeating the ``Authorization`` header, a
  gateway quoting its URL) reaches the exception with the secret replaced by ``***``: in its
  message, ``str``, ``repr``, args, body, pickle and traceback, whole replies and streams alike.
"""

from __future__ import annotations

import base64
import json
import logging
import pickle
import traceback
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import sa_llm
from sa_llm._redact import redact_url, strip_userinfo
from wire_responses import CHAT_COMPLETION_REPLY

KEY = "sk-canary-echoed-5b1e77"
USER, PASSWORD = "gateway-user", "hunter2-canary-91d4"
GATEWAY = f"https://{USER}:{PASSWORD}@gateway.internal/v1"

REPLIES: dict[str, dict[str, Any]] = {
    "openai": CHAT_COMPLETION_REPLY,
    "anthropic": {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-haiku-4-5",
        "content": [{"type": "text", "text": "Hi"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 3, "output_tokens": 1},
    },
    "gemini": {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": "Hi"}]}, "finishReason": "STOP"}
        ],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1},
    },
}
MODELS = {"openai": "gpt-4.1-nano", "anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash"}
# How each provider authenticates: the header and the value it must carry.
AUTH = {
    "openai": ("authorization", f"Bearer {KEY}"),
    "anthropic": ("x-api-key", KEY),
    "gemini": ("x-goog-api-key", KEY),
}


class Spy:
    """An httpx transport that keeps each request as it would go on the wire."""

    def __init__(self, respond: Callable[[httpx.Request], httpx.Response]) -> None:
        self.requests: list[httpx.Request] = []
        self.respond = respond

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.respond(request)


def context(spy: Spy, **settings: Any) -> sa_llm.Context:
    transport = httpx.MockTransport(spy)
    values: dict[str, Any] = {
        "openai_api": "chat_completions",
        "max_retries": 0,
        "http_client": httpx.Client(transport=transport),
        "async_http_client": httpx.AsyncClient(transport=transport),
        **settings,
    }
    return sa_llm.context(**values)


async def ask(ctx: sa_llm.Context, provider: str, mode: str, **kwargs: Any) -> sa_llm.Message:
    chat = ctx.chat(MODELS[provider], provider=provider, assume_model_exists=True)
    return chat.ask("Hello", **kwargs) if mode == "sync" else await chat.aask("Hello", **kwargs)


def everything_about(error: BaseException) -> str:
    """All a user could print, log or ship of an exception."""
    parts = [str(error), repr(error), repr(error.args), repr(error.__dict__)]
    parts.append("".join(traceback.format_exception(type(error), error, error.__traceback__)))
    parts.append(pickle.dumps(error).decode("latin-1"))
    return "\n".join(parts)


# -- credentials in a base URL --------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_url_credentials_are_not_sent_and_the_providers_own_auth_is(
    provider: str, mode: str
) -> None:
    spy = Spy(lambda request: httpx.Response(200, json=REPLIES[provider]))
    ctx = context(spy, **{f"{provider}_api_key": KEY, f"{provider}_base_url": GATEWAY})

    reply = await ask(ctx, provider, mode)

    assert reply.text == "Hi"
    [sent] = spy.requests
    assert sent.url.host == "gateway.internal"
    assert sent.url.userinfo == b""
    assert str(sent.url).startswith("https://gateway.internal/v1/")
    header, value = AUTH[provider]
    assert sent.headers[header] == value
    if provider != "openai":  # no Basic auth built from the URL next to the provider's own
        assert "authorization" not in sent.headers
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert basic not in str(sent.headers) and PASSWORD not in str(sent.headers)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_base_url_from_the_environment_is_cleaned_too(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", GATEWAY)
    spy = Spy(lambda request: httpx.Response(200, json=REPLIES["openai"]))
    await ask(context(spy, openai_api_key=KEY), "openai", mode)
    [sent] = spy.requests
    assert str(sent.url) == "https://gateway.internal/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize(
    "field",
    [f"{name}_base_url" for name in ("openai", "anthropic", "gemini", "mistral", "ollama")]
    + ["bedrock_base_url", "openrouter_base_url", "deepseek_base_url", "xai_base_url"],
)
def test_the_config_shows_url_credentials_as_stars(field: str) -> None:
    config = sa_llm.context(**{field: GATEWAY}).config
    shown = "\n".join(
        [repr(config), str(config), str(config.model_dump()), config.model_dump_json()]
    )
    assert PASSWORD not in shown and USER not in shown
    assert "https://***@gateway.internal/v1" in repr(config)
    assert getattr(config, field) == GATEWAY  # the setting itself is kept as given


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_log_lines_show_url_credentials_as_stars(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    spy = Spy(lambda request: httpx.Response(200, json=REPLIES["openai"]))
    caplog.set_level(logging.DEBUG, logger="sa_llm")
    await ask(context(spy, openai_api_key=KEY, openai_base_url=GATEWAY), "openai", mode)
    assert "POST https://gateway.internal/v1/chat/completions -> 200" in caplog.text
    assert PASSWORD not in caplog.text and USER not in caplog.text


@pytest.mark.parametrize(
    ("url", "stripped", "redacted"),
    [
        ("https://u:p@h/x", "https://h/x", "https://***@h/x"),
        ("https://u@h:8443/x?y=1", "https://h:8443/x?y=1", "https://***@h:8443/x?y=1"),
        ("http://u:p%40ss@h", "http://h", "http://***@h"),
        ("https://h/x?email=a@b.c", "https://h/x?email=a@b.c", "https://h/x?email=a@b.c"),
        ("https://h/p@th#frag@x", "https://h/p@th#frag@x", "https://h/p@th#frag@x"),
        ("https://api.openai.com/v1", "https://api.openai.com/v1", "https://api.openai.com/v1"),
    ],
)
def test_only_the_authority_userinfo_is_touched(url: str, stripped: str, redacted: str) -> None:
    assert strip_userinfo(url) == stripped
    assert redact_url(url) == redacted


# -- secrets echoed in error replies --------------------------------------------------------------


def echoing_401(request: httpx.Request) -> httpx.Response:
    """A proxy that answers with the request's own credentials in the body."""
    header = request.headers.get("authorization", "")
    return httpx.Response(
        401,
        json={
            "error": {
                "message": f"Invalid header 'Authorization: {header}' for {request.url}",
                "type": "invalid_request_error",
                "received": {"authorization": header, "x-api-key": KEY, "url": GATEWAY},
            }
        },
    )


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_an_error_body_that_echoes_the_key_is_redacted(mode: str) -> None:
    spy = Spy(echoing_401)
    with pytest.raises(sa_llm.AuthenticationError) as caught:
        await ask(context(spy, openai_api_key=KEY), "openai", mode)
    error = caught.value
    assert KEY not in everything_about(error)
    assert "Invalid header 'Authorization: Bearer ***'" in error.message
    assert error.body["error"]["received"]["x-api-key"] == "***"
    assert error.status == 401
    revived = pickle.loads(pickle.dumps(error))
    assert KEY not in str(revived) and KEY not in json.dumps(revived.body)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_url_credentials_echoed_in_an_error_are_redacted(mode: str) -> None:
    spy = Spy(echoing_401)
    ctx = context(spy, openai_api_key=KEY, openai_base_url=GATEWAY)
    with pytest.raises(sa_llm.AuthenticationError) as caught:
        await ask(ctx, "openai", mode)
    text = everything_about(caught.value)
    assert PASSWORD not in text and KEY not in text
    assert caught.value.body["error"]["received"]["url"] == "https://***@gateway.internal/v1"


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_key_from_the_environment_is_redacted_too(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    spy = Spy(
        lambda request: httpx.Response(
            403,
            json={
                "type": "error",
                "error": {
                    "type": "permission_error",
                    "message": f"key {request.headers['x-api-key']} may not use this model",
                },
            },
        )
    )
    with pytest.raises(sa_llm.PermissionDeniedError) as caught:
        await ask(context(spy), "anthropic", mode)
    assert KEY not in everything_about(caught.value)
    assert caught.value.message == "key *** may not use this model"


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_garbled_reply_that_echoes_the_key_is_redacted(mode: str) -> None:
    """A 200 that is not JSON (a captive proxy's page) is kept in the error: redacted."""
    spy = Spy(
        lambda request: httpx.Response(
            200, text=f"<html>Your request ({request.headers['authorization']}) was held</html>"
        )
    )
    with pytest.raises(sa_llm.ResponseParseError) as caught:
        await ask(context(spy, openai_api_key=KEY), "openai", mode)
    assert KEY not in everything_about(caught.value)
    assert caught.value.body == "<html>Your request (Bearer ***) was held</html>"


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_an_error_event_in_a_stream_that_echoes_the_key_is_redacted(mode: str) -> None:
    def stream(request: httpx.Request) -> httpx.Response:
        event = {"error": {"message": f"upstream refused {request.headers['authorization']}"}}
        body = f"data: {json.dumps(event)}\n\n".encode()
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    with pytest.raises(sa_llm.ProviderError) as caught:
        await ask(context(Spy(stream), openai_api_key=KEY), "openai", mode, on_chunk=print)
    assert KEY not in everything_about(caught.value)
    assert "upstream refused Bearer ***" in str(caught.value)


def test_short_values_are_not_searched_for() -> None:
    """A key shorter than 8 characters would garble messages ("test" in every sentence)."""
    from sa_llm._redact import redact_text

    assert redact_text("a test of the key", ["test"]) == "a test of the key"
    assert redact_text("abc sk-12345678 xyz", ["sk-12345678", "sk-1234567"]) == "abc *** xyz"
