"""AWS Signature Version 4, written out: the canonical request, the string to sign, the key.

The algorithm is the one in AWS's "Create a signed AWS API request" guide: a canonical form of
the request (method, path, query, the signed headers and the SHA-256 of the body) is hashed into
a string to sign, which is signed with a key derived from the secret by an HMAC chain over the
date, region and service. Pure functions over strings and bytes: no clock, no I/O.

The path rule is the one of every service except S3: the canonical URI is the path *as sent*,
URI-encoded once more. Bedrock model ids contain ``:``; the request path carries it as ``%3A``
(as the AWS SDKs send it) and the canonical URI therefore as ``%253A``.

Example::

    headers = sign_headers(
        "POST", "https://bedrock-runtime.us-east-1.amazonaws.com/model/m%3A0/converse",
        {"content-type": "application/json"}, body, credentials,
        region="us-east-1", service="bedrock", now=datetime.now(timezone.utc),
    )
    # {"x-amz-date": "...", "authorization": "AWS4-HMAC-SHA256 Credential=..."}
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import quote, unquote, urlsplit

__all__ = [
    "ALGORITHM",
    "AWSCredentials",
    "canonical_request",
    "host_header",
    "sign_headers",
    "signing_key",
    "string_to_sign",
]

ALGORITHM = "AWS4-HMAC-SHA256"
_DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 3986 unreserved characters stay as they are; everything else is %XX-encoded.
_UNRESERVED = "-_.~"


@dataclass(frozen=True, slots=True)
class AWSCredentials:
    """An access key pair, with the session token of temporary credentials."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The key for one day, region and service (``date`` is ``YYYYMMDD``)."""
    key = _hmac(f"AWS4{secret}".encode(), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, "aws4_request")


def host_header(url: str) -> str:
    """The ``host`` header an HTTP client sends for ``url`` (default ports left out)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def _canonical_uri(path: str) -> str:
    # Every service but S3 encodes the already-encoded path again ("double encoding").
    return quote(path or "/", safe="/" + _UNRESERVED)


def _canonical_query(query: str) -> str:
    pairs = []
    for item in query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append(
            (
                quote(unquote(name), safe=_UNRESERVED),
                quote(unquote(value), safe=_UNRESERVED),
            )
        )
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def _canonical_value(value: str) -> str:
    # Trim, and collapse runs of spaces inside the value into one.
    return " ".join(value.split())


def canonical_request(
    method: str, url: str, headers: Mapping[str, str], payload_hash: str
) -> tuple[str, str]:
    """The canonical request and its signed-headers list, for ``headers`` (all signed)."""
    parts = urlsplit(url)
    names = sorted(name.lower() for name in headers)
    lowered = {name.lower(): value for name, value in headers.items()}
    canonical_headers = "".join(f"{name}:{_canonical_value(lowered[name])}\n" for name in names)
    signed = ";".join(names)
    text = "\n".join(
        [
            method.upper(),
            _canonical_uri(parts.path),
            _canonical_query(parts.query),
            canonical_headers,
            signed,
            payload_hash,
        ]
    )
    return text, signed


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    """The string the signature covers: algorithm, time, scope and the canonical request hash."""
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def sign_headers(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: AWSCredentials,
    *,
    region: str,
    service: str,
    now: datetime,
) -> dict[str, str]:
    """The headers that authenticate the request: ``x-amz-date``, the session token, if any,
    and ``authorization``.

    ``headers`` are the headers to sign besides ``host``, ``x-amz-date`` and
    ``x-amz-security-token``, which are added here; they must be sent exactly as given.
    """
    amz_date = now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    added = {"x-amz-date": amz_date}
    if credentials.session_token:
        added["x-amz-security-token"] = credentials.session_token
    to_sign = {name.lower(): value for name, value in headers.items()}
    to_sign.update(added)
    to_sign["host"] = host_header(url)
    canonical, signed = canonical_request(method, url, to_sign, hashlib.sha256(body).hexdigest())
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    key = signing_key(credentials.secret_access_key, amz_date[:8], region, service)
    signature = hmac.new(
        key, string_to_sign(amz_date, scope, canonical).encode("utf-8"), hashlib.sha256
    ).hexdigest()
    added["authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    return added
