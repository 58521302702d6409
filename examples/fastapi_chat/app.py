"""FastAPI + sa_llm: chats as SQLAlchemy models on an ``AsyncSession``.

One request, one session (a dependency); an unknown chat is a 404; a reply can stream as
server-sent events; a question can carry uploaded files (multipart, ``python-multipart``).

Run it (``pip install "sa-llm[sqlite-async]" fastapi python-multipart uvicorn``)::

    DATABASE_URL=sqlite+aiosqlite:///chats.db uvicorn app:app --app-dir examples/fastapi_chat
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Request, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, selectinload

import sa_llm
from sa_llm.declarative import (
    acts_as_attachment,
    acts_as_chat,
    acts_as_message,
    acts_as_model,
    acts_as_tool_call,
)
from sa_llm.mixins import AttachmentMixin, ChatMixin, MessageMixin, ModelMixin, ToolCallMixin

# -- models -------------------------------------------------------------------------------------


class Base(DeclarativeBase):
    pass


@acts_as_chat()
class Chat(ChatMixin, Base):
    __tablename__ = "chats"

    if TYPE_CHECKING:  # added by the decorators; declared for type checkers
        messages: Mapped[list[Message]]


@acts_as_message()
class Message(MessageMixin, Base):
    __tablename__ = "messages"

    if TYPE_CHECKING:
        attachments: Mapped[list[Attachment]]


@acts_as_tool_call()
class ToolCall(ToolCallMixin, Base):
    __tablename__ = "tool_calls"


@acts_as_model()
class Model(ModelMixin, Base):
    __tablename__ = "models"


@acts_as_attachment()
class Attachment(AttachmentMixin, Base):
    __tablename__ = "attachments"


# -- API schemas --------------------------------------------------------------------------------


class NewChat(BaseModel):
    model: str | None = None
    provider: str | None = None


class MessageOut(BaseModel):
    role: str
    content: str | None
    files: list[str] = []


class ChatOut(BaseModel):
    id: int
    messages: list[MessageOut]


class Question(BaseModel):
    content: str


# -- dependencies: one session per request, the chat or a 404 ---------------------------------


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def get_chat(chat_id: int, session: SessionDep) -> Chat:
    chat = await session.get(Chat, chat_id)
    if chat is None:
        raise HTTPException(status_code=404, detail="No such chat")
    return chat


ChatDep = Annotated[Chat, Depends(get_chat)]

# -- routes -------------------------------------------------------------------------------------

router = APIRouter()


@router.post("/chats", status_code=201)
async def create_chat(new: NewChat, session: SessionDep, request: Request) -> ChatOut:
    settings = request.app.state
    chat = Chat(model=new.model or settings.model, provider=new.provider or settings.provider)
    session.add(chat)
    await session.commit()
    return ChatOut(id=chat.id, messages=[])


@router.get("/chats/{chat_id}")
async def show_chat(chat_id: int, session: SessionDep) -> ChatOut:
    # An AsyncSession cannot lazy-load: load the messages (and their files) up front.
    chat = await session.scalar(
        select(Chat)
        .where(Chat.id == chat_id)
        .options(selectinload(Chat.messages).selectinload(Message.attachments))
    )
    if chat is None:
        raise HTTPException(status_code=404, detail="No such chat")
    return ChatOut(
        id=chat.id,
        messages=[
            MessageOut(role=m.role, content=m.content, files=[a.filename for a in m.attachments])
            for m in chat.messages
        ],
    )


@router.post("/chats/{chat_id}/messages")
async def ask(
    chat: ChatDep,
    content: Annotated[str, Form()],
    files: list[UploadFile] = [],  # noqa: B006 - FastAPI copies defaults
) -> MessageOut:
    try:
        reply = await chat.aask(content, attachments=files)
    except sa_llm.AttachmentError as exc:  # too large, unreadable by the model, ...
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    return MessageOut(role=reply.role, content=reply.text)


@router.post("/chats/{chat_id}/stream")
async def stream(chat: ChatDep, question: Question) -> StreamingResponse:
    # The chat is found before the response starts, so an unknown one is still a 404; the
    # session stays open until the stream ends (FastAPI closes it after the response).
    async def events() -> AsyncIterator[str]:
        try:
            async for chunk in chat.astream(question.content):
                if chunk.content:
                    yield sse("delta", {"text": chunk.content})
        except sa_llm.ProviderError as exc:
            yield sse("error", {"message": exc.message})
        else:
            yield sse("done", {})

    return StreamingResponse(events(), media_type="text/event-stream")


def sse(event: str, data: dict[str, object]) -> str:
    """One server-sent event."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


# -- the app ------------------------------------------------------------------------------------


def create_app(
    database_url: str, *, model: str = "gpt-4.1-nano", provider: str | None = None
) -> FastAPI:
    """The app on ``database_url`` (an async driver: ``sqlite+aiosqlite://``,
    ``postgresql+psycopg://``, ``postgresql+asyncpg://``); new chats use ``model``."""
    engine = create_async_engine(database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as connection:  # use Alembic in production (sa-llm install)
            await connection.run_sync(Base.metadata.create_all)
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)
    app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
    app.state.model, app.state.provider = model, provider
    app.include_router(router)
    return app


if os.environ.get("DATABASE_URL"):  # `uvicorn app:app`
    app = create_app(os.environ["DATABASE_URL"])
