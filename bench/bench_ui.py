"""The chat UI's stream: events and database writes per streamed reply, provider-chunk-to-viewer
latency with 1, 20 and 100 viewers of one chat, and memory per open event stream.

Run from the repository root with ``python bench/bench_ui.py`` (PostgreSQL rows need
``SA_LLM_TEST_POSTGRES_URL``; the browser rows need Debian's chromium and playwright). Prints
markdown tables and writes them to ``bench/results/ui.md``, and every reply's counts and every
delta's latency to ``bench/results/ui.json`` (the plots' data; ``--json-only``: that file alone;
``--no-write``: neither).

1. **Events and writes per reply.** ``chat.aask`` streamed through the fake OpenAI server (120
   chunks, 25 ms apart: a 3 s reply) on a chat with an event log, in this process, 5 replies per
   database. Counted: the events the reply wrote (the chat's ``event_seq`` grows by that much,
   deltas included though they are pruned at completion) and the commits during the stream
   (the engine's ``commit`` event), per second of streaming.
2. **Chunk to viewer.** The app ``sa-llm chat-ui`` writes, served by uvicorn: one process on
   SQLite, and on PostgreSQL two processes (the viewers on the second, the turn on the first,
   woken by ``NOTIFY``). Viewers of one chat: 1 and 20 pages of one chromium (the time is the
   ``requestAnimationFrame`` after the page appended the delta: a paint; each page in a browser
   context of its own, as separate users are), and 100 raw SSE
   clients (httpx, in the bench process: the time the event was read). The provider's send
   time of chunk k is the server's stamp of the first text chunk plus k intervals (its pacing
   is a timed wait); each delta is matched to the chunk its text ends with. 3 replies per row;
   latency over every delta of every viewer: median, p95, max.
3. **Memory per open stream.** The uvicorn process's resident memory before and after 100 raw
   SSE clients open the stream of an idle chat, divided by 100 (SQLite, one process).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import results_json

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "ui.md"
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "web")]

CHUNKS, INTERVAL = 120, 0.025
REPLY = " ".join(f"w{i:03d}" for i in range(CHUNKS))
CHROMIUM = os.environ.get("SA_LLM_CHROMIUM", "/usr/bin/chromium")


def pct(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


# -- 1. events and writes ---------------------------------------------------------------------


async def events_and_writes(url: str) -> dict[str, Any]:
    from sqlalchemy import event, text
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
    from sqlalchemy.orm import configure_mappers
    from test_chat_ui_queue import models  # the chat, message and event-log models

    import sa_llm
    from sa_llm._mapping import chat_schema
    from sa_llm.testing.server import FakeOpenAIServer

    m = models()  # holds every class: the registry's weak references keep none alive
    configure_mappers()
    assert chat_schema(m["Chat"]).event_cls is not None  # the chats have an event log
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(m["Base"].metadata.create_all)
    commits: list[float] = []
    event.listen(engine.sync_engine, "commit", lambda c: commits.append(time.perf_counter()))
    Session = async_sessionmaker(engine, expire_on_commit=False)
    rows = []
    async with FakeOpenAIServer(reply=REPLY, chunks=CHUNKS, chunk_interval=INTERVAL) as server:
        sa_llm.configure(openai_base_url=server.url, openai_api_key="k", max_retries=0)
        try:
            for _ in range(5):
                async with Session() as session:
                    chat = m["Chat"](model="gpt-4.1-nano", provider="openai")
                    session.add(chat)
                    await session.commit()
                    stamps: list[float] = []
                    commits.clear()

                    def stamp(chunk: Any, stamps: list[float] = stamps) -> None:
                        stamps.append(time.perf_counter())

                    await chat.with_partial_output().aask("go", on_chunk=stamp)
                    seconds = stamps[-1] - stamps[0]
                    during = [t for t in commits if stamps[0] <= t <= stamps[-1]]
                    async with engine.connect() as connection:
                        seq = (
                            await connection.execute(
                                text("SELECT event_seq FROM chats WHERE id = :i"), {"i": chat.id}
                            )
                        ).scalar_one()
                    rows.append((seq, len(during) / seconds, seconds))
        finally:
            sa_llm.reset_config()
    await engine.dispose()
    m["Base"].registry.dispose()
    events = [r[0] for r in rows]
    writes = [r[1] for r in rows]
    return {
        "events": (statistics.median(events), min(events), max(events)),
        "writes": (statistics.median(writes), min(writes), max(writes)),
        "seconds": statistics.median(r[2] for r in rows),
        "replies": [
            {"events": seq, "commits_per_s": round(rate, 3), "seconds": round(seconds, 4)}
            for seq, rate, seconds in rows
        ],
    }


# -- 2. chunk to viewer -----------------------------------------------------------------------


def chunk_ends() -> list[int]:
    from sa_llm.testing.server import _pieces

    ends, total = [], 0
    for piece in _pieces(REPLY, CHUNKS):
        total += len(piece)
        ends.append(total)
    return ends


def latencies(sent_epoch_ms: float, received: list[tuple[float, int]]) -> list[float]:
    """ms from the provider sending the chunk a delta ends with to the viewer getting it."""
    index = {end: k for k, end in enumerate(chunk_ends())}
    found = []
    for when, end in received:
        k = index.get(end)
        if k is not None:
            found.append(when - (sent_epoch_ms + k * INTERVAL * 1000))
    return found


async def raw_viewer(url: str, got: list[tuple[float, int]], ready: asyncio.Event) -> None:
    import httpx

    async with (
        httpx.AsyncClient(timeout=None) as client,
        client.stream("GET", url, params={"after": "999999"}) as response,
    ):
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                data = json.loads(line[5:])
                if data.get("kind") == "reset":
                    ready.set()
                if data.get("kind") == "message.delta":
                    got.append((time.time() * 1000, data["offset"] + len(data["text"])))


#: How long the app took to answer each form POST (a new chat, a new message), ms: the user's
#: message is written before the answer, the turn runs after it.
POSTS_MS: list[float] = []
#: A generous bound on one POST: the bench reports how long the answers took, it does not fail
#: on a slow one (httpx's default of 5 s made a whole run fail once, on a loaded machine).
POST_TIMEOUT = 60.0


def post_message(url: str) -> None:
    """Send "go" through the chat's message form, timed."""
    import httpx

    start = time.perf_counter()
    answered(start, httpx.post(url, data={"content": "go"}, timeout=POST_TIMEOUT))


def answered(start: float, response: Any) -> None:
    """Note how long a form POST sent at ``start`` took; raise if the app refused it."""
    POSTS_MS.append((time.perf_counter() - start) * 1000)
    if response.is_error:  # the form answers 303 See Other
        response.raise_for_status()


def new_chat(app: Any, prompt: str) -> str:
    """A chat made through the app's form (timed); its page's URL."""
    start = time.perf_counter()
    url: str = app.new_chat(prompt, timeout=POST_TIMEOUT)
    POSTS_MS.append((time.perf_counter() - start) * 1000)
    return url


def measure_viewers(app: Any, viewers: int, browser: Any, replies: int = 3) -> list[float]:
    """Latencies (ms) of every delta of every viewer over ``replies`` replies."""
    base_turn, base_view = app.urls[0], app.urls[-1]
    chat_url = new_chat(app, "warm up")
    chat_path = chat_url.removeprefix(base_turn)
    time.sleep(1.5)
    found: list[float] = []
    for round_index in range(replies):
        before = len(app.provider.exchanges)
        if browser is not None:
            # A context per page: each has its own connection pool (HTTP/1.1 allows a browser
            # ~6 connections per host, and every page holds one for its stream).
            contexts = [browser.new_context() for _ in range(viewers)]
            pages = [context.new_page() for context in contexts]
            for page in pages:
                page.goto(base_view + chat_path)
                page.wait_for_function("() => window.saLlmChat && window.saLlmChat.applied")
            time.sleep(0.5)
            post_message(base_turn + chat_path + "/messages")
            pages[0].wait_for_function(
                "(n) => document.querySelectorAll('article.assistant .markdown').length >= n",
                arg=round_index + 2,  # the warm-up's reply, the earlier rounds', this one
                timeout=60_000,
            )
            time.sleep(0.3)
            exchange = app.provider.exchanges[before]
            sent = app_epoch_ms(exchange.first_content_ns)
            for page in pages:
                paints = page.evaluate("window.saLlmChat.paints")
                found += latencies(sent, [(t, end) for _, t, end in paints])
            for context in contexts:
                context.close()
        else:
            found += in_thread(
                raw_round(app, base_view + chat_path, base_turn + chat_path, viewers, before)
            )
    return found


async def raw_round(
    app: Any, view_url: str, turn_url: str, viewers: int, before: int
) -> list[float]:
    import httpx

    got = [[] for _ in range(viewers)]  # type: list[list[tuple[float, int]]]
    ready = [asyncio.Event() for _ in range(viewers)]
    tasks = [
        asyncio.create_task(raw_viewer(view_url + "/events", got[i], ready[i]))
        for i in range(viewers)
    ]
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready)), 60)
    async with httpx.AsyncClient(timeout=POST_TIMEOUT) as client:
        start = time.perf_counter()
        answered(start, await client.post(turn_url + "/messages", data={"content": "go"}))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        exchanges = app.provider.exchanges
        if len(exchanges) > before and exchanges[before].finished:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    sent = app_epoch_ms(app.provider.exchanges[before].first_content_ns)
    return [ms for viewer in got for ms in latencies(sent, viewer)]


_OFFSET_NS = time.time_ns() - time.perf_counter_ns()


def in_thread(coroutine: Any) -> Any:
    """``asyncio.run`` in a thread of its own (Playwright's sync API owns this thread's loop)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def app_epoch_ms(perf_ns: int) -> float:
    return (perf_ns + _OFFSET_NS) / 1e6


# -- 3. memory per stream ---------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def hold_streams(url: str, count: int, pid: int) -> float:
    got: list[list[tuple[float, int]]] = [[] for _ in range(count)]
    ready = [asyncio.Event() for _ in range(count)]
    await asyncio.sleep(1.0)
    before = rss_kib(pid)
    tasks = [asyncio.create_task(raw_viewer(url, got[i], ready[i])) for i in range(count)]
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready)), 60)
    await asyncio.sleep(1.0)
    after = rss_kib(pid)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return (after - before) / count


# -- the run ----------------------------------------------------------------------------------


def payload(
    meta: dict[str, Any],
    events: list[tuple[str, dict[str, Any]]],
    latency: list[tuple[str, int, str, list[float]]],
    memory_kib: float | None,
) -> dict[str, Any]:
    """``bench/results/ui.json``: every reply's events and commit rate per database; every
    delta's latency (ms) per setup; the memory per open stream. The stream's event interval
    and the turn's heartbeat (the configuration's defaults) bound the events and commits."""
    from sa_llm import get_config

    config = get_config()
    return {
        "meta": meta,
        "chunks": CHUNKS,
        "interval_s": INTERVAL,
        "event_interval_s": config.stream_event_interval,
        "heartbeat_s": config.turn_poll_interval,
        "events": [{"database": name, "replies": found["replies"]} for name, found in events],
        "latency": [
            {"setup": setup, "viewers": viewers, "kind": kind, "ms": [round(v, 2) for v in values]}
            for setup, viewers, kind, values in latency
        ],
        "memory_kib_per_stream": memory_kib,
        "post_ms": [round(v, 2) for v in POSTS_MS],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--json-only", action="store_true", help="write only ui.json")
    parser.add_argument("--events-only", action="store_true", help="only the first table")
    args = parser.parse_args()
    meta = results_json.run_meta("ui")
    pg = os.environ.get("SA_LLM_TEST_POSTGRES_URL")
    events: list[tuple[str, dict[str, Any]]] = []
    latency: list[tuple[str, int, str, list[float]]] = []
    out = ["## Chat UI: events, writes, chunk-to-viewer latency, memory", ""]

    out += ["### Events and database writes per streamed reply", "",
            f"A {CHUNKS}-chunk reply, {INTERVAL * 1000:.0f} ms apart; 5 replies; "
            "median (min-max).", "",
            "| database | reply seconds | events per reply | commits per second of streaming |",
            "| --- | --- | --- | --- |"]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        dbs = [("SQLite (file)", f"sqlite+aiosqlite:///{tmp}/bench.sqlite3")]
        if pg:
            dbs.append(("PostgreSQL", pg_schema_url(pg)))
        for name, url in dbs:
            r = asyncio.run(events_and_writes(url))
            events.append((name, r))
            e, w = r["events"], r["writes"]
            out.append(f"| {name} | {r['seconds']:.2f} | {e[0]:.0f} ({e[1]}-{e[2]}) | "
                       f"{w[0]:.1f} ({w[1]:.1f}-{w[2]:.1f}) |")  # fmt: skip
    out += ["", "### Provider chunk to viewer (ms)", "",
            "| database, processes | viewers | deltas measured | median | p95 | max |",
            "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    memory = None
    for label, run in [] if args.events_only else latency_runs(pg):
        for viewers, kind, values in run:
            latency.append((label, viewers, kind, values))
            if values:
                median, p95 = statistics.median(values), pct(values, 0.95)
                out.append(f"| {label} | {viewers} {kind} | {len(values)} | "
                           f"{median:.0f} | {p95:.0f} | {max(values):.0f} |")  # fmt: skip
            else:
                out.append(f"| {label} | {viewers} {kind} | 0 | - | - | - |")
    if POSTS_MS:
        out += ["", f"The app answered the {len(POSTS_MS)} form POSTs of these rows (a new chat, "
                f"a new message; with the viewers connected) in {statistics.median(POSTS_MS):.0f} "
                f"ms (median), {pct(POSTS_MS, 0.95):.0f} ms (p95), {max(POSTS_MS):.0f} ms "
                "(max)."]  # fmt: skip
    memory = MEMORY.get("kib")
    out += ["", "### Memory per open event stream", ""]
    if memory is not None:
        out.append(f"100 raw SSE clients on an idle chat, SQLite, one uvicorn process: "
                   f"{memory:.1f} KiB of resident memory per stream.")  # fmt: skip
    text = "\n".join(out) + "\n"
    print(text)
    if not args.no_write and not args.json_only:
        RESULTS.write_text(text)
    if not args.no_write:
        found = payload(meta, events, latency, memory)
        print(f"written to {results_json.write('ui', found)}", file=sys.stderr)


MEMORY: dict[str, float] = {}


def pg_schema_url(base: str) -> str:
    from sqlalchemy import create_engine, make_url, text

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(make_url(base).set(drivername="postgresql+psycopg"))
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    url = make_url(base).set(drivername="postgresql+psycopg")
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )


def latency_runs(pg: str | None) -> Any:
    import dataclasses

    from chat_ui_support import ChatApp, app_env, generate, serve
    from sqlalchemy import create_engine

    from sa_llm.testing.server import FakeOpenAIServer, Plan, Received

    def plan(received: Received, default: Plan) -> Plan:
        return dataclasses.replace(default, text=REPLY, chunks=CHUNKS, chunk_interval=INTERVAL)

    browser_cm: Any = contextlib.nullcontext(None)
    if Path(CHROMIUM).exists():
        from playwright.sync_api import sync_playwright

        browser_cm = sync_playwright()
    with browser_cm as playwright:
        browser = None
        if playwright is not None:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--disable-gpu"])
        setups: list[tuple[str, str | None, int]] = [("SQLite, 1 process", None, 1)]
        if pg:
            setups.append(("PostgreSQL, 2 processes", pg_schema_url(pg).replace("+psycopg", ""), 2))
        for label, url, processes in setups:
            with (
                tempfile.TemporaryDirectory() as tmp,
                FakeOpenAIServer(plan=plan, idle_timeout=900, max_seconds=1800) as provider,
            ):
                root = Path(tmp)
                db_url = url or f"sqlite:///{root / 'app.sqlite3'}"
                env = app_env(db_url, provider)
                generate(root, env)
                app = ChatApp(root, db_url, create_engine(db_url), provider, env)
                with serve(app, count=processes):
                    rows = []
                    if browser is not None:
                        for viewers in (1, 20):
                            rows.append(
                                (viewers, "browser pages", measure_viewers(app, viewers, browser))
                            )
                    rows.append((100, "raw SSE clients", measure_viewers(app, 100, None)))
                    if processes == 1:
                        idle = new_chat(app, "warm up") + "/events"
                        time.sleep(1.5)
                        pid = uvicorn_pid(app)
                        MEMORY["kib"] = in_thread(hold_streams(idle, 100, pid))
                    yield label, rows
        if browser is not None:
            browser.close()


def uvicorn_pid(app: Any) -> int:
    import subprocess

    port = app.urls[-1].rsplit(":", 1)[1]
    out = subprocess.run(["pgrep", "-f", f"uvicorn chat_app:app --port {port}"],
                         capture_output=True, text=True).stdout.split()  # fmt: skip
    return int(out[0])


if __name__ == "__main__":
    main()
