"""Cross-site request forgery protection without tokens: an ASGI middleware that refuses a
state-changing request a browser sent from another site.

The check is the one Go 1.25's ``http.CrossOriginProtection`` makes: a ``POST`` (``PUT``,
``PATCH``, ``DELETE``) passes when the browser says it comes from this site
(``Sec-Fetch-Site: same-origin`` or ``none``, sent by every current browser), else when its
``Origin`` header names this host. A request with neither header is not from a browser (curl,
a test client) and passes; so does every ``GET``/``HEAD``/``OPTIONS``, which must not change
anything. Refused requests get ``403``. No secret, no cookie, nothing to put in forms.

Example::

    app.add_middleware(OriginCheck)
    app.add_middleware(OriginCheck, trusted_origins={"https://admin.example.com"})
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

__all__ = ["OriginCheck"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class OriginCheck:
    """Refuse cross-site unsafe requests (see the module docstring).

    Args:
        app: the ASGI app to protect.
        trusted_origins: further origins (``scheme://host[:port]``) allowed to post.
    """

    def __init__(self, app: ASGIApp, trusted_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.trusted = {origin.rstrip("/").lower() for origin in trusted_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _SAFE_METHODS or self.allows(scope):
            await self.app(scope, receive, send)
            return
        body = b"Cross-site request refused."
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def allows(self, scope: Scope) -> bool:
        """Whether the unsafe request in ``scope`` may pass."""
        headers = {key.decode("latin-1").lower(): value for key, value in scope["headers"]}
        site = headers.get("sec-fetch-site", b"").decode("latin-1").lower()
        origin = headers.get("origin", b"").decode("latin-1").strip().rstrip("/").lower()
        if origin and origin in self.trusted:
            return True
        if site:
            return site in ("same-origin", "none")
        if not origin:
            return True  # neither header: not a browser (curl, a test client, a server)
        # An older browser without Fetch metadata: the Origin must be this host.
        host = headers.get("host", b"").decode("latin-1").strip().lower()
        return bool(host) and urlsplit(origin).netloc == host
