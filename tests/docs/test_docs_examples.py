"""Every Python example of README.md and docs/ runs: one test per page, the page's blocks in
order in one namespace (a page is a story), against the scripted fake model and a throwaway
SQLite database in the test's directory. Markers in the Markdown steer the run (see
docs_pages.py and docs/testing.md#the-documentation-examples); an example that is not run is
marked exempt, with its reason.

What the run stands on:

* **the fake model answers every provider.** For the page, each built-in provider name
  (``openai``, ``anthropic``, ``bedrock``, ...) is served by a subclass of
  :class:`sa_llm.testing.FakeProvider` with the real provider's name and model resolution, so
  examples keep their real model ids (``"gpt-4.1-nano"``) and what runs is sa_llm's own
  registry lookup, turn, tool loop, streaming and rows. What a provider's wire format looks
  like is the recorded corpus's business (tests/providers), not the docs'. The page's fake,
  ``docs_fake``, echoes unscripted questions; hidden setup scripts other replies.
* **no real HTTP.** Besides the suite's socket ban (tests/conftest.py), httpx's own transports
  refuse any host that is not loopback, with a message naming the page's request.
* **a fresh start per page**: the working directory is the test's ``tmp_path`` (``app.db``
  lands there), the configuration is reset before and after, modules a page defines are
  dropped, and engines it left open are disposed.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import gc
import importlib
import inspect
import linecache
import os
import re
import sys
import traceback
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from docs_pages import Page, Step, read_page, read_pages

import sa_llm
from docs_summary import DOCS_PROPERTY
from sa_llm import providers
from sa_llm.providers import _BUILTIN_MODULES, provider_class, register_provider
from sa_llm.testing import FakeLLM, FakeProvider, fake_llm

PAGES = read_pages()

REAL_HTTP = "a documentation example made a real HTTP request"


# -- every provider answered by the fake model ----------------------------------------------------


@contextlib.contextmanager
def providers_answered_by_the_fake() -> Iterator[None]:
    """Serve every built-in provider name with the fake model for the duration."""
    names = [name for name in _BUILTIN_MODULES if name != "fake"]
    real = {name: provider_class(name) for name in names}  # imports them all first
    saved = dict(providers._registry)
    try:
        for name, cls in real.items():
            variant = type(
                f"DocsFake_{name}",
                (FakeProvider,),
                {
                    "name": name,
                    "uses_registry": cls.uses_registry,
                    # How the registry resolves a model, and which files go by URL: the real
                    # provider's (both are pure functions of their arguments).
                    "preferred_model": cls.__dict__.get("preferred_model")
                    or FakeProvider.preferred_model,
                    "accepts_url": cls.accepts_url,
                },
            )
            register_provider(variant, name)
        yield
    finally:
        providers._registry.clear()
        providers._registry.update(saved)


# -- no real HTTP ---------------------------------------------------------------------------------


def _is_local(url: httpx.URL) -> bool:
    return url.host in {"127.0.0.1", "localhost", "::1"} or url.host.startswith("127.")


@contextlib.contextmanager
def no_real_http(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """httpx's transports refuse every host but loopback (the fake's own transport has none)."""
    sync_send = httpx.HTTPTransport.handle_request
    async_send = httpx.AsyncHTTPTransport.handle_async_request

    def handle_request(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        if not _is_local(request.url):
            raise AssertionError(f"{REAL_HTTP}: {request.method} {request.url}")
        return sync_send(self, request)

    async def handle_async_request(
        self: httpx.AsyncHTTPTransport, request: httpx.Request
    ) -> httpx.Response:
        if not _is_local(request.url):
            raise AssertionError(f"{REAL_HTTP}: {request.method} {request.url}")
        return await async_send(self, request)

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", handle_request)
    monkeypatch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", handle_async_request)
    yield


# -- signatures ------------------------------------------------------------------------------------


def _signature_defs(code: str) -> list[tuple[str, str]]:
    """``(dotted name, "def _(...): ...")`` for each ``name(...)`` of a signature block."""
    found: list[tuple[str, str]] = []
    index = 0
    while True:
        match = re.compile(r"^([A-Za-z_][\w.]*)\(", re.MULTILINE).search(code, index)
        if match is None:
            return found
        depth, end = 0, match.end() - 1
        for end in range(match.end() - 1, len(code)):
            depth += {"(": 1, ")": -1}.get(code[end], 0)
            if depth == 0:
                break
        found.append((match[1], "def _" + code[match.end() - 1 : end + 1] + ": ..."))
        index = end + 1


def check_signatures(code: str, namespace: dict[str, Any]) -> None:
    """Each signature of the block matches the callable it names (see docs_pages.py)."""
    defs = _signature_defs(code)
    assert defs, "a signature block without a signature"
    for name, source in defs:
        head, *rest = name.split(".")
        target: Any = namespace[head] if head in namespace else importlib.import_module(head)
        for part in rest:
            target = getattr(target, part)
        real = inspect.signature(target)
        shown = ast.parse(source).body[0].args  # type: ignore[attr-defined]
        documented: list[tuple[str, inspect._ParameterKind, Any]] = []
        positional = shown.posonlyargs + shown.args
        defaults = [None] * (len(positional) - len(shown.defaults)) + shown.defaults
        for arg, default in zip(positional, defaults, strict=True):
            documented.append((arg.arg, inspect.Parameter.POSITIONAL_OR_KEYWORD, default))
        for arg, default in zip(shown.kwonlyargs, shown.kw_defaults, strict=True):
            documented.append((arg.arg, inspect.Parameter.KEYWORD_ONLY, default))
        params = list(real.parameters.values())
        takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
        named = [p for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        by_name = {p.name: p for p in named}
        for arg_name, kind, default in documented:
            where = f"{name}: parameter {arg_name!r}"
            if arg_name not in by_name:
                assert takes_kwargs and kind is inspect.Parameter.KEYWORD_ONLY, (
                    f"{where} does not exist (the real signature is {name}{real})"
                )
                continue
            param = by_name[arg_name]
            assert param.kind is kind, (
                f"{where} is {param.kind.description}, not {kind.description}"
            )
            if default is None:
                assert param.default is inspect.Parameter.empty, f"{where} has a default"
            else:
                assert param.default == ast.literal_eval(default), (
                    f"{where}: default {param.default!r}, documented {ast.unparse(default)}"
                )
        missing = [p.name for p in named if p.name not in {d[0] for d in documented}]
        assert not missing, f"{name}: the page leaves out {missing} (real: {name}{real})"


# -- running a page -------------------------------------------------------------------------------


class PageRun:
    """The story of one page: its namespace, event loop and the modules it defined."""

    def __init__(self, page: Page, fake: FakeLLM, directory: Path) -> None:
        self.page = page
        self.directory = str(directory)
        self.fake = fake
        self.namespace = self.fresh_namespace()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.modules: list[str] = []
        self.namespaces: list[dict[str, Any]] = [self.namespace]
        self.known_modules = set(sys.modules)

    def fresh_namespace(self) -> dict[str, Any]:
        return {"__name__": "__docs_example__", "docs_fake": self.fake}

    def compile(self, step: Step) -> types.CodeType:
        # Pad so that line numbers in tracebacks are the page's own.
        source = "\n" * (step.line - 1) + step.code + "\n"
        filename = str(self.page.path)
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        code: types.CodeType = compile(source, filename, "exec", flags=flags, dont_inherit=True)
        return code

    def execute(self, code: types.CodeType, namespace: dict[str, Any]) -> None:
        if code.co_flags & inspect.CO_COROUTINE:
            if self.loop is None:
                self.loop = asyncio.new_event_loop()
            self.loop.run_until_complete(eval(code, namespace))
        else:
            exec(code, namespace)

    def run(self, step: Step) -> None:
        if step.new_namespace:
            self.namespace = self.fresh_namespace()
            self.namespaces.append(self.namespace)
        if step.signature:
            check_signatures(step.code, self.namespace)
            return
        code = self.compile(step)
        namespace = self.namespace
        if step.module is not None:
            module = types.ModuleType(step.module)
            module.__file__ = f"{step.module.replace('.', '/')}.py"
            sys.modules[step.module] = module
            self.modules.append(step.module)
            namespace = module.__dict__
            self.namespaces.append(namespace)
        if step.raises is None:
            self.execute(code, namespace)
            return
        try:
            self.execute(code, namespace)
        except Exception as error:
            names = {cls.__name__ for cls in type(error).__mro__}
            names |= {f"{cls.__module__}.{cls.__name__}" for cls in type(error).__mro__}
            if step.raises not in names:
                raise AssertionError(
                    f"expected {step.raises}, got {type(error).__name__}: {error}"
                ) from error
        else:
            raise AssertionError(f"the example should raise {step.raises} and did not")

    def close(self) -> None:
        """Dispose what the page left open (sessions, engines: pools of sqlite connections),
        drop the modules it made (``module`` markers and docs_setup.module: those without a
        spec; files it wrote, such as the models.py of ``sa-llm install``),
        close its event loop."""
        from sqlalchemy import Engine
        from sqlalchemy.ext.asyncio import AsyncEngine
        from sqlalchemy.orm import Session

        values = [v for ns in self.namespaces for v in ns.values()]
        for name in set(sys.modules) - self.known_modules:
            module = sys.modules[name]
            file = str(getattr(module, "__file__", None) or "")
            if getattr(module, "__spec__", None) is None or file.startswith(self.directory):
                values.extend(vars(module).values())
                self.modules.append(name)
        for value in values:
            if isinstance(value, Session):
                bind = value.get_bind()
                value.close()
                values.append(bind)
        for value in values:
            if isinstance(value, AsyncEngine) and self.loop is not None:
                with contextlib.suppress(Exception):
                    self.loop.run_until_complete(value.dispose())
        for value in values:
            if isinstance(value, Engine):
                value.dispose()
        for name in self.modules:
            sys.modules.pop(name, None)
        self.namespaces.clear()
        self.namespace = {}
        if self.loop is not None:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()
            asyncio.set_event_loop(None)
        gc.collect()


def failure(page: Page, step: Step, error: BaseException) -> str:
    """The error as the reader of the page needs it: where in the page, and the frames there."""
    kind = "hidden setup" if step.kind == "setup" else "example"
    lines = traceback.format_exception(type(error), error, error.__traceback__)
    frames = [line for line in lines if "test_docs_examples.py" not in line]
    return f"{page.name}:{step.line}: the {kind} failed\n" + "".join(frames)


def run_page(
    page: Page, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, progress: list[int]
) -> None:
    """Run the page's story, counting the examples that ran in ``progress[0]``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for variable in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(variable, raising=False)
    sa_llm.reset_config()
    environment = dict(os.environ)
    with (
        no_real_http(monkeypatch),
        providers_answered_by_the_fake(),
        fake_llm(echo=True) as fake,
    ):
        story = PageRun(page, fake, tmp_path)
        try:
            for step in page.steps:
                if not step.runs:
                    continue
                try:
                    story.run(step)
                except Exception as error:
                    pytest.fail(failure(page, step, error), pytrace=False)
                progress[0] += step.kind == "example"
        finally:
            story.close()
            sa_llm.reset_config()
            os.environ.clear()
            os.environ.update(environment)


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_the_page_s_examples_run(
    page: Page,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    record_property: Any,
) -> None:
    progress = [0]
    try:
        assert not page.errors, "\n".join(page.errors)
        run_page(page, monkeypatch, tmp_path, progress)
    finally:
        record_property(DOCS_PROPERTY, (progress[0], len(page.runnable), len(page.exempt)))
    assert progress[0] == len(page.runnable)


def test_every_exempt_example_says_why() -> None:
    missing = [error for page in PAGES for error in page.errors if "needs a reason" in error]
    assert not missing, "\n".join(missing)


def test_the_markers_are_read(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- docs-example: setup\nx = 1\n-->\n\n"
        "<!-- docs-example: exempt — needs a live key -->\n```python\nboom()\n```\n\n"
        '=== "Tab"\n\n    <!-- docs-example: raises ZeroDivisionError -->\n'
        "    ```python\n    x / 0\n    ```\n\n"
        "<!-- docs-example: exempt -->\n```python\npass\n```\n"
        "<!-- docs-example: mystery -->\n```python\npass\n```\n",
        encoding="utf-8",
    )
    read = read_page(page)
    assert [(s.kind, s.line, s.code) for s in read.steps][:3] == [
        ("setup", 2, "x = 1"),
        ("example", 7, "boom()"),
        ("example", 14, "x / 0"),
    ]
    assert read.steps[1].exempt == "needs a live key"
    assert read.steps[2].raises == "ZeroDivisionError"
    assert len(read.errors) == 2
    assert "needs a reason" in read.errors[0] and "mystery" in read.errors[1]
