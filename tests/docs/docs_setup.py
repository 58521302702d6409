"""Helpers for the hidden setup blocks of the documentation pages (``<!-- docs-example: setup``).

A page's fragments take things for granted: the four classes of "Getting started", a session,
a chat row, a ``models`` module to import from. These make them in one line, so the hidden
setup stays short and every page builds them the same way. Nothing here is shown to readers.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.orm import DeclarativeBase, Session

from persisted import default_models

#: The repository (for the recorded traffic a page replays).
ROOT = Path(__file__).resolve().parents[2]


def standard_models(
    *,
    attachments: bool = False,
    usage: bool = False,
    events: bool = False,
    without: tuple[str, ...] = (),
) -> types.SimpleNamespace:
    """The four classes of "Getting started" on a fresh ``Base`` (plus the optional ones; less
    those named in ``without``, which the page declares itself): the test suite's
    ``default_models``, whose chats also have a ``title``."""

    optional = {"Attachment": attachments, "Usage": usage, "ChatEvent": events}
    classes = default_models(
        *(name for name, wanted in optional.items() if wanted),
        **dict.fromkeys(without),  # None: the page declares that one itself
    )
    if "ChatEvent" in classes:
        classes["Event"] = classes.pop("ChatEvent")
    return types.SimpleNamespace(**classes)


def module(name: str, **attributes: Any) -> types.ModuleType:
    """Register a module ``name`` (``"myapp.models"``: its parents too) holding ``attributes``,
    for the page's ``from models import Chat``. The runner drops it after the page."""
    parts = name.split(".")
    for depth in range(1, len(parts) + 1):
        dotted = ".".join(parts[:depth])
        if dotted not in sys.modules or dotted == name:
            sys.modules[dotted] = types.ModuleType(dotted)
            if depth > 1:
                setattr(
                    sys.modules[".".join(parts[: depth - 1])], parts[depth - 1], sys.modules[dotted]
                )
    target = sys.modules[name]
    for key, value in attributes.items():
        setattr(target, key, value)
    return target


def models_module(name: str = "models", **options: Any) -> types.ModuleType:
    """``standard_models(**options)`` as the module ``name``."""
    return module(name, **vars(standard_models(**options)))


def open_session(base: type[DeclarativeBase], url: str = "sqlite:///app.db") -> Session:
    """A session on a new database (in the test's directory) with ``base``'s tables."""
    engine = create_engine(url)
    base.metadata.create_all(engine)
    return Session(engine)


def png() -> bytes:
    """A valid 1x1 PNG."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def files(*names: str) -> None:
    """Write the files a page's examples attach, in the working directory (the test's)."""
    from pathlib import Path

    for name in names:
        path = Path(name)
        if path.suffix in {".png", ".jpg"}:
            path.write_bytes(png())
        elif path.suffix == ".pdf":
            path.write_bytes(b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n")
        else:
            path.write_text("a,b\n1,2\n", encoding="utf-8")
