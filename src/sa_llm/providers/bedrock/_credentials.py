"""Where Bedrock's region and AWS credentials come from.

Explicit settings win, the standard AWS chain comes last:

1. region: ``bedrock_region``, then ``AWS_REGION``, then ``AWS_DEFAULT_REGION``, then the region
   of the AWS profile in use (read by botocore, when a profile is named);
2. credentials: a named profile (``bedrock_profile``) is asked first, through botocore; then
   ``bedrock_access_key_id`` + ``bedrock_secret_access_key`` (+ ``bedrock_session_token``);
   then ``AWS_ACCESS_KEY_ID`` + ``AWS_SECRET_ACCESS_KEY`` (+ ``AWS_SESSION_TOKEN``); then
   botocore's default chain: ``AWS_PROFILE``, the shared credentials and config files, SSO,
   container and instance metadata.

Explicit keys never need botocore. The chain does, and botocore is an optional dependency
(``pip install "sa-llm[bedrock]"``), imported only when the chain is reached. Its sessions are
kept per profile, so refreshable credentials (SSO, instance roles) renew themselves.

Example::

    region = resolve_region(config)
    credentials = resolve_credentials(config)   # AWSCredentials(access_key_id=...)
"""

from __future__ import annotations

import os
import threading
from typing import Any

from sa_llm._optional import require
from sa_llm.config import Config
from sa_llm.errors import MissingAPIKeyError
from sa_llm.providers.bedrock._sigv4 import AWSCredentials

__all__ = ["MissingAWSConfigurationError", "resolve_credentials", "resolve_region"]

_INSTALL_HINT = 'pip install "sa-llm[bedrock]"'


class MissingAWSConfigurationError(MissingAPIKeyError):
    """Bedrock has no region or no credentials; the message names the settings to provide.

    A :class:`~sa_llm.errors.MissingAPIKeyError`, so code that skips unconfigured providers
    (registry refresh) skips Bedrock too.

    Attributes:
        provider: ``"bedrock"``.
        env_var: the main environment variable that would supply what is missing.
    """

    def __init__(self, message: str, env_var: str) -> None:
        # MissingAPIKeyError words its message for a single API key; Bedrock has none.
        Exception.__init__(self, message)
        self.message = message
        self.provider = "bedrock"
        self.env_var = env_var


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def _profile(config: Config) -> str | None:
    return config.bedrock_profile or None


def resolve_region(config: Config) -> str:
    """The AWS region for Bedrock requests.

    Raises:
        MissingAWSConfigurationError: no region is configured anywhere.
    """
    region = config.bedrock_region or _env("AWS_REGION") or _env("AWS_DEFAULT_REGION")
    if region:
        return region
    profile = _profile(config) or _env("AWS_PROFILE")
    if profile:
        session = _botocore_session(profile, required=False)
        try:
            found = session.get_config_variable("region") if session is not None else None
        except Exception:  # an unknown profile: reported below as no region
            found = None
        if found:
            return str(found)
    raise MissingAWSConfigurationError(
        "No AWS region for provider 'bedrock': pass bedrock_region=... to sa_llm.configure() "
        "or sa_llm.context(), or set AWS_REGION.",
        "AWS_REGION",
    )


def resolve_credentials(config: Config) -> AWSCredentials:
    """The credentials to sign Bedrock requests with (see the module docstring for the order).

    Raises:
        MissingAWSConfigurationError: none were found, or only the AWS chain could supply them
            and botocore is not installed (the message carries the install hint).
    """
    profile = _profile(config)
    if profile is None:
        explicit = _explicit(config)
        if explicit is not None:
            return explicit
    session = _botocore_session(profile, required=True)
    assert session is not None
    where = f"AWS profile {profile!r}" if profile else "the AWS credential chain"
    try:
        found: Any = session.get_credentials()
        frozen = found.get_frozen_credentials() if found is not None else None
    except Exception as exc:  # botocore's own errors: unknown profile, expired SSO token, ...
        raise MissingAWSConfigurationError(
            f"No AWS credentials for provider 'bedrock': {where} failed: "
            f"{type(exc).__name__}: {exc}",
            "AWS_PROFILE",
        ) from exc
    if frozen is None or not frozen.access_key or not frozen.secret_key:
        raise MissingAWSConfigurationError(
            f"No AWS credentials for provider 'bedrock': {where} found none. Pass "
            "bedrock_api_key=... (a Bedrock API key; or set AWS_BEARER_TOKEN_BEDROCK), or "
            "bedrock_access_key_id=... and bedrock_secret_access_key=... (or set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or configure an AWS profile.",
            "AWS_ACCESS_KEY_ID",
        )
    return AWSCredentials(frozen.access_key, frozen.secret_key, frozen.token or None)


def _explicit(config: Config) -> AWSCredentials | None:
    """Keys from the configuration, else from the environment; ``None`` when neither has both."""
    key_id = config.secret("bedrock_access_key_id")
    secret = config.secret("bedrock_secret_access_key")
    if key_id and secret:
        return AWSCredentials(key_id, secret, config.secret("bedrock_session_token"))
    key_id, secret = _env("AWS_ACCESS_KEY_ID"), _env("AWS_SECRET_ACCESS_KEY")
    if key_id and secret:
        token = config.secret("bedrock_session_token") or _env("AWS_SESSION_TOKEN")
        return AWSCredentials(key_id, secret, token)
    return None


_sessions_lock = threading.Lock()
_sessions: dict[str | None, Any] = {}


def _botocore_session(profile: str | None, *, required: bool) -> Any:
    """A cached botocore session for ``profile`` (``None``: the default chain).

    Returns ``None`` when botocore is missing and not ``required``.
    """
    try:
        import botocore.session
    except ImportError:
        if not required:
            return None
        if profile:
            require("botocore.session", extra="bedrock", feature=f"The AWS profile {profile!r}")
        raise MissingAWSConfigurationError(
            "No AWS credentials for provider 'bedrock': pass bedrock_api_key=... (a Bedrock "
            "API key; or set AWS_BEARER_TOKEN_BEDROCK), or bedrock_access_key_id=... and "
            "bedrock_secret_access_key=... (or set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY); profiles, SSO and instance roles need botocore: "
            f"{_INSTALL_HINT}",
            "AWS_ACCESS_KEY_ID",
        ) from None
    with _sessions_lock:
        session = _sessions.get(profile)
        if session is None:
            session = botocore.session.Session(profile=profile)
            _sessions[profile] = session
        return session
