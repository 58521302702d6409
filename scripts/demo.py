"""The demo: a persisted chat on SQLite, then the rows it left behind.

``python3 scripts/demo.py`` creates ``.venv`` on first use, then talks to a model through
sa_llm's ``@acts_as_chat`` models stored in ``demo.sqlite3``: a question, a tool call and a
streamed answer. Offline (no ``OPENAI_API_KEY``) it uses sa_llm's scripted fake model, which runs
the same transport, streaming, tool loop and persistence; with a key it calls OpenAI for real.
"""

from __future__ import annotations

import sys

from _bootstrap import ROOT, bootstrap

bootstrap("")

import os  # noqa: E402
from typing import Annotated  # noqa: E402

from sqlalchemy import create_engine, select  # noqa: E402
from sqlalchemy.orm import DeclarativeBase, Session  # noqa: E402

import sa_llm  # noqa: E402
from sa_llm.declarative import (  # noqa: E402
    acts_as_chat,
    acts_as_message,
    acts_as_model,
    acts_as_tool_call,
)
from sa_llm.mixins import ChatMixin, MessageMixin, ModelMixin, ToolCallMixin  # noqa: E402
from sa_llm.testing import fake_llm  # noqa: E402
from sa_llm.types import Tokens  # noqa: E402


class Base(DeclarativeBase):
    pass


@acts_as_chat()
class Chat(ChatMixin, Base):
    __tablename__ = "chats"


@acts_as_message()
class Message(MessageMixin, Base):
    __tablename__ = "messages"


@acts_as_tool_call()
class ToolCall(ToolCallMixin, Base):
    __tablename__ = "tool_calls"


@acts_as_model()
class Model(ModelMixin, Base):
    __tablename__ = "models"


class Weather(sa_llm.Tool):
    """Gets the current weather for a city."""

    def execute(self, city: Annotated[str, "The city, e.g. Berlin"]) -> str:
        return f"{city}: 15°C, light wind"


def script(fake: sa_llm.testing.FakeLLM) -> None:
    """What the offline model answers, turn by turn."""
    fake.reply("The capital of France is Paris.", tokens=Tokens(input=14, output=8))
    fake.tool_call("weather", {"city": "Berlin"}, id="call_weather_1")
    fake.reply("It is 15°C in Berlin with a light wind.", tokens=Tokens(input=60, output=12))
    fake.reply(
        "Berlin, Paris and Madrid are capitals.",
        chunks=["Berlin, ", "Paris ", "and ", "Madrid ", "are ", "capitals."],
        tokens=Tokens(input=90, output=9, cached=64),
    )


def main() -> int:
    database = ROOT / "demo.sqlite3"
    if database.exists():
        database.unlink()
    engine = create_engine(f"sqlite:///{database}")
    Base.metadata.create_all(engine)
    live = bool(os.environ.get("OPENAI_API_KEY"))
    model, provider = ("gpt-4.1-nano", None) if live else ("demo-model", "fake")
    print(f"sa_llm demo — {'OpenAI ' + model if live else 'offline, scripted fake model'}")
    print(f"database: {database}\n")

    with fake_llm(echo=False) as fake, Session(engine) as session:
        script(fake)
        chat = Chat(model=model, provider=provider)
        session.add(chat)
        session.commit()
        chat.with_instructions("You are concise.")

        question = "What is the capital of France?"
        print(f"> {question}")
        print(chat.ask(question).text, "\n")

        question = "What's the weather in Berlin?"
        print(f"> {question}")
        print(chat.with_tool(Weather).ask(question).text, "\n")

        question = "Name three European capitals."
        print(f"> {question} (streamed)")
        chat.ask(question, on_chunk=lambda chunk: print(chunk.content or "", end="", flush=True))
        print("\n")

    with Session(engine) as session:
        rows = session.scalars(select(Message).order_by(Message.created_at, Message.id)).all()
        print("Stored messages:")
        print(f"  {'id':>3}  {'role':<9} {'tokens in/out/cached':<21} content")
        for row in rows:
            tokens = (
                f"{row.input_tokens or '-'}/{row.output_tokens or '-'}/{row.cached_tokens or '-'}"
            )
            text = (row.content or "").replace("\n", " ")
            calls = ", ".join(f"{c.name}({c.arguments})" for c in row.tool_calls)
            if calls:
                text = f"[calls {calls}]"
            if row.parent_tool_call is not None:
                text = f"[result of {row.parent_tool_call.tool_call_id}] {text}"
            print(f"  {row.id:>3}  {row.role:<9} {tokens:<21} {text[:60]}")
        model_row = session.scalars(select(Model)).first()
        assert model_row is not None
        print(f"\nModel row: {model_row.model_id} ({model_row.provider})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
