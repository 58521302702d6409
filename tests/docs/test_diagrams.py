"""The diagrams of the docs, checked against the code so that they cannot drift.

* the schema (docs/migrations.md, an ER diagram) against the models ``sa-llm install`` writes:
  every table, column, column kind, key and foreign key, both ways;
* one turn with a tool call (docs/persistence.md) and a streamed turn (docs/streaming.md),
  sequence diagrams, against the statements a real turn issues on SQLite through the fake
  model: each diagram's ``->>DB:`` writes, grouped by its ``COMMIT`` lines (and, for the
  stream, where the chunks reach the callback), must be the turn's own, in order;
* the layers (docs/architecture.md, a flowchart) against ``LAYERS`` of tests/test_architecture.py:
  every module of src is in a box, each layer in exactly one box, the boxes stacked in layer
  order.

Each checked diagram says so in a ``%%`` comment, its first line.
"""

from __future__ import annotations

import importlib.util
import itertools
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import pytest
from click.testing import CliRunner
from docs_setup import standard_models
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Integer,
    Numeric,
    String,
    Text,
    create_engine,
    event,
)
from sqlalchemy.orm import Session

import sa_llm
from sa_llm.cli import main as sa_llm_command
from sa_llm.testing import fake_llm
from test_architecture import LAYERS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SRC = ROOT / "src" / "sa_llm"


def diagram(page: str, first_line: str) -> list[str]:
    """The lines of the mermaid block of ``page`` that ``first_line`` starts (its type line)
    and whose ``%%`` comment names this test."""
    text = (DOCS / page).read_text(encoding="utf-8")
    for block in re.findall(r"^```mermaid\n(.*?)^```", text, re.S | re.M):
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        if lines[0].startswith(first_line) and "test_diagrams.py" in lines[1]:
            return lines[2:]
    raise AssertionError(f"{page} has no checked {first_line} diagram")


# -- the schema -----------------------------------------------------------------------------------

KINDS: list[tuple[type[Any], str]] = [
    (BigInteger, "bigint"),
    (Integer, "int"),
    (Boolean, "bool"),
    (DateTime, "datetime"),
    (JSON, "json"),
    (Text, "text"),
    (String, "string"),
    (Float, "float"),
    (Numeric, "decimal"),
]


def kind_of(column_type: Any) -> str:
    return next(name for cls, name in KINDS if isinstance(column_type, cls))


def installed_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(sa_llm_command, ["install"])
    assert result.exit_code == 0, result.output
    spec = importlib.util.spec_from_file_location("installed_models", tmp_path / "models.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "installed_models", module)
    spec.loader.exec_module(module)
    return module


def test_the_er_diagram_is_the_installed_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = diagram("migrations.md", "erDiagram")
    drawn_columns: dict[str, set[tuple[str, str, str]]] = {}
    drawn_links: set[tuple[str, str, str, str]] = set()
    table = None
    for line in lines:
        link = re.fullmatch(r'(\w+) (\|\||\|o)--o\{ (\w+) : "(\w+)"', line)
        if link:
            drawn_links.add((link[1], link[3], link[4], link[2]))
        elif line.endswith("{"):
            table = line.removesuffix("{").strip()
            drawn_columns[table] = set()
        elif line == "}":
            table = None
        else:
            assert table is not None, line
            words = line.split()
            drawn_columns[table].add((words[1], words[0], words[2] if len(words) > 2 else ""))

    models = installed_models(tmp_path, monkeypatch)
    columns: dict[str, set[tuple[str, str, str]]] = {}
    links: set[tuple[str, str, str, str]] = set()
    for installed in models.Base.metadata.tables.values():
        columns[installed.name] = set()
        for column in installed.columns:
            key = "PK" if column.primary_key else "FK" if column.foreign_keys else ""
            columns[installed.name].add((column.name, kind_of(column.type), key))
            for foreign in column.foreign_keys:
                end = "|o" if column.nullable else "||"
                links.add((foreign.column.table.name, installed.name, column.name, end))
    assert sorted(drawn_columns) == sorted(columns)
    for name in columns:
        assert drawn_columns[name] == columns[name], name
    assert drawn_links == links


# -- a turn, statement by statement ---------------------------------------------------------------


def drawn_turn(page: str) -> list[str]:
    """The diagram's writes (``INSERT messages``), ``COMMIT`` and ``CHUNK`` (an ``on_chunk``
    arrow to the app), in order."""
    steps = []
    for line in diagram(page, "sequenceDiagram"):
        write = re.match(r"Turn->>DB: (INSERT|UPDATE|DELETE|COMMIT)\b ?(\w*)", line)
        if write:
            steps.append(f"{write[1]} {write[2]}".strip())
        elif re.match(r"Turn->>App: on_chunk\(", line):
            steps.append("CHUNK")
    return steps


class Weather(sa_llm.Tool):
    """Gets the weather for a city."""

    def execute(self, city: Annotated[str, "City name"]) -> str:
        return f"15°C and sunny in {city}"


def traced_turn(tmp_path: Path, script: Callable[[Any], None], **ask: Any) -> list[str]:
    """The writes, commits and chunks of one ``ask`` on a persisted chat with a usage ledger."""
    models = standard_models(usage=True)
    engine = create_engine(f"sqlite:///{tmp_path / 'turn.db'}")
    models.Base.metadata.create_all(engine)
    steps: list[str] = []

    def statement(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        verb = sql.split(None, 1)[0].upper()
        if verb in {"INSERT", "UPDATE", "DELETE"}:
            table = re.search(r"(?:INTO|UPDATE|FROM)\s+\"?(\w+)", sql)
            steps.append(f"{verb} {table[1] if table else '?'}")

    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", lambda _conn: steps.append("COMMIT"))
    try:
        with fake_llm(echo=False) as fake, Session(engine) as session:
            chat = models.Chat(model="gpt-4.1-nano", provider="fake")
            session.add(chat)
            session.commit()
            script(fake)
            steps.clear()
            chat.with_tool(Weather).ask("What's the weather in Paris?", **ask)
    finally:
        engine.dispose()
    # Transactions that wrote nothing (a read of the chat row before the turn) are not drawn.
    collapsed: list[str] = []
    for step in steps:
        if step == "COMMIT" and (not collapsed or collapsed[-1] == "COMMIT"):
            continue
        if step == "CHUNK" and collapsed and collapsed[-1] == "CHUNK":
            continue
        collapsed.append(step)
    return collapsed


def test_the_turn_diagram_is_what_a_turn_writes(tmp_path: Path) -> None:
    def script(fake: Any) -> None:
        fake.tool_call("weather", {"city": "Paris"}).reply("It is 15°C and sunny.")

    assert drawn_turn("persistence.md") == traced_turn(tmp_path, script)


def test_the_streaming_timeline_is_what_a_streamed_turn_does(tmp_path: Path) -> None:
    chunks: list[str] = []

    def script(fake: Any) -> None:
        fake.reply("Rows in their tables / wait for a query", chunks=3)

    def on_chunk(chunk: sa_llm.Chunk) -> None:
        if chunk.content:
            chunks.append(chunk.content)

    steps = traced_turn(tmp_path, script, on_chunk=on_chunk)
    # The chunks were counted apart; put them where the callback saw them.
    assert chunks, "the reply was not streamed"
    drawn = drawn_turn("streaming.md")
    assert [s for s in drawn if s != "CHUNK"] == steps
    first_commit_after_placeholder = drawn.index("COMMIT", drawn.index("INSERT messages", 2))
    assert drawn[first_commit_after_placeholder + 1] == "CHUNK"


def test_chunks_reach_the_callback_between_the_placeholder_and_the_completion(
    tmp_path: Path,
) -> None:
    """Where the streaming timeline puts the chunks: after the placeholder's commit, before
    the completion's first write (no transaction open while they arrive)."""
    models = standard_models(usage=True)
    engine = create_engine(f"sqlite:///{tmp_path / 'stream.db'}")
    models.Base.metadata.create_all(engine)
    steps: list[str] = []
    event.listen(
        engine,
        "before_cursor_execute",
        lambda _c, _cur, sql, *_: steps.append(sql.split(None, 1)[0].upper()),
    )
    event.listen(engine, "commit", lambda _conn: steps.append("COMMIT"))
    try:
        with fake_llm(echo=False) as fake, Session(engine) as session:
            chat = models.Chat(model="gpt-4.1-nano", provider="fake")
            session.add(chat)
            session.commit()
            fake.reply("Rows in their tables", chunks=3)
            steps.clear()
            chat.ask(
                "A haiku", on_chunk=lambda chunk: steps.extend(["CHUNK"] * bool(chunk.content))
            )
    finally:
        engine.dispose()
    writes = [s for s in steps if s != "SELECT"]
    first, last = writes.index("CHUNK"), len(writes) - 1 - writes[::-1].index("CHUNK")
    assert writes[first - 2 : first] == ["INSERT", "COMMIT"]  # the placeholder, committed
    assert set(writes[first : last + 1]) == {"CHUNK"}
    assert writes[last + 1] == "UPDATE"  # then the completion
    assert drawn_turn("streaming.md").count("CHUNK") == 1  # one loop in the diagram


# -- the layers -----------------------------------------------------------------------------------


def _modules() -> list[str]:
    found = []
    for path in SRC.rglob("*.py"):
        parts = ("sa_llm", *path.relative_to(SRC).with_suffix("").parts)
        found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(found)


def _layer(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best]


def drawn_layers() -> tuple[list[str], dict[str, str]]:
    """The boxes from top to bottom, and module prefix -> box for every path a box names."""
    lines = diagram("architecture.md", "flowchart")
    boxes: dict[str, str] = {}
    for line in lines:
        box = re.fullmatch(r'(\w+)\["(.*)"\]', line)
        if not box:
            continue
        files = re.sub(r"<b>.*?</b>(?:\s*\([^)]*\))?", "", box[2])
        files = re.sub(r"<[^>]+>", " ", files)
        for token in re.findall(r"[\w/*]+\.py|\w+/(?:\s*\([^)]*\))?", files):
            prefix = token.split("(")[0].strip().removesuffix("/").removesuffix(".py")
            prefix = prefix.removesuffix("/*").replace("/", ".")
            prefix = "sa_llm" if prefix == "__init__" else f"sa_llm.{prefix}"
            boxes[prefix] = box[1]
            listed = re.search(r"\(([^)]*)\)", token)
            for name in listed[1].split(",") if listed else ():
                boxes[f"{prefix}.{name.strip()}"] = box[1]
    chain = next(line for line in lines if "-->" in line)
    order = [name.strip() for name in chain.split("-->")]
    return order, boxes


def test_the_layer_diagram_is_the_enforced_layering() -> None:
    order, boxes = drawn_layers()
    assert sorted(order) == sorted(set(boxes.values())), "every box is in the chain"
    for prefix in boxes:
        exists = any(m == prefix or m.startswith(prefix + ".") for m in _modules())
        assert exists, f"the diagram names {prefix}, which is not a module of src"
    box_of: dict[str, str] = {}
    for module in _modules():
        # ``__init__.py`` stands for the package module itself, not for everything in it.
        drawn = [p for p in boxes if module == p or (p != "sa_llm" and module.startswith(p + "."))]
        assert drawn, f"{module} is in no box of the layer diagram"
        box_of[module] = boxes[max(drawn, key=len)]
    layers_of: dict[str, set[int]] = {}
    for module, box in box_of.items():
        layers_of.setdefault(box, set()).add(_layer(module))
    # Top to bottom: each box holds layers above every box below it.
    for upper, lower in itertools.pairwise(order):
        assert min(layers_of[upper]) > max(layers_of[lower]), (upper, lower, layers_of)
    # And one layer is never split over two boxes.
    seen: dict[int, str] = {}
    for box, layers in layers_of.items():
        for layer in layers:
            assert seen.setdefault(layer, box) == box, f"layer {layer} in {box} and {seen[layer]}"
