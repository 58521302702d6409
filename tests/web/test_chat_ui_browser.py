"""The generated chat UI in a real browser: Debian's chromium driven by Playwright (never
``playwright install``), against ``uvicorn chat_app:app`` subprocesses of the app that
``sa-llm chat-ui`` wrote, on SQLite and PostgreSQL, with a scripted provider that streams
slowly. One browser and one app server per database for the whole module.

Set ``SA_LLM_SCREENSHOTS=1`` to refresh the screenshots in ``docs/img/``.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chat_ui_support import (
    REPLY,
    SLOW_REPLY,
    ChaosProxy,
    ChatApp,
    app_env,
    generate,
    plan,
    serve,
)
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.pool import NullPool

from conftest import POSTGRES_URL_ENV
from sa_llm.testing.server import FakeOpenAIServer

CHROMIUM = os.environ.get("SA_LLM_CHROMIUM", "/usr/bin/chromium")
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"

playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
if not Path(CHROMIUM).exists():
    pytest.skip(
        f"no chromium at {CHROMIUM} (apt-get install chromium; or set SA_LLM_CHROMIUM)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--disable-gpu", "--disable-quic"]
            )
        except Exception as exc:  # a chromium Playwright cannot drive
            pytest.skip(f"chromium at {CHROMIUM} did not start under Playwright: {exc}")
        yield browser
        browser.close()


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ],
)
def chat_app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ChatApp]:
    root = tmp_path_factory.mktemp("chat_ui")
    schema = None
    if request.param == "sqlite":
        db_url = f"sqlite:///{root / 'app.sqlite3'}"
    else:
        admin = request.getfixturevalue("_postgres_admin_engine")
        schema = f"t_{uuid.uuid4().hex}"
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        base = make_url(os.environ[POSTGRES_URL_ENV]).set(drivername="postgresql+psycopg")
        db_url = base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    engine = create_engine(db_url, poolclass=NullPool)
    try:
        with FakeOpenAIServer(plan=plan, idle_timeout=600, max_seconds=1800) as provider:
            env = app_env(db_url, provider)
            generate(root, env)
            app = ChatApp(root, db_url, engine, provider, env)
            with serve(app, count=2 if schema else 1):
                yield app
    finally:
        engine.dispose()
        if schema is not None:
            with request.getfixturevalue("_postgres_admin_engine").begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 900, "height": 760})
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


# What the page's script recorded: the DOM order of inserted bubbles and the seqs it applied.
OBSERVER = """() => {
  window.inserted = [];
  new MutationObserver((records) => {
    for (const record of records) for (const node of record.addedNodes)
      if (node.nodeType === 1 && node.matches('article.message'))
        window.inserted.push(
          [node.dataset.role, node.querySelector('.content')?.textContent || '']);
  }).observe(document.getElementById('messages'), {childList: true});
}"""


def assistant_text(page: Any) -> str:
    return str(page.locator("article.message.assistant .content").last.inner_text())


def send(page: Any, text_: str) -> None:
    page.fill("#new-message textarea", text_)
    page.click("#send")


def wait_replies(page: Any, count: int) -> None:
    """Wait until ``count`` replies are final (complete, failed, ...) and no turn runs."""
    page.wait_for_function(
        """(count) => document.querySelectorAll(
             'article.assistant:not(.status-pending):not(.status-streaming)').length >= count
           && document.querySelector('[data-chat]').dataset.running === '0'""",
        arg=count,
        timeout=30_000,
    )


def shot(page: Any, name: str, chat_app: ChatApp) -> None:
    target = DOCS_IMG if os.environ.get("SA_LLM_SCREENSHOTS") == "1" else chat_app.root
    if "sqlite" not in chat_app.db_url:
        return
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target / f"chat-ui-{name}.png"), full_page=True)


def applied_in_order(page: Any) -> None:
    applied = page.evaluate("window.saLlmChat.applied")
    assert applied == sorted(set(applied)), applied  # strictly increasing: in order, no doubles


def test_a_new_chat_shows_the_question_at_once_then_the_reply_as_it_streams(
    page: Any, chat_app: ChatApp
) -> None:
    page.goto(f"{chat_app.url}/models")
    assert page.locator("table.models tr").count() > 10  # the registry, from sa-llm models load
    shot(page, "models", chat_app)
    page.goto(f"{chat_app.url}/chats/new?model=openai:gpt-4.1-nano")
    assert page.locator("#model").input_value() == "openai:gpt-4.1-nano"
    page.fill("#prompt", "Tell me about Paris")
    shot(page, "new-chat", chat_app)
    page.click("text=Start chat")
    page.wait_for_selector("article.message.user")
    assert page.locator("article.message.user .content").inner_text() == "Tell me about Paris"
    wait_replies(page, 1)
    assert assistant_text(page) == REPLY
    page.evaluate(OBSERVER)
    before = page.evaluate("window.saLlmChat.paints.length")
    # A second question: the bubble order as the DOM got them, and the reply's paints.
    send(page, "And now slowly, please")
    page.wait_for_function("(n) => window.saLlmChat.paints.length >= n + 3", arg=before)
    page.wait_for_selector("article.message.assistant .content.streaming")
    assert page.locator("#new-message textarea").input_value() == ""  # the form cleared
    streaming = assistant_text(page)
    assert streaming and SLOW_REPLY.startswith(streaming) and streaming != SLOW_REPLY
    shot(page, "streaming", chat_app)
    wait_replies(page, 2)
    inserted = page.evaluate("window.inserted")
    assert [role for role, _ in inserted][:2] == ["user", "assistant"], inserted
    assert inserted[0][1] == "And now slowly, please"
    assert inserted[1][1] == ""  # the reply's bubble came empty: its text streamed in after
    assert assistant_text(page) == SLOW_REPLY
    paints = page.evaluate("window.saLlmChat.paints")[before:]
    assert len(paints) >= 5  # in batches, many of them: incremental, not all at the end
    applied_in_order(page)
    replies = page.locator("article.message.assistant .content").all_inner_texts()
    assert replies == [REPLY, SLOW_REPLY]
    shot(page, "chat", chat_app)
    page.goto(f"{chat_app.url}/chats")
    assert page.locator(".chat-list li").count() >= 1
    shot(page, "chats", chat_app)


def test_a_reload_mid_stream_continues_without_doubled_text(page: Any, chat_app: ChatApp) -> None:
    page.goto(chat_app.new_chat("slow: count for me"))
    page.wait_for_function(
        "() => (document.querySelector('article.assistant .content')?.textContent || '')"
        ".length > 20"
    )
    page.reload()
    wait_replies(page, 1)
    assert assistant_text(page) == SLOW_REPLY
    assert page.locator("article.message").count() == 2
    applied_in_order(page)


def test_two_tabs_follow_the_same_stream(browser: Any, page: Any, chat_app: ChatApp) -> None:
    url = chat_app.new_chat("Hello")
    page.goto(url)
    wait_replies(page, 1)
    other = page.context.new_page()
    other.goto(url)
    send(page, "slow again")
    for tab in (page, other):
        tab.wait_for_function("() => window.saLlmChat.paints.length >= 2")
    for tab in (page, other):
        wait_replies(tab, 2)
        assert tab.locator("article.message.assistant .content").all_inner_texts() == [
            REPLY,
            SLOW_REPLY,
        ]
        applied_in_order(tab)


@pytest.mark.postgres
def test_a_second_server_process_serves_a_tab_while_the_first_runs_the_turn(
    page: Any, chat_app: ChatApp
) -> None:
    if len(chat_app.urls) < 2:
        pytest.skip("two processes on one database: PostgreSQL (NOTIFY wakes the other one)")
    first, second = chat_app.urls[:2]
    url = chat_app.new_chat("Hello", base=first)
    page.goto(url.replace(first, second))  # this tab is served by the second process
    wait_replies(page, 1)
    other = page.context.new_page()
    other.goto(url)  # the first process, which runs the turns of the chats it created
    send(other, "slow, across processes")
    page.wait_for_function("() => window.saLlmChat.paints.length >= 3")
    wait_replies(page, 2)
    assert page.locator("article.message.assistant .content").all_inner_texts() == [
        REPLY,
        SLOW_REPLY,
    ]
    applied_in_order(page)


def test_events_delivered_out_of_order_and_twice_still_render_in_order(
    page: Any, chat_app: ChatApp
) -> None:
    with ChaosProxy(chat_app.url, reorder=True, duplicate_every=3) as proxy:
        url = chat_app.new_chat("slow through a bad network")
        page.goto(url.replace(chat_app.url, proxy.url))
        wait_replies(page, 1)
        assert assistant_text(page) == SLOW_REPLY
        applied_in_order(page)
        assert proxy.counts["swapped"] > 3 and proxy.counts["duplicated"] > 3, proxy.counts


def test_a_cut_stream_and_a_refused_reconnect_are_survived(page: Any, chat_app: ChatApp) -> None:
    with ChaosProxy(
        chat_app.url, reorder=False, duplicate_every=0, cut_after=8, refuse_after_cut=True
    ) as proxy:
        url = chat_app.new_chat("slow and cut off")
        page.goto(url.replace(chat_app.url, proxy.url))
        wait_replies(page, 1)
        assert assistant_text(page) == SLOW_REPLY
        assert proxy.counts["cut"] == 1 and proxy.counts["refused"] == 1, proxy.counts
        assert page.evaluate("window.saLlmChat.reconnects") >= 2
        applied_in_order(page)


def test_a_provider_error_shows_an_error_and_no_empty_bubble(page: Any, chat_app: ChatApp) -> None:
    page.goto(chat_app.new_chat("please fail"))
    page.wait_for_selector(".turn-end.outcome-failed")
    assert "The model refused this request" in page.locator(".turn-end").inner_text()
    page.wait_for_selector('[data-chat][data-running="0"]', state="attached")
    assert page.locator("article.message.assistant").count() == 0
    shot(page, "error", chat_app)
    page.reload()  # the error is in the event log: a reload shows it again
    page.wait_for_selector(".turn-end.outcome-failed")
    assert page.locator("article.message.assistant").count() == 0


def test_stop_cancels_the_reply_within_a_second_and_a_half(page: Any, chat_app: ChatApp) -> None:
    page.goto(chat_app.new_chat("slow, then stop"))
    page.wait_for_function("() => window.saLlmChat.paints.length >= 2")
    page.evaluate(
        """() => { window.stopAt = performance.now();
          const chat = document.querySelector('[data-chat]');
          new MutationObserver(() => {
            if (chat.dataset.running === '0' && !window.stoppedAt)
              window.stoppedAt = performance.now();
          }).observe(chat, {attributes: true}); }"""
    )
    page.click("#stop")
    page.wait_for_selector(".turn-end.outcome-cancelled")
    elapsed = page.evaluate("window.stoppedAt - window.stopAt") / 1000
    assert elapsed < 1.5, elapsed
    kept = assistant_text(page)
    assert kept and SLOW_REPLY.startswith(kept) and kept != SLOW_REPLY  # what came is kept
    assert page.locator("article.message.assistant .badge").inner_text().lower() == "cancelled"
    time.sleep(0.5)
    assert assistant_text(page) == kept  # and nothing more arrives


def test_a_script_in_model_output_is_shown_as_text(page: Any, chat_app: ChatApp) -> None:
    page.goto(chat_app.new_chat("show me a script"))
    wait_replies(page, 1)
    shown = assistant_text(page)
    assert "<script>window.pwned = 1</script>" in shown
    assert page.evaluate("window.pwned") is None
    assert page.locator("article.message.assistant strong").inner_text() == "bold"  # Markdown
    assert page.locator("article.message.assistant script").count() == 0
    assert page.locator("article.message.assistant img").count() == 0


def test_the_screenshots_exist_when_refreshed() -> None:
    if os.environ.get("SA_LLM_SCREENSHOTS") != "1":
        pytest.skip("screenshots are refreshed with SA_LLM_SCREENSHOTS=1")
    for name in ("models", "new-chat", "streaming", "chat", "chats", "error"):
        assert (DOCS_IMG / f"chat-ui-{name}.png").stat().st_size > 1000, name
