"""The layering of docs/architecture.md, enforced: no module-level import cycle, and no module
importing (at module level) from a layer above its own. Imports under ``TYPE_CHECKING`` are
type-only and allowed anywhere; imports inside functions are how a lower layer reaches an
optional or heavier module lazily, and are left to review."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: Module (or package prefix) -> layer; a module may import its own layer and those below.
#: Longest prefix wins. Keep in step with the diagram in docs/architecture.md.
LAYERS: dict[str, int] = {
    # 0: foundations, no SQLAlchemy, no HTTP
    "sa_llm.errors": 0,
    "sa_llm.types": 0,
    "sa_llm._flow": 0,
    "sa_llm._parallel": 0,
    "sa_llm._optional": 0,
    "sa_llm._redact": 0,
    "sa_llm._http": 0,
    "sa_llm.config": 0,
    "sa_llm._context": 0,
    "sa_llm.registry": 0,
    "sa_llm.content": 0,
    "sa_llm.storage": 0,
    "sa_llm._attempts": 0,
    "sa_llm.cost": 0,
    "sa_llm.telemetry": 0,
    # 1: sans-IO codecs
    "sa_llm.providers": 1,
    "sa_llm.schema": 1,
    # 2: the HTTP I/O modules
    "sa_llm.providers._transport": 2,
    "sa_llm.providers.aiohttp_transport": 2,
    # 3: the in-memory conversation engine
    "sa_llm.streaming": 3,
    "sa_llm.tools": 3,
    "sa_llm._busy": 3,
    "sa_llm.chat": 3,
    "sa_llm._instructions": 3,
    "sa_llm.approval": 3,
    "sa_llm.fallbacks": 3,
    "sa_llm.providers.gemini_cache": 3,
    # 4: the schema of the user's classes and the SQL below the strategies
    "sa_llm._mapping": 4,
    "sa_llm._db_url": 4,
    "sa_llm.registry_table": 4,
    "sa_llm._persisted": 4,
    # 5: the strategies
    "sa_llm.persistence": 5,
    # 6: the persisted turn
    "sa_llm._persisted.chat": 6,
    # 7: the record API, then the ORM surface (and the event log's readers)
    "sa_llm.events": 7,
    "sa_llm._records": 7,
    "sa_llm.declarative": 8,
    "sa_llm.mixins": 8,
    # 9: tooling above the library
    "sa_llm.testing": 9,
    "sa_llm.web": 9,  # the chat UI's runtime: over the record API and the event log
    "sa_llm._install": 9,
    "sa_llm.cli": 10,
    "sa_llm": 10,  # the package namespace re-exports from everywhere
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _layer(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best]


def _imports(path: Path) -> set[str]:
    """sa_llm modules imported at module level (not under TYPE_CHECKING, not in functions)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("sa_llm"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sa_llm"):
            assert node.module is not None
            submodules = {f"{node.module}.{a.name}" for a in node.names} & MODULES.keys()
            # ``from sa_llm import errors`` imports the module, not the package namespace.
            found.update(submodules or {node.module})
    return {name for name in found if name in MODULES}


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def test_every_module_has_a_layer() -> None:
    for name in MODULES:
        assert any(name == p or name.startswith(p + ".") for p in LAYERS), name


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_from_a_layer_above(module: str) -> None:
    above = {dep for dep in GRAPH[module] if _layer(dep) > _layer(module)}
    assert not above, f"{module} (layer {_layer(module)}) imports {sorted(above)}"


def test_no_module_level_import_cycles() -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for dep in sorted(GRAPH[name]):
            if dep == "sa_llm" or dep.endswith(".__init__"):
                continue
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep) :], dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        path.pop()
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state and name != "sa_llm":
            visit(name)
