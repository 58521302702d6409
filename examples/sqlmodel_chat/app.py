"""SQLModel + sa_llm: chats as SQLModel table models, in a FastAPI app in SQLModel's own style.

SQLModel makes a table model's columns from pydantic fields, so sa_llm's column mixins (which
declare SQLAlchemy ``Mapped[...]`` columns) cannot be used; combining one with ``SQLModel``
raises ``ConfigurationError``. Declare the columns as fields instead, inherit the record bases
(``ChatRecord``, ...: the methods, no columns, and a type checker that knows them) and decorate
the classes as usual. SQLModel names the tables ``chat``, ``message``, ``toolcall``, ``model``.

Run it (``pip install sa-llm sqlmodel fastapi uvicorn``)::

    DATABASE_URL=sqlite:///chats.db uvicorn app:app --app-dir examples/sqlmodel_chat
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from sqlalchemy import JSON, Column
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, col, create_engine, select

from sa_llm.declarative import acts_as_chat, acts_as_message, acts_as_model, acts_as_tool_call
from sa_llm.mixins import ChatRecord, MessageRecord, ModelRecord, ToolCallRecord


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# -- table models: the columns sa_llm reads and writes, as SQLModel fields -----------------------


@acts_as_model()
class Model(ModelRecord, SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    model_id: str = Field(index=True)
    name: str
    provider: str = Field(index=True)
    family: str | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None
    modalities: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    capabilities: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    pricing: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))


@acts_as_chat()
class Chat(ChatRecord, SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    model_id: int | None = Field(default=None, foreign_key="model.id", index=True)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


@acts_as_message()
class Message(MessageRecord, SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    chat_id: int = Field(foreign_key="chat.id", index=True)
    # The call a tool result answers (messages and calls refer to each other: SQLAlchemy
    # adds one of the two keys with ALTER TABLE where the database needs it).
    tool_call_id: int | None = Field(default=None, foreign_key="toolcall.id")
    model_id: int | None = Field(default=None, foreign_key="model.id")
    role: str = Field(max_length=20)
    content: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


@acts_as_tool_call()
class ToolCall(ToolCallRecord, SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="message.id", index=True)
    tool_call_id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=utcnow)


# -- the app ------------------------------------------------------------------------------------


class NewChat(SQLModel):
    model: str | None = None
    provider: str | None = None


class Question(SQLModel):
    content: str


class MessageOut(SQLModel):
    role: str
    content: str | None


def get_session(request: Request) -> Any:
    with Session(request.app.state.engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_chat(chat_id: int, session: SessionDep) -> Chat:
    chat = session.get(Chat, chat_id)
    if chat is None:
        raise HTTPException(status_code=404, detail="No such chat")
    return chat


ChatDep = Annotated[Chat, Depends(get_chat)]

app = FastAPI()


@app.post("/chats", status_code=201)
def create_chat(new: NewChat, session: SessionDep, request: Request) -> dict[str, Any]:
    state = request.app.state
    chat = Chat(model=new.model or state.model, provider=new.provider or state.provider)
    session.add(chat)
    session.commit()
    return {"id": chat.id, "messages": []}


@app.get("/chats/{chat_id}")
def show_chat(chat: ChatDep, session: SessionDep) -> dict[str, Any]:
    # chat.messages (added by @acts_as_chat) works too; a query reads well to type checkers.
    messages = session.exec(
        select(Message).where(Message.chat_id == chat.id).order_by(col(Message.created_at))
    )
    return {
        "id": chat.id,
        "messages": [MessageOut(role=m.role, content=m.content) for m in messages],
    }


@app.post("/chats/{chat_id}/messages")
def ask(chat: ChatDep, question: Question) -> MessageOut:
    reply = chat.ask(question.content)  # FastAPI runs a sync endpoint in a worker thread
    return MessageOut(role=reply.role, content=reply.text)


def configure(
    engine: Engine, *, model: str = "gpt-4.1-nano", provider: str | None = None
) -> FastAPI:
    """Point the app at ``engine`` (creating the tables) and set the model of new chats."""
    SQLModel.metadata.create_all(engine)  # use Alembic in production
    app.state.engine = engine
    app.state.model, app.state.provider = model, provider
    return app


if os.environ.get("DATABASE_URL"):  # `uvicorn app:app`
    configure(create_engine(os.environ["DATABASE_URL"]))
