"""The Python examples of README.md and docs/**/*.md, read from the Markdown with their markers.

Every ```` ```python ```` fence of a page is an example (indented ones too: tabs, admonitions).
A page is a story: its examples run in order in one namespace. HTML comments, invisible in the
rendered site, steer the run; each stands on its own line(s) just before the fence it is about
(blank lines and other markers may come between):

``<!-- docs-example: exempt — REASON -->``
    The block is not run. The reason is mandatory (``—``, ``-`` or ``:`` before it) and should
    say why it cannot run offline (a live provider, a server that blocks, a file another test
    runs).
``<!-- docs-example: new-namespace -->``
    The block starts from a fresh namespace (alternatives of one example, a second schema).
``<!-- docs-example: raises NAME -->``
    The block must raise the exception class ``NAME`` (or a subclass), as the page says it does.
``<!-- docs-example: signature -->``
    The block lists call signatures (``sa_llm.chat(model=None, *, provider=None)``): each is
    checked against the callable it names, resolved in the page's namespace (parameter names,
    order, kinds and defaults; a ``**kwargs`` of the callable accepts further keyword-only ones).
``<!-- docs-example: module NAME -->``
    The block is the file ``NAME.py`` the page shows (``# models.py``): it runs as the module
    ``NAME``, importable by the following blocks (``from models import Chat``), and leaves the
    page's namespace alone.

Markers stand before the step they are about; ``new-namespace`` may also stand before a setup
block, so that the setup fills the fresh namespace.

One more marker is a block of its own, hidden from readers::

    <!-- docs-example: setup
    chat = Chat(model="gpt-4.1-nano"); session.add(chat); session.commit()
    -->

Its code runs in the page's namespace at that point of the story, before the next example:
the names a fragment takes for granted (``chat``, ``session``, ``upload``), scripted replies of
the fake model (``docs_fake.reply(...)``). It is not an example and is not counted.

This module only reads pages; tests/docs/test_docs_examples.py runs them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

#: Pages that are generated, not written: their code is not examples of ours.
GENERATED = ("reference/",)

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```python\s*$")
_MARKER = re.compile(r"^[ \t]*<!--\s*docs-example:\s*(?P<body>.*?)\s*-->\s*$")
_SETUP_OPEN = re.compile(r"^(?P<indent>[ \t]*)<!--\s*docs-example:\s*setup\s*$")
_EXEMPT = re.compile(r"^exempt(?:\s*[—:-]\s*(?P<reason>.*))?$", re.DOTALL)
_KINDS = ("exempt", "new-namespace", "raises", "module", "signature")


class MarkerError(ValueError):
    """A marker the runner cannot obey (unknown, without its argument, or misplaced)."""


@dataclass
class Step:
    """One piece of a page's story: an example (``kind="example"``) or hidden setup code."""

    kind: str  # "example" or "setup"
    line: int  # 1-based line of the first code line in the page
    code: str
    exempt: str | None = None  # the reason, when the example is exempt
    new_namespace: bool = False
    raises: str | None = None
    module: str | None = None
    signature: bool = False

    @property
    def runs(self) -> bool:
        return self.kind == "setup" or self.exempt is None


@dataclass
class Page:
    path: Path
    steps: list[Step] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # marker problems, reported by a test

    @property
    def name(self) -> str:
        try:
            return self.path.relative_to(ROOT).as_posix()
        except ValueError:
            return self.path.name

    @property
    def examples(self) -> list[Step]:
        return [s for s in self.steps if s.kind == "example"]

    @property
    def exempt(self) -> list[Step]:
        return [s for s in self.examples if s.exempt is not None]

    @property
    def runnable(self) -> list[Step]:
        return [s for s in self.examples if s.exempt is None]


def page_paths() -> list[Path]:
    """README.md and every page of docs/ but the generated ones, in a stable order."""
    pages = [ROOT / "README.md"]
    for path in sorted(DOCS.rglob("*.md")):
        relative = path.relative_to(DOCS).as_posix()
        if not relative.startswith(GENERATED):
            pages.append(path)
    return pages


def _dedent(lines: list[str], indent: str) -> list[str]:
    return [line[len(indent) :] if line.startswith(indent) else line.lstrip() for line in lines]


def _apply(step: Step, marker: str, page: Page, line: int) -> None:
    exempt = _EXEMPT.match(marker)
    if exempt:
        reason = (exempt["reason"] or "").strip()
        if not reason:
            page.errors.append(f"{page.name}:{line}: an exempt marker needs a reason")
            reason = "(no reason given)"
        step.exempt = reason
        return
    kind, _, argument = marker.partition(" ")
    argument = argument.strip()
    if kind == "new-namespace" and not argument:
        step.new_namespace = True
    elif kind == "signature" and not argument:
        step.signature = True
    elif kind == "raises" and re.fullmatch(r"[A-Za-z_][\w.]*", argument):
        step.raises = argument
    elif kind == "module" and re.fullmatch(r"[A-Za-z_][\w.]*", argument):
        step.module = argument
    else:
        page.errors.append(
            f"{page.name}:{line}: unknown or malformed marker {marker!r} (known: {_KINDS})"
        )


def read_page(path: Path) -> Page:
    page = Page(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    pending: list[tuple[int, str]] = []  # markers waiting for their block
    index = 0
    while index < len(lines):
        line = lines[index]
        setup = _SETUP_OPEN.match(line)
        if setup:
            end = index + 1
            while end < len(lines) and lines[end].strip() != "-->":
                end += 1
            if end == len(lines):
                page.errors.append(f"{page.name}:{index + 1}: a setup marker is never closed")
                break
            code = "\n".join(_dedent(lines[index + 1 : end], setup["indent"]))
            step = Step("setup", index + 2, code)
            for at, body in pending:
                if body.strip() == "new-namespace":
                    step.new_namespace = True
                else:
                    page.errors.append(f"{page.name}:{at}: setup takes only new-namespace")
            pending = []
            page.steps.append(step)
            index = end + 1
            continue
        marker = _MARKER.match(line)
        if marker:
            pending.append((index + 1, marker["body"]))
            index += 1
            continue
        fence = _FENCE.match(line)
        if fence:
            indent = fence["indent"]
            end = index + 1
            while end < len(lines) and not re.match(rf"^{re.escape(indent)}```\s*$", lines[end]):
                end += 1
            code = "\n".join(_dedent(lines[index + 1 : end], indent))
            step = Step("example", index + 2, code)
            for at, body in pending:
                _apply(step, body, page, at)
            pending = []
            page.steps.append(step)
            index = end + 1
            continue
        if pending and line.strip():
            at = pending[0][0]
            page.errors.append(f"{page.name}:{at}: a marker must stand just before its block")
            pending = []
        index += 1
    for at, _ in pending:
        page.errors.append(f"{page.name}:{at}: a marker after the last block")
    return page


def read_pages() -> list[Page]:
    return [read_page(path) for path in page_paths()]


def count(pages: list[Page]) -> tuple[int, int]:
    """(examples, exempt examples) over ``pages``."""
    return sum(len(p.examples) for p in pages), sum(len(p.exempt) for p in pages)
