"""Configuration: API keys, base URLs, timeouts, retries and HTTP clients.

Settings live in one immutable :class:`Config`. :func:`configure` replaces the process-wide
one; :func:`context` returns an isolated :class:`~sa_llm.context.Context` built from a copy,
for per-tenant keys, without touching the globals. Keys that are not configured fall back to
the usual environment variables (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, ...), read when a
request is made.

Example::

    import sa_llm

    sa_llm.configure(openai_api_key="sk-...", request_timeout=60)
    tenant = sa_llm.context(openai_api_key=tenant_key)
    tenant.chat("gpt-4.1-nano").ask("Hello")

Keys are :class:`pydantic.SecretStr`: they never appear in reprs, logs, exceptions or rows.
"""

from __future__ import annotations

import difflib
import os
import threading
from types import ModuleType
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_serializer,
    field_validator,
)

from sa_llm import _http
from sa_llm._redact import redact_url, strip_userinfo, url_secrets
from sa_llm.errors import ConfigurationError, MissingAPIKeyError

__all__ = [
    "API_KEY_ENV_VARS",
    "CONNECT_TIMEOUT_ENV_VAR",
    "DEFAULT_CONNECT_TIMEOUT",
    "HTTP_LIBRARY_ENV_VAR",
    "Config",
    "configure",
    "get_config",
    "reset_config",
]

#: The environment variable ``http_library`` falls back to (``httpx`` or ``httpx2``).
HTTP_LIBRARY_ENV_VAR = "SA_LLM_HTTP_LIBRARY"
#: The environment variable ``connect_timeout`` falls back to.
CONNECT_TIMEOUT_ENV_VAR = "SA_LLM_CONNECT_TIMEOUT"
#: Seconds to open a connection when neither the setting nor the variable says: a host that
#: answers at all does so in well under a second; one that does not should fail fast, not
#: after the read timeout that long replies need.
DEFAULT_CONNECT_TIMEOUT = 10.0

#: The environment variable each provider's key falls back to.
API_KEY_ENV_VARS: dict[str, str] = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "xai": "XAI_API_KEY",
    "ollama": "OLLAMA_API_KEY",
    "bedrock": "AWS_BEARER_TOKEN_BEDROCK",
}

_BASE_URL_ENV_VARS: dict[str, str] = {
    "openai": "OPENAI_BASE_URL",
    "anthropic": "ANTHROPIC_BASE_URL",
    "gemini": "GEMINI_BASE_URL",
    "openrouter": "OPENROUTER_BASE_URL",
    "deepseek": "DEEPSEEK_BASE_URL",
    "mistral": "MISTRAL_BASE_URL",
    "xai": "XAI_BASE_URL",
    "ollama": "OLLAMA_API_BASE",
}


# Credentials some environments hold for Bedrock's credential chain: redacted like the keys.
_AWS_SECRET_ENV_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


class Config(BaseModel):
    """All settings of sa_llm. Immutable; change it with :func:`configure` or :meth:`replace`.

    Credentials written into a base URL (``https://user:pass@host``) are shown as ``***`` in its
    repr and JSON dump and are never sent (see :meth:`base_url`).
    """

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        arbitrary_types_allowed=True,
        hide_input_in_errors=True,
        validate_default=True,
    )

    # OpenAI
    openai_api_key: SecretStr | None = Field(None, description="OpenAI key (OPENAI_API_KEY).")
    openai_base_url: str | None = Field(None, description="Default https://api.openai.com/v1.")
    openai_organization: str | None = Field(None, description="OpenAI-Organization header.")
    openai_project: str | None = Field(None, description="OpenAI-Project header.")
    openai_api: Literal["responses", "chat_completions"] = Field(
        "responses", description="OpenAI API: responses (default) or chat_completions."
    )
    # Anthropic
    anthropic_api_key: SecretStr | None = Field(None, description="Anthropic key.")
    anthropic_base_url: str | None = Field(None, description="Default https://api.anthropic.com.")
    # Gemini
    gemini_api_key: SecretStr | None = Field(None, description="Google Gemini key.")
    gemini_base_url: str | None = Field(
        None, description="Default https://generativelanguage.googleapis.com/v1beta."
    )
    # Bedrock
    bedrock_region: str | None = Field(None, description="AWS region (AWS_REGION).")
    bedrock_access_key_id: SecretStr | None = Field(None, description="AWS access key id.")
    bedrock_secret_access_key: SecretStr | None = Field(None, description="AWS secret key.")
    bedrock_session_token: SecretStr | None = Field(None, description="AWS session token.")
    bedrock_profile: str | None = Field(None, description="AWS profile for the credential chain.")
    bedrock_api_key: SecretStr | None = Field(
        None,
        description=(
            "A Bedrock API key (AWS_BEARER_TOKEN_BEDROCK): sent as a bearer token instead of "
            "signing requests with AWS credentials."
        ),
    )
    bedrock_base_url: str | None = Field(None, description="Override the runtime endpoint.")
    # OpenRouter
    openrouter_api_key: SecretStr | None = Field(None, description="OpenRouter key.")
    openrouter_base_url: str | None = Field(
        None, description="Default https://openrouter.ai/api/v1."
    )
    openrouter_app_url: str | None = Field(None, description="HTTP-Referer attribution header.")
    openrouter_app_title: str | None = Field(None, description="X-Title attribution header.")
    # OpenAI-compatible
    deepseek_api_key: SecretStr | None = Field(None, description="DeepSeek key.")
    deepseek_base_url: str | None = Field(None, description="Default https://api.deepseek.com.")
    deepseek_api: Literal["chat_completions", "responses"] = Field(
        "chat_completions", description="DeepSeek API: chat_completions (default) or responses."
    )
    mistral_api_key: SecretStr | None = Field(None, description="Mistral key.")
    mistral_base_url: str | None = Field(None, description="Default https://api.mistral.ai/v1.")
    xai_api_key: SecretStr | None = Field(None, description="xAI key.")
    xai_base_url: str | None = Field(None, description="Default https://api.x.ai/v1.")
    ollama_api_key: SecretStr | None = Field(None, description="Only for Ollama Cloud.")
    ollama_base_url: str | None = Field(
        None, description="Default http://localhost:11434/v1 (OLLAMA_API_BASE)."
    )
    api_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Keys of providers without a field of their own (third-party, test fake).",
    )
    # Behaviour
    default_model: str = Field("gpt-4.1-nano", description="Model of chats created without one.")
    request_timeout: float = Field(
        300.0, gt=0, description="Seconds per read, write and wait for a pooled connection."
    )
    connect_timeout: float | None = Field(
        None,
        gt=0,
        description=(
            "Seconds to open a connection (TCP and TLS), at most request_timeout. Default: "
            "SA_LLM_CONNECT_TIMEOUT, else 10."
        ),
    )
    max_retries: int = Field(3, ge=0, description="Retries of a failed request (0 disables).")
    retry_interval: float = Field(0.5, ge=0, description="First retry delay in seconds.")
    retry_backoff_factor: float = Field(2.0, ge=1, description="Delay multiplier per retry.")
    retry_max_interval: float = Field(30.0, ge=0, description="Upper bound of one retry delay.")
    retry_jitter: float = Field(0.25, ge=0, le=1, description="Random share of each delay.")
    concurrent_turns: Literal["wait", "raise"] = Field(
        "wait",
        description="A second turn on a busy chat waits for the first, or raises ChatBusyError.",
    )
    turn_wait_timeout: float | None = Field(
        None, gt=0, description="Longest wait for a busy chat in seconds (None: no limit)."
    )
    turn_lease_seconds: float = Field(
        30.0,
        gt=0,
        description=(
            "How long a persisted turn's lease on its chat lasts without a heartbeat: a turn "
            "whose process died is taken over this long after its last renewal."
        ),
    )
    turn_poll_interval: float = Field(
        0.5,
        gt=0,
        description=(
            "Seconds between a running turn's heartbeats: each reads the cancel flag (so a "
            "cancel is noticed within this), and renews the lease every third of its length."
        ),
    )
    keep_partial_output: bool = Field(
        False,
        description=(
            "Persisted chats: flush streamed text to the assistant row while it arrives, and "
            "keep it (status failed/cancelled/interrupted) when the turn does not complete."
        ),
    )
    partial_output_interval: float = Field(
        0.2, gt=0, description="Seconds between flushes of streamed text (keep_partial_output)."
    )
    stream_event_interval: float = Field(
        0.075,
        gt=0,
        description=(
            "Seconds between the message.delta events a streamed reply writes to its chat's "
            "event log (chats with an @acts_as_event class): a batch, never one per chunk."
        ),
    )
    tool_concurrency: int = Field(
        1,
        ge=1,
        description=(
            "How many tool calls of one round run at once (with_tools(..., concurrency=N) per "
            "chat); results are written and sent in call order either way."
        ),
    )
    db_retries: int = Field(
        2,
        ge=0,
        description=(
            "Retries of a persisted turn's database step that lost its connection before "
            "committing (a reset, a server restart); then PersistenceError."
        ),
    )
    max_attachment_bytes: int = Field(
        50 * 1024 * 1024, gt=0, description="Largest file that may be attached."
    )
    attachment_storage: Any = Field(
        None,
        description=(
            "Where persisted chats store attached files: a sa_llm.storage.Storage, a directory, "
            "or an fsspec URL (s3://bucket/prefix). Default: SA_LLM_ATTACHMENT_STORAGE, else "
            "./storage/attachments."
        ),
    )
    http_client: Any = Field(
        None,
        description=(
            "Your httpx.Client or httpx2.Client, used for every sync provider call (its own "
            "library's timeouts and errors are used)."
        ),
    )
    async_http_client: Any = Field(
        None,
        description="Your httpx.AsyncClient or httpx2.AsyncClient, used for every async call.",
    )
    http_library: Literal["httpx", "httpx2"] | None = Field(
        None,
        description=(
            "The library of the clients sa_llm makes itself (the shared ones, the fake model's, "
            'a Replay\'s): httpx or httpx2 (pip install "sa-llm[httpx2]"). Default: '
            "SA_LLM_HTTP_LIBRARY, else httpx."
        ),
    )
    async_http_backend: Literal["httpx", "aiohttp"] = Field(
        "httpx",
        description=(
            "What sends the shared async client's requests: httpx's own pool, or aiohttp "
            '(pip install "sa-llm[aiohttp]"; less CPU with many concurrent calls). '
            "async_http_client, when set, wins."
        ),
    )

    # Usage, cost and telemetry (docs/cost-and-observability.md).
    price_source: Literal["registry", "genai-prices"] = Field(
        "registry",
        description=(
            "Where the cost of each attempt is priced from: the model registry's pricing (the "
            'models table or the bundled data), or genai-prices (pip install "sa-llm[prices]").'
        ),
    )
    telemetry: bool = Field(
        True,
        description=(
            "Emit OpenTelemetry GenAI spans and metrics when opentelemetry-api is installed "
            '(pip install "sa-llm[otel]"); without it nothing is emitted either way.'
        ),
    )
    tracer_provider: Any = Field(
        None, description="The OpenTelemetry TracerProvider to use; default: the global one."
    )
    meter_provider: Any = Field(
        None, description="The OpenTelemetry MeterProvider to use; default: the global one."
    )
    telemetry_capture_content: bool = Field(
        False,
        description=(
            "Put message content (gen_ai.input.messages / gen_ai.output.messages, tool "
            "arguments and results) on spans. Off by default: content may be personal data."
        ),
    )

    @field_validator("http_client")
    @classmethod
    def _sync_client(cls, value: Any) -> Any:
        if value is None or _http.is_sync_client(value):
            return value
        raise ValueError(f"expected an httpx.Client or httpx2.Client, not {type(value).__name__}")

    @field_validator("async_http_client")
    @classmethod
    def _async_client(cls, value: Any) -> Any:
        if value is None or _http.is_async_client(value):
            return value
        raise ValueError(
            f"expected an httpx.AsyncClient or httpx2.AsyncClient, not {type(value).__name__}"
        )

    @field_validator("attachment_storage")
    @classmethod
    def _storage_setting(cls, value: Any) -> Any:
        from sa_llm.storage import Storage

        if value is None or isinstance(value, str | os.PathLike | Storage):
            return value
        raise ValueError(
            "expected a Storage (put/open/read/exists/delete/keys/modified), a directory or an "
            f"fsspec URL, not {type(value).__name__}"
        )

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if isinstance(value, str) and name is not None and name.endswith("_base_url"):
                value = redact_url(value)
            yield name, value

    @field_serializer("*")
    def _redacted_url(self, value: Any, info: Any) -> Any:
        # A URL's credentials are never sent (base_url strips them): a dump loses nothing
        # by showing them as "***", as a key dumps as SecretStr('**********').
        if isinstance(value, str) and str(info.field_name).endswith("_base_url"):
            return redact_url(value)
        return value

    def replace(self, **changes: Any) -> Config:
        """A validated copy with some settings changed.

        Raises:
            ConfigurationError: an unknown setting or a value of the wrong type.
        """
        unknown = [name for name in changes if name not in type(self).model_fields]
        if unknown:
            name = unknown[0]
            close = difflib.get_close_matches(name, list(type(self).model_fields), n=3)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ConfigurationError(f"Unknown setting {name!r}.{hint}")
        values = {name: getattr(self, name) for name in type(self).model_fields}
        values.update(changes)
        try:
            return type(self)(**values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in err['loc'])}: {err['msg']}"
                for err in exc.errors()
            )
            raise ConfigurationError(f"Invalid configuration: {problems}") from None

    def secret(self, name: str, env_var: str | None = None) -> str | None:
        """The plain value of a secret setting, or of its environment variable."""
        value = getattr(self, name, None)
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        if env_var:
            return os.environ.get(env_var) or None
        return None

    def api_key(self, provider: str, *, required: bool = True) -> str | None:
        """The API key of ``provider``: configured, else from its environment variable.

        Raises:
            MissingAPIKeyError: ``required`` and no key is found; names the env var.
        """
        env_var = API_KEY_ENV_VARS.get(provider)
        key = self.secret(f"{provider}_api_key", env_var)
        if key is None and provider in self.api_keys:
            key = self.api_keys[provider].get_secret_value()
        if key is None and required:
            raise MissingAPIKeyError(provider, env_var)
        return key

    def connect_seconds(self) -> float:
        """Seconds allowed to open a connection: ``connect_timeout``, else
        ``SA_LLM_CONNECT_TIMEOUT``, else 10; never more than ``request_timeout``.

        Raises:
            ConfigurationError: the environment variable is not a positive number.
        """
        seconds = self.connect_timeout
        if seconds is None:
            raw = os.environ.get(CONNECT_TIMEOUT_ENV_VAR, "").strip()
            if raw:
                try:
                    seconds = float(raw)
                except ValueError:
                    seconds = -1.0
                if not seconds > 0 or seconds == float("inf"):
                    raise ConfigurationError(
                        f"{CONNECT_TIMEOUT_ENV_VAR} must be a positive number of seconds, "
                        f"not {raw!r}."
                    )
            else:
                seconds = DEFAULT_CONNECT_TIMEOUT
        return min(seconds, self.request_timeout)

    def timeout(self, library: ModuleType | None = None) -> Any:
        """The timeout of every provider request, a ``Timeout`` of ``library`` (httpx or
        httpx2; default httpx): :meth:`connect_seconds` to connect, ``request_timeout`` for each
        read, each write and the wait for a pooled connection."""
        module = library or _http.library("httpx")
        return module.Timeout(self.request_timeout, connect=self.connect_seconds())

    def http_module(self) -> ModuleType:
        """The library of the clients sa_llm makes: ``http_library``, else
        ``SA_LLM_HTTP_LIBRARY``, else httpx.

        Raises:
            ConfigurationError: the variable names another library.
            MissingDependencyError: httpx2 is asked for and not installed.
        """
        name = self.http_library or os.environ.get(HTTP_LIBRARY_ENV_VAR, "").strip() or "httpx"
        return _http.library(name)

    def base_url(self, provider: str, default: str) -> str:
        """The base URL of ``provider``: configured, else from the env var, else ``default``.

        Credentials written into it (``https://user:pass@host``) are removed: httpx would send
        them as HTTP Basic auth in place of the provider's own key, and they would show in
        every log line and error that names the URL.
        """
        configured = getattr(self, f"{provider}_base_url", None)
        if configured:
            return strip_userinfo(str(configured)).rstrip("/")
        env_var = _BASE_URL_ENV_VARS.get(provider)
        from_env = os.environ.get(env_var) if env_var else None
        return strip_userinfo(from_env or default).rstrip("/")

    def secret_values(self) -> set[str]:
        """Every secret this configuration may send or hold, to be redacted where it is echoed:
        the keys (settings, ``api_keys`` and their environment variables), AWS credentials,
        and credentials written into base URLs."""
        values: set[str] = set()
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                values.add(value.get_secret_value())
            elif isinstance(value, str) and name.endswith("_base_url"):
                values |= url_secrets(value)
        values.update(key.get_secret_value() for key in self.api_keys.values())
        for env_var in (*API_KEY_ENV_VARS.values(), *_AWS_SECRET_ENV_VARS):
            values.add(os.environ.get(env_var) or "")
        for env_var in _BASE_URL_ENV_VARS.values():
            values |= url_secrets(os.environ.get(env_var))
        values.discard("")
        return values


_lock = threading.Lock()
_config = Config()


def get_config() -> Config:
    """The process-wide configuration currently in force."""
    return _config


def configure(**settings: Any) -> Config:
    """Change the process-wide configuration and return the new one.

    Only the given settings change; the others keep their values. The swap is atomic, so
    threads that are mid-request keep the configuration they started with.

    Raises:
        ConfigurationError: an unknown setting (with close matches) or a wrong value.
    """
    global _config
    with _lock:
        _config = _config.replace(**settings)
        return _config


def reset_config() -> Config:
    """Restore every setting to its default (mainly for tests)."""
    global _config
    with _lock:
        _config = Config()
        return _config
