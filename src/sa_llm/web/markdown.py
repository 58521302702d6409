"""Markdown to safe HTML, for replies shown in a browser.

markdown-it-py renders with its ``js-default`` preset (CommonMark with raw HTML **off**: a
``<script>`` in the text comes out as the text ``&lt;script&gt;``), then nh3 (the Rust
``ammonia`` sanitiser) keeps only an allow-list of tags and attributes, so even a renderer bug
cannot let model output run as HTML. Links get ``rel="noopener noreferrer nofollow"``.

Both are in the ``ui`` extra (``pip install "sa-llm[ui]"``). Without them the text is escaped and
shown as it is (:func:`render_markdown` never fails for a missing package, so a generated app
runs without the extra; :data:`MARKDOWN_AVAILABLE` says which one you get).

Example::

    render_markdown("**Paris** <script>x()</script>")
    # '<p><strong>Paris</strong> &lt;script&gt;x()&lt;/script&gt;</p>\\n'
"""

from __future__ import annotations

import html
import importlib.util
from functools import lru_cache
from typing import Any

__all__ = ["MARKDOWN_AVAILABLE", "escape_text", "render_markdown"]

#: Whether markdown-it-py and nh3 are installed (else replies are escaped plain text).
MARKDOWN_AVAILABLE = all(
    importlib.util.find_spec(name) is not None for name in ("markdown_it", "nh3")
)

_TAGS = {
    "p", "br", "hr", "strong", "em", "del", "s", "code", "pre", "blockquote", "ul", "ol", "li",
    "a", "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "img",
}  # fmt: skip
_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "code": {"class"},
    "th": {"style"},
    "td": {"style"},
    "ol": {"start"},
}


@lru_cache(maxsize=1)
def _renderer() -> Any:
    from markdown_it import MarkdownIt

    return MarkdownIt("js-default").enable("table").enable("strikethrough")


def escape_text(text: str) -> str:
    """``text`` escaped for HTML, in a paragraph that keeps its line breaks (the fallback)."""
    return f'<p class="plain">{html.escape(text)}</p>'


def render_markdown(text: str | None) -> str:
    """``text`` (Markdown) as sanitised HTML; escaped plain text without the ``ui`` extra."""
    if not text:
        return ""
    if not MARKDOWN_AVAILABLE:
        return escape_text(text)
    import nh3

    rendered = _renderer().render(text)
    return str(
        nh3.clean(
            rendered,
            tags=_TAGS,
            attributes=_ATTRIBUTES,
            url_schemes={"http", "https", "mailto"},
            link_rel="noopener noreferrer nofollow",
        )
    )
