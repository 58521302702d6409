"""A second namespace for ``tests/declarative/test_declarative.py``: the module ``decl_admin``.

``build(Base)`` declares classes with the same bare names as :mod:`decl_assistants`
(``BotChat``, ``BotMessage``, ``BotToolCall``) on ``admin_bot_*`` tables, like
``Admin::BotChat`` beside ``Assistants::BotChat``: in one registry a bare ``"BotMessage"`` is
ambiguous, and ``"decl_admin.BotMessage"`` is not.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import DeclarativeBase

import decl_assistants

TABLES = {
    "chats": "admin_bot_chats",
    "messages": "admin_bot_messages",
    "tool_calls": "admin_bot_tool_calls",
}


def build(base: type[DeclarativeBase]) -> dict[str, type[Any]]:
    """Fresh ``decl_admin.BotChat``/``BotMessage``/``BotToolCall`` classes on ``base``."""
    return decl_assistants.build(base, module=__name__, tables=TABLES)
