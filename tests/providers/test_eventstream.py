"""The AWS binary event-stream decoder: framing, every header type, checksums, pieces.

Frames are built here by a small encoder written from the format description (prelude with
lengths and CRC32, typed headers, payload, message CRC32), and the recorded Bedrock streams are
decoded in pieces of every awkward size.
"""

from __future__ import annotations

import base64
import itertools
import json
import struct
import uuid
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sa_llm
from sa_llm.config import Config
from sa_llm.providers.bedrock import Bedrock
from sa_llm.providers.bedrock._eventstream import EventStreamDecoder, EventStreamMessage

WIRE = Path(__file__).parents[1] / "fixtures" / "wire" / "bedrock"


def header(name: str, kind: int, value: Any) -> bytes:
    """One encoded header: name length, name, type, value (lengths prefixed where variable)."""
    encoded = bytes([len(name)]) + name.encode() + bytes([kind])
    if kind in (0, 1):
        return encoded
    if kind == 2:
        return encoded + struct.pack(">b", value)
    if kind == 3:
        return encoded + struct.pack(">h", value)
    if kind == 4:
        return encoded + struct.pack(">i", value)
    if kind in (5, 8):
        return encoded + struct.pack(">q", value)
    if kind in (6, 7):
        raw = value if isinstance(value, bytes) else value.encode()
        return encoded + struct.pack(">H", len(raw)) + raw
    assert kind == 9
    return encoded + bytes(value)


def frame(headers: bytes, payload: bytes) -> bytes:
    """A whole message with both checksums."""
    total = 12 + len(headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + headers + payload
    return body + struct.pack(">I", zlib.crc32(body))


def event(event_type: str, payload: dict[str, Any]) -> bytes:
    headers = (
        header(":event-type", 7, event_type)
        + header(":content-type", 7, "application/json")
        + header(":message-type", 7, "event")
    )
    return frame(headers, json.dumps(payload).encode())


def decode_in_pieces(data: bytes, size: int) -> list[EventStreamMessage]:
    decoder = EventStreamDecoder("bedrock")
    messages = []
    for start in range(0, len(data), size):
        messages.extend(decoder.feed(data[start : start + size]))
    decoder.flush()
    return messages


def recorded_streams() -> list[bytes]:
    streams = []
    for path in sorted(WIRE.glob("*.json")):
        for interaction in json.loads(path.read_text())["interactions"]:
            response = interaction["response"]
            if "eventstream" in response["headers"].get("content-type", ""):
                streams.append(base64.b64decode(response["body"]))
    return streams


def test_every_header_type_is_decoded() -> None:
    moment = datetime(2024, 5, 17, 8, 30, 1, 250000, tzinfo=timezone.utc)
    millis = int((moment - datetime(1970, 1, 1, tzinfo=timezone.utc)) / timedelta(milliseconds=1))
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    headers = (
        header("yes", 0, None)
        + header("no", 1, None)
        + header("byte", 2, -7)
        + header("short", 3, -300)
        + header("int", 4, 70000)
        + header("long", 5, -(2**40))
        + header("bytes", 6, b"\x00\xff")
        + header("string", 7, "héllo")
        + header("time", 8, millis)
        + header("id", 9, ident.bytes)
    )
    (message,) = EventStreamDecoder().feed(frame(headers, b"{}"))
    assert message.headers == {
        "yes": True,
        "no": False,
        "byte": -7,
        "short": -300,
        "int": 70000,
        "long": -(2**40),
        "bytes": b"\x00\xff",
        "string": "héllo",
        "time": moment,
        "id": ident,
    }
    assert message.payload == b"{}"


def test_message_accessors() -> None:
    (message,) = EventStreamDecoder().feed(event("contentBlockDelta", {"delta": {"text": "Hi"}}))
    assert message.message_type == "event"
    assert message.event_type == "contentBlockDelta"
    assert message.json() == {"delta": {"text": "Hi"}}


def test_one_byte_pieces_give_the_same_messages_as_the_whole() -> None:
    data = b"".join(event("contentBlockDelta", {"delta": {"text": str(i)}}) for i in range(5))
    whole = EventStreamDecoder().feed(data)
    assert len(whole) == 5
    assert decode_in_pieces(data, 1) == whole


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_any_split_gives_the_same_messages(cuts: list[int]) -> None:
    data = b"".join(event("contentBlockDelta", {"delta": {"text": "x" * i}}) for i in (0, 3, 40, 7))
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    decoder = EventStreamDecoder()
    messages = []
    for start, end in itertools.pairwise(points):
        messages.extend(decoder.feed(data[start:end]))
    decoder.flush()
    assert messages == EventStreamDecoder().feed(data)


def test_several_messages_and_a_partial_one_in_one_piece() -> None:
    first, second = event("messageStart", {"role": "assistant"}), event("messageStop", {})
    decoder = EventStreamDecoder()
    assert [m.event_type for m in decoder.feed(first + second[:5])] == ["messageStart"]
    assert decoder.pending == 5
    assert [m.event_type for m in decoder.feed(second[5:])] == ["messageStop"]
    assert decoder.pending == 0


def test_messages_do_not_share_their_headers() -> None:
    data = event("contentBlockDelta", {"delta": {"text": "a"}}) * 2
    first, second = EventStreamDecoder().feed(data)
    first.headers[":event-type"] = "changed"
    assert second.headers[":event-type"] == "contentBlockDelta"


def test_many_distinct_header_sections() -> None:
    data = b"".join(frame(header("n", 4, i), b"") for i in range(300))
    assert [m.headers["n"] for m in decode_in_pieces(data, 5)] == list(range(300))


def test_empty_payload_and_no_headers() -> None:
    (message,) = EventStreamDecoder().feed(frame(b"", b""))
    assert message.headers == {} and message.payload == b""
    assert message.message_type == "event" and message.event_type is None


@pytest.mark.parametrize("size", [1, 2, 7, 13, 1024])
def test_recorded_streams_decode_in_pieces(size: int) -> None:
    for data in recorded_streams():
        messages = decode_in_pieces(data, size)
        count, position = 0, 0
        while position < len(data):  # the frame count, from the lengths alone
            position += struct.unpack_from(">I", data, position)[0]
            count += 1
        assert len(messages) == count
        assert all(m.headers[":message-type"] == "event" for m in messages)
        assert all(isinstance(m.json(), dict) for m in messages)


def test_prelude_checksum_mismatch_fails_at_once() -> None:
    data = bytearray(event("messageStart", {}))
    data[9] ^= 0x01  # inside the prelude CRC
    decoder = EventStreamDecoder("bedrock")
    with pytest.raises(sa_llm.ResponseParseError, match="prelude checksum") as caught:
        decoder.feed(bytes(data[:12]))  # the rest of the message never needs to arrive
    assert caught.value.provider == "bedrock"


def test_corrupt_length_is_caught_by_the_prelude_checksum() -> None:
    data = bytearray(event("messageStart", {}))
    data[3] ^= 0x10  # the total length
    with pytest.raises(sa_llm.ResponseParseError, match="prelude checksum"):
        EventStreamDecoder().feed(bytes(data))


def test_message_checksum_mismatch() -> None:
    data = bytearray(event("contentBlockDelta", {"delta": {"text": "Hello"}}))
    data[-10] ^= 0x20  # a payload byte
    with pytest.raises(sa_llm.ResponseParseError, match="message checksum"):
        EventStreamDecoder().feed(bytes(data))


def test_impossible_lengths() -> None:
    prelude = struct.pack(">II", 15, 0)
    with pytest.raises(sa_llm.ResponseParseError, match="impossible lengths"):
        EventStreamDecoder().feed(prelude + struct.pack(">I", zlib.crc32(prelude)))


def test_unknown_header_type_and_truncated_header() -> None:
    with pytest.raises(sa_llm.ResponseParseError, match="unknown type 12"):
        EventStreamDecoder().feed(frame(b"\x01a\x0c", b""))
    truncated = header("name", 7, "value")[:-2]
    with pytest.raises(sa_llm.ResponseParseError, match="header"):
        EventStreamDecoder().feed(frame(truncated, b"{}"))


def test_truncated_stream_raises_at_flush() -> None:
    data = event("messageStart", {}) + event("messageStop", {})
    decoder = EventStreamDecoder("bedrock")
    assert len(decoder.feed(data[:-3])) == 1
    with pytest.raises(sa_llm.StreamInterruptedError, match="inside a message") as caught:
        decoder.flush()
    assert caught.value.provider == "bedrock"
    decoder.flush()  # the broken message is dropped; the decoder is clean again


def test_a_stream_of_whole_messages_flushes_cleanly() -> None:
    decoder = EventStreamDecoder()
    decoder.feed(event("messageStart", {}))
    decoder.flush()


# -- exception messages, through the ConverseStream parser ----------------------------------------


def exception(kind: str, message: str) -> bytes:
    headers = (
        header(":exception-type", 7, kind)
        + header(":content-type", 7, "application/json")
        + header(":message-type", 7, "exception")
    )
    return frame(headers, json.dumps({"message": message}).encode())


def parser() -> Any:
    return Bedrock(Config()).stream_parser()


@pytest.mark.parametrize(
    ("kind", "message", "error"),
    [
        ("throttlingException", "Too many requests, please wait.", sa_llm.RateLimitError),
        ("serviceUnavailableException", "Service unavailable.", sa_llm.OverloadedError),
        ("modelStreamErrorException", "The model stream failed.", sa_llm.ServerError),
        ("internalServerException", "Internal error.", sa_llm.ServerError),
        ("validationException", "Bad input.", sa_llm.BadRequestError),
        (
            "validationException",
            "Input is too long for requested model.",
            sa_llm.ContextLengthExceededError,
        ),
    ],
)
def test_exception_messages_raise_typed_errors(
    kind: str, message: str, error: type[Exception]
) -> None:
    stream = parser()
    data = event("messageStart", {"role": "assistant"}) + exception(kind, message)
    last = len(data) - 1
    for start in range(0, last, 7):  # nothing comes out before the exception is complete
        assert stream.feed(data[start : min(start + 7, last)]) == []
    with pytest.raises(error) as caught:
        stream.feed(data[last:])
    assert type(caught.value) is error
    assert message in str(caught.value)
    assert caught.value.provider == "bedrock"  # type: ignore[attr-defined]


def test_error_messages_raise_with_their_code() -> None:
    headers = (
        header(":error-code", 7, "InternalFailure")
        + header(":error-message", 7, "Something broke")
        + header(":message-type", 7, "error")
    )
    with pytest.raises(sa_llm.ProviderError, match="Something broke"):
        parser().feed(frame(headers, b""))


def test_stream_without_message_stop_is_interrupted() -> None:
    stream = parser()
    chunks = stream.feed(
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}})
    )
    assert [c.content for c in chunks] == ["Hi"]
    with pytest.raises(sa_llm.StreamInterruptedError):
        stream.close()


def test_stream_cut_inside_a_message_is_interrupted() -> None:
    stream = parser()
    data = event("messageStop", {"stopReason": "end_turn"})
    stream.feed(data[:-1])
    with pytest.raises(sa_llm.StreamInterruptedError, match="inside a message"):
        stream.close()


def test_payload_that_is_not_json() -> None:
    headers = header(":event-type", 7, "contentBlockDelta") + header(":message-type", 7, "event")
    with pytest.raises(sa_llm.ResponseParseError, match="not JSON"):
        parser().feed(frame(headers, b"{nope"))
