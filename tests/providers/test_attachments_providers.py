"""Every provider's recorded file uploads, replayed through persisted chats.

For each recorded exchange in which a provider received files inline (images, PDFs, audio), the
files are recovered from the recorded request itself (every base64 payload in it), attached to
a persisted chat routed to that provider, and the turn is replayed. What a user would check:
the reply is stored, each file has its attachment row (size and SHA-256 of the very bytes) and
blob, and the request carried each file's bytes in the provider's own encoding (the recorded
base64 appears in what was sent). A new recording of this kind needs no new test code.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from persisted import World, attachment_models
from sa_llm.content import Attachment, detect_mime_type
from sa_llm.testing import Replay

WIRE = Path(__file__).parents[1] / "fixtures" / "wire"
KINDS = re.compile(r"vision_models|pdf_models|audio_models")
_BASE64 = re.compile(r"^[A-Za-z0-9+/]{200,}={0,2}$")
_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "application/pdf": "pdf"}
AWS: dict[str, Any] = {
    "bedrock_region": "us-east-1",
    "bedrock_access_key_id": "AKIDEXAMPLE",
    "bedrock_secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
}


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def inline_files(body: Any) -> list[bytes]:
    """Every base64 payload of a recorded request (data URLs included), decoded, in order."""
    found: list[bytes] = []
    for text in _strings(body):
        payload = text.split(",", 1)[1] if text.startswith("data:") else text
        if _BASE64.match(payload):
            try:
                data = base64.b64decode(payload, validate=True)
            except binascii.Error:
                continue
            if data not in found:
                found.append(data)
    return found


def cases() -> list[tuple[Path, int]]:
    """(recording, index of the model call) for single-call recordings that upload files."""
    chosen = []
    for path in sorted(WIRE.glob("*/*.json")):
        if path.parent.name == "openai" or not KINDS.search(path.name):
            continue  # OpenAI's are replayed in test_attachments_persisted.py
        interactions = json.loads(path.read_text(encoding="utf-8"))["interactions"]
        posts = [i for i, x in enumerate(interactions) if x["request"]["method"] == "POST"]
        if len(posts) != 1:
            continue
        post = interactions[posts[0]]
        streamed = "stream" in post["response"]["headers"].get("content-type", "")
        if (
            post["response"]["status"] == 200
            and not streamed
            and inline_files(post["request"]["body"])
        ):
            chosen.append((path, posts[0]))
    return chosen


def load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8")))


def model_of(request: dict[str, Any]) -> str:
    body = request["body"] if isinstance(request["body"], dict) else {}
    if body.get("model"):
        return str(body["model"])
    url = str(request["url"])
    if "/model/" in url:
        return url.split("/model/")[-1].split("/")[0]
    return url.split("/models/")[-1].split(":")[0]


@pytest.fixture
def world_models() -> dict[str, Any]:
    return attachment_models()


@pytest.mark.parametrize(("path", "index"), cases(), ids=lambda v: getattr(v, "stem", str(v)))
async def test_recorded_uploads_replay_through_persisted_chats(
    world: World, path: Path, index: int, tmp_path: Path
) -> None:
    recording = load(path)
    request = recording["interactions"][index]["request"]
    files = inline_files(request["body"])
    attachments = []
    for number, data in enumerate(files):
        kind = detect_mime_type(data[:64], None)
        name = f"file{number}.{_EXTENSIONS.get(kind, kind.split('/')[-1])}"
        attachments.append(Attachment.from_bytes(data, filename=name))
    replay = Replay(recording)
    context = replay.context(attachment_storage=tmp_path / "blobs", **AWS)
    chat = world.Chat(
        model=model_of(request),
        provider=path.parent.name,
        assume_model_exists=True,
        context=context,
    )
    await world.add(chat)

    reply = await world.call(chat.ask, "What is in these files?", attachments=attachments)

    rows = world.messages()
    assert [r.role for r in rows] == ["user", "assistant"]
    assert rows[1].content == reply.content and reply.content
    stored = world.rows(world.models["Attachment"])
    assert [(a.byte_size, a.sha256) for a in stored] == [
        (len(data), hashlib.sha256(data).hexdigest()) for data in files
    ]
    assert all(a.message_id == rows[0].id for a in stored)
    sent = json.dumps([s.body for s in replay.seen if s.method == "POST"])
    for data in files:
        assert base64.b64encode(data).decode() in sent
