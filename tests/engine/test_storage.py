"""The storage layer: one contract, run against the local directory and fsspec's memory file system.

Keys are SHA-256 digests computed independently here (hashlib), so every assertion about a key
is an assertion about content addressing. Edge cases: deduplication, traversal attempts,
concurrent writes of the same blob, interrupted writes, garbage collection with its grace period.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import sa_llm
from sa_llm.errors import AttachmentError, ConfigurationError
from sa_llm.storage import (
    STORAGE_ENV_VAR,
    FsspecStorage,
    LocalStorage,
    Storage,
    collect_garbage,
    open_storage,
)

BACKENDS = ["local", "memory"]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "local":
        yield LocalStorage(tmp_path / "blobs")
        return
    pytest.importorskip("fsspec")
    root = f"memory://sa-llm-test-{uuid.uuid4().hex}"
    memory = FsspecStorage.from_url(root)
    yield memory
    if memory.fs.exists(memory.root):
        memory.fs.rm(memory.root, recursive=True)


class Failing(io.RawIOBase):
    """A stream that delivers some bytes and then fails, like a dropped upload."""

    def __init__(self, good: bytes) -> None:
        self.good = io.BytesIO(good)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1, /) -> bytes:
        chunk = self.good.read(size)
        if not chunk:
            raise OSError("connection reset while uploading")
        return chunk


# -- the contract ---------------------------------------------------------------------------------


def test_put_returns_the_sha256_and_reads_back(storage: Storage) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)  # more than one copy chunk
    key = storage.put(io.BytesIO(data))
    assert key == sha(data)
    assert storage.exists(key)
    assert storage.read(key) == data
    with storage.open(key) as handle:
        assert handle.read() == data
    assert list(storage.keys()) == [key]
    written = storage.modified(key)
    assert written is not None and written.tzinfo is not None
    assert abs(datetime.now(timezone.utc) - written) < timedelta(minutes=5)


def test_same_bytes_are_stored_once(storage: Storage) -> None:
    first = storage.put(io.BytesIO(b"same bytes"))
    second = storage.put(io.BytesIO(b"same bytes"))
    other = storage.put(io.BytesIO(b"other bytes"))
    assert first == second == sha(b"same bytes")
    assert sorted(storage.keys()) == sorted({first, other})


def test_empty_file(storage: Storage) -> None:
    key = storage.put(io.BytesIO(b""))
    assert key == sha(b"")
    assert storage.read(key) == b""


def test_delete_is_idempotent(storage: Storage) -> None:
    key = storage.put(io.BytesIO(b"gone soon"))
    storage.delete(key)
    storage.delete(key)
    assert not storage.exists(key)
    assert storage.modified(key) is None
    assert list(storage.keys()) == []
    with pytest.raises(AttachmentError, match="missing"):
        storage.read(key)


@pytest.mark.parametrize(
    "key",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "ab/cd/" + "a" * 64,
        "A" * 64,  # digests are lower-case: no second spelling of a key
        "a" * 63,
        "a" * 64 + "/..",
        "..\\..\\windows\\win.ini",
        "",
    ],
)
def test_keys_that_are_not_digests_are_refused(storage: Storage, key: str) -> None:
    for operation in (storage.read, storage.open, storage.exists, storage.delete):
        with pytest.raises(AttachmentError, match="Invalid storage key"):
            operation(key)


def test_text_mode_streams_are_refused(storage: Storage) -> None:
    with pytest.raises(AttachmentError, match="binary mode"):
        storage.put(io.StringIO("not bytes"))  # type: ignore[arg-type]
    assert list(storage.keys()) == []


def test_a_failed_write_leaves_nothing_behind(storage: Storage, tmp_path: Path) -> None:
    with pytest.raises(OSError, match="connection reset"):
        storage.put(Failing(b"half of a file"))
    assert list(storage.keys()) == []
    if isinstance(storage, LocalStorage):
        assert list((storage.directory / ".tmp").iterdir()) == []


def test_concurrent_writes_of_the_same_blob(storage: Storage) -> None:
    data = os.urandom(2 * 1024 * 1024)
    start = threading.Barrier(12)

    def write(_: int) -> str:
        start.wait()
        return storage.put(io.BytesIO(data))

    with ThreadPoolExecutor(12) as pool:
        keys = list(pool.map(write, range(12)))
    assert set(keys) == {sha(data)}
    assert list(storage.keys()) == [sha(data)]
    assert storage.read(sha(data)) == data
    if isinstance(storage, LocalStorage):
        assert list((storage.directory / ".tmp").iterdir()) == []


def test_concurrent_writes_of_different_blobs(storage: Storage) -> None:
    blobs = [os.urandom(64 * 1024) for _ in range(20)]
    with ThreadPoolExecutor(8) as pool:
        keys = list(pool.map(lambda b: storage.put(io.BytesIO(b)), blobs))
    assert keys == [sha(b) for b in blobs]
    assert sorted(storage.keys()) == sorted(keys)
    assert all(storage.read(sha(b)) == b for b in blobs)


# -- the local directory --------------------------------------------------------------------------


def test_local_layout_and_permissions(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "blobs")
    key = storage.put(io.BytesIO(b"private upload"))
    path = storage.path(key)
    assert path == tmp_path / "blobs" / key[:2] / key[2:4] / key
    assert path.read_bytes() == b"private upload"
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0  # owner only


def test_local_keys_ignore_foreign_files(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "blobs")
    key = storage.put(io.BytesIO(b"mine"))
    (storage.directory / "README.txt").write_text("not a blob")
    (storage.directory / "zz").mkdir()
    (storage.path(key).parent / ("0" * 64)).write_bytes(b"wrong shard for this digest")
    (storage.directory / ".tmp" / "put-leftover").write_bytes(b"partial")
    assert list(storage.keys()) == [key]


def test_local_directory_is_created_on_first_write(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "a" / "b")
    assert list(storage.keys()) == []
    assert not (tmp_path / "a").exists()
    storage.put(io.BytesIO(b"x"))
    assert (tmp_path / "a" / "b").is_dir()


def test_rewriting_a_blob_refreshes_its_time(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "blobs")
    key = storage.put(io.BytesIO(b"old"))
    old = datetime.now(timezone.utc) - timedelta(days=10)
    os.utime(storage.path(key), (old.timestamp(), old.timestamp()))
    assert storage.modified(key) == datetime.fromtimestamp(old.timestamp(), timezone.utc)
    storage.put(io.BytesIO(b"old"))
    written = storage.modified(key)
    assert written is not None and written > old + timedelta(days=9)


# -- choosing a storage ---------------------------------------------------------------------------


def test_open_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(STORAGE_ENV_VAR, raising=False)
    assert open_storage(None) == LocalStorage(tmp_path / "storage" / "attachments")
    monkeypatch.setenv(STORAGE_ENV_VAR, str(tmp_path / "from-env"))
    assert open_storage(None) == LocalStorage(tmp_path / "from-env")
    assert open_storage("relative") == LocalStorage(tmp_path / "relative")
    assert open_storage(f"file://{tmp_path}/x") == LocalStorage(tmp_path / "x")
    mine = LocalStorage(tmp_path / "mine")
    assert open_storage(mine) is mine
    pytest.importorskip("fsspec")
    memory = open_storage("memory://bucket/prefix")
    assert isinstance(memory, FsspecStorage)
    assert memory.root == "/bucket/prefix"


def test_configure_storage_setting(tmp_path: Path) -> None:
    try:
        sa_llm.configure(attachment_storage=tmp_path)
        assert sa_llm.get_config().attachment_storage == tmp_path
        sa_llm.configure(attachment_storage=LocalStorage(tmp_path))
        with pytest.raises(ConfigurationError, match="attachment_storage"):
            sa_llm.configure(attachment_storage=object())
        tenant = sa_llm.context(attachment_storage="memory://tenant")
        assert tenant.config.attachment_storage == "memory://tenant"
    finally:
        sa_llm.reset_config()


# -- garbage collection ---------------------------------------------------------------------------


def test_collect_garbage_removes_only_old_unreferenced_blobs(storage: Storage) -> None:
    kept = storage.put(io.BytesIO(b"referenced"))
    orphan = storage.put(io.BytesIO(b"orphan"))
    later = datetime.now(timezone.utc) + timedelta(hours=2)

    fresh = collect_garbage(storage, {kept}, older_than=timedelta(hours=1))
    assert fresh.deleted == [] and fresh.recent == [orphan] and fresh.referenced == 1

    dry = collect_garbage(storage, {kept}, older_than=timedelta(hours=1), dry_run=True, now=later)
    assert dry.deleted == [orphan]
    assert storage.exists(orphan)

    done = collect_garbage(storage, {kept}, older_than=timedelta(hours=1), now=later)
    assert done.deleted == [orphan]
    assert not storage.exists(orphan)
    assert storage.read(kept) == b"referenced"


def test_collect_garbage_removes_stale_temporaries(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "blobs")
    storage.put(io.BytesIO(b"x"))
    stale = storage.directory / ".tmp" / "put-crashed"
    stale.write_bytes(b"half")
    old = (datetime.now(timezone.utc) - timedelta(days=3)).timestamp()
    os.utime(stale, (old, old))
    fresh = storage.directory / ".tmp" / "put-running"
    fresh.write_bytes(b"in flight")
    collect_garbage(storage, {sha(b"x")}, older_than=timedelta(days=1))
    assert not stale.exists()
    assert fresh.exists()


def test_storages_satisfy_the_protocol(tmp_path: Path) -> None:
    local: Any = LocalStorage(tmp_path)
    assert isinstance(local, Storage)
    pytest.importorskip("fsspec")
    assert isinstance(FsspecStorage("memory"), Storage)
