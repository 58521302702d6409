"""Make the repository's scripts work on a machine that has nothing but ``python3`` (3.10+).

Call ``bootstrap(extras)`` at the very top of a script, before importing anything that is not in
the standard library::

    from _bootstrap import bootstrap

    bootstrap("test,typing,lint")  # or bootstrap("") for the bare package

It then

1. creates ``.venv`` in the repository root with the running interpreter's ``venv`` module, if
   there is none (or if the one there cannot run);
2. installs the project into it in editable mode with the given extras
   (``pip install -e ".[extras]"``), unless a stamp file
   ``.venv/.sa_llm-<extras>-<hash of pyproject.toml>`` says that this was already done for the
   current ``pyproject.toml`` (a stamp for a superset of the extras counts too);
3. re-executes the calling script under ``.venv/bin/python`` (``os.execv``), unless it already
   runs there.

Environment variables:

* ``SA_LLM_NO_BOOTSTRAP=1`` turns ``bootstrap`` into a no-op (the caller's interpreter is used as
  it is; nox sessions set this, since they bring their own virtualenv).
* ``SA_LLM_BOOTSTRAP_FORCE=1`` reinstalls even when the stamp is current.

Only the standard library is used here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
PYPROJECT = ROOT / "pyproject.toml"
STAMP_PREFIX = ".sa_llm-"
_REEXEC_MARKER = "SA_LLM_BOOTSTRAPPED"
MIN_PYTHON = (3, 10)


def _log(message: str) -> None:
    print(f"[bootstrap] {message}", file=sys.stderr, flush=True)


def venv_python(venv: Path = VENV) -> Path:
    """Path of the interpreter inside ``venv``."""
    if os.name == "nt":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def _normalize_extras(extras: str) -> list[str]:
    names = {part.strip().lower() for part in extras.split(",")}
    return sorted(name for name in names if name)


def _pyproject_hash() -> str:
    return hashlib.sha256(PYPROJECT.read_bytes()).hexdigest()[:16]


def _stamp_name(extras: list[str], digest: str) -> str:
    label = "+".join(extras) if extras else "base"
    return f"{STAMP_PREFIX}{label}-{digest}"


def _stamp_is_current(extras: list[str], digest: str) -> bool:
    """True when some stamp for the current ``pyproject.toml`` covers all of ``extras``."""
    wanted = set(extras)
    suffix = f"-{digest}"
    for stamp in VENV.glob(f"{STAMP_PREFIX}*{suffix}"):
        label = stamp.name[len(STAMP_PREFIX) : -len(suffix)]
        have = set() if label == "base" else set(label.split("+"))
        if wanted <= have:
            return True
    return False


def _running_in_venv() -> bool:
    try:
        return Path(sys.prefix).resolve() == VENV.resolve()
    except OSError:
        return False


def _venv_works() -> bool:
    python = venv_python()
    if not python.exists():
        return False
    try:
        result = subprocess.run(
            [str(python), "-c", "import sys, venv; print(sys.version_info >= (3, 10))"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0 and result.stdout.strip() == "True"


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    """Serialize concurrent bootstraps of the same checkout (POSIX only; no-op elsewhere)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    key = hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"sa_llm-bootstrap-{key}.lock"
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _run(command: list[str]) -> None:
    _log("$ " + " ".join(command))
    result = subprocess.run(command, cwd=ROOT, check=False)
    if result.returncode != 0:
        _log(f"command failed with exit code {result.returncode}")
        raise SystemExit(result.returncode)


def _create_venv() -> None:
    _log(f"creating virtual environment {VENV} with {sys.executable}")
    try:
        import ensurepip  # noqa: F401
        import venv  # noqa: F401
    except ImportError:
        _log(
            "this Python has no working 'venv'/'ensurepip' module; on Debian/Ubuntu install it "
            "with: apt-get install python3-venv"
        )
        raise SystemExit(1) from None
    clear = ["--clear"] if VENV.exists() else []
    _run([sys.executable, "-m", "venv", *clear, str(VENV)])


def _install(extras: list[str], digest: str) -> None:
    target = f".[{','.join(extras)}]" if extras else "."
    started = time.monotonic()
    _log(f"installing the project (editable) with {target!r} into {VENV}")
    _run(
        [
            str(venv_python()),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--quiet",
            "-e",
            target,
        ]
    )
    label_prefix = _stamp_name(extras, "")
    for old in VENV.glob(f"{label_prefix}*"):
        old.unlink()
    (VENV / _stamp_name(extras, digest)).write_text(f"pip install -e {target}\n")
    _log(f"installed in {time.monotonic() - started:.1f}s")


def ensure_environment(extras: str = "") -> Path:
    """Create ``.venv`` and install the project with ``extras`` if needed; return its python."""
    if sys.version_info < MIN_PYTHON:
        wanted = ".".join(map(str, MIN_PYTHON))
        _log(f"Python {wanted}+ is required, this is {sys.version.split()[0]}")
        raise SystemExit(1)
    names = _normalize_extras(extras)
    digest = _pyproject_hash()
    force = os.environ.get("SA_LLM_BOOTSTRAP_FORCE") == "1"
    if not force and _stamp_is_current(names, digest) and venv_python().exists():
        return venv_python()
    with _lock():
        if not _running_in_venv() and not _venv_works():
            _create_venv()
        if force or not _stamp_is_current(names, digest):
            _install(names, digest)
    return venv_python()


def bootstrap(extras: str = "") -> None:
    """Ensure the venv and the editable install, then re-exec the caller under the venv python.

    ``extras`` is a comma-separated list of the project's optional-dependency groups, such as
    ``"test,typing,lint"``; ``""`` installs the bare package.
    """
    if os.environ.get("SA_LLM_NO_BOOTSTRAP") == "1":
        return
    python = ensure_environment(extras)
    if _running_in_venv():
        return
    if os.environ.get(_REEXEC_MARKER) == str(python):
        _log(f"re-executed under {python} but sys.prefix is {sys.prefix}; not looping")
        raise SystemExit(1)
    os.environ[_REEXEC_MARKER] = str(python)
    argv = [str(python), *sys.argv]
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "nt":  # pragma: no cover - execv does not replace the process on Windows
        raise SystemExit(subprocess.call(argv))
    os.execv(str(python), argv)


if __name__ == "__main__":
    # ``python3 scripts/_bootstrap.py [extras]`` just prepares the environment.
    print(ensure_environment(sys.argv[1] if len(sys.argv) > 1 else ""))
