"""Server-sent events: an incremental, spec-exact decoder (WHATWG "event stream" parsing).

Lines end in CR, LF or CRLF (never ``str.splitlines``), a CR at the end of one chunk may be
followed by the LF of the next, comments (``:``) are ignored, ``data`` lines join with ``\\n``,
``event``/``id``/``retry`` are honoured and a blank line dispatches the event.

Example::

    decoder = SSEDecoder()
    for event in decoder.feed(b"event: ping\\ndata: {}\\n\\n"):
        print(event.event, event.json())
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["SSEDecoder", "ServerSentEvent", "aiter_sse", "iter_sse"]


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        return json.loads(self.data)


class SSEDecoder:
    """Feed bytes in any pieces; get complete events out."""

    __slots__ = ("_buffer", "_data", "_event", "_last_id", "_retry", "_started", "comments")

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._event: str | None = None
        self._last_id: str | None = None
        self._retry: int | None = None
        self._started = False
        self.comments = 0

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        buffer = self._buffer + data if self._buffer else data
        if not self._started and buffer:
            if len(buffer) < 3 and b"\xef\xbb\xbf".startswith(buffer):
                self._buffer = buffer
                return []
            self._started = True
            if buffer.startswith(b"\xef\xbb\xbf"):
                buffer = buffer[3:]
        if b"\r" in buffer:
            # A CR at the very end may be the first half of a CRLF: keep it for the next chunk.
            if buffer.endswith(b"\r"):
                self._buffer = b"\r"
                buffer = buffer[:-1]
                keep_cr = True
            else:
                keep_cr = False
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if keep_cr:
                buffer += b"\n"
                lines = buffer.split(b"\n")
                self._buffer = b"\r"
                events = self._lines(lines[:-1])
                return events
        lines = buffer.split(b"\n")
        self._buffer = lines.pop()
        return self._lines(lines)

    def _lines(self, lines: list[bytes]) -> list[ServerSentEvent]:
        events: list[ServerSentEvent] = []
        for raw in lines:
            if not raw:
                if self._data:
                    events.append(
                        ServerSentEvent(
                            event=self._event or "message",
                            data="\n".join(self._data),
                            id=self._last_id,
                            retry=self._retry,
                        )
                    )
                self._data = []
                self._event = None
                continue
            line = raw.decode("utf-8", errors="replace")
            if line[0] == ":":
                self.comments += 1
                continue
            name, sep, value = line.partition(":")
            if sep and value.startswith(" "):
                value = value[1:]
            if name == "data":
                self._data.append(value)
            elif name == "event":
                self._event = value
            elif name == "id" and "\0" not in value:
                self._last_id = value
            elif name == "retry" and value.isdigit() and value.isascii():
                self._retry = int(value)
        return events

    def flush(self) -> list[ServerSentEvent]:
        """End of stream: a final line without its terminator is completed first."""
        pending = self._buffer
        self._buffer = b""
        lines = [pending.rstrip(b"\r")] if pending and pending != b"\r" else []
        events = self._lines(lines)
        return events + self._lines([b""]) if self._data else events


def iter_sse(chunks: Iterable[bytes]) -> Iterator[ServerSentEvent]:
    decoder = SSEDecoder()
    for chunk in chunks:
        yield from decoder.feed(chunk)
    yield from decoder.flush()


async def aiter_sse(chunks: AsyncIterable[bytes]) -> AsyncIterator[ServerSentEvent]:
    decoder = SSEDecoder()
    async for chunk in chunks:
        for event in decoder.feed(chunk):
            yield event
    for event in decoder.flush():
        yield event
