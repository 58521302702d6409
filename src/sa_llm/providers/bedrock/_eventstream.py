"""The AWS binary event stream (``application/vnd.amazon.eventstream``): an incremental decoder.

Bedrock's ``converse-stream`` answers with binary frames instead of SSE. Each frame is::

    total length (uint32) | headers length (uint32) | prelude CRC32 (uint32)
    headers ...           | payload ...             | message CRC32 (uint32)

all big-endian; the prelude CRC covers the two lengths, the message CRC everything before it.
A header is a 1-byte name length, the name, a 1-byte value type and the value: ``0``/``1``
true/false (no bytes), ``2`` int8, ``3`` int16, ``4`` int32, ``5`` int64, ``6`` bytes and
``7`` UTF-8 string (each with a 2-byte length), ``8`` timestamp (int64 milliseconds since the
epoch), ``9`` UUID (16 bytes).

:class:`EventStreamDecoder` has the shape of the SSE decoder: :meth:`~EventStreamDecoder.feed`
bytes split anywhere (down to single bytes) and get the messages they complete;
:meth:`~EventStreamDecoder.flush` at the end raises if a message was cut short. A checksum
that does not match raises :class:`~sa_llm.errors.ResponseParseError` at once, because the
lengths that frame every later message can no longer be trusted.

Example::

    decoder = EventStreamDecoder("bedrock")
    for message in decoder.feed(chunk):
        print(message.event_type, message.json())
    decoder.flush()
"""

from __future__ import annotations

import json
import struct
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple
from zlib import crc32

from sa_llm import errors

__all__ = ["EventStreamDecoder", "EventStreamMessage", "HeaderValue"]

HeaderValue = bool | int | bytes | str | datetime | uuid.UUID

_PRELUDE = struct.Struct(">III")
_CRC = struct.Struct(">I")
_PRELUDE_SIZE = 12
_OVERHEAD = 16  # prelude + message CRC
# The format allows 16 MiB messages; anything far beyond is a corrupt length, not a message.
_MAX_MESSAGE = 24 * 1024 * 1024
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_FIXED = {
    2: struct.Struct(">b"),
    3: struct.Struct(">h"),
    4: struct.Struct(">i"),
    5: struct.Struct(">q"),
}


class EventStreamMessage(NamedTuple):
    """One decoded message: its headers (name -> typed value) and its raw payload."""

    headers: dict[str, HeaderValue]
    payload: bytes

    @property
    def message_type(self) -> str:
        """``event``, ``exception`` or ``error`` (the ``:message-type`` header)."""
        value = self.headers.get(":message-type")
        return value if isinstance(value, str) else "event"

    @property
    def event_type(self) -> str | None:
        """The ``:event-type`` header (``contentBlockDelta``, ...), if any."""
        value = self.headers.get(":event-type")
        return value if isinstance(value, str) else None

    def json(self) -> Any:
        """The payload parsed as JSON (raises :class:`json.JSONDecodeError` if it is not)."""
        return json.loads(self.payload)


class EventStreamDecoder:
    """Incremental decoder of AWS event-stream frames; one instance per stream.

    Args:
        provider: the provider name that typed errors carry.
    """

    __slots__ = ("_buffer", "_known_headers", "provider")

    def __init__(self, provider: str | None = None) -> None:
        self.provider = provider
        # Bytes of the message being received; stays empty while pieces hold whole messages.
        self._buffer = bytearray()
        # A stream repeats a handful of header sections (one per event type) thousands of
        # times: each distinct section is decoded once.
        self._known_headers: dict[bytes, dict[str, HeaderValue]] = {}

    @property
    def pending(self) -> int:
        """How many bytes of an incomplete message are buffered."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[EventStreamMessage]:
        """Decode the next piece of the stream; return the messages it completed, in order.

        Raises:
            ResponseParseError: a checksum does not match, or a length or header is invalid.
        """
        buffer = self._buffer
        if buffer:
            buffer += data
            source: bytes | bytearray = buffer
        else:
            source = data
        messages: list[EventStreamMessage] = []
        try:
            with memoryview(source) as view:
                start = self._scan(view, messages)
        except errors.ResponseParseError:
            buffer.clear()  # the framing is lost: nothing after this point can be trusted
            raise
        if buffer:
            del buffer[:start]
        elif start < len(data):
            buffer += data[start:]
        return messages

    def _scan(self, view: memoryview, messages: list[EventStreamMessage]) -> int:
        """Decode the whole messages in ``view`` into ``messages``; return where they end."""
        size = len(view)
        start = 0
        known = self._known_headers
        while size - start >= _PRELUDE_SIZE:
            total, headers_length, prelude_crc = _PRELUDE.unpack_from(view, start)
            if crc32(view[start : start + 8]) != prelude_crc:
                raise self._error("an event-stream prelude checksum does not match")
            if total < _OVERHEAD or total > _MAX_MESSAGE or headers_length > total - _OVERHEAD:
                raise self._error(
                    f"an event-stream message has impossible lengths ({total}, {headers_length})"
                )
            end = start + total
            if size < end:
                break
            if crc32(view[start : end - 4]) != _CRC.unpack_from(view, end - 4)[0]:
                raise self._error("an event-stream message checksum does not match")
            headers_end = start + _PRELUDE_SIZE + headers_length
            raw = bytes(view[start + _PRELUDE_SIZE : headers_end])
            headers = known.get(raw)
            if headers is None:
                headers = self._headers(raw)
                if len(known) < 64:
                    known[raw] = headers
            # A copy per message: the cached dict must not change under a caller's feet.
            messages.append(EventStreamMessage(dict(headers), bytes(view[headers_end : end - 4])))
            start = end
        return start

    def flush(self) -> None:
        """End of stream: raise :class:`StreamInterruptedError` if a message is incomplete."""
        if self._buffer:
            pending = len(self._buffer)
            self._buffer.clear()
            raise errors.StreamInterruptedError(
                f"The event stream ended inside a message ({pending} bytes received); "
                "the reply is incomplete.",
                provider=self.provider,
            )

    def _error(self, what: str) -> errors.ResponseParseError:
        return errors.ResponseParseError(
            f"Malformed reply from {self.provider or 'the provider'}: {what}.",
            provider=self.provider,
        )

    def _headers(self, frame: bytes) -> dict[str, HeaderValue]:
        headers: dict[str, HeaderValue] = {}
        position, end = 0, len(frame)
        try:
            while position < end:
                name_end = position + 1 + frame[position]
                name = frame[position + 1 : name_end].decode("utf-8")
                kind = frame[name_end]
                position = name_end + 1
                value: HeaderValue
                if kind == 7 or kind == 6:
                    value_end = position + 2 + int.from_bytes(frame[position : position + 2], "big")
                    raw = frame[position + 2 : value_end]
                    value = raw.decode("utf-8") if kind == 7 else raw
                    position = value_end
                elif kind == 0 or kind == 1:
                    value = kind == 0
                elif kind in _FIXED:
                    fixed = _FIXED[kind]
                    value = fixed.unpack_from(frame, position)[0]
                    position += fixed.size
                elif kind == 8:
                    millis = _FIXED[5].unpack_from(frame, position)[0]
                    value = _EPOCH + timedelta(milliseconds=millis)
                    position += 8
                elif kind == 9:
                    value = uuid.UUID(bytes=frame[position : position + 16])
                    position += 16
                else:
                    raise self._error(f"an event-stream header has unknown type {kind}")
                headers[name] = value
        except (IndexError, ValueError, struct.error):
            raise self._error("an event-stream header is truncated or not UTF-8") from None
        if position != end:
            raise self._error("an event-stream header runs past its section")
        return headers
