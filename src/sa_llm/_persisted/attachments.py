"""Persisted attachments: sources streamed into storage, rows written, rows read back as files.

A persisted turn with files runs these steps, all before the user message is saved:

1. :func:`collect` turns each source into a :class:`PendingFile`: paths are checked, stored
   rows and uploads (``UploadFile``, ``FileStorage``, open files) recognised; nothing is read
   yet except the first bytes of a seekable upload, for its type;
2. the flow downloads URLs and checks sizes and the model's modalities;
3. :class:`StoreFiles` streams every file into the storage, hashing and measuring it on the way
   (in a worker thread under asyncio);
4. the strategy writes the message and its rows in one step (:func:`add_rows`).

A row is written only after its blob exists, so a rolled-back message can leave a blob without
a row (``sa-llm attachments gc`` removes it) but never a row without its blob.

Example::

    files = collect(["report.pdf", upload])
    StoreFiles(files, storage, limit=config.max_attachment_bytes).run(scope)
    rows = add_rows(session, schema, message_pk, [f.attachment for f in files])
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from sqlalchemy import Select, null, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

from sa_llm._flow import Effect, Scope
from sa_llm._mapping import ATTACHMENT_OPTIONS, has_column
from sa_llm.content import Attachment, _sniff, clean_content_type, detect_mime_type
from sa_llm.errors import AttachmentError

if TYPE_CHECKING:
    from sa_llm._mapping import ChatSchema
    from sa_llm.storage import Readable, Storage

__all__ = [
    "PendingFile",
    "StoreFiles",
    "add_rows",
    "collect",
    "history_query",
    "read_history",
    "safe_filename",
]

_HEAD = 512
_MAX_FILENAME = 255


def safe_filename(name: str | None) -> str | None:
    """The last path component of a user's filename, without control characters, <= 255 chars.

    Filenames are shown to the model and kept in the row; they are never used as paths.
    """
    if not name:
        return None
    name = str(name).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    if name in ("", ".", ".."):
        return None
    if len(name) > _MAX_FILENAME:
        stem, dot, suffix = name.rpartition(".")
        if dot and 0 < len(suffix) < 32:
            name = stem[: _MAX_FILENAME - len(suffix) - 1] + "." + suffix
        else:
            name = name[:_MAX_FILENAME]
    return name


def upload_type(head: bytes, declared: str | None, filename: str | None) -> str:
    """An upload's type: its content's signature, else what the client declared, else its name.

    Browsers declare a type from the file's name, so a signature in the bytes wins.
    """
    return _sniff(head[:64]) or declared or detect_mime_type(head, filename)


@dataclass(eq=False)
class PendingFile:
    """One file on its way into storage.

    Attributes:
        attachment: the value object sent on this turn; after :meth:`store` it carries the
            storage key, SHA-256 and size that its row records.
        stream: an upload's stream, read once while storing (never closed: it is the caller's).
        declared_type: the type an upload declared (without parameters).
        name: what to call the file in error messages.
    """

    attachment: Attachment
    stream: Readable | None = None
    declared_type: str | None = None
    name: str = "attachment"

    def store(self, storage: Storage, limit: int | None) -> None:
        """Put the bytes into ``storage`` (or link the stored blob) and record key, hash, size.

        Raises:
            AttachmentError: the file cannot be read, is larger than ``limit``, or names a
                stored blob that ``storage`` does not have.
        """
        attachment = self.attachment
        if attachment.storage_key is not None:
            if storage.exists(attachment.storage_key):
                self._link(storage)
                return
            if not self._has_own_bytes():
                raise AttachmentError(
                    f"Stored file {self.name!r} ({attachment.storage_key}) is not in "
                    f"{storage!r}; it cannot be attached."
                )
        with ExitStack() as stack:
            source = self._open(stack)
            reader = _Measured(source, limit, self.name)
            key = storage.put(reader)
        attachment.storage_key = key
        attachment.sha256 = reader.sha256.hexdigest()
        attachment._size = reader.size
        attachment._storage = storage
        if attachment.mime_type is None:
            if self.stream is not None:
                attachment.mime_type = upload_type(reader.head, self.declared_type, self.name)
            else:
                attachment.mime_type = detect_mime_type(reader.head, attachment.filename)

    def _has_own_bytes(self) -> bool:
        attachment = self.attachment
        return self.stream is not None or attachment.loaded or attachment.path is not None

    def _link(self, storage: Storage) -> None:
        """Reuse a stored blob: nothing is written; hash and size are read only if unknown."""
        attachment = self.attachment
        attachment._storage = storage
        if attachment.sha256 is None or attachment.known_size() is None:
            assert attachment.storage_key is not None
            with storage.open(attachment.storage_key) as handle:
                reader = _Measured(handle, None, self.name)
                while reader.read(1024 * 1024):
                    pass
            attachment.sha256 = reader.sha256.hexdigest()
            attachment._size = reader.size
            if attachment.mime_type is None:
                attachment.mime_type = detect_mime_type(reader.head, attachment.filename)

    def _open(self, stack: ExitStack) -> Readable:
        attachment = self.attachment
        if self.stream is not None:
            return self.stream
        if attachment.loaded:
            # BytesIO shares the bytes object: no second copy of the file in memory.
            return io.BytesIO(attachment.data())
        if attachment.path is not None:
            try:
                return stack.enter_context(attachment.path.open("rb"))
            except OSError as exc:
                raise AttachmentError(f"Could not read {str(attachment.path)!r}: {exc}") from exc
        raise AttachmentError(f"Attachment {self.name!r} is not loaded (a URL not downloaded).")


class _Measured:
    """Wraps a source: hashes, counts and keeps the first bytes of what the storage reads."""

    def __init__(self, source: Readable, limit: int | None, name: str) -> None:
        self.source = source
        self.limit = limit
        self.name = name
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.head = b""

    def read(self, size: int = -1, /) -> bytes:
        try:
            chunk: Any = self.source.read(size)
        except (OSError, ValueError) as exc:  # ValueError: a closed file
            raise AttachmentError(f"Could not read attachment {self.name!r}: {exc}") from exc
        if chunk is None:
            chunk = b""
        if isinstance(chunk, str):
            raise AttachmentError(
                f"Attachment {self.name!r} reads as text; open it in binary mode ('rb')."
            )
        data = chunk if isinstance(chunk, bytes) else bytes(chunk)
        self.size += len(data)
        if self.limit is not None and self.size > self.limit:
            raise AttachmentError(
                f"Attachment {self.name!r} is larger than the limit of {self.limit:,} bytes "
                "(configure max_attachment_bytes to change it)."
            )
        self.sha256.update(data)
        if len(self.head) < _HEAD:
            self.head += data[: _HEAD - len(self.head)]
        return data


class StoreFiles(Effect[None]):
    """Effect: store pending files; the async driver runs it in a worker thread."""

    __slots__ = ("files", "limit", "storage")

    def __init__(self, files: Sequence[PendingFile], storage: Storage, limit: int | None) -> None:
        self.files = files
        self.storage = storage
        self.limit = limit

    def run(self, scope: Scope) -> None:
        for pending in self.files:
            pending.store(self.storage, self.limit)

    async def arun(self, scope: Scope) -> None:
        # Disk or network I/O of possibly large files: keep it off the event loop.
        await anyio.to_thread.run_sync(self.run, scope)


# -- sources --------------------------------------------------------------------------------------


def _is_row(source: Any) -> bool:
    return getattr(type(source), ATTACHMENT_OPTIONS, None) is not None


def _is_bytes_pair(source: Any) -> bool:
    return (
        isinstance(source, tuple)
        and len(source) == 2
        and isinstance(source[0], bytes | bytearray | memoryview)
    )


def _is_upload(source: Any) -> bool:
    if isinstance(source, str | bytes | bytearray | memoryview | os.PathLike | Attachment):
        return False
    return any(hasattr(source, name) for name in ("file", "stream", "read"))


def _is_many(source: Any) -> bool:
    if isinstance(source, str | bytes | bytearray | memoryview | os.PathLike | Attachment):
        return False
    if _is_bytes_pair(source) or _is_upload(source) or _is_row(source):
        return False
    return isinstance(source, Iterable)


def collect(sources: Any) -> list[PendingFile]:
    """What ``attachments=`` received, as pending files: one source, a list, or a mapping.

    ``None`` and blank strings are skipped (a form's empty file field); mappings contribute
    their values.

    Raises:
        AttachmentError: a missing or unreadable path, or an object that is not a file.
    """
    found: list[PendingFile] = []

    def walk(source: Any) -> None:
        if source is None or (isinstance(source, str) and not source.strip()):
            return
        if isinstance(source, Mapping):
            for value in source.values():
                walk(value)
            return
        if _is_many(source):
            for item in source:
                walk(item)
            return
        found.append(_pending(source))

    walk(sources)
    return found


def _pending(source: Any) -> PendingFile:
    if _is_row(source):
        # A stored file: link the same blob to the new message, store nothing.
        attachment = Attachment(
            filename=source.filename,
            mime_type=source.content_type,
            storage_key=source.storage_key,
            sha256=getattr(source, "sha256", None),
            _size=getattr(source, "byte_size", None),
        )
        return PendingFile(attachment, name=source.filename or source.storage_key)
    if isinstance(source, Attachment):
        return PendingFile(source, name=source.display_name)
    if _is_upload(source):
        return _upload(source)
    if _is_bytes_pair(source):
        data, filename = source
        attachment = Attachment.from_bytes(bytes(data), filename=safe_filename(str(filename)))
        return PendingFile(attachment, name=attachment.display_name)
    attachment = Attachment.coerce(source)
    return PendingFile(attachment, name=attachment.filename or str(source))


def _upload(source: Any) -> PendingFile:
    """An upload or open file, by duck typing: Starlette's ``UploadFile`` (``.file``,
    ``.filename``, ``.content_type``), Werkzeug's ``FileStorage`` (``.stream``, ``.filename``,
    ``.mimetype``) or any binary file object."""
    stream = getattr(source, "file", None) or getattr(source, "stream", None) or source
    if not callable(getattr(stream, "read", None)):
        raise AttachmentError(f"Cannot attach an object of type {type(source).__name__}.")
    stream_name = getattr(stream, "name", None)
    filename = safe_filename(getattr(source, "filename", None)) or safe_filename(
        stream_name if isinstance(stream_name, str) else None
    )
    declared = clean_content_type(
        getattr(source, "mimetype", None) or getattr(source, "content_type", None)
    )
    attachment = Attachment(filename=filename)
    name = filename or type(source).__name__
    seekable = getattr(stream, "seekable", None)
    try:
        if callable(seekable) and seekable():
            # Peek at the type now, so the model's modalities are checked before storing.
            position = stream.tell()
            head = stream.read(_HEAD)
            stream.seek(position)
            if isinstance(head, bytes):
                attachment.mime_type = upload_type(head, declared, filename)
    except (OSError, ValueError) as exc:
        raise AttachmentError(f"Could not read attachment {name!r}: {exc}") from exc
    return PendingFile(attachment, stream=stream, declared_type=declared, name=name)


# -- rows -----------------------------------------------------------------------------------------


def add_rows(
    session: Session, schema: ChatSchema, message_pk: Any, attachments: Sequence[Attachment]
) -> list[Any]:
    """Attachment rows for the stored ``attachments`` of the message ``message_pk`` (flushed)."""
    cls = schema.attachment_cls
    fk = schema.attachment_message_fk
    if cls is None or fk is None:
        return []
    has_size = has_column(cls, "byte_size")
    has_sha = has_column(cls, "sha256")
    rows = []
    for attachment in attachments:
        if attachment.storage_key is None:
            continue
        row = cls()
        setattr(row, fk, message_pk)
        row.filename = safe_filename(attachment.display_name) or "attachment"
        row.content_type = attachment.type[:255]
        row.storage_key = attachment.storage_key
        if has_size:
            row.byte_size = attachment.byte_size
        if has_sha:
            row.sha256 = attachment.sha256
        session.add(row)
        rows.append(row)
    if rows:
        session.flush()
    return rows


def history_query(schema: ChatSchema, chat_id: Any) -> Select[Any]:
    """The SELECT of every stored file of one chat: message key first, in insertion order."""
    assert schema.attachment_cls is not None
    assert schema.attachment_message_fk is not None
    mapper = sa_inspect(schema.attachment_cls)
    a = mapper.c
    m = schema.message_mapper.c
    message_fk = a[schema.attachment_message_fk]

    def column(name: str) -> Any:
        return a[name].label(name) if name in a else null().label(name)

    return (
        select(
            message_fk,
            a["filename"],
            a["content_type"],
            column("byte_size"),
            column("sha256"),
            a["storage_key"],
        )
        .select_from(message_fk.table.join(m["id"].table, message_fk == m["id"]))
        .where(m[schema.message_chat_fk] == chat_id)
        .order_by(mapper.primary_key[0])
    )


def read_history(rows: Iterable[Any], storage: Storage) -> dict[Any, tuple[Attachment, ...]]:
    """Message key -> its stored files, read from ``storage`` only when sent."""
    found: dict[Any, list[Attachment]] = {}
    for message_pk, filename, content_type, size, sha256, key in rows:
        found.setdefault(message_pk, []).append(
            Attachment.from_storage(
                storage,
                key,
                filename=filename,
                mime_type=content_type,
                byte_size=size,
                sha256=sha256,
            )
        )
    return {pk: tuple(files) for pk, files in found.items()}


def referenced_keys(connection: Any, columns: Iterable[Any]) -> set[str]:
    """Every storage key held in ``columns`` (the attachment tables' key columns)."""
    keys: set[str] = set()
    for column in columns:
        keys.update(str(key) for key in connection.execute(select(column).distinct()).scalars())
    return keys
