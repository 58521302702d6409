"""Start and stop a throwaway PostgreSQL server for the test suite (standard library only).

The server lives in a fresh temporary directory (data directory, unix socket, log), listens only
on 127.0.0.1 on a free port, trusts local and loopback connections, and has a database
``sa_llm_test``. When this runs as root the server runs as the ``postgres`` OS user (created if
missing); otherwise it runs as the current user. The superuser is always called ``postgres``, so
the URL is ``postgresql+psycopg://postgres@127.0.0.1:PORT/sa_llm_test`` either way.

From Python::

    with running_server() as server:
        os.environ[URL_ENV] = server.url
        ...

From the shell (what ``.ci/run`` does)::

    python3 scripts/_postgres.py start --env-file "$F"   # writes `export VAR='...'` lines to $F
    source "$F"                                        # SA_LLM_TEST_POSTGRES_URL is now set
    python3 scripts/_postgres.py stop --env-file "$F"    # stops the server, removes its dir

The binaries are taken from the directory of ``initdb`` on PATH, else from the newest
``/usr/lib/postgresql/*/bin``.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

URL_ENV = "SA_LLM_TEST_POSTGRES_URL"
DIR_ENV = "SA_LLM_TEST_POSTGRES_DIR"
BIN_ENV = "SA_LLM_TEST_POSTGRES_BIN"
USER_ENV = "SA_LLM_TEST_POSTGRES_OS_USER"
DATABASE = "sa_llm_test"
SUPERUSER = "postgres"
OS_USER = "postgres"
_REQUIRED = ("initdb", "pg_ctl", "postgres")


def _log(message: str) -> None:
    print(f"[postgres] {message}", file=sys.stderr, flush=True)


class PostgresError(RuntimeError):
    """The throwaway server could not be started."""


@dataclass(frozen=True)
class Server:
    """A running throwaway server."""

    bindir: Path
    basedir: Path
    port: int
    os_user: str | None  # the OS user the server runs as when we had to switch (root), else None

    @property
    def datadir(self) -> Path:
        return self.basedir / "data"

    @property
    def logfile(self) -> Path:
        return self.basedir / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its directory."""
        stop_server(self.bindir, self.basedir, self.os_user)


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.parent.name
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def find_bindir() -> Path | None:
    """Directory holding initdb, pg_ctl and postgres, or None if PostgreSQL is not installed."""
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
        candidates.append(Path(on_path).parent)
    for initdb in sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key, reverse=True
    ):
        candidates.append(Path(initdb).parent)
    for bindir in candidates:
        if all(os.access(bindir / name, os.X_OK) for name in _REQUIRED):
            return bindir
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ensure_os_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    _log(f"creating OS user {name!r}")
    if shutil.which("useradd"):
        command = [
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ]
    elif shutil.which("adduser"):
        command = ["adduser", "--system", "--group", "--no-create-home", name]
    else:
        raise PostgresError(f"OS user {name!r} is missing and neither useradd nor adduser exist")
    subprocess.run(command, check=True)
    return pwd.getpwnam(name)


def _as_user(command: list[str], os_user: str | None) -> list[str]:
    if os_user is None:
        return command
    if shutil.which("runuser"):
        return ["runuser", "-u", os_user, "--", *command]
    if shutil.which("su"):
        return ["su", "-s", "/bin/sh", os_user, "-c", shlex.join(command)]
    raise PostgresError("running as root but neither runuser nor su is available")


def _run(command: list[str], os_user: str | None, cwd: Path, what: str) -> None:
    full = _as_user(command, os_user)
    result = subprocess.run(
        full, cwd=cwd, capture_output=True, text=True, check=False, env=_server_env()
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise PostgresError(f"{what} failed ({result.returncode}): {shlex.join(full)}\n{output}")


def _server_env() -> dict[str, str]:
    # Keep libpq/initdb from picking up settings meant for some other server.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["LC_ALL"] = "C"
    env.pop("LANG", None)
    return env


def _log_tail(logfile: Path, lines: int = 30) -> str:
    try:
        text = logfile.read_text(errors="replace")
    except OSError:
        return "(no server log)"
    return "\n".join(text.splitlines()[-lines:])


def _write_config(datadir: Path, basedir: Path, uid: int | None, gid: int | None) -> None:
    settings = {
        "listen_addresses": "'127.0.0.1'",
        "unix_socket_directories": f"'{basedir}'",
        "max_connections": "200",
        "shared_buffers": "'64MB'",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "logging_collector": "off",
        "log_min_messages": "warning",
    }
    extra = "".join(f"{key} = {value}\n" for key, value in settings.items())
    with (datadir / "postgresql.conf").open("a") as conf:
        conf.write("\n# sa_llm throwaway test server\n" + extra)
    hba = datadir / "pg_hba.conf"
    hba.write_text(
        "# sa_llm throwaway test server: trust local and loopback only\n"
        "local all all trust\n"
        "host all all 127.0.0.1/32 trust\n"
    )
    if uid is not None and gid is not None:
        os.chown(hba, uid, gid)


def start_server(bindir: Path | None = None) -> Server:
    """Initialize and start a throwaway server; raise PostgresError if that fails."""
    bindir = bindir or find_bindir()
    if bindir is None:
        raise PostgresError(
            "PostgreSQL binaries not found (initdb on PATH or /usr/lib/postgresql/*/bin)"
        )
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    uid: int | None = None
    gid: int | None = None
    os_user: str | None = None
    if is_root:
        entry = _ensure_os_user(OS_USER)
        uid, gid, os_user = entry.pw_uid, entry.pw_gid, OS_USER
    # /tmp rather than $TMPDIR when switching users: the postgres user must be able to reach it.
    parent = "/tmp" if is_root and os.path.isdir("/tmp") else None
    basedir = Path(tempfile.mkdtemp(prefix="sa_llm_pg_", dir=parent))
    if uid is not None and gid is not None:
        os.chown(basedir, uid, gid)
    datadir = basedir / "data"
    server: Server | None = None
    try:
        _run(
            [
                str(bindir / "initdb"),
                "--pgdata",
                str(datadir),
                "--username",
                SUPERUSER,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
            ],
            os_user,
            basedir,
            "initdb",
        )
        _write_config(datadir, basedir, uid, gid)
        last_error: PostgresError | None = None
        for _attempt in range(5):
            port = _free_port()
            candidate = Server(bindir=bindir, basedir=basedir, port=port, os_user=os_user)
            try:
                _run(
                    [
                        str(bindir / "pg_ctl"),
                        "--pgdata",
                        str(datadir),
                        "--log",
                        str(candidate.logfile),
                        "--options",
                        f"-p {port}",
                        "--wait",
                        "--timeout",
                        "60",
                        "start",
                    ],
                    os_user,
                    basedir,
                    "pg_ctl start",
                )
            except PostgresError as error:  # most likely the port was taken meanwhile
                last_error = PostgresError(f"{error}\n{_log_tail(candidate.logfile)}")
                continue
            server = candidate
            break
        if server is None:
            raise last_error or PostgresError("could not start PostgreSQL")
        _create_database(server)
    except BaseException:
        if server is not None:
            with contextlib.suppress(Exception):
                server.stop()
        else:
            shutil.rmtree(basedir, ignore_errors=True)
        raise
    return server


def _create_database(server: Server) -> None:
    createdb = server.bindir / "createdb"
    if os.access(createdb, os.X_OK):
        command = [str(createdb)]
    elif shutil.which("createdb"):
        command = ["createdb"]
    else:
        psql = server.bindir / "psql"
        command = [str(psql) if os.access(psql, os.X_OK) else "psql"]
        command += ["-v", "ON_ERROR_STOP=1", "-c", f"CREATE DATABASE {DATABASE}"]
        command += ["-h", "127.0.0.1", "-p", str(server.port), "-U", SUPERUSER, "postgres"]
        _run(command, None, server.basedir, "CREATE DATABASE")
        return
    command += ["-h", "127.0.0.1", "-p", str(server.port), "-U", SUPERUSER, DATABASE]
    _run(command, None, server.basedir, "createdb")


def stop_server(bindir: Path, basedir: Path, os_user: str | None) -> None:
    """Stop the server whose directory is ``basedir`` and delete that directory."""
    datadir = basedir / "data"
    if (datadir / "postmaster.pid").exists():
        try:
            _run(
                [
                    str(bindir / "pg_ctl"),
                    "--pgdata",
                    str(datadir),
                    "--mode",
                    "fast",
                    "--wait",
                    "--timeout",
                    "60",
                    "stop",
                ],
                os_user,
                basedir if basedir.exists() else Path("/"),
                "pg_ctl stop",
            )
        except PostgresError as error:
            _log(str(error))
    shutil.rmtree(basedir, ignore_errors=True)


@contextlib.contextmanager
def running_server() -> Iterator[Server]:
    """A throwaway server for the duration of the ``with`` block."""
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


def _wait_for_port(port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


def _read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, _, value = words[1].partition("=")
            values[key] = value
    return values


def _cmd_start(env_file: Path | None) -> int:
    started = time.monotonic()
    try:
        server = start_server()
    except PostgresError as error:
        _log(f"ERROR: {error}")
        return 1
    if not _wait_for_port(server.port):
        _log(f"ERROR: server on port {server.port} does not accept connections")
        server.stop()
        return 1
    exports = {
        URL_ENV: server.url,
        DIR_ENV: str(server.basedir),
        BIN_ENV: str(server.bindir),
        USER_ENV: server.os_user or "",
    }
    text = "".join(f"export {key}={shlex.quote(value)}\n" for key, value in exports.items())
    if env_file is not None:
        env_file.write_text(text)
    sys.stdout.write(text)
    who = server.os_user or pwd.getpwuid(os.getuid()).pw_name
    _log(
        f"started PostgreSQL from {server.bindir} as OS user {who} in {server.basedir} "
        f"on 127.0.0.1:{server.port} ({time.monotonic() - started:.1f}s); {URL_ENV}={server.url}"
    )
    return 0


def _cmd_stop(env_file: Path | None) -> int:
    values = dict(os.environ)
    if env_file is not None:
        if not env_file.exists() or not env_file.read_text().strip():
            _log(f"nothing to stop ({env_file} is empty or missing)")
            return 0
        values.update(_read_env_file(env_file))
    basedir, bindir = values.get(DIR_ENV), values.get(BIN_ENV)
    if not basedir or not bindir:
        _log(f"nothing to stop ({DIR_ENV} / {BIN_ENV} not set)")
        return 0
    stop_server(Path(bindir), Path(basedir), values.get(USER_ENV) or None)
    _log(f"stopped PostgreSQL in {basedir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("action", choices=["start", "stop", "find"])
    parser.add_argument(
        "--env-file",
        type=Path,
        help="start: write `export VAR=value` lines here; stop: read them from here",
    )
    args = parser.parse_args(argv)
    if args.action == "find":
        bindir = find_bindir()
        print(bindir or "")
        return 0 if bindir else 1
    if args.action == "start":
        return _cmd_start(args.env_file)
    return _cmd_stop(args.env_file)


if __name__ == "__main__":
    raise SystemExit(main())
