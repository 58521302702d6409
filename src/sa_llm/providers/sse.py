"""Server-sent events: an incremental, spec-exact decoder (WHATWG "event stream" parsing).

The rules are those of https://html.spec.whatwg.org/multipage/server-sent-events.html
("Parsing an event stream" and "Interpreting an event stream"):

* the stream is UTF-8; one leading byte order mark is dropped and invalid bytes become U+FFFD;
* lines end in CR, LF or CRLF, and nothing else (``str.splitlines`` would also split on
  U+2028, form feeds and more, so it is never used); the pair may be split across two chunks;
* a line starting with ``:`` is a comment;
* ``field: value`` loses exactly one space after the colon; a line without a colon is a field
  with an empty value;
* ``data`` lines are joined with ``\\n``; ``event`` names the event (``"message"`` when absent);
  ``id`` sets the last event id, which carries over to later events, unless it contains NUL;
  ``retry`` is honoured only when it is all ASCII digits; other fields are ignored;
* a blank line dispatches the event, unless no ``data`` line was seen since the last one.

One deliberate departure: at end of stream the spec drops an event whose blank line never
came; :meth:`SSEDecoder.flush` dispatches it instead (see there why).

Feed bytes split anywhere, even inside a UTF-8 character or between CR and LF; every complete
event comes out as soon as its blank line has arrived. The decoder works on bytes and decodes
each event's data once, so its cost per event is a handful of C-level calls.

Example::

    decoder = SSEDecoder()
    for event in decoder.feed(b"event: ping\\ndata: {}\\n\\n"):
        print(event.event, event.json())
    decoder.flush()  # at end of stream
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["SSEDecoder", "ServerSentEvent", "aiter_sse", "iter_sse"]

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event.

    Attributes:
        event: The event type: the last ``event`` field of the block, ``"message"`` without one.
        data: The ``data`` lines of the block joined with ``"\\n"``.
        id: The last event id in force when the event was dispatched (it persists from block to
            block, as the spec says); ``None`` if the stream never set one.
        retry: The reconnection time in milliseconds in force (the last valid ``retry`` field of
            the stream so far, which like the id persists); ``None`` if never set.
    """

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        """The data parsed as JSON (raises :class:`json.JSONDecodeError` if it is not)."""
        return json.loads(self.data)


# A frozen dataclass's __init__ sets each field through object.__setattr__, which is about half
# of the decoder's cost per event; the decoder fills the slots through their descriptors instead
# (same object, same immutability for everyone else, twice as fast to build).
_new_event = object.__new__
_set_event = ServerSentEvent.__dict__["event"].__set__
_set_data = ServerSentEvent.__dict__["data"].__set__
_set_id = ServerSentEvent.__dict__["id"].__set__
_set_retry = ServerSentEvent.__dict__["retry"].__set__


class SSEDecoder:
    """Incremental decoder: :meth:`feed` bytes in any pieces, :meth:`flush` at end of stream.

    Attributes:
        comments: How many comment lines (``:`` lines, such as keep-alives) were seen.
    """

    __slots__ = (
        "_data",
        "_event",
        "_head",
        "_last_id",
        "_retry",
        "_skip_lf",
        "_started",
        "_tail",
        "comments",
    )

    def __init__(self) -> None:
        # Data lines of the event being built, still bytes: decoding once per event is cheaper
        # than once per line, and gives the same text since a line end never splits a character.
        self._data: list[bytes] = []
        self._event: bytes = b""
        self._last_id: str | None = None
        self._retry: int | None = None
        # Pieces of the current, unterminated line. Kept as a list so that a huge line arriving
        # in many small chunks is joined once instead of re-copied on every chunk.
        self._tail: list[bytes] = []
        # Bytes at stream start that may still turn out to be a BOM (chunks shorter than 3).
        self._head = b""
        self._started = False
        # The previous chunk ended in CR, which already ended its line: an LF starting the
        # next chunk is the second half of that CRLF, not a blank line of its own.
        self._skip_lf = False
        self.comments = 0

    @property
    def last_event_id(self) -> str | None:
        """The last event id set by an ``id`` field (what a reconnect sends as Last-Event-ID)."""
        return self._last_id

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        """Decode the next piece of the stream; return the events it completed, in order."""
        if not data:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if data[0] == 10:
                data = data[1:]
                if not data:
                    return []
        if not self._started:
            data = self._strip_bom(data)
            if not data:
                return []
        if b"\r" in data:
            # Normalise to LF so that a single split finds every line end.
            self._skip_lf = data[-1] == 13
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if b"\n" not in data:
            self._tail.append(data)
            return []
        tail = self._tail
        if tail:
            tail.append(data)
            data = b"".join(tail)
            tail.clear()
        lines = data.split(b"\n")
        last = lines.pop()
        if last:
            tail.append(last)
        return self._lines(lines)

    def flush(self) -> list[ServerSentEvent]:
        """End of stream: return the last event if the stream ended without its blank line.

        The spec discards an event whose blank line never came. Servers that simply stop after
        their last ``data:`` line are common enough that this decoder is lenient instead: a final
        line without its line end counts as complete, and then an event with data is dispatched
        as if the blank line had followed. A block with no data still yields nothing.

        The decoder is then ready for a new stream; the last event id and retry carry over, as
        they do when an EventSource reconnects.
        """
        pending = self._head + b"".join(self._tail)
        self._head = b""
        self._tail.clear()
        self._started = False
        self._skip_lf = False
        lines = [pending, b""] if pending else [b""]
        return self._lines(lines)

    def _strip_bom(self, data: bytes) -> bytes:
        head = self._head + data if self._head else data
        if len(head) < 3 and _BOM.startswith(head):
            self._head = head
            return b""
        self._head = b""
        self._started = True
        return head[3:] if head.startswith(_BOM) else head

    def _lines(self, lines: list[bytes]) -> list[ServerSentEvent]:
        # The hot loop: one pass over complete lines, the common shapes ("data: ...", blank,
        # "event: ...") tested first and the state kept in locals until the end.
        events: list[ServerSentEvent] = []
        parts = self._data
        event = self._event
        for line in lines:
            if not line:
                if parts:
                    sse = _new_event(ServerSentEvent)
                    _set_event(sse, event.decode("utf-8", "replace") if event else "message")
                    _set_data(sse, b"\n".join(parts).decode("utf-8", "replace"))
                    _set_id(sse, self._last_id)
                    _set_retry(sse, self._retry)
                    events.append(sse)
                    parts.clear()
                event = b""
            elif line.startswith(b"data: "):
                parts.append(line[6:])
            elif line.startswith(b"event: "):
                event = line[7:]
            else:
                name, _, value = line.partition(b":")
                if not name:
                    self.comments += 1
                    continue
                if value.startswith(b" "):
                    value = value[1:]
                if name == b"data":
                    parts.append(value)
                elif name == b"event":
                    event = value
                elif name == b"id":
                    if b"\0" not in value:
                        self._last_id = value.decode("utf-8", "replace")
                elif name == b"retry" and value.isdigit():
                    # bytes.isdigit is ASCII-only, exactly the spec's "only ASCII digits".
                    self._retry = int(value)
        self._event = event
        return events


def iter_sse(chunks: Iterable[bytes]) -> Iterator[ServerSentEvent]:
    """The events of a byte stream given in chunks (for example ``response.iter_bytes()``)."""
    decoder = SSEDecoder()
    feed = decoder.feed
    for chunk in chunks:
        yield from feed(chunk)
    yield from decoder.flush()


async def aiter_sse(chunks: AsyncIterable[bytes]) -> AsyncIterator[ServerSentEvent]:
    """The events of an async byte stream (for example ``response.aiter_bytes()``)."""
    decoder = SSEDecoder()
    feed = decoder.feed
    async for chunk in chunks:
        for event in feed(chunk):
            yield event
    for event in decoder.flush():
        yield event
