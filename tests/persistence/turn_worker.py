"""A worker process for the cross-process turn tests: asks on one persisted chat, reports JSON.

Run as ``python turn_worker.py '<json job>'``; the job names the database, the chat, the fake
OpenAI server and what to do. Each ask's outcome is printed as one JSON line (``{"ok": ...}``
or ``{"error": "<class name>", ...}``); ``{"ready": true}`` is printed first, and with
``"ready_file"`` the worker waits for that file to exist before asking, so the parent can
start several workers at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for persisted.py

from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

import sa_llm
from persisted import configure_worker, default_models


class Weather(sa_llm.Tool):
    """The weather of a city."""

    def execute(self, city: str) -> str:
        pause = float(os.environ.get("SA_LLM_TOOL_SLEEP", "0"))
        if pause:
            Path(os.environ["SA_LLM_TOOL_STARTED"]).write_text("started")
            time.sleep(pause)
        return f"Sunny in {city}"


def _say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def _chat(job: dict[str, Any], chat: Any) -> Any:
    if job.get("tools"):
        chat.with_tool(Weather)
    if job.get("keep_partial"):
        chat.with_partial_output(True)
    return chat


def _wait_for_start(job: dict[str, Any]) -> None:
    ready = job.get("ready_file")
    _say(ready=True)
    if ready:
        deadline = time.monotonic() + 60
        while not os.path.exists(ready) and time.monotonic() < deadline:
            time.sleep(0.005)


def run_sync(job: dict[str, Any], models: dict[str, Any]) -> None:
    engine = create_engine(job["db_url"])
    try:
        with Session(engine) as session:
            chat = _chat(job, session.get(models["Chat"], job["chat_id"]))
            _wait_for_start(job)
            for index in range(job["asks"]):
                question = f"{job['label']} question {index}"
                on_chunk = (lambda chunk: None) if job.get("stream") else None
                try:
                    reply = chat.ask(question, on_chunk=on_chunk)
                    _say(ok=reply.text)
                except sa_llm.SaLLMError as exc:
                    _say(error=type(exc).__name__, message=str(exc))
    finally:
        engine.dispose()


async def run_async(job: dict[str, Any], models: dict[str, Any]) -> None:
    engine = create_async_engine(job["async_db_url"])
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            chat = _chat(job, await session.get(models["Chat"], job["chat_id"]))
            _wait_for_start(job)
            for index in range(job["asks"]):
                question = f"{job['label']} question {index}"
                on_chunk = (lambda chunk: None) if job.get("stream") else None
                try:
                    reply = await chat.aask(question, on_chunk=on_chunk)
                    _say(ok=reply.text)
                except sa_llm.SaLLMError as exc:
                    _say(error=type(exc).__name__, message=str(exc))
    finally:
        await engine.dispose()


def main() -> None:
    job = json.loads(sys.argv[1])
    configure_worker(job)
    models = default_models()
    if job.get("mode") == "async":
        asyncio.run(run_async(job, models))
    else:
        run_sync(job, models)


if __name__ == "__main__":
    main()
