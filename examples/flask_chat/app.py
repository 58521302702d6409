"""Flask + Flask-SQLAlchemy + sa_llm: chats as ``db.Model`` classes with Flask's own table names.

The models do not set ``__tablename__``: Flask-SQLAlchemy names the tables ``chat``,
``message``, ``tool_call``, ``model`` and ``attachment``, and the mixins' foreign keys follow.

Run it (``pip install sa-llm flask flask-sqlalchemy``)::

    flask --app examples/flask_chat/app.py run
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, abort, request, stream_with_context
from flask_sqlalchemy import SQLAlchemy

import sa_llm
from sa_llm.declarative import (
    acts_as_attachment,
    acts_as_chat,
    acts_as_message,
    acts_as_model,
    acts_as_tool_call,
)
from sa_llm.mixins import AttachmentMixin, ChatMixin, MessageMixin, ModelMixin, ToolCallMixin

db = SQLAlchemy()


@acts_as_chat()
class Chat(ChatMixin, db.Model):  # type: ignore[name-defined,misc]
    pass


@acts_as_message()
class Message(MessageMixin, db.Model):  # type: ignore[name-defined,misc]
    pass


@acts_as_tool_call()
class ToolCall(ToolCallMixin, db.Model):  # type: ignore[name-defined,misc]
    pass


@acts_as_model()
class Model(ModelMixin, db.Model):  # type: ignore[name-defined,misc]
    pass


@acts_as_attachment()
class Attachment(AttachmentMixin, db.Model):  # type: ignore[name-defined,misc]
    pass


def create_app(
    database_url: str = "sqlite:///chats.db",
    *,
    model: str = "gpt-4.1-nano",
    provider: str | None = None,
) -> Flask:
    """The app on ``database_url``; new chats use ``model``."""
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = database_url
    db.init_app(app)
    with app.app_context():
        db.create_all()  # use Alembic in production (sa-llm install)

    @app.post("/chats")
    def create_chat() -> tuple[dict[str, Any], int]:
        options = request.get_json(silent=True) or {}
        chat = Chat(
            model=options.get("model") or model, provider=options.get("provider") or provider
        )
        db.session.add(chat)
        db.session.commit()
        return {"id": chat.id, "messages": []}, 201

    @app.get("/chats/<int:chat_id>")
    def show_chat(chat_id: int) -> dict[str, Any]:
        chat = db.get_or_404(Chat, chat_id, description="No such chat")
        return {
            "id": chat.id,
            "messages": [
                {
                    "role": m.role,
                    "content": m.content,
                    "files": [a.filename for a in m.attachments],
                }
                for m in chat.messages
            ],
        }

    @app.post("/chats/<int:chat_id>/messages")
    def ask(chat_id: int) -> dict[str, Any]:
        chat = db.get_or_404(Chat, chat_id, description="No such chat")
        try:
            reply = chat.ask(request.form["content"], attachments=request.files.getlist("files"))
        except sa_llm.AttachmentError as exc:  # too large, unreadable by the model, ...
            abort(422, description=str(exc))
        return {"role": reply.role, "content": reply.text, "files": []}

    @app.post("/chats/<int:chat_id>/stream")
    def stream(chat_id: int) -> Response:
        db.get_or_404(Chat, chat_id, description="No such chat")  # before the response starts
        question = (request.get_json(silent=True) or {}).get("content", "")

        # The generator runs after the view has returned, in a context of its own
        # (stream_with_context) with a session of its own: load the chat there.
        def events() -> Iterator[str]:
            chat = db.session.get_one(Chat, chat_id)
            try:
                for chunk in chat.stream(question):
                    if chunk.content:
                        yield sse("delta", {"text": chunk.content})
            except sa_llm.ProviderError as exc:
                yield sse("error", {"message": exc.message})
            else:
                yield sse("done", {})

        return Response(stream_with_context(events()), mimetype="text/event-stream")

    @app.errorhandler(404)
    def not_found(error: Any) -> tuple[dict[str, str], int]:
        return {"detail": error.description}, 404

    return app


def sse(event: str, data: dict[str, object]) -> str:
    """One server-sent event."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"
