"""nox sessions: ``nox -s tests``, ``nox -s tests_httpx2``, ``nox -s typing``, ``nox -s lint``,
``nox -s docs``, ...

``python3 scripts/test.py`` (see the README) is the primary way to run the tests; these sessions
add a SQLAlchemy version matrix and the other checks. The ``tests`` session runs against SQLite
always and against PostgreSQL when ``SA_LLM_TEST_POSTGRES_URL`` is set (``scripts/_postgres.py
start`` prints one); without it the PostgreSQL tests are skipped.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "tests_httpx2", "typing", "lint"]

ROOT = Path(__file__).resolve().parent
POSTGRES_URL_ENV = "SA_LLM_TEST_POSTGRES_URL"

# SQLAlchemy series -> pip requirement (+ extra pip flags; add "--pre" for a series that has no
# final release on PyPI yet). Both 2.0 and 2.1 have final releases.
SQLALCHEMY_SERIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "2.0": ("sqlalchemy[asyncio]~=2.0.0", ()),
    "2.1": ("sqlalchemy[asyncio]~=2.1.0", ()),
}

# Scripts that bootstrap their own .venv must use the session's virtualenv instead.
NO_BOOTSTRAP = {"SA_LLM_NO_BOOTSTRAP": "1"}


@nox.session
@nox.parametrize("sqlalchemy", list(SQLALCHEMY_SERIES))
def tests(session: nox.Session, sqlalchemy: str) -> None:
    """pytest on SQLite (always) and PostgreSQL (when SA_LLM_TEST_POSTGRES_URL is set)."""
    requirement, flags = SQLALCHEMY_SERIES[sqlalchemy]
    session.install("-e", ".[test]")
    session.install(*flags, requirement)
    session.run("python", "-c", "import sqlalchemy; print('SQLAlchemy', sqlalchemy.__version__)")
    if not os.environ.get(POSTGRES_URL_ENV):
        session.warn(
            f"{POSTGRES_URL_ENV} is not set: PostgreSQL tests will be skipped "
            '(eval "$(python3 scripts/_postgres.py start)" starts a throwaway server)'
        )
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def tests_httpx2(session: nox.Session) -> None:
    """The whole suite again with httpx2 as the library of the clients sa_llm makes (the shared
    ones, the fake model's, every Replay's): SA_LLM_HTTP_LIBRARY=httpx2. httpx2 needs Python
    3.11+."""
    if sys.version_info < (3, 11):
        session.skip("httpx2 needs Python 3.11+")
    session.install("-e", ".[test,httpx2]")
    session.run("python", "-c", "import httpx2; print('httpx2', httpx2.__version__)")
    session.run("python", "-m", "pytest", *session.posargs, env={"SA_LLM_HTTP_LIBRARY": "httpx2"})


@nox.session
def typing(session: nox.Session) -> None:
    """mypy --strict over src and tests, each recipe app and the benchmarks."""
    session.install("-e", ".[test,typing]")
    session.run("mypy", "--strict", "src", "tests", *session.posargs)
    # Each recipe is its own program (every one has an app.py): checked one by one.
    for app in sorted(ROOT.glob("examples/*/app.py")):
        session.run("mypy", "--strict", str(app.relative_to(ROOT)))
    # The benchmarks too, with the peers they import (the bench dependency group); a few of
    # them reuse the browser tests' helpers in tests/web.
    pyproject = nox.project.load_toml(ROOT / "pyproject.toml")
    session.install(*nox.project.dependency_groups(pyproject, "bench"))
    session.run("mypy", "--strict", "bench", env={"MYPYPATH": "tests/web"})


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def docs(session: nox.Session) -> None:
    """mkdocs build --strict."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """The README's demo, in a clean virtualenv with only the package installed."""
    session.install("-e", ".")
    session.run("python", "scripts/demo.py", *session.posargs, env=NO_BOOTSTRAP)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks (bench/run.py): writes bench/results/latest.md (and a copy named after the
    run's start time), every benchmark's raw samples (bench/results/<name>.json), the generated
    sections of docs/benchmarks.md and every workload's plot (docs/img/bench-<workload>.png,
    bench/plot.py). The peers and matplotlib come from the ``bench`` dependency group; the
    PostgreSQL workloads (W6 and the transports) run when SA_LLM_TEST_POSTGRES_URL is set.
    Arguments go to bench/run.py (``-k peers``, ``--journal wal``, ...)."""
    if not (ROOT / "bench" / "run.py").exists():
        session.skip("bench/run.py does not exist yet")
    session.install("-e", ".[test]")
    pyproject = nox.project.load_toml(ROOT / "pyproject.toml")
    session.install(*nox.project.dependency_groups(pyproject, "bench"))
    if not os.environ.get(POSTGRES_URL_ENV):
        session.warn(
            f"{POSTGRES_URL_ENV} is not set: the concurrency workloads (W6, transports) will "
            "be skipped "
            '(eval "$(python3 scripts/_postgres.py start)" starts a throwaway server)'
        )
    session.run("python", "bench/run.py", *session.posargs, env=NO_BOOTSTRAP)
