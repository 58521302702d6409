"""The web half of a chat: what ``sa-llm chat-ui`` builds its app on.

* :mod:`sa_llm.web.stream`: the live event stream of a chat for a server-sent events endpoint
  (replay after the client's position, reset when it is gone, tail with wake-ups, heartbeats);
* :mod:`sa_llm.web.sse`: event-stream framing (sans-IO) and the resume position;
* :mod:`sa_llm.web.views`: what a page shows of each message, from rows and from events alike;
* :mod:`sa_llm.web.runner`: background turns (:class:`InProcessRunner`, :func:`answer_chat`);
  :mod:`sa_llm.web.queue`: the procrastinate runner (PostgreSQL job queue);
* :mod:`sa_llm.web.markdown`: Markdown to sanitised HTML (markdown-it-py + nh3);
* :mod:`sa_llm.web.csrf`: :class:`OriginCheck`, cross-site request refusal without tokens.

None of it imports a web framework: the generated app (FastAPI) wraps these pieces in its
routes. The page ``docs/chat-ui.md`` describes the whole.
"""

from __future__ import annotations

from sa_llm.web.csrf import OriginCheck
from sa_llm.web.db import async_database_url, share_sqlite
from sa_llm.web.markdown import MARKDOWN_AVAILABLE, render_markdown
from sa_llm.web.runner import InProcessRunner, TurnRunner, answer_chat, needs_reply
from sa_llm.web.sse import HEADERS, frame, parse_cursor
from sa_llm.web.stream import chat_event_stream, default_poll_interval, last_turn_end
from sa_llm.web.views import MessageView, ToolCallView, TurnEnd, load_views, tool_call_partials

__all__ = [
    "HEADERS",
    "MARKDOWN_AVAILABLE",
    "InProcessRunner",
    "MessageView",
    "OriginCheck",
    "ToolCallView",
    "TurnEnd",
    "TurnRunner",
    "answer_chat",
    "async_database_url",
    "chat_event_stream",
    "default_poll_interval",
    "frame",
    "last_turn_end",
    "load_views",
    "needs_reply",
    "parse_cursor",
    "render_markdown",
    "share_sqlite",
    "tool_call_partials",
]
