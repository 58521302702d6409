"""Keeping secrets out of what users see: credentials in URLs, keys echoed in error bodies.

API keys are :class:`~pydantic.SecretStr` and never printed, but two other paths would leak:

* a base URL with credentials (``https://user:pass@host``): its userinfo is shown as ``***``
  (:func:`redact_url`) in reprs, logs and messages, and never sent (:func:`strip_userinfo`),
  so httpx does not turn it into HTTP Basic auth in place of the provider's own key;
* an error body that echoes a secret (a proxy repeating the ``Authorization`` header): every
  configured secret found in an exception's message, args or body is replaced by ``***``
  (:func:`redact_error`) before the exception reaches the caller, its pickle or a traceback.

A leaf module: it imports nothing of sa_llm but the errors.

Example::

    redact_url("https://bob:hunter22@proxy.internal/v1")   # 'https://***@proxy.internal/v1'
    strip_userinfo("https://bob:hunter22@proxy.internal/v1")  # 'https://proxy.internal/v1'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from sa_llm.errors import SaLLMError

__all__ = [
    "MARKER",
    "MIN_SECRET_LENGTH",
    "redact_error",
    "redact_text",
    "redact_url",
    "redact_value",
    "strip_userinfo",
    "url_secrets",
]

#: What a secret is replaced with.
MARKER = "***"
#: Shorter values are not searched for: replacing every "test" or "abc" in a message would
#: garble it, and real keys and passwords are far longer.
MIN_SECRET_LENGTH = 8

E = TypeVar("E", bound=BaseException)


def _userinfo_span(url: str) -> tuple[int, int] | None:
    """Where the ``user:password`` of ``url`` sits (between ``//`` and the last ``@`` of the
    authority), or ``None`` when it has none."""
    start = url.find("//")
    if start < 0:
        return None
    start += 2
    end = len(url)
    for stop in "/?#":
        found = url.find(stop, start)
        if found >= 0:
            end = min(end, found)
    at = url.rfind("@", start, end)
    return (start, at) if at >= 0 else None


def strip_userinfo(url: str) -> str:
    """``url`` without the credentials of its authority (what is sent)."""
    if "@" not in url:  # the common case, kept cheap: this runs for every request
        return url
    span = _userinfo_span(url)
    return url if span is None else url[: span[0]] + url[span[1] + 1 :]


def redact_url(url: str) -> str:
    """``url`` with the credentials of its authority shown as ``***`` (what is printed)."""
    if "@" not in url:
        return url
    span = _userinfo_span(url)
    return url if span is None else f"{url[: span[0]]}{MARKER}{url[span[1] :]}"


def url_secrets(url: str | None) -> set[str]:
    """The credentials written into ``url``: its userinfo, password and user (as written and
    percent-decoded), so that an echo of any of them can be redacted."""
    if not url or "@" not in url:
        return set()
    span = _userinfo_span(url)
    if span is None:
        return set()
    userinfo = url[span[0] : span[1]]
    user, _, password = userinfo.partition(":")
    values = {userinfo, user, password}
    try:
        parts = urlsplit(url)
        values |= {parts.username or "", parts.password or ""}
    except ValueError:
        pass
    values |= {unquote(v) for v in values}
    return {v for v in values if v}


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (longest first, so none is half replaced) shown as ``***``."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= MIN_SECRET_LENGTH and secret in text:
            text = text.replace(secret, MARKER)
    return text


def redact_value(value: Any, secrets: Iterable[str]) -> Any:
    """A copy of a JSON-like value (an error body) with secrets redacted in every string."""
    secrets = tuple(secrets)
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, bytes):
        return redact_text(value.decode("utf-8", "replace"), secrets).encode()
    if isinstance(value, Mapping):
        return {redact_value(k, secrets): redact_value(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v, secrets) for v in value)
    return value


def redact_error(error: E, secrets: Iterable[str]) -> E:
    """``error`` itself, with secrets redacted in its message, args and body (in place, so the
    traceback being raised, ``str``, ``repr`` and pickle all show the redacted text)."""
    secrets = tuple(s for s in secrets if len(s) >= MIN_SECRET_LENGTH)
    if not secrets:
        return error
    error.args = tuple(redact_value(arg, secrets) for arg in error.args)
    if isinstance(error, SaLLMError):
        error.message = redact_text(error.message, secrets)
        body = getattr(error, "body", None)
        if body is not None:
            error.body = redact_value(body, secrets)  # type: ignore[attr-defined]
    return error
