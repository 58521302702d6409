"""``sa-llm chat-ui`` without a browser: what it writes and refuses, the generated code's
lint and types under custom names, and the served app's safety and resume rules over plain
HTTP (CSRF refusal, the ownership hook on every chat route and the event stream, replay after
``Last-Event-ID`` / ``?after=``, a reset for positions that are gone). The app is generated
with ``chat:Conversation message:ChatMessage model:AIModel`` and served by uvicorn on SQLite.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from chat_ui_support import REPLY, ChatApp, app_env, generate, plan, serve
from click.testing import CliRunner
from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from sa_llm.cli import main
from sa_llm.testing.server import FakeOpenAIServer
from sa_llm.web import markdown, sse

MAPPINGS = ("chat:Conversation", "message:ChatMessage", "model:AIModel")


def test_chat_ui_refuses_without_the_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["chat-ui", *MAPPINGS])
    assert result.exit_code == 1
    assert "sa-llm install chat:Conversation message:ChatMessage model:AIModel" in result.output
    assert not (tmp_path / "chat_app.py").exists()
    assert CliRunner().invoke(main, ["install", *MAPPINGS]).exit_code == 0
    wrong = CliRunner().invoke(main, ["chat-ui"])  # the default names are not in models.py
    assert wrong.exit_code == 1 and "no class Chat" in wrong.output
    assert CliRunner().invoke(main, ["chat-ui", *MAPPINGS]).exit_code == 0
    again = CliRunner().invoke(main, ["chat-ui", *MAPPINGS])
    assert again.exit_code == 1 and "--force" in again.output


def test_the_generated_app_is_lint_and_type_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("mypy")
    monkeypatch.chdir(tmp_path)
    assert (
        CliRunner().invoke(main, ["install", "chat:llm.Chat", *MAPPINGS[1:], "--uuid"]).exit_code
        == 0
    )
    result = CliRunner().invoke(main, ["chat-ui", "chat:llm.Chat", *MAPPINGS[1:]])
    assert result.exit_code == 0, result.output
    assert "uvicorn chat_app:app" in result.output
    assert sorted(p.name for p in (tmp_path / "chat_ui" / "static").iterdir()) == [
        "chat.css",
        "chat.js",
    ]
    ruff = [sys.executable, "-m", "ruff"]
    isolated = ["--isolated", "--line-length", "100"]
    lint = subprocess.run(
        [*ruff, "check", *isolated, "--select", "E,F,W,UP,B,SIM,RUF", "chat_app.py"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert lint.returncode == 0, lint.stdout
    fmt = subprocess.run(
        [*ruff, "format", "--check", *isolated, "chat_app.py"], capture_output=True
    )
    assert fmt.returncode == 0, fmt.stdout
    from mypy import api

    out, err, status = api.run(
        ["--strict", "--no-incremental", "--python-version", "3.11", "chat_app.py"]
    )
    assert status == 0, out + err


def test_no_third_party_script_or_stylesheet_is_loaded() -> None:
    from sa_llm._install.chat_ui import UI_TEMPLATES

    for page in (UI_TEMPLATES / "templates").rglob("*.html"):
        text = page.read_text()
        for marker in ('<script src="http', '<link rel="stylesheet" href="http', "//cdn", "unpkg"):
            assert marker not in text, (page, marker)


def test_markdown_is_sanitised_and_falls_back_to_escaped_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    html = markdown.render_markdown("**hi** <script>alert(1)</script> [x](javascript:alert(1))")
    assert "<strong>hi</strong>" in html and "<script>" not in html and "href" not in html
    monkeypatch.setattr(markdown, "MARKDOWN_AVAILABLE", False)
    assert markdown.render_markdown("**hi** <b>") == '<p class="plain">**hi** &lt;b&gt;</p>'


def test_sse_frames_split_lines_and_cursors_prefer_the_header() -> None:
    assert sse.frame("a\nb\r\nc", id=3) == b"id: 3\ndata: a\ndata: b\ndata: c\n\n"
    assert sse.comment("ping") == b": ping\n\n"
    assert sse.parse_cursor("7", "3") == 7 and sse.parse_cursor(None, "3") == 3
    assert sse.parse_cursor("junk", None) is None
    with pytest.raises(ValueError, match="line break"):
        sse.frame("x", event="a\nb")


# -- the served app -------------------------------------------------------------------------------

HOOKS = {
    # The ownership hook, filled in as an app would: the user comes from a header, and the
    # user "mallory" owns nothing.
    'async def current_user(request: Request) -> str:\n    """': (
        "async def current_user(request: Request) -> str:\n"
        '    return request.headers.get("x-user", "local")\n    """'
    ),
    "    return True\n": '    return bool(user != "mallory")\n',
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatApp]:
    root = tmp_path_factory.mktemp("chat_ui_http")
    db_url = f"sqlite:///{root / 'app.sqlite3'}"
    engine = create_engine(db_url, poolclass=NullPool)
    with FakeOpenAIServer(plan=plan, idle_timeout=600) as provider:
        env = app_env(db_url, provider)
        generate(root, env, *MAPPINGS)
        source = (root / "chat_app.py").read_text()
        for old, new in HOOKS.items():
            assert source.count(old) == 1, old
            source = source.replace(old, new)
        (root / "chat_app.py").write_text(source)
        app = ChatApp(root, db_url, engine, provider, env)
        with serve(app):
            yield app
    engine.dispose()


def events(
    url: str, *, headers: dict[str, str] | None = None, **params: str
) -> list[dict[str, Any]]:
    """The data events the stream sends at once (until it waits), parsed."""
    found = []
    with httpx.stream("GET", url, headers=headers, params=params, timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        for line in response.iter_lines():
            if line.startswith("data:"):
                event = json.loads(line[5:])
                if event["kind"] == "hello":
                    continue
                found.append(event)
                if event["kind"] in ("turn.ended", "reset") or (not params and not headers):
                    break
    return found


def finished_chat(app: ChatApp) -> str:
    url = app.new_chat("Hello")
    all_events = events(f"{url}/events", after="0")
    assert [e["kind"] for e in all_events][-1] == "turn.ended"
    return url


def test_a_cross_site_form_is_refused(served: ChatApp) -> None:
    form = {"prompt": "hi"}
    evil = httpx.post(f"{served.url}/chats", data=form, headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403
    fetched = httpx.post(f"{served.url}/chats", data=form, headers={"Sec-Fetch-Site": "cross-site"})
    assert fetched.status_code == 403
    same = httpx.post(
        f"{served.url}/chats", data=form,
        headers={"Sec-Fetch-Site": "same-origin", "Origin": served.url},
    )  # fmt: skip
    assert same.status_code == 303


def test_every_chat_route_and_the_stream_ask_the_ownership_hook(served: ChatApp) -> None:
    url = finished_chat(served)
    mallory = {"x-user": "mallory"}
    for method, path in [
        ("GET", ""), ("GET", "/events"), ("POST", "/messages"), ("POST", "/cancel"),
        ("POST", "/retry"), ("POST", "/delete"),
    ]:  # fmt: skip
        response = httpx.request(method, url + path, headers=mallory, data={"content": "x"})
        assert response.status_code == 404, (method, path)
    assert url.rsplit("/", 1)[1] not in httpx.get(f"{served.url}/chats", headers=mallory).text
    assert httpx.get(url).status_code == 200


def test_the_stream_resumes_after_the_position_and_resets_when_it_is_gone(
    served: ChatApp,
) -> None:
    url = finished_chat(served)
    everything = events(f"{url}/events", after="0")
    seqs = [e["seq"] for e in everything]
    assert seqs == sorted(seqs) and [e["prev"] for e in everything][1:] == seqs[:-1]
    completed = next(e for e in everything if e["kind"] == "message.completed")
    assert REPLY.split(" — ")[0] in completed["html"]
    # Last-Event-ID (what a browser resends) wins over ?after=.
    resumed = events(f"{url}/events", headers={"Last-Event-ID": str(seqs[1])}, after="0")
    assert resumed[0]["prev"] == seqs[1] and resumed[0]["seq"] == seqs[2]
    for resets in (events(f"{url}/events"), events(f"{url}/events", after="999")):
        reset = resets[0]
        assert reset["kind"] == "reset" and reset["seq"] == seqs[-1]
        assert "Hello" in reset["html"] and "Paris" in reset["html"]
    # Events pruned (retention): an old position gets the whole chat re-rendered.
    from sa_llm.events import prune_events

    models = _models(served)
    with Session(served.engine) as session:
        prune_events(
            session, models.Conversation, older_than=datetime.now(timezone.utc) + timedelta(1)
        )
    (reset,) = events(f"{url}/events", after="1")[:1]
    assert reset["kind"] == "reset" and "Paris" in reset["html"]


def _models(app: ChatApp) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("_chat_ui_http_models", app.root / "models.py")
    assert spec is not None and spec.loader is not None
    module = sys.modules.get(spec.name)
    if module is None:
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return module


async def test_open_streams_hold_no_database_connection(served: ChatApp) -> None:
    """More streams than the engine's pool has connections (5 + 10 overflow), and the app
    still answers: a stream borrows a connection only while it reads."""
    url = finished_chat(served)
    async with httpx.AsyncClient(timeout=30) as client:
        streams = []
        for _ in range(20):
            stream = client.stream("GET", f"{url}/events", params={"after": "0"})
            response = await stream.__aenter__()
            assert response.status_code == 200
            streams.append(stream)
        try:
            page = await client.get(url, timeout=10)
            assert page.status_code == 200
        finally:
            for stream in streams:
                await stream.__aexit__(None, None, None)


def test_a_reader_holding_the_sqlite_file_does_not_block_a_posted_message(
    served: ChatApp,
) -> None:
    """The app opens SQLite in WAL mode: a read transaction held open elsewhere (as a page's
    event stream holds one while it reads) does not keep a new chat and its message out."""
    reader = sqlite3.connect(served.root / "app.sqlite3", isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM sqlite_master").fetchone()  # a read lock, held
        url = served.new_chat("Hello while another connection reads")
        assert reader.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        reader.execute("ROLLBACK")
        reader.close()
    kinds = [e["kind"] for e in events(f"{url}/events", after="0")]
    assert kinds[0] == "message.created" and kinds[-1] == "turn.ended"
