"""``sa-llm install`` / ``sa-llm upgrade`` create the chats' event log: the events table (custom
class name with ``event:Name``) and the chats' ``event_seq`` counter, so a turn on the generated
models writes the events a chat UI follows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, inspect, text
from sqlalchemy.orm import Session

from cli_support import Project, old_revision, open_project, schema_diff, tables
from sa_llm.events import read_events
from sa_llm.testing import fake_llm


@pytest.fixture
def project(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    yield from open_project(tmp_path, db_url, monkeypatch)


def one_turn(engine: Engine, chat_cls: type[Any]) -> Any:
    with fake_llm(echo=False) as fake, Session(engine) as session:
        fake.reply("Paris", chunks=2)
        chat = chat_cls(model="fake-model", provider="fake")
        session.add(chat)
        session.commit()
        chat.ask("Capital of France?")
        return chat.id


def test_install_creates_the_event_log_under_custom_names(project: Project, engine: Engine) -> None:
    result = project.install("chat:Conversation", "message:ChatMessage", "event:ConversationEvent")
    assert result.exit_code == 0, result.output
    source = (project.root / project.module_file).read_text()
    assert '@acts_as_event(chat="conversation")' in source
    project.alembic("upgrade", "head")
    assert "conversation_events" in tables(engine)
    models = project.models()
    assert schema_diff(engine, models) == []
    chat_id = one_turn(engine, models.Conversation)
    page = read_events(engine, models.Conversation, chat_id)
    assert [event.kind for event in page.events] == [
        "turn.started", "message.created", "message.created", "message.completed", "turn.ended",
    ]  # fmt: skip
    assert page.last_seq == 5 and page.events[3].data["content"] == "Paris"
    with engine.connect() as connection:
        seqs = connection.execute(text("SELECT seq FROM conversation_events ORDER BY seq"))
        assert [row[0] for row in seqs] == [1, 2, 3, 4, 5]
    project.alembic("downgrade", "base")
    assert tables(engine) == set()


OLD_V2 = old_revision(
    "old0002", "An sa_llm schema of version 2: no lease, no status, no event log."
)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_upgrade_v3_adds_the_event_log_and_takes_it_away(project: Project, engine: Engine) -> None:
    command.init(Config(str(project.root / "alembic.ini")), str(project.root / "alembic"))
    (project.root / "alembic" / "versions" / "old0002_old.py").write_text(OLD_V2)
    config = Config()
    config.set_main_option("script_location", str(project.root / "alembic"))
    config.set_main_option("sqlalchemy.url", project.db_url)
    command.upgrade(config, "head")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO chats (id) VALUES (1)"))
    assert project.cli("upgrade").exit_code == 0
    command.upgrade(config, "head")
    assert "chat_events" in tables(engine)
    chat_columns = {c["name"]: c for c in inspect(engine).get_columns("chats")}
    assert "event_seq" in chat_columns
    with engine.connect() as connection:  # the existing chat counts from 0
        assert connection.execute(text("SELECT event_seq FROM chats")).scalar_one() == 0
    command.downgrade(config, "old0002")
    assert tables(engine) == {"chats", "messages", "tool_calls"}
    assert "event_seq" not in {c["name"] for c in inspect(engine).get_columns("chats")}
