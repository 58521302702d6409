"""Attachment memory: peak Python memory when a persisted chat attaches a 20 MB file.

Run from the repository root with ``python bench/bench_attachments.py``; it prints a markdown
table and writes it to ``bench/results/attachments.md``, and every run's peak to
``bench/results/attachments.json`` (the plot's data; ``--json-only``: that file alone,
``--no-write``: neither). The scenarios run ``--repeats`` times (3), each run with a fresh
file, database and storage; the table gives the median peak.
Nothing touches the network: the OpenAI provider talks to an ``httpx.MockTransport`` that drops
the request and answers with a recorded Responses API reply. The database is SQLite in memory,
the storage a ``LocalStorage`` in a temporary directory, the file 20 MiB of random bytes behind
a PDF signature (so it is sent inline as base64, the way a PDF is).

Each scenario runs with ``tracemalloc`` started just before it (after ``gc.collect()``); the
figure is the peak of traced memory above the level at the start, i.e. what the scenario itself
held at its worst moment:

1. **store only**: ``create_user_message(..., attachments=path)``: the file is streamed into the
   storage and the row written; no request is built. Target: well under one copy of the file
   (the copy buffer is 1 MiB).
2. **plain ask**: ``sa_llm.chat(...).ask(..., attachments=path)``, no database: the baseline,
   i.e. what building and sending the provider's base64 request costs by itself.
3. **persisted ask** (sync, and async over aiosqlite) from a path, from an ``UploadFile``-like
   upload spooled to disk, and the **second turn** that re-sends the stored file from storage.
   Target: at most one copy of the file above the plain ask (the request needs the bytes once;
   storing them must not need a second copy).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import tracemalloc
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import httpx
import results_json
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.pool import StaticPool

import sa_llm
from sa_llm.declarative import (
    acts_as_attachment,
    acts_as_chat,
    acts_as_message,
    acts_as_model,
    acts_as_tool_call,
)
from sa_llm.mixins import AttachmentMixin, ChatMixin, MessageMixin, ModelMixin, ToolCallMixin
from sa_llm.storage import LocalStorage

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "attachments.md"
RECORDING = (
    ROOT / "tests" / "fixtures" / "wire" / "openai" / "chat_vision_models_openai_gpt-5-nano_can"
    "_understand_local_images.json"
)
MODEL = "gpt-4.1-nano"
MIB = 1024 * 1024


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


@acts_as_attachment()
class Attachment(AttachmentMixin, Base):
    __tablename__ = "attachments"


class Upload:
    """What Starlette hands a FastAPI endpoint: a spooled temporary file plus metadata."""

    def __init__(self, path: Path) -> None:
        self.file: Any = tempfile.SpooledTemporaryFile(max_size=MIB)  # noqa: SIM115
        with path.open("rb") as source:
            while chunk := source.read(MIB):
                self.file.write(chunk)
        self.file.seek(0)
        self.filename = "upload.pdf"
        self.content_type = "application/pdf"


def reply_body() -> bytes:
    recording = json.loads(RECORDING.read_text(encoding="utf-8"))
    return str(recording["interactions"][0]["response"]["body"]).encode()


def clients() -> tuple[httpx.Client, httpx.AsyncClient]:
    body = reply_body()

    def handler(request: httpx.Request) -> httpx.Response:
        # The request (and its base64 body) is dropped here, as a real transport would after
        # sending it.
        return httpx.Response(200, headers={"content-type": "application/json"}, content=body)

    return (
        httpx.Client(transport=httpx.MockTransport(handler)),
        httpx.AsyncClient(transport=httpx.MockTransport(handler)),
    )


def measure(run: Callable[[], Any]) -> int:
    gc.collect()
    tracemalloc.start()
    start, _ = tracemalloc.get_traced_memory()
    try:
        run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - start


def ameasure(run: Callable[[], Coroutine[Any, Any, Any]]) -> int:
    return measure(lambda: asyncio.run(run()))


def scenarios(file: Path, directory: Path) -> list[tuple[str, int]]:
    sync_client, async_client = clients()
    sa_llm.configure(
        openai_api_key="bench-key",
        max_retries=0,
        http_client=sync_client,
        async_http_client=async_client,
        attachment_storage=LocalStorage(directory / "blobs"),
    )
    results: list[tuple[str, int]] = []
    engine = create_engine("sqlite://", poolclass=StaticPool)
    Base.metadata.create_all(engine)

    with Session(engine) as session:
        chat = Chat(model=MODEL)
        session.add(chat)
        session.commit()
        results.append(
            (
                "store only (create_user_message, sync)",
                measure(lambda: chat.create_user_message("Summarise", attachments=file)),
            )
        )

    plain = sa_llm.chat(MODEL)
    results.append(
        (
            "plain ask, no database (baseline)",
            measure(lambda: plain.ask("Summarise", attachments=file)),
        )
    )

    with Session(engine) as session:
        chat = Chat(model=MODEL)
        session.add(chat)
        session.commit()
        results.append(
            (
                "persisted ask from a path (sync)",
                measure(lambda: chat.ask("Summarise", attachments=file)),
            )
        )
        results.append(
            (
                "second turn, file re-sent from storage (sync)",
                measure(lambda: chat.ask("And again?")),
            )
        )

    with Session(engine) as session:
        chat = Chat(model=MODEL)
        session.add(chat)
        session.commit()
        upload = Upload(file)
        results.append(
            (
                "persisted ask from an UploadFile (sync)",
                measure(lambda: chat.ask("Summarise", attachments=upload)),
            )
        )
        upload.file.close()
    engine.dispose()

    async def persisted_async() -> None:
        engine = create_async_engine("sqlite+aiosqlite://", poolclass=StaticPool)
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        async with AsyncSession(engine) as session:
            chat = Chat(model=MODEL)
            session.add(chat)
            await session.commit()
            await chat.aask("Summarise", attachments=file)
        await engine.dispose()

    results.append(("persisted ask from a path (async, aiosqlite)", ameasure(persisted_async)))
    sync_client.close()
    asyncio.run(async_client.aclose())
    sa_llm.reset_config()
    return results


def peaks(runs: Sequence[Sequence[tuple[str, int]]]) -> dict[str, list[int]]:
    """Each scenario's peaks over the runs, in the scenarios' order."""
    found: dict[str, list[int]] = {}
    for run in runs:
        for name, peak in run:
            found.setdefault(name, []).append(peak)
    return found


def medians(runs: Sequence[Sequence[tuple[str, int]]]) -> list[tuple[str, int]]:
    """Each scenario's median peak over the runs."""
    return [(name, int(statistics.median(values))) for name, values in peaks(runs).items()]


def payload(
    meta: dict[str, Any], size: int, runs: Sequence[Sequence[tuple[str, int]]]
) -> dict[str, Any]:
    """``bench/results/attachments.json``: every run's peak (bytes) per scenario."""
    return {
        "meta": meta,
        "file_bytes": size,
        "base64_bytes": (size + 2) // 3 * 4,
        "baseline": "plain ask, no database (baseline)",
        "scenarios": [{"name": name, "peak_bytes": values} for name, values in peaks(runs).items()],
    }


def report(results: Sequence[tuple[str, int]], size: int, repeats: int = 1) -> str:
    baseline = dict(results)["plain ask, no database (baseline)"]
    runs = f"; median of {repeats} runs" if repeats > 1 else ""
    lines = [
        f"File: {size / MIB:.0f} MiB (PDF signature + random bytes); base64 of it: "
        f"{(size + 2) // 3 * 4 / MIB:.1f} MiB. Peak = tracemalloc peak above the start "
        f"level{runs}.",
        "",
        "| scenario | peak MiB | x file size | above plain ask, MiB |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, peak in results:
        above = "" if "plain" in name or "store only" in name else f"{(peak - baseline) / MIB:+.1f}"
        lines.append(f"| {name} | {peak / MIB:.1f} | {peak / size:.2f} | {above} |")
    store = dict(results)["store only (create_user_message, sync)"]
    worst = max(peak for name, peak in results if "persisted" in name or "second" in name)
    lines += [
        "",
        f"Storing streams: {store / MIB:.1f} MiB peak for a {size / MIB:.0f} MiB file "
        f"(target < 1 copy: {'met' if store < size else 'NOT met'}).",
        f"Worst persisted turn: {(worst - baseline) / MIB:+.1f} MiB above the plain ask "
        f"(target <= +1 copy, {size / MIB:.0f} MiB: "
        f"{'met' if worst - baseline <= size else 'NOT met'}).",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=20, help="size of the attached file")
    parser.add_argument("--repeats", type=int, default=3, help="runs of every scenario")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS}")
    parser.add_argument("--json-only", action="store_true", help="write only attachments.json")
    args = parser.parse_args(argv)
    meta = results_json.run_meta("attachments")
    size = args.size_mib * MIB
    runs = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            file = directory / "report.pdf"
            with file.open("wb") as out:
                out.write(b"%PDF-1.7\n")
                out.write(os.urandom(size - 9))
            runs.append(scenarios(file, directory))
    table = report(medians(runs), size, args.repeats)
    print(table)
    if not args.no_write:
        path = results_json.write("attachments", payload(meta, size, runs))
        print(f"written to {path}", file=sys.stderr)
    if not args.no_write and not args.json_only:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(
            "# Attachments\n\n"
            "Written by `python bench/bench_attachments.py` (see its docstring for the method).\n\n"
            + table
            + "\n"
        )
        print(f"\nwritten to {RESULTS.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
