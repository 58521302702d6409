"""The default strategy's single-row writes (``save_row``): the SQL a flush would run, the row
left as a flush leaves it, and a real flush wherever the mapping asks for more than that."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Engine, String, event, func, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.orm.attributes import flag_modified, instance_state
from sqlalchemy.orm.exc import StaleDataError

from persisted import StatementCounter, default_models
from sa_llm._persisted.rowwrite import save_row
from sa_llm.declarative import acts_as_message
from sa_llm.mixins import MessageMixin
from sa_llm.testing import FakeLLM


@pytest.fixture
def models(engine: Engine) -> dict[str, Any]:
    found = default_models()
    found["Base"].metadata.create_all(engine)
    return found


def _chat(session: Session, models: dict[str, Any]) -> Any:
    chat = models["Chat"](model="fake-model", provider="fake")
    session.add(chat)
    session.commit()
    chat.id  # noqa: B018 - loaded now, so the statements counted next are the writes only
    return chat


def _new_message(models: dict[str, Any], chat: Any, **values: Any) -> Any:
    return models["Message"](chat_id=chat.id, role="user", **values)


def test_insert_runs_the_flushs_statement_and_leaves_the_row_persistent(
    engine: Engine, models: dict[str, Any]
) -> None:
    with Session(engine) as session:
        chat = _chat(session, models)
        counter = StatementCounter(engine)
        flushed = _new_message(models, chat, content="by flush", status="complete")
        session.add(flushed)
        session.flush()
        saved = _new_message(models, chat, content="by save_row", status="complete")
        save_row(session, saved)
        counter.close()
        # The same INSERT text (columns and order) as the flush's.
        assert counter.sql[0] == counter.sql[1]
        assert saved in session and saved not in session.new and not session.dirty
        assert isinstance(saved.id, int) and saved.id == flushed.id + 1
        # Defaults are loaded, as a flush loads them: no SELECT when read.
        counter = StatementCounter(engine)
        assert isinstance(saved.created_at, datetime)
        assert saved.content_raw is None and saved.input_tokens is None
        assert counter.statements == []
        counter.close()
        saved_id = saved.id
        session.commit()
    with Session(engine) as session:
        row = session.get(models["Message"], saved_id)
        assert row is not None and row.content == "by save_row" and row.status == "complete"


def test_update_sets_only_changed_columns_and_leaves_the_row_clean(
    engine: Engine, models: dict[str, Any]
) -> None:
    with Session(engine) as session:
        chat = _chat(session, models)
        row = _new_message(models, chat, content="", status="pending")
        save_row(session, row)
        before = row.updated_at
        counter = StatementCounter(engine)
        row.content = "answer"
        row.status = "complete"
        row.role = "user"  # the same value: not part of the UPDATE
        save_row(session, row)
        counter.close()
        assert len(counter.sql) == 1
        update = counter.sql[0]
        assert update.startswith("UPDATE messages SET status=")
        assert "content=" in update and "updated_at=" in update and "role=" not in update
        assert not session.dirty and row.updated_at >= before
        counter = StatementCounter(engine)
        session.flush()  # nothing left for a flush to do
        assert counter.statements == []
        counter.close()
        row_id = row.id
        session.commit()
    with Session(engine) as session:
        stored = session.get(models["Message"], row_id)
        assert stored is not None and (stored.content, stored.status) == ("answer", "complete")


def test_a_none_set_on_a_column_with_a_default_reads_as_the_default_like_after_a_flush(
    engine: Engine, models: dict[str, Any]
) -> None:
    with Session(engine) as session:
        chat = _chat(session, models)
        flushed = _new_message(models, chat, content="a", created_at=None)
        session.add(flushed)
        session.flush()
        saved = _new_message(models, chat, content="b", created_at=None)
        save_row(session, saved)
        counter = StatementCounter(engine)
        assert isinstance(flushed.created_at, datetime) and isinstance(saved.created_at, datetime)
        assert counter.statements == []
        counter.close()


def test_an_inserted_row_joins_the_session_as_session_add_attaches_it(
    engine: Engine, models: dict[str, Any]
) -> None:
    """The insert attaches the row without ``session.add``'s cascade walk: the session's attach
    events still fire, and the row is the one the identity map hands back."""
    attached: list[tuple[str, Any]] = []
    with Session(engine) as session:
        chat = _chat(session, models)
        event.listen(session, "before_attach", lambda s, obj: attached.append(("before", obj)))
        event.listen(session, "after_attach", lambda s, obj: attached.append(("after", obj)))
        row = _new_message(models, chat, content="hello")
        save_row(session, row)
        assert attached == [("before", row), ("after", row)]
        assert session.get(models["Message"], row.id) is row
        key = instance_state(row).key
        assert key is not None and session.identity_map.get(key) is row


def test_update_sends_what_the_flush_finds_changed(engine: Engine, models: dict[str, Any]) -> None:
    """A JSON value changed in place and flagged (as ``Mutable`` types do) is written; a value
    set to what was loaded is not."""
    with Session(engine) as session:
        chat = _chat(session, models)
        row = _new_message(models, chat, content="x", content_raw={"parts": [1]})
        save_row(session, row)
        counter = StatementCounter(engine)
        row.content_raw["parts"].append(2)
        flag_modified(row, "content_raw")
        row.content = "x"
        save_row(session, row)
        counter.close()
        assert len(counter.sql) == 1
        assert "content_raw=" in counter.sql[0] and "content=" not in counter.sql[0]
        row_id = row.id
        session.commit()
    with Session(engine) as session:
        stored = session.get(models["Message"], row_id)
        assert stored is not None and stored.content_raw == {"parts": [1, 2]}


def test_update_of_a_row_deleted_elsewhere_raises_like_a_flush(
    engine: Engine, models: dict[str, Any]
) -> None:
    with Session(engine) as session:
        chat = _chat(session, models)
        row = _new_message(models, chat, content="x")
        save_row(session, row)
        session.commit()
        row.content  # noqa: B018 - loaded again after the commit
        with engine.begin() as conn:
            conn.execute(models["Message"].__table__.delete())
        row.content = "changed"
        with pytest.raises(StaleDataError):
            save_row(session, row)


def test_mapper_listeners_get_a_real_flush(engine: Engine) -> None:
    class Base(DeclarativeBase):
        pass

    @acts_as_message()
    class Message(MessageMixin, Base):
        __tablename__ = "messages"
        audit: Mapped[str | None] = mapped_column(String(40), default=None)

    Chat = default_models(base=Base, Message=Message)["Chat"]
    seen: list[str] = []

    @event.listens_for(Message, "before_insert")
    def stamp(mapper: Any, connection: Any, target: Any) -> None:
        target.audit = "stamped"
        seen.append("insert")

    Base.metadata.create_all(engine)
    with Session(engine) as session:
        chat = Chat(model="fake-model", provider="fake")
        session.add(chat)
        session.commit()
        row = Message(chat_id=chat.id, role="user", content="hi")
        save_row(session, row)
        session.commit()
        assert seen == ["insert"]
        assert session.scalar(select(Message.audit)) == "stamped"


def test_server_defaults_and_flush_listeners_get_a_real_flush(engine: Engine) -> None:
    class Base(DeclarativeBase):
        pass

    class Note(Base):
        __tablename__ = "notes"
        id: Mapped[int] = mapped_column(primary_key=True)
        body: Mapped[str] = mapped_column(String(40))
        stamped: Mapped[datetime | None] = mapped_column(server_default=func.current_timestamp())

    Base.metadata.create_all(engine)
    flushes: list[int] = []
    with Session(engine) as session:
        note = Note(body="a")
        save_row(session, note)
        session.commit()
        assert note.stamped is not None  # the database's value, as after a flush
        event.listen(session, "before_flush", lambda *args: flushes.append(1))
        plain = Note(body="b")
        save_row(session, plain)
        assert flushes == [1]
        assert session.scalar(text("SELECT count(*) FROM notes")) == 2


async def test_a_persisted_turn_uses_the_core_writes(
    engine: Engine, models: dict[str, Any], fake: FakeLLM
) -> None:
    fake.reply("Paris.")
    with Session(engine) as session:
        chat = _chat(session, models)
        reply = chat.ask("Capital of France?")
        assert reply.content == "Paris." and not session.dirty and not session.new
        rows = session.scalars(select(models["Message"]).order_by(models["Message"].id)).all()
        assert [(r.role, r.content, r.status) for r in rows] == [
            ("user", "Capital of France?", "complete"),
            ("assistant", "Paris.", "complete"),
        ]
