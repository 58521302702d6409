"""The documented FastAPI streaming recipe (docs/streaming.md) under a real uvicorn: clients that
disconnect mid-stream leave no blank or unfinished row, and the chat is free again.

The recipe's code is read from the docs page itself, so the test runs what users copy. Starlette
cancels a disconnected response's task, and the recipe's ``gather`` passes each cancellation on
to the turn, again and again: the turn's clean-up must complete through all of them.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from persisted import default_models
from sa_llm.testing.server import FakeOpenAIServer

DOCS = Path(__file__).resolve().parents[2] / "docs" / "streaming.md"
TESTS = Path(__file__).resolve().parents[1]


def recipe_source() -> str:
    """The recipe's code block, pointed at this test's database and models."""
    page = DOCS.read_text(encoding="utf-8")
    section = page.split("### Recipe: FastAPI and server-sent events", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    source = code.group(1)
    models = 'from persisted import default_models\nChat = default_models()["Chat"]'
    replacements = {
        "from myapp.models import Chat": models,
        'create_async_engine("postgresql+asyncpg://app@db/app")': (
            'create_async_engine(os.environ["APP_DB_URL"])'
        ),
    }
    for old, new in replacements.items():
        assert old in source, old
        source = source.replace(old, new)
    return "import os\n" + source


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def app_server(
    tmp_path: Path, db_url: str, async_db_url: str
) -> Iterator[tuple[str, Any, dict[str, Any], FakeOpenAIServer]]:
    models = default_models()
    engine = create_engine(db_url)
    models["Base"].metadata.create_all(engine)
    (tmp_path / "recipe_app.py").write_text(recipe_source())
    port = free_port()
    with FakeOpenAIServer(chunks=400, chunk_interval=0.01) as provider:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(tmp_path), str(TESTS), *sys.path]),
            "APP_DB_URL": async_db_url,
            "OPENAI_BASE_URL": provider.url,
            "OPENAI_API_KEY": "test-key",
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "recipe_app:app", "--port", str(port),
             "--log-level", "warning"],
            cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"{base}/docs", timeout=1)
                    break
                except httpx.TransportError:
                    assert server.poll() is None, server.stderr.read() if server.stderr else ""
                    assert time.monotonic() < deadline, "uvicorn did not start"
                    time.sleep(0.1)
            yield base, engine, models, provider
        finally:
            server.terminate()
            server.wait(timeout=30)
            engine.dispose()


def test_clients_that_disconnect_mid_stream_leave_no_blank_row(
    app_server: tuple[str, Any, dict[str, Any], FakeOpenAIServer],
) -> None:
    base, engine, models, provider = app_server
    Chat, Message = models["Chat"], models["Message"]
    with Session(engine) as session:
        chat = Chat(model="gpt-4.1-nano")
        session.add(chat)
        session.commit()
        chat_id = chat.id
    with httpx.Client(base_url=base, timeout=30) as client:
        assert client.post("/chats/999/messages", json={"content": "hi"}).status_code == 404
        for attempt in range(20):
            with client.stream(
                "POST", f"/chats/{chat_id}/messages", json={"content": f"question {attempt}"}
            ) as response:
                assert response.status_code == 200
                for line in response.iter_lines():
                    if line.startswith("data:"):
                        break  # the first delta arrived: hang up mid-stream
            # Closing the response drops the connection: the server sees the disconnect.

            # The next question waits for this turn's clean-up (the chat's lease): poll until
            # the chat is free, so each disconnect is its own case.
            deadline = time.monotonic() + 60
            while True:
                with Session(engine) as session:
                    if session.get(Chat, chat_id).turn_token is None:  # type: ignore[union-attr]
                        break
                assert time.monotonic() < deadline, "the turn never released the chat"
                time.sleep(0.02)
    with Session(engine) as session:
        rows = session.execute(
            select(Message.role, Message.content, Message.status).where(Message.chat_id == chat_id)
        ).all()
    assert [(role, status) for role, _, status in rows] == [("user", "complete")] * 20
    assert provider.request_count == 20  # every turn reached the provider, and was cut off
