"""Run the test suite: ``python3 scripts/test.py [pytest args]``.

Works on a machine with only ``python3`` (3.10+): creates ``.venv`` and installs the project with
its test, typing and lint extras on first use (see ``_bootstrap.py``).

Tests run against SQLite and PostgreSQL. PostgreSQL comes from ``SA_LLM_TEST_POSTGRES_URL`` when
that is set (CI sets it); otherwise, when PostgreSQL's binaries are installed (``initdb`` on PATH
or in ``/usr/lib/postgresql/*/bin``), a throwaway server is started for the run and stopped after
it (see ``_postgres.py``). Without either, the PostgreSQL tests are skipped with a warning.
Set ``SA_LLM_TEST_NO_POSTGRES=1`` to not start a server.

The exit code is pytest's (so 5 when no test was collected).
"""

from __future__ import annotations

import sys

from _bootstrap import ROOT, bootstrap

bootstrap("test,typing,lint")

import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from contextlib import ExitStack  # noqa: E402
from pathlib import Path  # noqa: E402
from types import FrameType  # noqa: E402

URL_ENV = "SA_LLM_TEST_POSTGRES_URL"


def _say(message: str) -> None:
    print(f"[test] {message}", file=sys.stderr, flush=True)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _rebase_args(args: list[str], cwd: Path) -> list[str]:
    """Make path arguments given relative to the caller's directory work from the repo root."""
    if cwd == ROOT:
        return args
    rebased = []
    for arg in args:
        path, sep, rest = arg.partition("::")
        if not arg.startswith("-") and path and (cwd / path).exists():
            arg = str((cwd / path).resolve()) + sep + rest
        rebased.append(arg)
    return rebased


def _start_postgres(stack: ExitStack, env: dict[str, str]) -> None:
    if env.get(URL_ENV):
        _say(f"PostgreSQL: using {URL_ENV}={env[URL_ENV]}")
        return
    if env.get("SA_LLM_TEST_NO_POSTGRES") == "1":
        _say("PostgreSQL: SA_LLM_TEST_NO_POSTGRES=1, PostgreSQL tests will be skipped")
        return
    try:
        import _postgres
    except ImportError as error:  # e.g. no `pwd` module on Windows
        _say(f"WARNING: cannot manage PostgreSQL here ({error}); PostgreSQL tests will be skipped")
        return
    bindir = _postgres.find_bindir()
    if bindir is None:
        _say(
            "WARNING: PostgreSQL is not installed (no initdb on PATH or in "
            "/usr/lib/postgresql/*/bin) and SA_LLM_TEST_POSTGRES_URL is not set: "
            "the PostgreSQL tests will be SKIPPED. Install PostgreSQL (e.g. "
            "`apt-get install postgresql`) or point SA_LLM_TEST_POSTGRES_URL at a server."
        )
        return
    started = time.monotonic()
    try:
        server = _postgres.start_server(bindir)
    except _postgres.PostgresError as error:
        _say(f"ERROR: could not start a throwaway PostgreSQL server: {error}")
        raise SystemExit(1) from None
    stack.callback(_say, "PostgreSQL: throwaway server stopped")
    stack.callback(server.stop)
    env[URL_ENV] = server.url
    _say(
        f"PostgreSQL: started a throwaway server from {bindir} on 127.0.0.1:{server.port} "
        f"in {time.monotonic() - started:.1f}s ({URL_ENV}={server.url})"
    )


def _workers(args: list[str]) -> list[str]:
    """``-n N --dist loadfile`` (pytest-xdist, one worker per core up to four) unless the caller
    chose (``-n``/``--numprocesses``, ``-p no:xdist``) or names single tests (``path::test``).

    The suite is made of independent tests (each its own database or schema, loopback ports
    chosen by the OS), so two cores finish it in about half the time. A module's tests stay on
    one worker (``loadfile``): module-scoped fixtures (a browser, a server) start once."""
    chosen = any(
        arg in ("-n", "--numprocesses", "no:xdist") or arg.startswith(("-n", "--numprocesses="))
        for arg in args
    )
    single = any("::" in arg for arg in args)
    cores = os.cpu_count() or 1
    if chosen or single or cores < 2:
        return []
    try:
        import xdist  # noqa: F401
    except ImportError:
        return []
    return ["-n", str(min(cores, 4)), "--dist", "loadfile"]


def main(args: list[str]) -> int:
    signal.signal(signal.SIGTERM, _on_sigterm)
    env = dict(os.environ)
    with ExitStack() as stack:
        _start_postgres(stack, env)
        args = _rebase_args(args, Path.cwd().resolve())
        command = [sys.executable, "-m", "pytest", *_workers(args), *args]
        _say("$ " + " ".join(command))
        started = time.monotonic()
        returncode = subprocess.call(command, cwd=ROOT, env=env)
        _say(f"pytest exited with {returncode} after {time.monotonic() - started:.1f}s")
        if returncode == 5:
            _say("ERROR: pytest collected no tests (exit code 5)")
    return returncode


if __name__ == "__main__":
    try:
        raise SystemExit(main(sys.argv[1:]))
    except KeyboardInterrupt:  # the throwaway server was stopped on the way out
        _say("interrupted")
        raise SystemExit(130) from None
