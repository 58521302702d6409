"""Signing Bedrock requests: the body serialised once, and those exact bytes signed.

:class:`AWSProvider` is what the Converse and Mantle providers share: the region, and signing
with AWS credentials, or a Bedrock API key sent as a bearer token instead
(:func:`bearer_request`).

The transport would serialise ``HttpRequest.json`` itself; a signature must cover the bytes
that are sent, so :func:`signed_request` serialises the body here, hashes it, and returns the
request with ``content=`` those bytes and the SigV4 headers. Only ``host``, ``content-type``
and the ``x-amz-*`` headers are signed: proxies and HTTP clients leave them untouched.

Example::

    http = signed_request(HttpRequest("POST", url, headers, json=body), config,
                          service="bedrock", region="us-east-1")
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import ClassVar

from sa_llm.config import Config
from sa_llm.providers.base import HttpRequest, Provider
from sa_llm.providers.bedrock._credentials import resolve_credentials, resolve_region
from sa_llm.providers.bedrock._sigv4 import sign_headers

__all__ = ["AWSProvider", "bearer_request", "serialise", "signed_request"]

_SIGNED = ("content-type",)


def serialise(body: object) -> bytes:
    """A JSON body as the transport would send it (compact, UTF-8)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _with_body(http: HttpRequest) -> tuple[dict[str, str], bytes]:
    """Lower-cased headers and the body as the bytes that will be sent (JSON serialised here)."""
    headers = {name.lower(): value for name, value in http.headers.items()}
    if http.json is None:
        return headers, http.content or b""
    headers.setdefault("content-type", "application/json")
    return headers, serialise(http.json)


def signed_request(
    http: HttpRequest,
    config: Config,
    *,
    service: str,
    region: str,
    clock: Callable[[], datetime] | None = None,
) -> HttpRequest:
    """``http`` with its body as bytes and the SigV4 headers for ``service`` in ``region``.

    Raises:
        MissingAWSConfigurationError: no credentials could be found.
    """
    credentials = resolve_credentials(config)
    headers, body = _with_body(http)
    now = clock() if clock is not None else datetime.now(timezone.utc)
    to_sign = {name: headers[name] for name in _SIGNED if name in headers}
    to_sign.update({name: value for name, value in headers.items() if name.startswith("x-amz-")})
    headers.update(
        sign_headers(
            http.method,
            http.url,
            to_sign,
            body,
            credentials,
            region=region,
            service=service,
            now=now,
        )
    )
    return HttpRequest(http.method, http.url, headers, content=body or None)


def bearer_request(http: HttpRequest, token: str) -> HttpRequest:
    """``http`` with its body as bytes and ``Authorization: Bearer <Bedrock API key>``."""
    headers, body = _with_body(http)
    headers["authorization"] = f"Bearer {token}"
    return HttpRequest(http.method, http.url, headers, content=body or None)


class AWSProvider(Provider):
    """What Bedrock's APIs share: the region, and SigV4 signing or a Bedrock API key."""

    requires_api_key: ClassVar[bool] = False
    #: the SigV4 service name the endpoint verifies signatures for.
    signing_service: ClassVar[str] = "bedrock"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        #: the time source of signatures (tests pin it).
        self.clock: Callable[[], datetime] | None = None

    @property
    def region(self) -> str:
        """The AWS region (raises :class:`MissingAWSConfigurationError` when none is set)."""
        return resolve_region(self.config)

    def bearer_token(self) -> str | None:
        """The Bedrock API key (``bedrock_api_key``, else ``AWS_BEARER_TOKEN_BEDROCK``), if any.

        When there is one, requests carry it as a bearer token and are not signed, as the AWS
        SDKs do: it takes precedence over AWS credentials.
        """
        return self.config.api_key("bedrock", required=False)

    def api_key(self) -> str | None:
        """The Bedrock API key, else the access key id of the AWS credentials in use.

        Raises:
            MissingAWSConfigurationError: neither an API key nor credentials were found.
        """
        return self.bearer_token() or resolve_credentials(self.config).access_key_id

    def auth_headers(self) -> dict[str, str]:
        """Nothing: :meth:`sign` adds the bearer token or the SigV4 signature."""
        return {}

    def sign(self, http: HttpRequest) -> HttpRequest:
        """``http`` with the bearer token, else signed for :attr:`signing_service` in
        :attr:`region`."""
        token = self.bearer_token()
        if token is not None:
            return bearer_request(http, token)
        return signed_request(
            http, self.config, service=self.signing_service, region=self.region, clock=self.clock
        )
