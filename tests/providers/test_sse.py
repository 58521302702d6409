"""The server-sent events decoder: WHATWG examples and rules, recorded streams, and properties.

The properties check the decoder against ``reference_decode``, a deliberately naive reading of
the spec (decode the whole stream, walk it character by character), over arbitrary chunkings.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sa_llm.providers.sse import ServerSentEvent, SSEDecoder, aiter_sse, iter_sse

FIXTURES = Path(__file__).parents[1] / "fixtures" / "sse"
BOM = b"\xef\xbb\xbf"


def decode(*chunks: bytes) -> list[ServerSentEvent]:
    """Every event of a stream given in ``chunks``, flush included."""
    return list(iter_sse(chunks))


def fed(*chunks: bytes) -> list[ServerSentEvent]:
    """The events ``feed`` returns for ``chunks``, without the end-of-stream flush."""
    decoder = SSEDecoder()
    return [event for chunk in chunks for event in decoder.feed(chunk)]


def split(stream: bytes, cuts: Iterable[int]) -> list[bytes]:
    """``stream`` cut at ``cuts`` (any order, duplicates give empty chunks)."""
    bounds = [0, *sorted(cuts), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


def one_byte_at_a_time(stream: bytes) -> list[bytes]:
    return [stream[i : i + 1] for i in range(len(stream))]


async def agen(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


# --- the reference: the spec read literally ------------------------------------------------------


class Decoded(NamedTuple):
    events: list[ServerSentEvent]
    comments: int


def reference_decode(stream: bytes) -> Decoded:
    """The spec's algorithm, written for clarity, with the decoder's documented flush leniency."""
    text = stream.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines: list[str] = []
    start = i = 0
    while i < len(text):
        if text[i] in "\r\n":
            lines.append(text[start:i])
            if text[i] == "\r" and text[i + 1 : i + 2] == "\n":
                i += 1
            start = i + 1
        i += 1
    if start < len(text):
        lines.append(text[start:])  # the unterminated last line counts as complete
    lines.append("")  # and so does a final dispatch (the leniency of SSEDecoder.flush)

    events: list[ServerSentEvent] = []
    comments = 0
    data: str | None = None
    event_type = ""
    last_id: str | None = None
    retry: int | None = None
    for line in lines:
        if line == "":
            if data is not None:
                events.append(ServerSentEvent(event_type or "message", data[:-1], last_id, retry))
            data, event_type = None, ""
            continue
        if line.startswith(":"):
            comments += 1
            continue
        if ":" in line:
            name, value = line.split(":", 1)
            value = value.removeprefix(" ")
        else:
            name, value = line, ""
        if name == "data":
            data = (data or "") + value + "\n"
        elif name == "event":
            event_type = value
        elif name == "id" and "\0" not in value:
            last_id = value
        elif name == "retry" and value and all(c in "0123456789" for c in value):
            retry = int(value)
    return Decoded(events, comments)


def decoded(chunks: Iterable[bytes]) -> Decoded:
    decoder = SSEDecoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    events += decoder.flush()
    return Decoded(events, decoder.comments)


# --- the WHATWG examples -------------------------------------------------------------------------


def test_spec_example_multiline_data() -> None:
    stream = b"data: YHOO\ndata: +2\ndata: 10\n\n"
    assert decode(stream) == [ServerSentEvent("message", "YHOO\n+2\n10")]


def test_spec_example_ids_comments_and_unterminated_block() -> None:
    stream = (
        b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\n"
        b"data:  third event\n"
    )
    decoder = SSEDecoder()
    assert decoder.feed(stream) == [
        ServerSentEvent("message", "first event", "1"),
        # "id" alone sets the last event id to the empty string.
        ServerSentEvent("message", "second event", ""),
    ]
    assert decoder.comments == 1
    # Only one space is stripped; the block without its blank line is completed by flush.
    assert decoder.flush() == [ServerSentEvent("message", " third event", "")]


def test_spec_example_empty_data() -> None:
    stream = b"data\n\ndata\ndata\n\ndata:"
    assert fed(stream) == [ServerSentEvent("message", ""), ServerSentEvent("message", "\n")]
    assert decode(stream)[-1] == ServerSentEvent("message", "")


def test_spec_example_space_after_colon_is_optional() -> None:
    assert decode(b"data:test\n\ndata: test\n\n") == [ServerSentEvent("message", "test")] * 2


# --- fields --------------------------------------------------------------------------------------


def test_only_one_leading_space_is_removed() -> None:
    events = decode(b"data:  two\n\ndata:\tx\n\ndata: \n\ndata:a: b\n\n")
    assert [e.data for e in events] == [" two", "\tx", "", "a: b"]


def test_event_type_applies_to_one_event_and_defaults_to_message() -> None:
    stream = b"event: add\ndata: 1\n\ndata: 2\n\nevent:\ndata: 3\n\nevent\ndata: 4\n\n"
    assert [(e.event, e.data) for e in decode(stream)] == [
        ("add", "1"),
        ("message", "2"),
        ("message", "3"),
        ("message", "4"),
    ]


def test_block_without_data_dispatches_nothing_but_resets_event_type() -> None:
    stream = b"event: ping\n\ndata: x\n\nevent: a\nevent: b\ndata: y\n\n"
    assert [(e.event, e.data) for e in decode(stream)] == [("message", "x"), ("b", "y")]


def test_last_event_id_persists_and_nul_ids_are_ignored() -> None:
    stream = b"id: 1\ndata: a\n\ndata: b\n\nid: 2\n\ndata: c\n\nid: 3\x004\ndata: d\n\n"
    decoder = SSEDecoder()
    assert [e.id for e in decoder.feed(stream)] == ["1", "1", "2", "2"]
    assert decoder.last_event_id == "2"
    assert SSEDecoder().last_event_id is None


def test_retry_needs_ascii_digits_and_persists() -> None:
    stream = (
        b"retry: 3000\ndata: a\n\nretry: 12a\ndata: b\n\nretry: -1\nretry:  5\nretry:\n"
        b"retry: \xd9\xa1\xd9\xa2\ndata: c\n\nretry: 7\n\ndata: d\n\n"
    )
    assert [e.retry for e in decode(stream)] == [3000, 3000, 3000, 7]
    assert decode(b"data: x\n\n")[0].retry is None


def test_lines_without_colon_and_unknown_fields() -> None:
    stream = b"data\nfoo: bar\nfoo\nDATA: no\ndata : no\n data: no\nid\n\n"
    assert decode(stream) == [ServerSentEvent("message", "", "")]


def test_comments_are_ignored_and_counted() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b": keep-alive\n:\n\n:data: no\ndata: yes\n: mid\n\n")
    assert events == [ServerSentEvent("message", "yes")]
    assert decoder.comments == 4


def test_data_keeps_characters_that_splitlines_would_split_on() -> None:
    text = "a\x0bb\x0cc\x1cd\x1de\x1ef\x85g\u2028h\u2029i"
    assert decode(f"data: {text}\n\n".encode()) == [ServerSentEvent("message", text)]


def test_utf8_split_inside_characters_and_invalid_bytes() -> None:
    stream = "event: é\ndata: héllo € 𝄞\n\n".encode()
    expected = [ServerSentEvent("é", "héllo € 𝄞")]
    assert decode(*one_byte_at_a_time(stream)) == expected
    assert decode(b"data: a\xffb\xe2\x82\n\n") == [ServerSentEvent("message", "a\ufffdb\ufffd")]


# --- line ends -----------------------------------------------------------------------------------


@pytest.mark.parametrize("end", [b"\n", b"\r", b"\r\n"], ids=["LF", "CR", "CRLF"])
def test_every_line_end(end: bytes) -> None:
    stream = end.join([b"event: e", b"data: a", b"data: b", b"", b"data: c", b"", b""])
    expected = [ServerSentEvent("e", "a\nb"), ServerSentEvent("message", "c")]
    assert fed(stream) == expected
    assert fed(*one_byte_at_a_time(stream)) == expected


def test_mixed_line_ends() -> None:
    assert fed(b"data: a\rdata: b\r\ndata: c\n\r\n") == [ServerSentEvent("message", "a\nb\nc")]


def test_crlf_split_across_chunks_is_one_line_end() -> None:
    assert fed(b"data: a\r", b"\n", b"data: b\r", b"\n\r", b"\n") == [
        ServerSentEvent("message", "a\nb")
    ]
    # Without the LF, two CRs in a row are a line end and a blank line.
    assert fed(b"data: a\r", b"\rdata: b\r\r") == [
        ServerSentEvent("message", "a"),
        ServerSentEvent("message", "b"),
    ]


def test_cr_dispatches_without_waiting_for_a_possible_lf() -> None:
    # A CR-only server must not have its event held back until the next chunk arrives.
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r\r") == [ServerSentEvent("message", "a")]
    assert decoder.feed(b"\ndata: b\r\r") == [ServerSentEvent("message", "b")]


# --- byte order mark -----------------------------------------------------------------------------


def test_bom_is_stripped_at_stream_start_even_when_split() -> None:
    stream = BOM + b"data: x\n\n"
    assert decode(stream) == [ServerSentEvent("message", "x")]
    assert decode(*one_byte_at_a_time(stream)) == [ServerSentEvent("message", "x")]
    assert decode(b"", b"\xef", b"", b"\xbb\xbf", b"data: x\n\n") == [
        ServerSentEvent("message", "x")
    ]


def test_only_one_leading_bom_is_stripped() -> None:
    # The second BOM becomes part of the field name, so the line is an unknown field.
    assert decode(BOM + BOM + b"data: x\n\n") == []
    assert decode(b"data: " + BOM + b"x\n\n") == [ServerSentEvent("message", "\ufeffx")]
    assert decode(b"\xef\xbbdata: x\n\n") == []


# --- end of stream -------------------------------------------------------------------------------


def test_flush_completes_a_final_event_without_its_blank_line() -> None:
    assert decode(b"data: a\n\ndata: b") == [
        ServerSentEvent("message", "a"),
        ServerSentEvent("message", "b"),
    ]
    assert decode(b"event: e\ndata: b\n") == [ServerSentEvent("e", "b")]
    assert decode(b"data: b\r") == [ServerSentEvent("message", "b")]


def test_flush_without_data_dispatches_nothing() -> None:
    assert decode(b"event: e\nid: 1") == []
    assert decode(b": comment") == []
    assert decode(b"") == []
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\n") == [ServerSentEvent("message", "a")]
    assert decoder.flush() == []
    assert decoder.flush() == []


def test_decoder_is_reusable_after_flush() -> None:
    decoder = SSEDecoder()
    decoder.feed(BOM + b"id: 7\ndata: a")
    assert decoder.flush() == [ServerSentEvent("message", "a", "7")]
    # A new stream: its BOM is stripped again and the last event id carries over.
    assert decoder.feed(BOM + b"data: b\n\n") == [ServerSentEvent("message", "b", "7")]


def test_long_line_in_many_small_chunks() -> None:
    payload = json.dumps({"text": "x" * 100_000})
    stream = f"data: {payload}\n\n".encode()
    events = decode(*split(stream, range(7, len(stream), 7)))
    assert [e.json() for e in events] == [json.loads(payload)]


# --- the event type ------------------------------------------------------------------------------


def test_server_sent_event_value_semantics() -> None:
    event = fed(b'event: e\nid: 1\nretry: 5\ndata: {"a": [1]}\n\n')[0]
    assert event == ServerSentEvent(event="e", data='{"a": [1]}', id="1", retry=5)
    assert hash(event) == hash(ServerSentEvent("e", '{"a": [1]}', "1", 5))
    assert repr(event) == repr(ServerSentEvent("e", '{"a": [1]}', "1", 5))
    assert event.json() == {"a": [1]}
    assert ServerSentEvent() == ServerSentEvent("message", "", None, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.data = "changed"  # type: ignore[misc]
    with pytest.raises(json.JSONDecodeError):
        ServerSentEvent(data="[DONE]").json()


# --- recorded streams ----------------------------------------------------------------------------


def test_openai_responses_stream() -> None:
    stream = (FIXTURES / "openai_responses.txt").read_bytes()
    events = decode(stream)
    assert len(events) == 15
    assert all(event.event == event.json()["type"] for event in events)
    assert events[0].event == "response.created"
    assert events[-1].event == "response.completed"
    text = "".join(e.json()["delta"] for e in events if e.event == "response.output_text.delta")
    assert text == events[-1].json()["response"]["output"][0]["content"][0]["text"]


def test_openrouter_chat_completions_stream() -> None:
    stream = (FIXTURES / "openrouter_chat_completions.txt").read_bytes()
    decoder = SSEDecoder()
    events = decoder.feed(stream) + decoder.flush()
    assert decoder.comments == stream.count(b": OPENROUTER PROCESSING") > 0
    assert {e.event for e in events} == {"message"}
    assert events[-1].data == "[DONE]"
    chunks = [e.json() for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)


def test_gemini_crlf_stream() -> None:
    stream = (FIXTURES / "gemini_stream_generate_content.txt").read_bytes()
    assert b"\r\n\r\n" in stream
    events = fed(stream)
    assert len(events) == stream.count(b"\r\n\r\n") == 2
    assert all("\r" not in e.data for e in events)
    assert all("candidates" in e.json() for e in events)


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.txt")))
def test_recorded_streams_match_the_reference(name: str) -> None:
    stream = (FIXTURES / name).read_bytes()
    assert decoded([stream]) == reference_decode(stream)
    assert decoded(one_byte_at_a_time(stream)) == reference_decode(stream)


async def test_aiter_sse() -> None:
    stream = (FIXTURES / "openai_responses.txt").read_bytes()
    chunks = split(stream, range(0, len(stream), 100))
    assert [e async for e in aiter_sse(agen(chunks))] == decode(stream)


# --- properties ----------------------------------------------------------------------------------

RECORDED = [p.read_bytes() for p in sorted(FIXTURES.glob("*.txt"))]

# Pieces that make the decoder's branches meet in every order: field names, line ends (CR and
# LF apart too), whole fields, BOMs, multi-byte, truncated and invalid UTF-8, NUL, digits, colons.
PIECES = [
    b"data",
    b"data: ",
    b"event",
    b"id",
    b"retry",
    b":",
    b": ",
    b" ",
    b"\r",
    b"\n",
    b"\r\n",
    b"x",
    b"7",
    BOM,
    b"\xc3\xa9",
    b"\xe2\x82",
    b"\xf0\x9d\x84\x9e",
    b"\xff",
    b"\x00",
    b"\x0b\x1c",
    b'{"a":1}',
    b"data: a\n",
    b"data: b\r",
    b"event: e\r\n",
    b"id: 1\n",
    b"retry: 12\n",
    b"retry: 3x\r",
    b"\n\n",
    b"\r\n\r\n",
]

fuzzed_streams = st.lists(st.sampled_from(PIECES), max_size=60).map(b"".join)
streams = st.one_of(st.sampled_from(RECORDED), fuzzed_streams, st.binary(max_size=200))


@st.composite
def chunked(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    stream = draw(streams)
    cuts = draw(st.lists(st.integers(0, len(stream)), max_size=40))
    if draw(st.booleans()):
        # Random cuts rarely land between a CR and its LF; these always do.
        cuts += [i + 1 for i, byte in enumerate(stream) if byte == 13]
    return stream, split(stream, cuts)


@given(chunked())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_any_chunking_gives_the_same_events_as_the_whole_stream(
    case: tuple[bytes, list[bytes]],
) -> None:
    stream, chunks = case
    whole = decoded([stream])
    assert decoded(chunks) == whole
    assert whole == reference_decode(stream)


@given(chunked())
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
async def test_async_iterator_matches_sync_for_any_chunking(
    case: tuple[bytes, list[bytes]],
) -> None:
    stream, chunks = case
    assert [e async for e in aiter_sse(agen(chunks))] == list(iter_sse([stream]))


line_text = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"))


class Block(NamedTuple):
    """One block of fields ended by a blank line; it dispatches only with data."""

    event: str | None
    data: list[str] | None
    id: str | None
    retry: int | None
    comment: str | None


blocks = st.builds(
    Block,
    event=st.none() | line_text,
    data=st.none() | st.lists(line_text, min_size=1, max_size=4),
    id=st.none() | line_text.filter(lambda s: "\0" not in s),
    retry=st.none() | st.integers(0, 10**12),
    comment=st.none() | line_text,
)


@st.composite
def rendered(draw: st.DrawFn) -> tuple[bytes, list[ServerSentEvent]]:
    """Blocks written out as a stream with random line ends and spacing, and their events."""
    lines: list[str] = []
    expected: list[ServerSentEvent] = []
    last_id: str | None = None
    retry: int | None = None
    for block in draw(st.lists(blocks, max_size=8)):
        fields: list[tuple[str, str]] = []
        if block.event is not None:
            fields.append(("event", block.event))
        if block.id is not None:
            fields.append(("id", block.id))
            last_id = block.id
        if block.retry is not None:
            fields.append(("retry", str(block.retry)))
            retry = block.retry
        # Other fields may sit anywhere among the data lines, which keep their order.
        data_lines = [("data", value) for value in block.data or []]
        for field in fields:
            data_lines.insert(draw(st.integers(0, len(data_lines))), field)
        for name, value in data_lines:
            if value or draw(st.booleans()):
                spaced = value.startswith(" ") or draw(st.booleans())
                lines.append(f"{name}: {value}" if spaced else f"{name}:{value}")
            else:
                lines.append(name)  # a field with an empty value may drop its colon
        if block.comment is not None:
            lines.insert(
                draw(st.integers(len(lines) - len(data_lines), len(lines))), ":" + block.comment
            )
        lines.append("")
        if block.data is not None:
            event_type = block.event or "message"
            expected.append(ServerSentEvent(event_type, "\n".join(block.data), last_id, retry))
    text = draw(st.sampled_from(["", "\ufeff"]))
    previous = ""
    for line in lines:
        # After a lone CR, an empty line ended by LF would read as one CRLF: avoid writing that.
        choices = ["\r"] if previous == "\r" and not line else ["\n", "\r", "\r\n"]
        previous = draw(st.sampled_from(choices))
        text += line + previous
    return text.encode(), expected


@given(rendered(), st.data())
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_rendered_events_decode_back(
    case: tuple[bytes, list[ServerSentEvent]], data: st.DataObject
) -> None:
    stream, expected = case
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    cuts += [i + 1 for i, byte in enumerate(stream) if byte == 13 and data.draw(st.booleans())]
    assert fed(*split(stream, cuts)) == expected
    assert decode(stream) == expected
