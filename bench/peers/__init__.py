"""The systems compared in ``bench/bench_peers.py``: sa_llm, its Python peers and a limit.

Each module wraps one system behind the same small interface (:class:`peers.common.System`):
open a database, start a chat, ask a question (optionally streamed), count the SQL it ran,
inspect what it stored. The workloads (:mod:`peers.workloads`) drive any of them the same way::

    system = load("sa_llm")(db_url, base_url)
    system.open()
    chat = system.new_chat("w1-0", tools=False)
    chat.ask("Question 1", on_chunk=None)

Peers are imported only when their module is loaded, so a missing peer fails its own rows and
nothing else.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from peers.common import System

#: system name -> (module, class, label shown in the tables)
SYSTEMS: dict[str, tuple[str, str, str]] = {
    "sa_llm": ("peers.sa_llm_peer", "SaLLMSync", "sa_llm (sync `Session`)"),
    "baseline": ("peers.baseline", "Baseline", "limit: sa_llm's SQL by hand (httpx + Core)"),
    "plain": ("peers.sa_llm_peer", "SaLLMPlain", "sa_llm plain `Chat` (nothing stored)"),
    "agents": ("peers.agents_sdk", "AgentsSDK", "OpenAI Agents SDK `SQLAlchemySession`"),
    "langchain": ("peers.langchain_sql", "LangChainSQL", "LangChain `SQLChatMessageHistory`"),
    "llm": ("peers.simonw_llm", "SimonwLLM", "simonw/llm `log_to_db`"),
}


def load(name: str) -> type[System]:
    """The class of system ``name`` (imports its peer library)."""
    module, cls, _ = SYSTEMS[name]
    system: type[System] = getattr(importlib.import_module(module), cls)
    return system


def label(name: str) -> str:
    return SYSTEMS[name][2]
