"""The Flask + Flask-SQLAlchemy recipe (examples/flask_chat, docs/recipes/flask.md) through
Flask's test client, on SQLite and PostgreSQL, with the scripted fake model. Its models use
Flask-SQLAlchemy's generated table names."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import inspect

import sa_llm
from conftest import sync_url
from examples_support import (
    PNG,
    assert_greeting_streamed,
    foreign_keys,
    load_example,
    script_greeting,
)
from sa_llm.testing import FakeLLM

app_module = load_example("flask_chat")
db = app_module.db


@pytest.fixture
def client(db_url: str, tmp_path: Path) -> Iterator[FlaskClient]:
    sa_llm.configure(attachment_storage=str(tmp_path / "files"))
    url = sync_url(db_url).render_as_string(hide_password=False)
    app = app_module.create_app(url, model="fake-model", provider="fake")
    try:
        yield app.test_client()
    finally:
        with app.app_context():
            db.engine.dispose()
        sa_llm.reset_config()


def new_chat(client: FlaskClient) -> int:
    response = client.post("/chats", json={})
    assert response.status_code == 201
    chat_id = response.get_json()["id"]
    assert isinstance(chat_id, int)
    return chat_id


def test_tables_have_flask_sqlalchemys_names_and_the_foreign_keys_follow(
    client: FlaskClient,
) -> None:
    app = client.application
    with app.app_context():
        tables = inspect(db.engine).get_table_names()
        assert {"chat", "message", "tool_call", "model", "attachment"} <= set(tables)
        foreign = foreign_keys(db.engine, ["chat", "message", "tool_call", "attachment"])
    assert foreign == {
        ("chat", "model_id", "model"),
        ("message", "chat_id", "chat"),
        ("message", "model_id", "model"),
        ("message", "tool_call_id", "tool_call"),
        ("tool_call", "message_id", "message"),
        ("attachment", "message_id", "message"),
    }


def test_a_question_is_answered_and_both_messages_are_stored(
    client: FlaskClient, fake: FakeLLM
) -> None:
    chat_id = new_chat(client)
    fake.reply("Paris.")
    response = client.post(f"/chats/{chat_id}/messages", data={"content": "Capital of France?"})
    assert response.status_code == 200
    assert response.get_json() == {"role": "assistant", "content": "Paris.", "files": []}
    assert fake.requests[0]["model"] == "fake-model"
    assert client.get(f"/chats/{chat_id}").get_json()["messages"] == [
        {"role": "user", "content": "Capital of France?", "files": []},
        {"role": "assistant", "content": "Paris.", "files": []},
    ]


def test_uploaded_files_are_sent_and_stored(client: FlaskClient, fake: FakeLLM) -> None:
    import io

    chat_id = new_chat(client)
    fake.reply("A tiny image.")
    response = client.post(
        f"/chats/{chat_id}/messages",
        data={"content": "What is this?", "files": [(io.BytesIO(PNG), "pixel.png", "image/png")]},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    sent = fake.requests[0]["messages"][0]["content"]
    assert [(a["filename"], a["mime_type"], a["size"]) for a in sent["attachments"]] == [
        ("pixel.png", "image/png", len(PNG))
    ]
    user = client.get(f"/chats/{chat_id}").get_json()["messages"][0]
    assert user["files"] == ["pixel.png"]


def test_a_reply_streams_as_server_sent_events(client: FlaskClient, fake: FakeLLM) -> None:
    chat_id = new_chat(client)
    script_greeting(fake)
    response = client.post(f"/chats/{chat_id}/stream", json={"content": "Greet me"}, buffered=False)
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    body = b"".join(response.response).decode()  # type: ignore[arg-type]
    response.close()
    assert_greeting_streamed(body, client.get(f"/chats/{chat_id}").get_json()["messages"])


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/chats/999", {}),
        ("POST", "/chats/999/messages", {"data": {"content": "Hi"}}),
        ("POST", "/chats/999/stream", {"json": {"content": "Hi"}}),
    ],
)
def test_an_unknown_chat_is_a_404(
    client: FlaskClient, fake: FakeLLM, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    response = client.open(path, method=method, **kwargs)
    assert response.status_code == 404
    assert response.get_json() == {"detail": "No such chat"}
    assert fake.requests == []
