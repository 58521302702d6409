"""SigV4 signing and where Bedrock's region and credentials come from.

The signer is checked against AWS's published Signature Version 4 test suite
(``aws-sig-v4-test-suite``, 2015-08-30 vectors: access key ``AKIDEXAMPLE``, region
``us-east-1``, service ``service``; plus the IAM ``ListUsers`` example of AWS's signing guide),
reproduced below as data, and against botocore's own signer for Bedrock requests whose model ids
contain ``:``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import sa_llm
from sa_llm.config import Config
from sa_llm.providers import create_provider
from sa_llm.providers.base import ChatRequest, HttpRequest
from sa_llm.providers.bedrock import Bedrock, MissingAWSConfigurationError, _credentials
from sa_llm.providers.bedrock._sigv4 import (
    AWSCredentials,
    canonical_request,
    host_header,
    sign_headers,
    string_to_sign,
)
from sa_llm.testing import Replay
from sa_llm.types import Message

SUITE_TIME = datetime(2015, 8, 30, 12, 36, tzinfo=timezone.utc)
SUITE_KEYS = AWSCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
# The session token of the suite's post-sts-token cases.
SUITE_TOKEN = (
    "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfI"
    "eoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0"
    "wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FD"
    "rypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="
)

# name, method, url, extra signed headers, token, service, expected Authorization suffix
VECTORS: list[tuple[str, str, str, dict[str, str], str | None, str, str]] = [
    (
        "get-vanilla",
        "GET",
        "https://example.amazonaws.com/",
        {},
        None,
        "service",
        "SignedHeaders=host;x-amz-date, "
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    ),
    (
        "get-vanilla-query-order-key-case",
        "GET",
        "https://example.amazonaws.com/?Param2=value2&Param1=value1",
        {},
        None,
        "service",
        "SignedHeaders=host;x-amz-date, "
        "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
    ),
    (
        "post-vanilla",
        "POST",
        "https://example.amazonaws.com/",
        {},
        None,
        "service",
        "SignedHeaders=host;x-amz-date, "
        "Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
    ),
    (
        "post-vanilla-query",
        "POST",
        "https://example.amazonaws.com/?Param1=value1",
        {},
        None,
        "service",
        "SignedHeaders=host;x-amz-date, "
        "Signature=28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
    ),
    (
        "post-header-value-case",
        "POST",
        "https://example.amazonaws.com/",
        {"My-Header1": "VALUE1"},
        None,
        "service",
        "SignedHeaders=host;my-header1;x-amz-date, "
        "Signature=cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d",
    ),
    (
        "post-sts-header-before",
        "POST",
        "https://example.amazonaws.com/",
        {},
        SUITE_TOKEN,
        "service",
        "SignedHeaders=host;x-amz-date;x-amz-security-token, "
        "Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead",
    ),
    (
        "iam-list-users (signing guide)",
        "GET",
        "https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08",
        {"content-type": "application/x-www-form-urlencoded; charset=utf-8"},
        None,
        "iam",
        "SignedHeaders=content-type;host;x-amz-date, "
        "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
    ),
]


@pytest.mark.parametrize(
    ("method", "url", "headers", "token", "service", "expected"),
    [v[1:] for v in VECTORS],
    ids=[v[0] for v in VECTORS],
)
def test_aws_test_suite_vectors(
    method: str, url: str, headers: dict[str, str], token: str | None, service: str, expected: str
) -> None:
    keys = AWSCredentials(SUITE_KEYS.access_key_id, SUITE_KEYS.secret_access_key, token)
    signed = sign_headers(
        method, url, headers, b"", keys, region="us-east-1", service=service, now=SUITE_TIME
    )
    assert signed["x-amz-date"] == "20150830T123600Z"
    assert signed["authorization"] == (
        f"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/{service}/aws4_request, "
        + expected
    )
    assert signed.get("x-amz-security-token") == token


def test_suite_canonical_requests_and_strings_to_sign() -> None:
    # get-utf8: the suite's request path is the raw character; it is encoded once.
    creq, _ = canonical_request(
        "GET",
        "https://example.amazonaws.com/\u1234",
        {"host": "example.amazonaws.com", "x-amz-date": "20150830T123600Z"},
        EMPTY_SHA256,
    )
    assert creq.split("\n")[1] == "/%E1%88%B4"
    # post-header-key-sort: names sorted; get-vanilla: the string to sign.
    creq, signed = canonical_request(
        "POST",
        "https://example.amazonaws.com/",
        {"X-Amz-Date": "20150830T123600Z", "My-Header1": "value1", "Host": "example.amazonaws.com"},
        EMPTY_SHA256,
    )
    assert signed == "host;my-header1;x-amz-date"
    assert string_to_sign("20150830T123600Z", "20150830/us-east-1/service/aws4_request", creq) == (
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
        "9368318c2967cf6de74404b30c65a91e8f6253e0a8659d6d5319f1a812f87d65"
    )
    creq, _ = canonical_request(
        "GET",
        "https://example.amazonaws.com/",
        {"host": "example.amazonaws.com", "x-amz-date": "20150830T123600Z"},
        EMPTY_SHA256,
    )
    assert string_to_sign("20150830T123600Z", "20150830/us-east-1/service/aws4_request", creq) == (
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
        "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
    )


def test_header_values_are_trimmed_and_spaces_collapsed() -> None:
    creq, _ = canonical_request(
        "GET", "https://h.example/", {"My-Header2": '  "a   b   c"  '}, EMPTY_SHA256
    )
    assert 'my-header2:"a b c"\n' in creq


@pytest.mark.parametrize(
    ("url", "host"),
    [
        (
            "https://bedrock-runtime.us-east-1.amazonaws.com/x",
            "bedrock-runtime.us-east-1.amazonaws.com",
        ),
        ("https://example.com:443/x", "example.com"),
        ("http://example.com:80/x", "example.com"),
        ("https://example.com:8443/x", "example.com:8443"),
        ("http://[::1]:8080/x", "[::1]:8080"),
    ],
)
def test_host_header_matches_what_http_clients_send(url: str, host: str) -> None:
    import httpx

    assert host_header(url) == host
    assert httpx.Client().build_request("GET", url).headers["host"] == host


# -- Bedrock requests ----------------------------------------------------------------------------

SETTINGS: dict[str, Any] = {
    "bedrock_region": "us-east-1",
    "bedrock_access_key_id": "AKIDEXAMPLE",
    "bedrock_secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
}


def signed_converse(model: str, **settings: Any) -> HttpRequest:
    provider = Bedrock(Config(**{**SETTINGS, **settings}))
    provider.clock = lambda: SUITE_TIME
    request = ChatRequest(model=model, messages=[Message(role="user", content="Grüß dich")])
    return provider.build_request(request)


def test_model_id_colon_is_encoded_in_the_path_and_again_in_the_canonical_uri() -> None:
    http = signed_converse("us.amazon.nova-2-lite-v1:0")
    assert http.url.endswith("/model/us.amazon.nova-2-lite-v1%3A0/converse")
    creq, _ = canonical_request("POST", http.url, {"host": "h"}, EMPTY_SHA256)
    # Every service but S3 URI-encodes the path as sent once more: ':' -> '%3A' -> '%253A'.
    assert creq.split("\n")[1] == "/model/us.amazon.nova-2-lite-v1%253A0/converse"


def test_arn_model_ids_are_one_encoded_segment() -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123"
    http = signed_converse(arn)
    assert http.url.endswith(
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3A"
        "application-inference-profile%2Fabc123/converse"
    )


def test_the_signature_covers_the_bytes_that_are_sent() -> None:
    http = signed_converse("us.amazon.nova-2-lite-v1:0")
    assert http.json is None and http.content is not None
    body = json.loads(http.content)
    assert body["messages"][0]["content"] == [{"text": "Grüß dich"}]
    assert "Grüß".encode() in http.content  # UTF-8, not \u escapes
    headers = dict(http.headers)
    assert headers["x-amz-date"] == "20150830T123600Z"
    assert headers["authorization"].startswith(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date, Signature="
    )


def test_session_token_is_sent_and_signed() -> None:
    http = signed_converse("us.amazon.nova-2-lite-v1:0", bedrock_session_token=SUITE_TOKEN)
    assert http.headers["x-amz-security-token"] == SUITE_TOKEN
    assert (
        "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token,"
        in (http.headers["authorization"])
    )


@pytest.mark.parametrize("token", [None, SUITE_TOKEN])
@pytest.mark.parametrize("model", ["us.amazon.nova-2-lite-v1:0", "mistral.voxtral-mini-3b-2507"])
def test_signature_equals_botocores(model: str, token: str | None) -> None:
    auth_module = pytest.importorskip("botocore.auth")
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    settings = {"bedrock_session_token": token} if token else {}
    http = signed_converse(model, **settings)
    aws = AWSRequest(method="POST", url=http.url, data=http.content)
    signed = http.headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    for name in signed:
        if name != "host":
            aws.headers[name] = http.headers[name]
    aws.context["timestamp"] = http.headers["x-amz-date"]
    credentials = Credentials(
        SETTINGS["bedrock_access_key_id"], SUITE_KEYS.secret_access_key, token
    )
    auth = auth_module.SigV4Auth(credentials, "bedrock", "us-east-1")
    signature = auth.signature(auth.string_to_sign(aws, auth.canonical_request(aws)), aws)
    assert http.headers["authorization"].endswith(f"Signature={signature}")


# -- region and credentials --------------------------------------------------------------------


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No AWS settings from the machine: empty config files and a fresh session cache."""
    for name in (
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
    ):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "credentials").write_text("")
    (tmp_path / "config").write_text("")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    # Instance metadata would be a network call: botocore is told not to try.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(_credentials, "_sessions", {})
    return monkeypatch


def test_configured_keys_win_over_the_environment(aws_env: pytest.MonkeyPatch) -> None:
    aws_env.setenv("AWS_ACCESS_KEY_ID", "AKIAENV")
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    config = Config(bedrock_access_key_id="AKIACONF", bedrock_secret_access_key="conf")
    assert _credentials.resolve_credentials(config).access_key_id == "AKIACONF"
    assert _credentials.resolve_credentials(Config()) == AWSCredentials("AKIAENV", "env-secret")


def test_environment_fallbacks(aws_env: pytest.MonkeyPatch) -> None:
    aws_env.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    assert _credentials.resolve_region(Config()) == "eu-west-3"
    aws_env.setenv("AWS_REGION", "eu-central-1")
    assert _credentials.resolve_region(Config()) == "eu-central-1"
    assert _credentials.resolve_region(Config(bedrock_region="us-west-2")) == "us-west-2"
    aws_env.setenv("AWS_ACCESS_KEY_ID", "AKIAENV")
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    aws_env.setenv("AWS_SESSION_TOKEN", "env-token")
    assert _credentials.resolve_credentials(Config()).session_token == "env-token"


def test_missing_region_fails_before_any_request(aws_env: pytest.MonkeyPatch) -> None:
    replay = Replay({"interactions": []})
    ctx = replay.context(bedrock_access_key_id="AKIA", bedrock_secret_access_key="s")
    chat = ctx.chat("amazon.nova-2-lite-v1:0", provider="bedrock")
    with pytest.raises(MissingAWSConfigurationError, match="AWS_REGION") as caught:
        chat.ask("Hello")
    assert isinstance(caught.value, sa_llm.MissingAPIKeyError)
    assert isinstance(caught.value, sa_llm.ConfigurationError)
    assert caught.value.env_var == "AWS_REGION" and caught.value.provider == "bedrock"
    assert replay.seen == []


def test_missing_credentials_fail_before_any_request(aws_env: pytest.MonkeyPatch) -> None:
    pytest.importorskip("botocore")
    replay = Replay({"interactions": []})
    chat = replay.context(bedrock_region="us-east-1").chat(
        "mistral.voxtral-mini-3b-2507", provider="bedrock"
    )
    with pytest.raises(MissingAWSConfigurationError, match="AWS_ACCESS_KEY_ID"):
        chat.ask("Hello")
    assert replay.seen == []


def test_without_botocore_the_error_names_the_extra(aws_env: pytest.MonkeyPatch) -> None:
    import sys

    aws_env.setitem(sys.modules, "botocore", None)
    aws_env.setitem(sys.modules, "botocore.session", None)
    with pytest.raises(MissingAWSConfigurationError, match=r'pip install "sa-llm\[bedrock\]"'):
        _credentials.resolve_credentials(Config(bedrock_region="us-east-1"))
    # Explicit keys never need botocore.
    config = Config(bedrock_access_key_id="AKIA", bedrock_secret_access_key="s")
    assert _credentials.resolve_credentials(config).access_key_id == "AKIA"


def test_a_named_profile_is_read_through_botocore(
    aws_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("botocore")
    (tmp_path / "credentials").write_text(
        "[work]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = profile-secret\n"
        "aws_session_token = profile-token\n"
    )
    (tmp_path / "config").write_text("[profile work]\nregion = ap-northeast-1\n")
    config = Config(
        bedrock_profile="work", bedrock_access_key_id="AKIAIGNORED", bedrock_secret_access_key="x"
    )
    assert _credentials.resolve_credentials(config) == AWSCredentials(
        "AKIAPROFILE", "profile-secret", "profile-token"
    )
    assert _credentials.resolve_region(config) == "ap-northeast-1"
    aws_env.setenv("AWS_PROFILE", "work")  # the default chain honours AWS_PROFILE
    assert _credentials.resolve_credentials(Config()).access_key_id == "AKIAPROFILE"


def test_an_unknown_profile_is_a_typed_error(aws_env: pytest.MonkeyPatch) -> None:
    pytest.importorskip("botocore")
    with pytest.raises(MissingAWSConfigurationError, match="nope"):
        _credentials.resolve_credentials(Config(bedrock_profile="nope"))


def test_api_key_is_the_access_key_id_and_secrets_stay_out_of_reprs(
    aws_env: pytest.MonkeyPatch,
) -> None:
    provider = Bedrock(Config(**SETTINGS))
    assert provider.api_key() == "AKIDEXAMPLE"
    assert provider.auth_headers() == {}
    credentials = _credentials.resolve_credentials(Config(**SETTINGS, bedrock_session_token="tok"))
    assert SUITE_KEYS.secret_access_key not in repr(credentials) and "tok" not in repr(credentials)
    http = signed_converse("us.amazon.nova-2-lite-v1:0")
    assert "AKIDEXAMPLE" not in repr(http)


# -- Bedrock API keys: a bearer token instead of a signature --------------------------------------

_CONVERSE_REPLY = {
    "output": {"message": {"role": "assistant", "content": [{"text": "4"}]}},
    "stopReason": "end_turn",
    "usage": {"inputTokens": 5, "outputTokens": 1, "totalTokens": 6},
}


def _converse_replay() -> Replay:
    return Replay(
        {
            "interactions": [
                {
                    "request": {
                        "method": "POST",
                        "url": "https://bedrock-runtime.<AWS_REGION>.amazonaws.com/model/"
                        "us.amazon.nova-2-lite-v1:0/converse",
                    },
                    "response": {
                        "status": 200,
                        "headers": {"content-type": "application/json"},
                        "body": json.dumps(_CONVERSE_REPLY),
                    },
                }
            ]
        }
    )


@pytest.mark.parametrize("source", ["setting", "environment"])
def test_a_bedrock_api_key_is_sent_as_a_bearer_token_without_aws_credentials(
    aws_env: pytest.MonkeyPatch, source: str
) -> None:
    settings: dict[str, Any] = {"bedrock_region": "us-east-1"}
    if source == "setting":
        settings["bedrock_api_key"] = "ABSKbedrock-key"
    else:
        aws_env.setenv("AWS_BEARER_TOKEN_BEDROCK", "ABSKbedrock-key")
    replay = _converse_replay()
    chat = replay.context(**settings).chat(
        "amazon.nova-2-lite-v1:0", provider="bedrock", assume_model_exists=True
    )
    assert chat.ask("2 + 2?").text == "4"  # no access keys anywhere: nothing to sign with
    sent = replay.seen[0]
    assert sent.headers["authorization"] == "Bearer ABSKbedrock-key"
    assert "x-amz-date" not in sent.headers and "x-amz-content-sha256" not in sent.headers
    assert sent.body["messages"][0]["content"] == [{"text": "2 + 2?"}]


def test_the_api_key_takes_precedence_over_aws_credentials(aws_env: pytest.MonkeyPatch) -> None:
    aws_env.setenv("AWS_BEARER_TOKEN_BEDROCK", "ABSKbedrock-key")
    config = Config(
        bedrock_region="eu-west-1",
        bedrock_access_key_id="AKIDEXAMPLE",
        bedrock_secret_access_key="secret",
    )
    for model in ("amazon.nova-2-lite-v1:0", "mistral.voxtral-mini-3b-2507"):  # Converse, Mantle
        provider = create_provider("bedrock", config, model)
        http = provider.build_request(
            ChatRequest(model=model, messages=[Message(role="user", content="Hi")])
        )
        assert http.headers["authorization"] == "Bearer ABSKbedrock-key", model
        assert "eu-west-1" in http.url


def test_without_an_api_key_or_credentials_the_error_names_both(
    aws_env: pytest.MonkeyPatch,
) -> None:
    chat = sa_llm.context(bedrock_region="us-east-1").chat(
        "amazon.nova-2-lite-v1:0", provider="bedrock", assume_model_exists=True
    )
    with pytest.raises(MissingAWSConfigurationError) as raised:
        chat.ask("Hi")
    assert "AWS_BEARER_TOKEN_BEDROCK" in str(raised.value)
