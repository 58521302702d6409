"""Every optional import fails the same way: ``MissingDependencyError`` naming the extra."""

from __future__ import annotations

import pickle
import sys

import pytest

import sa_llm
from sa_llm._optional import require
from sa_llm.storage import FsspecStorage, open_storage


def test_require_names_the_feature_the_package_and_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "fsspec", None)  # what `import fsspec` sees uninstalled
    with pytest.raises(sa_llm.MissingDependencyError) as caught:
        require("fsspec", extra="storage", feature="FsspecStorage")
    error = caught.value
    assert (error.package, error.extra) == ("fsspec", "storage")
    assert str(error).startswith("FsspecStorage needs fsspec")
    assert 'pip install "sa-llm[storage]"' in str(error)
    assert isinstance(error, sa_llm.ConfigurationError)
    again = pickle.loads(pickle.dumps(error))
    assert (again.package, again.extra, str(again)) == ("fsspec", "storage", str(error))


def test_fsspec_storage_without_fsspec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fsspec", None)
    with pytest.raises(sa_llm.MissingDependencyError, match=r"sa-llm\[storage\]"):
        FsspecStorage("memory", "bucket")
    with pytest.raises(sa_llm.MissingDependencyError, match=r"s3fs"):
        open_storage("s3://bucket/prefix")


def test_an_aws_profile_without_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    from sa_llm.providers.bedrock import _credentials

    monkeypatch.setitem(sys.modules, "botocore.session", None)
    monkeypatch.setitem(sys.modules, "botocore", None)
    monkeypatch.setattr(_credentials, "_sessions", {})
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_BEARER_TOKEN_BEDROCK"):
        monkeypatch.delenv(name, raising=False)
    context = sa_llm.context(bedrock_profile="work", bedrock_region="us-east-1")
    chat = context.chat("claude-haiku-4-5", provider="bedrock")
    with pytest.raises(sa_llm.MissingDependencyError, match=r"sa-llm\[bedrock\]") as caught:
        chat.ask("Hi")
    assert "'work'" in str(caught.value)
