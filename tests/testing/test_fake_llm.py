"""The scripted fake model (``sa_llm.testing.fake``) as users' tests meet it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import sa_llm
from sa_llm.providers import _registry, register_provider
from sa_llm.testing import FakeProvider, fake_llm


class _TakesURLs(FakeProvider):
    """A fake standing in for a provider that is sent remote files by URL."""

    name = "fake-url"

    def accepts_url(self, mime_type: str) -> bool:
        return True


@pytest.fixture
def url_fake() -> Iterator[str]:
    register_provider(_TakesURLs)
    yield _TakesURLs.name
    _registry.pop(_TakesURLs.name, None)


def test_a_url_the_provider_takes_is_sent_as_a_url_not_downloaded(url_fake: str) -> None:
    """Describing the file must not read its size: that would download it (there is no
    network here, so a download would fail the ask)."""
    url = "https://files.example.invalid/cat.png"
    with fake_llm() as fake:
        chat = sa_llm.chat("any-model", provider=url_fake, assume_model_exists=True)
        chat.ask("What is this?", attachments=url)
    sent = fake.requests[0]["messages"][-1]["content"]
    assert sent["attachments"] == [{"filename": "cat.png", "mime_type": "image/png", "url": url}]


def test_a_local_file_is_described_by_its_size(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("twelve bytes")
    with fake_llm() as fake:
        sa_llm.chat("any-model", provider="fake").ask("Read it", attachments=str(path))
    (attachment,) = fake.requests[0]["messages"][-1]["content"]["attachments"]
    assert (attachment["filename"], attachment["size"]) == ("notes.txt", 12)
