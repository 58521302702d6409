"""The FastAPI recipe (examples/fastapi_chat, docs/recipes/fastapi.md) through Starlette's test
client, on SQLite and PostgreSQL, with the scripted fake model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from examples_support import (
    PNG,
    assert_greeting_streamed,
    file_storage,
    load_example,
    parse_sse,
    script_greeting,
)
from sa_llm.testing import FakeLLM

app_module = load_example("fastapi_chat")


@pytest.fixture
def client(async_db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    with file_storage(tmp_path):
        app = app_module.create_app(async_db_url, model="fake-model", provider="fake")
        with TestClient(app) as client:
            yield client


def new_chat(client: TestClient) -> int:
    response = client.post("/chats", json={})
    assert response.status_code == 201
    chat_id = response.json()["id"]
    assert isinstance(chat_id, int)
    return chat_id


def test_a_question_is_answered_and_both_messages_are_stored(
    client: TestClient, fake: FakeLLM
) -> None:
    chat_id = new_chat(client)
    fake.reply("Paris.")
    response = client.post(f"/chats/{chat_id}/messages", data={"content": "Capital of France?"})
    assert response.status_code == 200
    assert response.json() == {"role": "assistant", "content": "Paris.", "files": []}
    assert fake.requests[0]["model"] == "fake-model"
    shown = client.get(f"/chats/{chat_id}").json()
    assert shown["messages"] == [
        {"role": "user", "content": "Capital of France?", "files": []},
        {"role": "assistant", "content": "Paris.", "files": []},
    ]


def test_uploaded_files_are_sent_and_stored(client: TestClient, fake: FakeLLM) -> None:
    chat_id = new_chat(client)
    fake.reply("A tiny image and a note.")
    response = client.post(
        f"/chats/{chat_id}/messages",
        data={"content": "What are these?"},
        files=[
            ("files", ("pixel.png", PNG, "image/png")),
            ("files", ("note.txt", b"remember the milk", "text/plain")),
        ],
    )
    assert response.status_code == 200, response.text
    sent = fake.requests[0]["messages"][0]["content"]
    assert sent["text"] == "What are these?"
    assert [(a["filename"], a["mime_type"], a["size"]) for a in sent["attachments"]] == [
        ("pixel.png", "image/png", len(PNG)),
        ("note.txt", "text/plain", len(b"remember the milk")),
    ]
    user = client.get(f"/chats/{chat_id}").json()["messages"][0]
    assert user["files"] == ["pixel.png", "note.txt"]


def test_a_reply_streams_as_server_sent_events(client: TestClient, fake: FakeLLM) -> None:
    chat_id = new_chat(client)
    script_greeting(fake)
    with client.stream(
        "POST", f"/chats/{chat_id}/stream", json={"content": "Greet me"}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        body = "".join(response.iter_text())
    assert_greeting_streamed(body, client.get(f"/chats/{chat_id}").json()["messages"])


def test_a_provider_error_mid_stream_is_an_error_event_and_no_reply_row(
    client: TestClient, fake: FakeLLM
) -> None:
    chat_id = new_chat(client)
    fake.error(400, "bad request")
    with client.stream("POST", f"/chats/{chat_id}/stream", json={"content": "Hi"}) as response:
        events = parse_sse("".join(response.iter_text()))
    assert events[-1][0] == "error"
    roles = [m["role"] for m in client.get(f"/chats/{chat_id}").json()["messages"]]
    assert "assistant" not in roles


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/chats/999", {}),
        ("POST", "/chats/999/messages", {"data": {"content": "Hi"}}),
        ("POST", "/chats/999/stream", {"json": {"content": "Hi"}}),
    ],
)
def test_an_unknown_chat_is_a_404(
    client: TestClient, fake: FakeLLM, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    response = client.request(method, path, **kwargs)
    assert response.status_code == 404
    assert response.json() == {"detail": "No such chat"}
    assert fake.requests == []
