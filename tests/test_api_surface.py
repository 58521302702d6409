"""The public surface: ``__all__`` lists are sorted and complete, and every blocking method has
an async twin with the same parameters (the parity that one flow with two drivers promises)."""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType

import pytest

import sa_llm
from sa_llm._records.chat import ChatMethods
from sa_llm.chat import Chat

PUBLIC_MODULES = [
    "sa_llm",
    "sa_llm.approval",
    "sa_llm.chat",
    "sa_llm.config",
    "sa_llm.content",
    "sa_llm.cost",
    "sa_llm.declarative",
    "sa_llm.errors",
    "sa_llm.events",
    "sa_llm.fallbacks",
    "sa_llm.mixins",
    "sa_llm.persistence",
    "sa_llm.providers",
    "sa_llm.providers.aiohttp_transport",
    "sa_llm.providers.base",
    "sa_llm.providers.chat_completions",
    "sa_llm.providers.responses",
    "sa_llm.providers.sse",
    "sa_llm.registry",
    "sa_llm.registry_table",
    "sa_llm.schema",
    "sa_llm.storage",
    "sa_llm.streaming",
    "sa_llm.telemetry",
    "sa_llm.testing",
    "sa_llm.testing.fake",
    "sa_llm.testing.faults",
    "sa_llm.testing.replay",
    "sa_llm.testing.server",
    "sa_llm.tools",
    "sa_llm.types",
    "sa_llm.web",
    "sa_llm.web.csrf",
    "sa_llm.web.db",
    "sa_llm.web.markdown",
    "sa_llm.web.queue",
    "sa_llm.web.runner",
    "sa_llm.web.sse",
    "sa_llm.web.stream",
    "sa_llm.web.views",
]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_sorted_and_resolvable(name: str) -> None:
    module: ModuleType = importlib.import_module(name)
    exported = list(module.__all__)

    def isort_key(symbol: str) -> tuple[int, str]:
        kind = 0 if symbol.isupper() else 1 if symbol[:1].isupper() else 2
        return kind, symbol

    assert exported in (sorted(exported), sorted(exported, key=isort_key)), name
    for symbol in exported:
        assert hasattr(module, symbol), f"{name}.__all__ names missing {symbol}"


def test_top_level_exports_every_error() -> None:
    errors = importlib.import_module("sa_llm.errors")
    assert set(errors.__all__) <= set(sa_llm.__all__)


def _twins(cls: type) -> list[tuple[str, str]]:
    pairs = []
    for name, member in vars(cls).items():
        if name.startswith("_") or not callable(member):
            continue
        twin = "a" + name
        if hasattr(cls, twin):
            pairs.append((name, twin))
    return pairs


@pytest.mark.parametrize("cls", [Chat, ChatMethods])
def test_async_twins_take_the_same_parameters(cls: type) -> None:
    pairs = _twins(cls)
    assert len(pairs) >= 3
    for name, twin in pairs:
        sync_params = inspect.signature(getattr(cls, name)).parameters
        async_params = inspect.signature(getattr(cls, twin)).parameters
        assert list(sync_params) == list(async_params), f"{cls.__name__}.{name} vs {twin}"
        fn = getattr(cls, twin)
        assert inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn) or name == "stream"


@pytest.mark.parametrize(
    ("cls", "names"),
    [
        (Chat, ["ask", "complete", "stream"]),
        (
            ChatMethods,
            [
                "ask",
                "complete",
                "stream",
                "with_instructions",
                "with_model",
                "create_user_message",
                "add_message",
                "to_llm",
            ],
        ),
    ],
)
def test_blocking_methods_have_async_twins(cls: type, names: list[str]) -> None:
    for name in names:
        assert hasattr(cls, "a" + name), f"{cls.__name__}.{name} has no async twin"


def test_the_docs_import_no_private_module() -> None:
    """What the docs tell users to import is public: no ``from sa_llm.x._private import`` (or
    ``import sa_llm._private``) in docs/ or README. The architecture pages may still *name*
    private modules."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    private = re.compile(
        r"(?:from|import)\s+sa_llm(?:\.[a-z0-9_]+)*\._[a-z][a-z0-9_]*"
        r"|from\s+sa_llm(?:\.[a-z0-9_]+)*\s+import\s+_[a-z]"
    )
    pages = [root / "README.md", *sorted((root / "docs").rglob("*.md"))]
    found = {
        f"{page.relative_to(root)}: {match.group(0)}"
        for page in pages
        for match in private.finditer(page.read_text(encoding="utf-8"))
    }
    assert not found, sorted(found)
