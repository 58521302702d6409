"""The Litestar + advanced-alchemy recipe (examples/litestar_chat, docs/recipes/litestar.md)
through Litestar's test client, on SQLite and PostgreSQL, with the scripted fake model: UUID
keys and audit columns from advanced-alchemy, chats read through its repository service."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import create_engine, inspect

from conftest import engine_arguments, sync_url
from examples_support import (
    PNG,
    assert_greeting_streamed,
    file_storage,
    foreign_keys,
    load_example,
    script_greeting,
)
from sa_llm.testing import FakeLLM

app_module = load_example("litestar_chat")


@pytest.fixture
def client(async_db_url: str, tmp_path: Path) -> Iterator[TestClient[Any]]:
    with file_storage(tmp_path):
        app = app_module.create_app(async_db_url, model="fake-model", provider="fake")
        with TestClient(app) as client:
            yield client


def new_chat(client: TestClient[Any]) -> str:
    response = client.post("/chats", json={})
    assert response.status_code == 201
    chat_id = response.json()["id"]
    assert uuid.UUID(chat_id)
    return str(chat_id)


def test_keys_are_uuids_and_tables_have_advanced_alchemys_names(
    client: TestClient[Any], db_url: str
) -> None:
    url, connect_args = engine_arguments(sync_url(db_url))
    engine = create_engine(url, connect_args=connect_args)
    try:
        tables = set(inspect(engine).get_table_names())
        foreign = foreign_keys(engine, ["chat", "message", "tool_call", "attachment"])
    finally:
        engine.dispose()
    assert {"chat", "message", "tool_call", "model", "attachment"} <= tables
    assert ("message", "chat_id", "chat") in foreign
    assert ("chat", "model_id", "model") in foreign


def test_a_question_is_answered_and_both_messages_are_stored(
    client: TestClient[Any], fake: FakeLLM
) -> None:
    chat_id = new_chat(client)
    fake.reply("Paris.")
    response = client.post(f"/chats/{chat_id}/messages", files={"content": (None, "Capital?")})
    assert response.status_code == 200, response.text
    assert response.json() == {"role": "assistant", "content": "Paris.", "files": []}
    assert fake.requests[0]["model"] == "fake-model"
    assert client.get(f"/chats/{chat_id}").json()["messages"] == [
        {"role": "user", "content": "Capital?", "files": []},
        {"role": "assistant", "content": "Paris.", "files": []},
    ]


def test_uploaded_files_are_sent_and_stored(client: TestClient[Any], fake: FakeLLM) -> None:
    chat_id = new_chat(client)
    fake.reply("A tiny image.")
    response = client.post(
        f"/chats/{chat_id}/messages",
        files=[
            ("content", (None, "What is this?")),
            ("files", ("pixel.png", PNG, "image/png")),
        ],
    )
    assert response.status_code == 200, response.text
    sent = fake.requests[0]["messages"][0]["content"]
    assert [(a["filename"], a["mime_type"], a["size"]) for a in sent["attachments"]] == [
        ("pixel.png", "image/png", len(PNG))
    ]
    assert client.get(f"/chats/{chat_id}").json()["messages"][0]["files"] == ["pixel.png"]


def test_a_reply_streams_as_server_sent_events(client: TestClient[Any], fake: FakeLLM) -> None:
    chat_id = new_chat(client)
    script_greeting(fake)
    with client.stream("POST", f"/chats/{chat_id}/stream", json={"content": "Hi"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        body = "".join(response.iter_text())
    assert_greeting_streamed(body, client.get(f"/chats/{chat_id}").json()["messages"])


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "", {}),
        ("POST", "/messages", {"files": {"content": (None, "Hi")}}),
        ("POST", "/stream", {"json": {"content": "Hi"}}),
    ],
)
def test_an_unknown_chat_is_a_404(
    client: TestClient[Any], fake: FakeLLM, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    response = client.request(method, f"/chats/{uuid.uuid4()}{path}", **kwargs)
    assert response.status_code == 404
    assert response.json()["detail"] == "No such chat"
    assert fake.requests == []
