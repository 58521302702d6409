"""The SQLModel recipe (examples/sqlmodel_chat, docs/recipes/sqlmodel.md): SQLModel table
models decorated with ``@acts_as_*``, in a FastAPI app, on SQLite and PostgreSQL; and the
error a column mixin combined with SQLModel raises."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine
from sqlmodel import Session, SQLModel, col, select

import sa_llm
from conftest import engine_arguments, sync_url
from examples_support import load_example
from sa_llm.errors import ConfigurationError
from sa_llm.mixins import ChatMixin, LegacyMessageMixin
from sa_llm.testing import FakeLLM

app_module = load_example("sqlmodel_chat")


class Weather(sa_llm.Tool):
    """The weather in a city."""

    def execute(self, city: str) -> str:
        return f"15°C in {city}"


@pytest.fixture
def engine(db_url: str) -> Iterator[Any]:
    url, connect_args = engine_arguments(sync_url(db_url))
    engine = create_engine(url, connect_args=connect_args)
    yield engine
    engine.dispose()


@pytest.fixture
def client(engine: Any) -> Iterator[TestClient]:
    app = app_module.configure(engine, model="fake-model", provider="fake")
    with TestClient(app) as client:
        yield client


def test_a_question_is_answered_and_both_messages_are_stored(
    client: TestClient, fake: FakeLLM
) -> None:
    chat_id = client.post("/chats", json={}).json()["id"]
    fake.reply("Paris.")
    response = client.post(f"/chats/{chat_id}/messages", json={"content": "Capital of France?"})
    assert response.status_code == 200
    assert response.json() == {"role": "assistant", "content": "Paris."}
    assert client.get(f"/chats/{chat_id}").json()["messages"] == [
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
    ]


def test_an_unknown_chat_is_a_404(client: TestClient, fake: FakeLLM) -> None:
    for response in (
        client.get("/chats/999"),
        client.post("/chats/999/messages", json={"content": "Hi"}),
    ):
        assert response.status_code == 404
        assert response.json() == {"detail": "No such chat"}
    assert fake.requests == []


def test_tool_calls_and_the_registry_row_are_sqlmodel_rows(engine: Any, fake: FakeLLM) -> None:
    SQLModel.metadata.create_all(engine)
    Chat, Message, ToolCall = app_module.Chat, app_module.Message, app_module.ToolCall
    with Session(engine) as session:
        chat = Chat(model="fake-model", provider="fake")
        session.add(chat)
        session.commit()
        fake.tool_call("weather", {"city": "Berlin"}).reply("It is 15°C in Berlin.")
        reply = chat.with_tool(Weather).ask("Weather in Berlin?")
        assert reply.text == "It is 15°C in Berlin."
        rows = session.exec(select(Message).order_by(col(Message.id))).all()
        assert [(m.role, m.content) for m in rows] == [
            ("user", "Weather in Berlin?"),
            ("assistant", None),
            ("tool", "15°C in Berlin"),
            ("assistant", "It is 15°C in Berlin."),
        ]
        call = session.exec(select(ToolCall)).one()
        assert (call.name, call.arguments, call.message_id) == ("weather", {"city": "Berlin"}, 2)
        assert rows[2].tool_call_id == call.id
        assert chat.model is not None and chat.model.model_id == "fake-model"
        assert rows[3].model_id == chat.model_id


@pytest.mark.parametrize("mixin", [ChatMixin, LegacyMessageMixin])
def test_a_column_mixin_on_a_sqlmodel_class_is_a_configuration_error(mixin: type) -> None:
    with pytest.raises(ConfigurationError) as raised:
        type("Broken", (mixin, SQLModel), {"__tablename__": "broken"}, table=True)
    message = str(raised.value)
    assert "cannot be used with SQLModel" in message
    record = "ChatRecord" if mixin is ChatMixin else "MessageRecord"
    assert f"inherit {record} instead" in message
    assert "docs/recipes/sqlmodel.md" in message
