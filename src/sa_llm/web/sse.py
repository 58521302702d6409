"""Server-sent events framing, sans-IO: bytes out, nothing else.

One function per frame kind, following the WHATWG ``text/event-stream`` format: each field on a
line of its own, a multi-line ``data`` split into several ``data:`` lines (so a line break in
the payload never ends the event early), a blank line after each event. Comments (lines that
start with ``:``) keep idle connections alive through proxies without waking the client.

Example::

    frame('{"seq": 3}', id=3)      # b'id: 3\\ndata: {"seq": 3}\\n\\n'
    comment("ping")                # b': ping\\n\\n'
"""

from __future__ import annotations

import re

__all__ = ["HEADERS", "comment", "frame", "parse_cursor"]

#: Response headers of an event stream: no caching, and no buffering in nginx-like proxies
#: (which would hold the events back until their buffer fills).
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

# The line breaks of the event-stream format: CRLF, CR or LF (not str.splitlines' others).
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def frame(
    data: str | None = None,
    *,
    id: int | str | None = None,
    event: str | None = None,
    retry: int | None = None,
) -> bytes:
    """One event: ``id``, ``event``, ``retry`` (milliseconds) and ``data`` lines, then a blank
    line. ``data`` is split at every line break into ``data:`` lines."""
    lines = []
    if id is not None:
        lines.append(f"id: {_single_line(str(id))}")
    if event is not None:
        lines.append(f"event: {_single_line(event)}")
    if retry is not None:
        lines.append(f"retry: {int(retry)}")
    if data is not None:
        lines.extend(f"data: {line}" for line in _LINE_BREAK.split(data))
    return ("\n".join(lines) + "\n\n").encode()


def comment(text: str = "") -> bytes:
    """A comment line (ignored by clients; keeps the connection busy)."""
    return "".join(f": {line}\n" for line in _LINE_BREAK.split(text)).encode() + b"\n"


def parse_cursor(last_event_id: str | None, after: str | None) -> int | None:
    """The position a client resumes from: the ``Last-Event-ID`` header (which browsers resend
    on reconnect) when it is a number, else the ``after`` query parameter, else ``None`` (start
    with a full render)."""
    for value in (last_event_id, after):
        if value is not None and value.strip().isdigit():
            return int(value.strip())
    return None


def _single_line(value: str) -> str:
    if _LINE_BREAK.search(value):
        raise ValueError(f"An event-stream field cannot hold a line break: {value!r}")
    return value
