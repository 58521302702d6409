"""API keys never leak: not into rows, logs, reprs, error messages or pickled errors, and never
into another tenant's requests.

Every recorded exchange of the corpus (successes, provider errors, broken tool rounds) is
replayed with a distinct canary key per provider and DEBUG logging on, through plain chats and
through persisted chats on SQLite and PostgreSQL; then everything a user could see or store is
scanned for the canaries. A new recording or provider is covered without new test code.
"""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
from sqlalchemy import MetaData, select

import sa_llm
from persisted import World
from sa_llm.testing import Replay
from wire_responses import responses_reply

WIRE = Path(__file__).parents[1] / "fixtures" / "wire"
FILES = sorted(WIRE.glob("*/*.json"))
KEYED = ("openai", "anthropic", "gemini", "openrouter", "deepseek", "mistral", "xai", "ollama")
CANARIES = {f"{name}_api_key": f"sk-canary-{name}-7f3a9c" for name in KEYED} | {
    "bedrock_access_key_id": "AKIACANARY7F3A9C",
    "bedrock_secret_access_key": "canary-secret-7f3a9c",
    "bedrock_session_token": "canary-token-7f3a9c",
}


def leaks(text: str) -> list[str]:
    return [name for name, key in CANARIES.items() if key in text]


def first_call(path: Path) -> tuple[dict[str, Any], dict[str, Any], str, str, bool]:
    """The recording and, of its first model call: body, model, a prompt, whether streamed."""
    recording = json.loads(path.read_text(encoding="utf-8"))
    post = next((i for i in recording["interactions"] if _is_chat_call(i["request"])), None)
    if post is None:
        pytest.skip("a model listing or resource call: no chat turn to replay")
    body = post["request"]["body"] if isinstance(post["request"]["body"], dict) else {}
    url = post["request"]["url"]
    model = body.get("model") or _model_in_path(url)
    prompt = next(
        (m["content"] for m in body.get("messages", []) if isinstance(m.get("content"), str)),
        "Hello",
    )
    content_type = post["response"]["headers"].get("content-type", "")
    streamed = "event-stream" in content_type or "eventstream" in content_type
    return recording, body, str(model), prompt, streamed


_CHAT_ENDPOINTS = (
    "/chat/completions", "/responses", "/messages", ":generateContent",
    ":streamGenerateContent", "/converse", "/converse-stream",
)  # fmt: skip


def _is_chat_call(request: dict[str, Any]) -> bool:
    path = str(request["url"]).split("?")[0]
    return bool(request["method"] == "POST") and path.endswith(_CHAT_ENDPOINTS)


def _model_in_path(url: str) -> str:
    """Bedrock's ``/model/<id>/converse`` and Gemini's ``/models/<id>:generateContent``."""
    if "/model/" in url:
        return url.split("/model/")[-1].split("/")[0]
    return url.split("/models/")[-1].split(":")[0]


def seen_by_user(chat: Any, error: BaseException | None) -> str:
    """Everything of a turn a user can print, log or ship to a task queue."""
    parts = [repr(chat), repr(chat.messages), *(str(m.content) for m in chat.messages)]
    parts += [repr(chat.config), repr(chat.provider), str(chat.config.model_dump())]
    if error is not None:
        parts += [str(error), repr(error), repr(error.args), repr(error.__dict__)]
        parts.append(pickle.dumps(error).decode("latin-1"))
    return "\n".join(parts)


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_no_key_in_anything_a_user_sees(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    recording, body, model, prompt, streamed = first_call(path)
    replay = Replay(recording)
    settings: dict[str, Any] = {**CANARIES, "bedrock_region": "us-east-1"}
    if path.parent.name == "deepseek" and '"input"' in json.dumps(body):
        settings["deepseek_api"] = "responses"  # the recording is of DeepSeek's /responses
    ctx = replay.context(**settings)
    caplog.set_level(logging.DEBUG)
    error: BaseException | None = None
    chat = ctx.chat(model, provider=path.parent.name, assume_model_exists=True)
    try:
        chat.ask(prompt, on_chunk=(lambda c: None) if streamed else None)
    except Exception as exc:  # successes and failures alike are scanned
        error = exc
    assert leaks(seen_by_user(chat, error)) == []
    assert leaks(caplog.text) == []
    assert replay.seen  # the turn did reach the (replayed) provider, keys and all


def dump(world: World) -> str:
    """Every row of every table, as text."""
    metadata = MetaData()
    metadata.reflect(world.sync_engine)
    with world.sync_engine.connect() as conn:
        return "\n".join(
            repr(row) for table in metadata.tables.values() for row in conn.execute(select(table))
        )


SCENARIOS = [
    "openai/chat_basic_chat_functionality_openai_gpt-5-nano_can_have_a_basic_conversation",
    "openai/chat_error_handling_with_openai_gpt-5-nano_raises_appropriate_auth_error",
    "openrouter/chat_streaming_responses_openrouter_claude-haiku-4-5_supports_streaming_responses",
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.split("/")[-1][:40])
async def test_no_key_in_the_database(
    world: World, scenario: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = WIRE / f"{scenario}.json"
    recording, _, model, prompt, _ = first_call(path)
    replay = Replay(recording)
    caplog.set_level(logging.DEBUG)
    keys: dict[str, Any] = dict(CANARIES)
    chat = world.Chat(
        model=model,
        provider=path.parent.name,
        assume_model_exists=True,
        context=replay.context(**keys),
    )
    await world.add(chat)
    error: BaseException | None = None
    try:
        await world.call(chat.ask, prompt)
    except Exception as exc:
        error = exc
    assert leaks(dump(world)) == []
    assert leaks(caplog.text) == []
    assert leaks(repr(chat) + (repr(error) + str(error) if error else "")) == []
    assert replay.seen  # the turn did reach the (replayed) provider


REPLY = responses_reply("ok")


async def test_tenants_never_see_each_others_keys() -> None:
    """10,000 interleaved async asks from 10 tenants over one shared client: each request
    carries the key of the tenant that made it."""
    tenants, asks_per_tenant = 10, 1_000
    mismatches: list[tuple[str, str]] = []
    served = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal served
        served += 1
        tenant = json.loads(request.content)["input"][-1]["content"].split(":")[0]
        key = request.headers["authorization"].removeprefix("Bearer ")
        if key != f"sk-{tenant}":
            mismatches.append((tenant, key))
        await anyio.lowlevel.checkpoint()  # let the other tenants' tasks interleave
        return httpx.Response(200, json=REPLY)

    shared = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    contexts = [
        sa_llm.context(openai_api_key=f"sk-tenant{i}", async_http_client=shared, max_retries=0)
        for i in range(tenants)
    ]
    limit = anyio.Semaphore(200)

    async def ask(tenant: int, n: int) -> None:
        async with limit:
            chat = contexts[tenant].chat("gpt-4.1-nano")
            await chat.aask(f"tenant{tenant}: question {n}")

    async with anyio.create_task_group() as group:
        for n in range(asks_per_tenant):
            for tenant in range(tenants):  # interleaved: tenant 0, 1, ..., 9, 0, 1, ...
                group.start_soon(ask, tenant, n)
    await shared.aclose()
    assert served == tenants * asks_per_tenant
    assert mismatches == []
