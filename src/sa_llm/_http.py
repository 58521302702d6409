"""The HTTP client libraries sa_llm speaks: httpx and httpx2 (pydantic's continuation of it).

Both have the same API under different module names, and their classes are distinct: an
``httpx2.Client`` is no ``httpx.Client``, it needs an ``httpx2.Timeout`` and raises
``httpx2.HTTPError``\\ s. So sa_llm never assumes one: a client you pass is used with its own
library's timeout and exceptions (:func:`library_of`), and the shared clients, the fake model's
and the replay's are made with the configured one (``http_library``, default ``"httpx"``; see
docs/decisions.md, D28)::

    lib = library_of(client)             # the httpx or httpx2 module
    client.build_request(..., timeout=lib.Timeout(60))
    try: ...
    except errors() as exc: ...          # httpx.HTTPError, and httpx2.HTTPError once imported
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any, Literal

from sa_llm._optional import require
from sa_llm.errors import ConfigurationError

__all__ = [
    "LIBRARIES",
    "HttpLibrary",
    "errors",
    "is_async_client",
    "is_sync_client",
    "library",
    "library_of",
]

#: The names of the libraries sa_llm accepts clients of.
HttpLibrary = Literal["httpx", "httpx2"]
LIBRARIES: tuple[HttpLibrary, ...] = ("httpx", "httpx2")


def library(name: str) -> ModuleType:
    """The module of the HTTP library ``name`` (``"httpx"`` or ``"httpx2"``).

    Raises:
        ConfigurationError: ``name`` is neither.
        MissingDependencyError: httpx2 is not installed (``pip install "sa-llm[httpx2]"``; it
            needs Python 3.11).
    """
    if name not in LIBRARIES:
        raise ConfigurationError(f"http_library must be 'httpx' or 'httpx2', not {name!r}.")
    return require(
        name, extra=name, feature=f'http_library="{name}"', hint=" (httpx2 needs Python 3.11+)"
    )


def _root(cls: type[Any]) -> str | None:
    for klass in cls.__mro__:
        root = klass.__module__.partition(".")[0]
        if root in LIBRARIES:
            return root
    return None


def library_of(obj: Any) -> ModuleType:
    """The library ``obj`` (a client, request, response or exception) belongs to; httpx for
    anything else (a transport of your own under an httpx client, say)."""
    root = _root(obj if isinstance(obj, type) else type(obj))
    return sys.modules[root] if root is not None else library("httpx")


def is_sync_client(value: Any) -> bool:
    """Whether ``value`` is an ``httpx.Client`` or an ``httpx2.Client``."""
    return any(isinstance(value, module.Client) for module in _imported())


def is_async_client(value: Any) -> bool:
    """Whether ``value`` is an ``httpx.AsyncClient`` or an ``httpx2.AsyncClient``."""
    return any(isinstance(value, module.AsyncClient) for module in _imported())


def errors() -> tuple[type[Exception], ...]:
    """``HTTPError`` of every library imported so far (one that was never imported raised
    nothing), for ``except errors():``."""
    return tuple(module.HTTPError for module in _imported())


def _imported() -> list[ModuleType]:
    return [sys.modules[name] for name in LIBRARIES if name in sys.modules]
