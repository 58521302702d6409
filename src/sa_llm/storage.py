"""Where attached files live: a storage protocol, a local directory, and cloud storage via fsspec.

A persisted chat keeps a *reference* to each attached file in its attachments table and the
bytes in a :class:`Storage`. Storages are content-addressed: a file's key is the SHA-256 of its
bytes, so the same file attached twice is stored once, and a key says nothing about the
user's filename (which therefore never becomes a path).

* :class:`LocalStorage` (the default) keeps files in a directory on this machine, written
  atomically (a temporary file, then ``os.replace``).
* :class:`FsspecStorage` keeps them in anything fsspec reaches: S3, GCS, Azure, ... (install
  ``sa-llm[storage]`` plus the fsspec backend, e.g. ``s3fs``).

Choose one with ``sa_llm.configure(attachment_storage=...)`` (a storage, a directory, or an
fsspec URL); unset, the ``SA_LLM_ATTACHMENT_STORAGE`` environment variable is read, else the
directory ``./storage/attachments``. Blobs no row references any more are removed by
``sa-llm attachments gc`` (see :func:`collect_garbage`).

Example::

    import sa_llm
    from sa_llm.storage import LocalStorage

    sa_llm.configure(attachment_storage=LocalStorage("/var/lib/myapp/attachments"))
    sa_llm.configure(attachment_storage="s3://my-bucket/attachments")  # needs sa-llm[storage]
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Container, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

from sa_llm._optional import require
from sa_llm.errors import AttachmentError

__all__ = [
    "DEFAULT_DIRECTORY",
    "STORAGE_ENV_VAR",
    "FsspecStorage",
    "GarbageReport",
    "LocalStorage",
    "Readable",
    "Storage",
    "collect_garbage",
    "open_storage",
]

#: The environment variable read when ``attachment_storage`` is not configured.
STORAGE_ENV_VAR = "SA_LLM_ATTACHMENT_STORAGE"
#: The default directory (relative to the working directory, like Rails' ``storage/``).
DEFAULT_DIRECTORY = Path("storage") / "attachments"

_CHUNK = 1024 * 1024
_KEY = re.compile(r"[0-9a-f]{64}")


class Readable(Protocol):
    """Anything with a binary ``read(size)``: an open file, ``BytesIO``, an upload's stream."""

    def read(self, size: int = -1, /) -> bytes: ...


@runtime_checkable
class Storage(Protocol):
    """Where the bytes of attached files are kept.

    Implementations must be safe to call from several threads at once (the async API stores
    files in worker threads) and must never derive a path from anything but the key.
    """

    def put(self, stream: Readable) -> str:
        """Read ``stream`` to its end, store the bytes and return their key.

        Storing bytes that are already stored returns the same key and refreshes the blob's
        modification time (so :func:`collect_garbage` leaves it alone for a while).
        """
        ...

    def open(self, key: str) -> IO[bytes]:
        """The stored bytes as a binary file object (the caller closes it)."""
        ...

    def read(self, key: str) -> bytes:
        """The stored bytes."""
        ...

    def exists(self, key: str) -> bool:
        """Whether a blob with this key is stored."""
        ...

    def delete(self, key: str) -> None:
        """Remove a blob (no error when it is already gone)."""
        ...

    def keys(self) -> Iterator[str]:
        """Every stored key (in no particular order)."""
        ...

    def modified(self, key: str) -> datetime | None:
        """When the blob was last written (timezone-aware), or ``None`` if unknown or gone."""
        ...


def _check_key(key: str) -> str:
    # Keys come back from database rows: anything but a SHA-256 hex digest is refused, so a
    # tampered row cannot point outside the storage ("../../etc/passwd").
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise AttachmentError(f"Invalid storage key {key!r}: expected a SHA-256 hex digest.")
    return key


def _relative(key: str) -> str:
    """``ab/cd/abcd...``: two levels of fan-out keep directories small."""
    key = _check_key(key)
    return f"{key[:2]}/{key[2:4]}/{key}"


def _copy_hashing(source: Readable, target: IO[bytes]) -> str:
    """Copy ``source`` into ``target`` in chunks; the SHA-256 hex digest of what was copied."""
    digest = hashlib.sha256()
    while True:
        chunk = source.read(_CHUNK)
        if not chunk:
            return digest.hexdigest()
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise AttachmentError(
                f"A stored file must read as bytes, not {type(chunk).__name__} "
                "(open files in binary mode: open(path, 'rb'))."
            )
        digest.update(chunk)
        target.write(chunk)


# -- the local directory --------------------------------------------------------------------------


class LocalStorage:
    """Files in a directory of this machine, by SHA-256 (``<dir>/ab/cd/abcd...``).

    Each file is written to a temporary file under ``<dir>/.tmp`` (the same file system),
    flushed to disk and moved into place with ``os.replace``, so a reader never sees half a
    file and concurrent writes of the same bytes are harmless. Files are created readable by
    their owner only.

    Args:
        directory: where to keep the files; created on the first write.
        fsync: flush each file to disk before it is moved into place (durability over speed).
    """

    def __init__(self, directory: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.directory = Path(directory).expanduser().absolute()
        self.fsync = fsync

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.directory)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LocalStorage) and other.directory == self.directory

    def __hash__(self) -> int:
        return hash((LocalStorage, self.directory))

    def path(self, key: str) -> Path:
        """Where the blob ``key`` lives (whether or not it exists).

        Raises:
            AttachmentError: ``key`` is not a SHA-256 hex digest.
        """
        return self.directory / _relative(key)

    @property
    def _temporary(self) -> Path:
        return self.directory / ".tmp"

    def put(self, stream: Readable) -> str:
        self._temporary.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=self._temporary, prefix="put-")
        try:
            with os.fdopen(fd, "wb") as out:
                key = _copy_hashing(stream, out)
                out.flush()
                if self.fsync:
                    os.fsync(out.fileno())
            final = self.path(key)
            final.parent.mkdir(parents=True, exist_ok=True)
            # Replacing an identical blob is atomic and refreshes its mtime, which is what
            # protects it from a concurrent garbage collection (see collect_garbage).
            os.replace(temporary, final)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return key

    def open(self, key: str) -> IO[bytes]:
        path = self.path(key)
        try:
            return path.open("rb")
        except FileNotFoundError:
            raise AttachmentError(f"Stored file {key} is missing from {self!r}.") from None

    def read(self, key: str) -> bytes:
        with self.open(key) as handle:
            return handle.read()

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        # Empty fan-out directories stay: removing them would race with a concurrent put.
        self.path(key).unlink(missing_ok=True)

    def keys(self) -> Iterator[str]:
        if not self.directory.is_dir():
            return
        for first in os.scandir(self.directory):
            if not (first.is_dir() and re.fullmatch(r"[0-9a-f]{2}", first.name)):
                continue
            for second in os.scandir(first.path):
                if not (second.is_dir() and re.fullmatch(r"[0-9a-f]{2}", second.name)):
                    continue
                for entry in os.scandir(second.path):
                    name = entry.name
                    if _KEY.fullmatch(name) and name.startswith(first.name + second.name):
                        yield name

    def modified(self, key: str) -> datetime | None:
        try:
            stat = self.path(key).stat()
        except FileNotFoundError:
            return None
        return datetime.fromtimestamp(stat.st_mtime, timezone.utc)

    def remove_stale_temporaries(self, older_than: timedelta) -> int:
        """Delete temporary files left by interrupted writes; returns how many."""
        if not self._temporary.is_dir():
            return 0
        limit = datetime.now(timezone.utc) - older_than
        removed = 0
        for entry in os.scandir(self._temporary):
            try:
                mtime = datetime.fromtimestamp(entry.stat().st_mtime, timezone.utc)
            except FileNotFoundError:
                continue
            if entry.is_file() and mtime <= limit:
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
        return removed


# -- fsspec ---------------------------------------------------------------------------------------


def _import_fsspec() -> Any:
    return require(
        "fsspec",
        extra="storage",
        feature="FsspecStorage",
        hint=" (plus the backend, e.g. s3fs, gcsfs or adlfs)",
    )


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, timezone.utc)
    if isinstance(value, str):
        try:
            return _as_datetime(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


class FsspecStorage:
    """Files in any fsspec file system: S3 (``s3fs``), GCS (``gcsfs``), Azure (``adlfs``), ...

    A file is first spooled to a local temporary file while its SHA-256 is computed, then
    uploaded under ``<root>/ab/cd/<sha256>`` in one write, so object stores never hold a
    partial object under a real key. Storing bytes that exist already uploads them again: the
    object's new timestamp is what protects it from a concurrent garbage collection.

    Args:
        fs: an ``fsspec.AbstractFileSystem``, or a protocol name (``"s3"``).
        root: the directory or ``bucket/prefix`` to keep the files under.
        storage_options: passed to ``fsspec.filesystem`` when ``fs`` is a name.

    Raises:
        MissingDependencyError: fsspec is not installed.
    """

    def __init__(self, fs: Any, root: str = "", **storage_options: Any) -> None:
        if isinstance(fs, str):
            fs = _import_fsspec().filesystem(fs, **storage_options)
        self.fs = fs
        self.root = root.rstrip("/")

    @classmethod
    def from_url(cls, url: str, **storage_options: Any) -> FsspecStorage:
        """A storage for an fsspec URL, e.g. ``"s3://bucket/attachments"``."""
        fsspec = _import_fsspec()
        fs, root = fsspec.core.url_to_fs(url, **storage_options)
        return cls(fs, root)

    def __repr__(self) -> str:
        protocol = self.fs.protocol
        name = protocol[0] if isinstance(protocol, tuple | list) else protocol
        return f"FsspecStorage({name}://{self.root.lstrip('/')})"

    def path(self, key: str) -> str:
        """The file system path of the blob ``key``."""
        relative = _relative(key)
        return f"{self.root}/{relative}" if self.root else relative

    def put(self, stream: Readable) -> str:
        with tempfile.TemporaryFile() as spool:
            key = _copy_hashing(stream, spool)
            spool.seek(0)
            path = self.path(key)
            self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            with self.fs.open(path, "wb") as out:
                shutil.copyfileobj(spool, out, _CHUNK)
        return key

    def open(self, key: str) -> IO[bytes]:
        path = self.path(key)
        try:
            return self.fs.open(path, "rb")  # type: ignore[no-any-return]
        except FileNotFoundError:
            raise AttachmentError(f"Stored file {key} is missing from {self!r}.") from None

    def read(self, key: str) -> bytes:
        try:
            return bytes(self.fs.cat_file(self.path(key)))
        except FileNotFoundError:
            raise AttachmentError(f"Stored file {key} is missing from {self!r}.") from None

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self.path(key)))

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path(key))

    def keys(self) -> Iterator[str]:
        base = self.root or ""
        try:
            found = self.fs.find(base) if base else self.fs.find("")
        except FileNotFoundError:
            return
        for path in found:
            parts = str(path).rstrip("/").split("/")
            if len(parts) < 3:
                continue
            first, second, name = parts[-3:]
            if _KEY.fullmatch(name) and name[:2] == first and name[2:4] == second:
                yield name

    def modified(self, key: str) -> datetime | None:
        path = self.path(key)
        try:
            value = self.fs.modified(path)
        except FileNotFoundError:
            return None
        except (NotImplementedError, AttributeError, KeyError):
            try:
                info = self.fs.info(path)
            except FileNotFoundError:
                return None
            value = next(
                (
                    info[name]
                    for name in ("LastModified", "last_modified", "mtime", "updated", "created")
                    if info.get(name) is not None
                ),
                None,
            )
        return _as_datetime(value)


# -- choosing a storage ---------------------------------------------------------------------------


def open_storage(setting: Storage | str | os.PathLike[str] | None = None) -> Storage:
    """The storage a setting names: a :class:`Storage` as is, a directory, or an fsspec URL.

    ``None`` reads ``SA_LLM_ATTACHMENT_STORAGE``, else uses ``./storage/attachments`` (made
    absolute now, so a later ``chdir`` does not move it).

    Raises:
        MissingDependencyError: an fsspec URL without fsspec installed.
    """
    if setting is None:
        setting = os.environ.get(STORAGE_ENV_VAR) or DEFAULT_DIRECTORY
    if isinstance(setting, Storage):
        return setting
    text = os.fspath(setting)
    if text.startswith("file://"):
        return LocalStorage(text[len("file://") :])
    if "://" in text:
        return _remote(text)
    return LocalStorage(text)


@functools.lru_cache(maxsize=64)
def _remote(url: str) -> FsspecStorage:
    # Every turn resolves the configured setting; parse a URL (and build its file system) once.
    return FsspecStorage.from_url(url)


# -- garbage collection ---------------------------------------------------------------------------


@dataclass
class GarbageReport:
    """What :func:`collect_garbage` found.

    Attributes:
        deleted: unreferenced keys deleted (or, in a dry run, that would be).
        recent: unreferenced keys kept because they were written within the grace period.
        referenced: stored keys that rows reference.
    """

    deleted: list[str] = field(default_factory=list)
    recent: list[str] = field(default_factory=list)
    referenced: int = 0


def collect_garbage(
    storage: Storage,
    referenced: Container[str],
    *,
    older_than: timedelta = timedelta(days=1),
    dry_run: bool = False,
    now: datetime | None = None,
) -> GarbageReport:
    """Delete the blobs no row references, except those written within ``older_than``.

    A turn writes its files before the rows that reference them are committed; the grace
    period keeps those in-flight blobs (and blobs re-stored by a dedupe, which refreshes their
    time). A storage that cannot tell a blob's age has all its unreferenced blobs deleted.

    Args:
        storage: where the blobs are.
        referenced: every storage key the attachment rows hold.
        older_than: the grace period.
        dry_run: report only; delete nothing.
        now: the current time (for tests).
    """
    now = now or datetime.now(timezone.utc)
    report = GarbageReport()
    for key in list(storage.keys()):
        if key in referenced:
            report.referenced += 1
            continue
        written = storage.modified(key)
        if written is not None and now - written < older_than:
            report.recent.append(key)
            continue
        if not dry_run:
            storage.delete(key)
        report.deleted.append(key)
    cleanup = getattr(storage, "remove_stale_temporaries", None)
    if cleanup is not None and not dry_run:
        cleanup(older_than)
    return report
