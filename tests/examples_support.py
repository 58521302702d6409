"""Loading the example apps of ``examples/`` (each a directory with ``app.py``) in tests."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from sqlalchemy import Engine, inspect

import sa_llm
from sa_llm.testing import FakeLLM

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

_loaded: dict[str, ModuleType] = {}


def load_example(name: str) -> ModuleType:
    """``examples/<name>/app.py`` as a module, imported once per test session (its models are
    declared at import, and some frameworks keep one global metadata)."""
    if name not in _loaded:
        path = EXAMPLES / name / "app.py"
        module_name = f"sa_llm_example_{name}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        _loaded[name] = module
    return _loaded[name]


def parse_sse(body: str) -> list[tuple[str, Any]]:
    """``(event, JSON data)`` of each server-sent event in ``body`` (any line ending)."""
    events = []
    text = body.replace("\r\n", "\n").replace("\r", "\n").strip()
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        events.append((fields["event"], json.loads(fields["data"])))
    return events


#: A tiny PNG for the upload tests.
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32

#: The reply the streaming tests script, and the chunks it arrives in.
GREETING = "Hello there, friend."
GREETING_CHUNKS = ["Hello", " there,", " friend."]


def script_greeting(fake: FakeLLM) -> None:
    """Script the greeting the streaming tests expect, in its chunks."""
    fake.reply(GREETING, chunks=GREETING_CHUNKS)


def assert_greeting_streamed(body: str, stored: list[Any]) -> None:
    """The SSE ``body`` carried the scripted greeting chunk by chunk, then ``done``; the last
    ``stored`` message (as the app shows it) is the whole reply."""
    events = parse_sse(body)
    assert [e for e in events if e[0] == "delta"] == [
        ("delta", {"text": chunk}) for chunk in GREETING_CHUNKS
    ]
    assert events[-1] == ("done", {})
    assert stored[-1] == {"role": "assistant", "content": GREETING, "files": []}


def foreign_keys(engine: Engine, tables: list[str]) -> set[tuple[str, str, str]]:
    """``(table, column, referred table)`` of every foreign key of ``tables``."""
    return {
        (table, fk["constrained_columns"][0], fk["referred_table"])
        for table in tables
        for fk in inspect(engine).get_foreign_keys(table)
    }


@contextmanager
def file_storage(tmp_path: Path) -> Iterator[None]:
    """sa_llm configured to store uploaded files under ``tmp_path`` (reset after)."""
    sa_llm.configure(attachment_storage=str(tmp_path / "files"))
    try:
        yield
    finally:
        sa_llm.reset_config()
