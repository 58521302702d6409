"""Loading the example apps of ``examples/`` (each a directory with ``app.py``) in tests."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

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
