"""File attachments: where a file comes from, what type it is, and its bytes.

An :class:`Attachment` is built from a path, bytes with a filename, a file-like object or a
URL. Its type is detected from the content (magic bytes) first and the filename second, so a
PNG named ``photo.txt`` is still sent as an image. Files are read lazily and at most once;
URLs are downloaded only when the provider cannot take the URL itself (the chat flow does that
through the transport, so tests can serve the download too).

Example::

    chat.ask("What's in this image?", attachments=["diagram.png"])
    chat.ask("Summarise", attachments=[Attachment.from_bytes(data, filename="report.pdf")])
"""

from __future__ import annotations

import base64
import mimetypes
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from sa_llm.errors import AttachmentError, UnsupportedAttachmentError

if TYPE_CHECKING:
    from sa_llm.registry import ModelInfo
    from sa_llm.storage import Storage

__all__ = [
    "Attachment",
    "AttachmentKind",
    "AttachmentSource",
    "detect_mime_type",
    "ensure_model_accepts",
    "to_attachments",
]

AttachmentKind = Literal["image", "pdf", "audio", "video", "text", "file"]

#: What ``ask(..., attachments=...)`` accepts for one file.
AttachmentSource = Any  # str | os.PathLike[str] | bytes | IO[bytes] | Attachment

_TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/xml",
        "application/x-yaml",
        "application/yaml",
        "application/javascript",
        "application/x-sh",
        "application/sql",
        "application/toml",
        "application/x-python",
        "application/x-ruby",
    }
)

_EXTRA_TYPES = {
    ".md": "text/markdown",
    ".rb": "text/x-ruby",
    ".py": "text/x-python",
    ".ts": "text/x-typescript",
    ".toml": "application/toml",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".webp": "image/webp",
    ".m4a": "audio/mp4",
    ".flac": "audio/flac",
    ".opus": "audio/ogg",
    ".jsonl": "application/json",
    # Platforms disagree here (text/xml, audio/x-wav); these are the types providers document.
    ".xml": "application/xml",
    ".wav": "audio/wav",
    ".aac": "audio/aac",
    ".avif": "image/avif",
    ".mov": "video/quicktime",
    ".3gp": "video/3gpp",
    ".3g2": "video/3gpp2",
}

_HEAD = 512


def _sniff(head: bytes) -> str | None:
    """The MIME type announced by a file's first bytes, if it has a signature we know."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "audio/wav"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"ID3"):
        # An ID3 tag opens MP3s and some AAC streams: the first frame after it decides.
        return _audio_frame(head[10 + _syncsafe(head[6:10]) :]) or "audio/mpeg"
    frame = _audio_frame(head)
    if frame:
        return frame
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if head[4:8] == b"ftyp":
        return _iso_media_type(head)
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm"
    return None


def _syncsafe(size: bytes) -> int:
    """An ID3v2 tag size: four bytes of seven bits each."""
    value = 0
    for byte in size:
        value = (value << 7) | (byte & 0x7F)
    return value


def _audio_frame(head: bytes) -> str | None:
    """AAC (ADTS) or MPEG audio (MP1/2/3), from the header of the first frame.

    Both start with a sync word of ones. ADTS has twelve of them and a layer of ``00``; MPEG
    audio has eleven, and ``00`` is not one of its layers (so the two never overlap). A JPEG
    (``FF D8``) matches neither.
    """
    if len(head) < 2 or head[0] != 0xFF:
        return None
    if head[1] & 0xF6 == 0xF0:  # 1111 x 00 x: sync, MPEG-2/4 id, layer 00, protection
        return "audio/aac"
    version, layer = (head[1] >> 3) & 0b11, (head[1] >> 1) & 0b11
    if head[1] & 0xE0 == 0xE0 and version != 0b01 and layer != 0b00:
        return "audio/mpeg"
    return None


# ISO base media (``ftyp``) brands that are not plain MP4 video; the rest is ``video/mp4``.
_BRANDS = {
    b"M4A ": "audio/mp4",
    b"M4B ": "audio/mp4",
    b"M4P ": "audio/mp4",
    b"avif": "image/avif",
    b"avis": "image/avif",  # an AVIF image sequence
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"heim": "image/heic",
    b"heis": "image/heic-sequence",
    b"hevc": "image/heic-sequence",
    b"mif1": "image/heif",
    b"msf1": "image/heif-sequence",
    b"qt  ": "video/quicktime",
}


def _iso_media_type(head: bytes) -> str:
    """The type an ``ftyp`` box announces: its major brand, refined by compatible brands.

    A HEIF container (``mif1``/``msf1``) names what it holds among its compatible brands
    (``avif``, ``heic``); 3GPP brands are ``3gp4``...``3gp9``, ``3g2a``... for 3GPP2.
    """
    brand = head[8:12]
    if brand.startswith(b"3g2"):
        return "video/3gpp2"
    if brand.startswith((b"3gp", b"3ge", b"3gg", b"3gr", b"3gs")):
        return "video/3gpp"
    if brand in (b"mif1", b"msf1"):
        size = int.from_bytes(head[0:4], "big")
        compatible = head[16 : min(size, len(head))]
        brands = {compatible[i : i + 4] for i in range(0, len(compatible) - 3, 4)}
        for candidate in (b"avif", b"avis", b"heic", b"heix"):
            if candidate in brands:
                return _BRANDS[candidate]
    return _BRANDS.get(brand, "video/mp4")


def _guess_from_name(name: str | None) -> str | None:
    if not name:
        return None
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in _EXTRA_TYPES:
        return _EXTRA_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sample is still text.
        return exc.start >= len(head) - 3
    return True


def detect_mime_type(head: bytes | None, filename: str | None) -> str:
    """The MIME type of a file from its first bytes and its name (content wins)."""
    sniffed = _sniff(head) if head else None
    if sniffed:
        return sniffed
    guessed = _guess_from_name(filename)
    if guessed:
        return guessed
    if head is not None and _looks_like_text(head):
        return "text/plain"
    return "application/octet-stream"


def kind_of(mime_type: str) -> AttachmentKind:
    """The broad kind of a MIME type, which decides how providers encode it."""
    if mime_type.startswith("image/"):
        return "image"
    if mime_type == "application/pdf":
        return "pdf"
    if mime_type.startswith("audio/"):
        return "audio"
    if mime_type.startswith("video/"):
        return "video"
    if mime_type.startswith("text/") or mime_type in _TEXT_TYPES or mime_type.endswith("+xml"):
        return "text"
    if mime_type.endswith("+json"):
        return "text"
    return "file"


@dataclass(eq=False)
class Attachment:
    """One file to send with a message.

    Build it with :meth:`from_path`, :meth:`from_bytes`, :meth:`from_file` or :meth:`from_url`
    (or pass the source straight to ``ask``). The bytes are read once, on first use.

    Attributes:
        filename: the name shown to the model (never used as a path).
        url: where a remote file lives, when it came from a URL.
        path: where a local file lives, when it came from a path.
        mime_type: detected or given type; ``None`` until known for URLs without a suffix.
        storage_key: set when the file is in a :mod:`sa_llm.storage` backend (a persisted
            chat's files); the bytes are then read from there on first use.
        sha256: the SHA-256 hex digest of the bytes, once known (stored files).
    """

    filename: str | None = None
    url: str | None = None
    path: Path | None = None
    mime_type: str | None = None
    storage_key: str | None = None
    sha256: str | None = None
    _data: bytes | None = field(default=None, repr=False)
    _size: int | None = field(default=None, repr=False)
    _storage: Storage | None = field(default=None, repr=False)

    # -- constructors --

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], mime_type: str | None = None) -> Attachment:
        """A local file. Fails at once when it does not exist or is not a file."""
        resolved = Path(path).expanduser()
        if not resolved.is_file():
            raise AttachmentError(f"Attachment not found or not a file: {str(path)!r}")
        if not os.access(resolved, os.R_OK):
            raise AttachmentError(f"Attachment is not readable: {str(path)!r}")
        return cls(filename=resolved.name, path=resolved, mime_type=mime_type)

    @classmethod
    def from_bytes(
        cls, data: bytes, filename: str | None = None, mime_type: str | None = None
    ) -> Attachment:
        """Bytes in memory, with the filename to show the model."""
        return cls(filename=filename, mime_type=mime_type, _data=bytes(data))

    @classmethod
    def from_file(
        cls, file: IO[bytes] | Any, filename: str | None = None, mime_type: str | None = None
    ) -> Attachment:
        """A file-like object: an open file, Starlette's ``UploadFile``, Werkzeug's ``FileStorage``.

        The object is read now, so it may be closed afterwards.
        """
        stream = getattr(file, "file", None) or getattr(file, "stream", None) or file
        name = (
            filename
            or getattr(file, "filename", None)
            or os.path.basename(str(getattr(stream, "name", "") or ""))
            or None
        )
        declared = (
            mime_type or getattr(file, "content_type", None) or getattr(file, "mimetype", None)
        )
        try:
            data = stream.read()
        except Exception as exc:
            raise AttachmentError(f"Could not read attachment {name or file!r}: {exc}") from exc
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not isinstance(data, bytes | bytearray):
            raise AttachmentError(f"Attachment {name!r} did not read as bytes.")
        # Starlette declares "application/octet-stream" for anything it doesn't know; the
        # content's own signature beats a declaration (browsers derive it from the name).
        declared = clean_content_type(declared)
        return cls(filename=name, mime_type=_sniff(bytes(data[:64])) or declared, _data=bytes(data))

    @classmethod
    def from_url(cls, url: str, mime_type: str | None = None) -> Attachment:
        """A remote file. Sent by URL where the provider can fetch it, else downloaded."""
        path = urlsplit(url).path
        name = PurePosixPath(path).name or None
        return cls(filename=name, url=url, mime_type=mime_type or _guess_from_name(name))

    @classmethod
    def from_storage(
        cls,
        storage: Storage,
        key: str,
        *,
        filename: str | None = None,
        mime_type: str | None = None,
        byte_size: int | None = None,
        sha256: str | None = None,
    ) -> Attachment:
        """A file kept in ``storage`` under ``key``, read from there on first use."""
        return cls(
            filename=filename,
            mime_type=mime_type,
            storage_key=key,
            sha256=sha256,
            _size=byte_size,
            _storage=storage,
        )

    @classmethod
    def coerce(cls, source: AttachmentSource) -> Attachment:
        """An :class:`Attachment` from anything ``ask`` accepts."""
        if isinstance(source, Attachment):
            return source
        if isinstance(source, str) and source.startswith(("http://", "https://")):
            return cls.from_url(source)
        if isinstance(source, str | os.PathLike):
            return cls.from_path(source)
        if isinstance(source, bytes | bytearray):
            return cls.from_bytes(bytes(source))
        if isinstance(source, tuple) and len(source) == 2 and isinstance(source[0], bytes):
            return cls.from_bytes(source[0], filename=str(source[1]))
        if hasattr(source, "read") or hasattr(source, "file") or hasattr(source, "stream"):
            return cls.from_file(source)
        raise AttachmentError(f"Cannot attach an object of type {type(source).__name__}.")

    # -- data --

    @property
    def is_remote(self) -> bool:
        """True for a file that came from a URL (downloaded or not)."""
        return self.url is not None

    @property
    def loaded(self) -> bool:
        return self._data is not None

    def data(self) -> bytes:
        """The file's bytes (read on first use; remote files must be downloaded first)."""
        if self._data is None:
            if self.path is not None:
                try:
                    self._data = self.path.read_bytes()
                except OSError as exc:
                    raise AttachmentError(f"Could not read {str(self.path)!r}: {exc}") from exc
            elif self._storage is not None and self.storage_key is not None:
                self._data = self._storage.read(self.storage_key)
            else:
                raise AttachmentError(f"Attachment {self.url or self.filename!r} is not loaded.")
        return self._data

    def head(self, size: int = _HEAD) -> bytes | None:
        """The first bytes, for type detection, without reading a whole local file."""
        if self._data is not None:
            return self._data[:size]
        if self.path is not None:
            try:
                with self.path.open("rb") as handle:
                    return handle.read(size)
            except OSError as exc:
                raise AttachmentError(f"Could not read {str(self.path)!r}: {exc}") from exc
        if self._storage is not None and self.storage_key is not None:
            return self.data()[:size]
        return None

    def set_downloaded(self, data: bytes, content_type: str | None) -> None:
        """Record the bytes of a downloaded URL (called by the chat flow)."""
        self._data = data
        if content_type:
            content_type = content_type.split(";")[0].strip().lower()
        if content_type in (None, "", "application/octet-stream", "binary/octet-stream"):
            content_type = None
        self.mime_type = _sniff(data[:64]) or content_type or self.mime_type
        if self.mime_type is None:
            self.mime_type = detect_mime_type(data[:512], self.filename)

    @property
    def type(self) -> str:
        """The MIME type, detected from content and name when not given."""
        if self.mime_type is None:
            head = self.head()
            if head is None:
                return "application/octet-stream"
            self.mime_type = detect_mime_type(head, self.filename)
        return self.mime_type

    @property
    def kind(self) -> AttachmentKind:
        return kind_of(self.type)

    @property
    def byte_size(self) -> int:
        """The size in bytes (from the file system or the stored size when known)."""
        size = self.known_size()
        return len(self.data()) if size is None else size

    def known_size(self) -> int | None:
        """The size in bytes if it is known without reading the file, else ``None``."""
        if self._data is not None:
            return len(self._data)
        if self._size is not None:
            return self._size
        if self.path is not None:
            try:
                return self.path.stat().st_size
            except OSError:
                return None
        return None

    def base64(self) -> str:
        return base64.b64encode(self.data()).decode("ascii")

    def data_url(self) -> str:
        return f"data:{self.type};base64,{self.base64()}"

    def text(self) -> str:
        """The file decoded as UTF-8 (for text kinds, which are inlined)."""
        return self.data().decode("utf-8", errors="replace")

    @property
    def display_name(self) -> str:
        return self.filename or ("attachment" + (mimetypes.guess_extension(self.type) or ""))

    def needs_download(self, accepts_url: bool) -> bool:
        """Whether the flow must download this URL before sending."""
        if self.url is None or self._data is not None:
            return False
        return not (accepts_url and self.mime_type is not None)

    def check_size(self, limit: int) -> None:
        """Raise :class:`AttachmentError` when the file is larger than ``limit`` bytes."""
        size = self.known_size()
        if size is not None and size > limit:
            raise AttachmentError(
                f"Attachment {self.display_name!r} is {size:,} bytes; the limit is {limit:,} "
                "(configure max_attachment_bytes to change it)."
            )


def clean_content_type(value: str | None) -> str | None:
    """A declared MIME type without parameters; ``None`` for unknown (octet-stream) or empty."""
    if not value:
        return None
    value = str(value).split(";")[0].strip().lower()
    if value in ("", "application/octet-stream", "binary/octet-stream"):
        return None
    return value


#: The registry's input modalities that let a model read each kind of file. PDFs also go to
#: vision models: OpenAI, Anthropic and Gemini document PDF input for every model that reads
#: images. Text files are inlined as text, which every model reads.
_ACCEPTED_BY: dict[str, tuple[str, ...]] = {
    "image": ("image",),
    "pdf": ("pdf", "file", "image"),
    "audio": ("audio",),
    "video": ("video",),
    "file": ("file",),
}


def ensure_model_accepts(model: ModelInfo, attachments: Sequence[Attachment]) -> None:
    """Raise when the registry says ``model`` cannot read one of ``attachments``.

    Models the registry knows nothing about (``assume_model_exists``, an empty modality list)
    are not checked. Attachments whose type is not known yet are skipped.

    Raises:
        UnsupportedAttachmentError: names the file, its type and what the model reads.
    """
    inputs = tuple(model.input_modalities)
    if not inputs or model.metadata.get("assumed"):
        return
    for attachment in attachments:
        if attachment.mime_type is None and attachment.head() is None:
            continue
        kind = attachment.kind
        needed = _ACCEPTED_BY.get(kind, ())
        if needed and not any(modality in inputs for modality in needed):
            raise UnsupportedAttachmentError(
                f"{model.id} ({model.provider}) cannot read {kind} files: "
                f"{attachment.display_name!r} is {attachment.type}, and the registry lists "
                f"its inputs as {', '.join(inputs)}. Choose a model that reads {kind} input "
                "(or, if the registry is wrong, pass assume_model_exists=True with a provider)."
            )


def to_attachments(
    sources: AttachmentSource | Sequence[AttachmentSource] | None,
) -> tuple[Attachment, ...]:
    """Normalise what ``ask(..., attachments=...)`` received into attachments."""
    if sources is None:
        return ()
    if isinstance(sources, str | bytes | bytearray | os.PathLike | Attachment) or (
        isinstance(sources, tuple) and len(sources) == 2 and isinstance(sources[0], bytes)
    ):
        return (Attachment.coerce(sources),)
    if isinstance(sources, Iterable) and not hasattr(sources, "read"):
        return tuple(Attachment.coerce(source) for source in sources)
    return (Attachment.coerce(sources),)
