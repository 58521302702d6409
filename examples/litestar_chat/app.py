"""Litestar + advanced-alchemy + sa_llm: chats on advanced-alchemy's audit base (UUID primary
keys, ``created_at``/``updated_at``), read and written through its repository and service.

``UUIDAuditBase`` comes first among the bases, so its ``id`` (a UUID) and audit columns win
over the mixins'; the mixins' foreign keys take the UUID type and advanced-alchemy's generated
table names (``chat``, ``message``, ``tool_call``, ``model``, ``attachment``).

Run it (``pip install "sa-llm[sqlite-async]" litestar[standard] advanced-alchemy``)::

    DATABASE_URL=sqlite+aiosqlite:///chats.db litestar --app-dir examples/litestar_chat run
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

from advanced_alchemy.extensions.litestar import (
    AsyncSessionConfig,
    SQLAlchemyAsyncConfig,
    SQLAlchemyPlugin,
    base,
    repository,
    service,
)
from litestar import Controller, Litestar, Request, get, post
from litestar.datastructures import State, UploadFile
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import FromPath, JSONBody, MultipartBody
from litestar.response import ServerSentEvent, ServerSentEventMessage
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, selectinload

import sa_llm
from sa_llm.declarative import (
    acts_as_attachment,
    acts_as_chat,
    acts_as_message,
    acts_as_model,
    acts_as_tool_call,
)
from sa_llm.mixins import AttachmentMixin, ChatMixin, MessageMixin, ModelMixin, ToolCallMixin

# -- models: advanced-alchemy's audit base first, sa_llm's mixins after ------------------------
# (Type checkers see the audit base's UUID ``id`` replace the mixins' integer one, as it does.)


@acts_as_chat()
class Chat(base.UUIDAuditBase, ChatMixin):  # type: ignore[misc]  # a UUID id, not the mixin's int
    if TYPE_CHECKING:  # added by the decorators; declared for type checkers
        messages: Mapped[list[Message]]


@acts_as_message()
class Message(base.UUIDAuditBase, MessageMixin):  # type: ignore[misc]  # a UUID id, not the mixin's int
    if TYPE_CHECKING:
        attachments: Mapped[list[Attachment]]


@acts_as_tool_call()
class ToolCall(base.UUIDAuditBase, ToolCallMixin):  # type: ignore[misc]  # a UUID id, not the mixin's int
    pass


@acts_as_model()
class Model(base.UUIDAuditBase, ModelMixin):  # type: ignore[misc]  # a UUID id, not the mixin's int
    pass


@acts_as_attachment()
class Attachment(base.UUIDAuditBase, AttachmentMixin):  # type: ignore[misc]  # a UUID id, not the mixin's int
    pass


# -- repository and service ---------------------------------------------------------------------


class ChatService(service.SQLAlchemyAsyncRepositoryService[Chat]):
    """Chats, through advanced-alchemy's repository."""

    class Repository(repository.SQLAlchemyAsyncRepository[Chat]):
        model_type = Chat

    repository_type = Repository

    async def find(self, chat_id: UUID, *, with_messages: bool = False) -> Chat:
        """The chat, or a 404."""
        load = [selectinload(Chat.messages).selectinload(Message.attachments)]
        chat = await self.get_one_or_none(Chat.id == chat_id, load=load if with_messages else None)
        if chat is None:
            raise NotFoundException(detail="No such chat")
        return chat


async def provide_chats(
    db_session: NamedDependency[AsyncSession],
) -> AsyncIterator[ChatService]:
    async with ChatService.new(session=db_session) as chats:
        yield chats


# -- API ----------------------------------------------------------------------------------------


@dataclass
class NewChat:
    model: str | None = None
    provider: str | None = None


@dataclass
class Question:
    content: str
    files: list[UploadFile] = field(default_factory=list)


@dataclass
class StreamQuestion:
    content: str


def message_out(message: Message) -> dict[str, Any]:
    return {
        "role": message.role,
        "content": message.content,
        "files": [a.filename for a in message.attachments],
    }


class ChatController(Controller):
    path = "/chats"
    dependencies = {"chats": Provide(provide_chats)}  # noqa: RUF012 - Litestar's own style

    @post("/")
    async def create_chat(
        self,
        data: JSONBody[NewChat],
        chats: NamedDependency[ChatService],
        settings: NamedDependency[Settings],
    ) -> dict[str, Any]:
        # A Chat, not a dict: advanced-alchemy builds rows from dicts by column, and model=
        # and provider= are the decorator's constructor arguments, not columns.
        chat = Chat(model=data.model or settings.model, provider=data.provider or settings.provider)
        chat = await chats.create(chat, auto_commit=True)
        return {"id": str(chat.id), "messages": []}

    @get("/{chat_id:uuid}")
    async def show_chat(
        self, chat_id: FromPath[UUID], chats: NamedDependency[ChatService]
    ) -> dict[str, Any]:
        chat = await chats.find(chat_id, with_messages=True)
        return {"id": str(chat.id), "messages": [message_out(m) for m in chat.messages]}

    @post("/{chat_id:uuid}/messages", status_code=200)
    async def ask(
        self,
        chat_id: FromPath[UUID],
        chats: NamedDependency[ChatService],
        data: MultipartBody[Question],
    ) -> dict[str, Any]:
        chat = await chats.find(chat_id)
        try:
            reply = await chat.aask(data.content, attachments=data.files)
        except sa_llm.AttachmentError as exc:  # too large, unreadable by the model, ...
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        return {"role": reply.role, "content": reply.text, "files": []}

    @post("/{chat_id:uuid}/stream", status_code=200)
    async def stream(
        self,
        chat_id: FromPath[UUID],
        chats: NamedDependency[ChatService],
        data: JSONBody[StreamQuestion],
        request: Request[Any, Any, Any],
    ) -> ServerSentEvent:
        await chats.find(chat_id)  # a 404 before the response starts
        alchemy: SQLAlchemyAsyncConfig = request.app.state.alchemy

        # The request's session is closed once the response starts: the turn gets its own.
        async def events() -> AsyncIterator[ServerSentEventMessage]:
            async with alchemy.get_session() as session, ChatService.new(session=session) as own:
                chat = await own.find(chat_id)
                try:
                    async for chunk in chat.astream(data.content):
                        if chunk.content:
                            yield event("delta", {"text": chunk.content})
                except sa_llm.ProviderError as exc:
                    yield event("error", {"message": exc.message})
                else:
                    yield event("done", {})

        return ServerSentEvent(events())


def event(name: str, data: dict[str, object]) -> ServerSentEventMessage:
    return ServerSentEventMessage(event=name, data=json.dumps(data))


# -- the app ------------------------------------------------------------------------------------


@dataclass
class Settings:
    model: str
    provider: str | None


def create_app(
    database_url: str, *, model: str = "gpt-4.1-nano", provider: str | None = None
) -> Litestar:
    """The app on ``database_url`` (an async driver); new chats use ``model``."""
    alchemy = SQLAlchemyAsyncConfig(
        connection_string=database_url,
        session_config=AsyncSessionConfig(expire_on_commit=False),
        before_send_handler="autocommit",
        create_all=True,  # use Alembic in production (sa-llm install)
    )
    return Litestar(
        route_handlers=[ChatController],
        plugins=[SQLAlchemyPlugin(config=alchemy)],
        dependencies={
            "settings": Provide(lambda: Settings(model, provider), sync_to_thread=False),
        },
        state=State({"alchemy": alchemy}),
    )


if os.environ.get("DATABASE_URL"):  # `litestar run`
    app = create_app(os.environ["DATABASE_URL"])
