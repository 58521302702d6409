"""Files attached to persisted chats: stored, linked by rows, re-sent on later turns.

Every test runs four ways (sync and async, SQLite and PostgreSQL) through the ``World`` harness.
The first part replays the attachment recordings of the OpenAI corpus through ``@acts_as_chat``
rows: what was sent must equal the recorded request, the rows must describe the recorded files
(sizes and SHA-256 computed here from the recorded bytes), and the history rebuilt from the
database must carry the same bytes again. The second part scripts edge cases with the fake model:
every kind of source, reuse of a stored row, size limits, missing files, model modalities,
rollbacks, tool results with files, query counts and the garbage collection command.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import re
import sys
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import event, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import sa_llm
from conftest import sync_url
from persisted import (
    StatementCounter,
    World,
    attachment_models,
    close_world,
    default_models,
    make_world,
    models_source,
    new_chat,
)
from sa_llm.cli import main
from sa_llm.content import Attachment
from sa_llm.declarative import acts_as_attachment, acts_as_message
from sa_llm.errors import AttachmentError, ConfigurationError, UnsupportedAttachmentError
from sa_llm.mixins import AttachmentMixin
from sa_llm.persistence import InTransactionStrategy, use_strategy
from sa_llm.storage import LocalStorage, Storage, collect_garbage
from sa_llm.testing import FakeLLM, Replay, fake_llm
from sa_llm.types import Content
from wire_responses import (
    WIRE,
    expected_text,
    load,
    make_tool,
    model_calls,
    reply_object,
    tool_outputs,
    turns,
)

OPENAI = WIRE / "openai"
_FILE_RE = re.compile(
    r"^<file name='(?P<name>[^']*)' mime_type='(?P<type>[^']*)'>(?P<body>.*)</file>$", re.S
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- models and worlds ----------------------------------------------------------------------------


@pytest.fixture
def world_models() -> dict[str, Any]:
    return attachment_models()


@pytest.fixture
def world_settings(tmp_path: Path) -> dict[str, Any]:
    return {"max_retries": 0, "attachment_storage": tmp_path / "blobs"}


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "blobs")


def attachment_rows(world: World) -> list[Any]:
    return world.rows(world.models["Attachment"])


# -- sources as a web framework hands them over ---------------------------------------------------


class StarletteUploadFile:
    """Mimics ``starlette.datastructures.UploadFile``: a spooled ``file``, ``filename``,
    ``size``, ``headers`` with ``content_type`` read from them, and *async* ``read``."""

    def __init__(self, data: bytes, filename: str, content_type: str) -> None:
        self.file: Any = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)  # noqa: SIM115
        self.file.write(data)
        self.file.seek(0)
        self.filename = filename
        self.size = len(data)
        self.headers = {"content-type": content_type}

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")

    async def read(self, size: int = -1) -> bytes:  # Starlette's is a coroutine
        raise AssertionError("sa_llm must read UploadFile.file, not await UploadFile.read()")


class WerkzeugFileStorage:
    """Mimics ``werkzeug.datastructures.FileStorage``: ``stream``, ``filename``, ``name`` (the
    form field), ``content_type`` with parameters, ``mimetype`` without, and attribute
    delegation to the stream."""

    def __init__(self, data: bytes, filename: str, content_type: str) -> None:
        self.stream: Any = io.BytesIO(data)
        self.filename = filename
        self.name = "upload"
        self.content_type = (
            f"{content_type}; charset=utf-8" if "text" in content_type else content_type
        )
        self.content_length = len(data)

    @property
    def mimetype(self) -> str:
        return self.content_type.split(";")[0].strip().lower()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


class Unseekable:
    """A stream that can only be read forward (a request body)."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._data.read(size)

    def seekable(self) -> bool:
        return False


KINDS = ["path", "upload", "bytes", "filestorage", "attachment", "open_file", "str_path"]


@dataclass
class SourceMaker:
    directory: Path
    opened: list[Any]

    def make(self, kind: str, filename: str, mime: str | None, data: bytes) -> Any:
        if kind in ("path", "str_path", "open_file"):
            folder = self.directory / uuid.uuid4().hex
            folder.mkdir(parents=True)
            path = folder / filename
            path.write_bytes(data)
            if kind == "open_file":
                handle = path.open("rb")
                self.opened.append(handle)
                return handle
            return path if kind == "path" else str(path)
        if kind == "bytes":
            return (data, filename)
        if kind == "attachment":
            return Attachment.from_bytes(data, filename=filename, mime_type=mime)
        if kind == "upload":
            return StarletteUploadFile(data, filename, mime or "application/octet-stream")
        if kind == "filestorage":
            return WerkzeugFileStorage(data, filename, mime or "application/octet-stream")
        raise AssertionError(kind)


@pytest.fixture
def sources(tmp_path: Path) -> Iterator[SourceMaker]:
    maker = SourceMaker(tmp_path / "sources", [])
    yield maker
    for handle in maker.opened:
        handle.close()


# -- reading recorded requests --------------------------------------------------------------------


@dataclass(frozen=True)
class File:
    """A file as a request carries it: its type and bytes (and name, where the wire has one)."""

    mime: str
    data: bytes
    name: str | None = None


def _data_url(url: str) -> tuple[str, bytes]:
    header, _, payload = url.partition(",")
    return header[5:].split(";")[0], base64.b64decode(payload)


def part_file(part: Mapping[str, Any]) -> File | str | None:
    """The file one content part carries (a URL string for files sent by URL), else None."""
    kind = part.get("type")
    if kind in ("input_text", "text"):
        match = _FILE_RE.match(str(part.get("text", "")))
        return File(match["type"], match["body"].encode(), match["name"]) if match else None
    if kind in ("input_image", "image_url"):
        url = part["image_url"] if kind == "input_image" else part["image_url"]["url"]
        if not str(url).startswith("data:"):
            return str(url)
        mime, data = _data_url(url)
        return File(mime, data)
    if kind == "input_file":
        mime, data = _data_url(part["file_data"])
        return File(mime, data, part.get("filename"))
    if kind == "file":
        mime, data = _data_url(part["file"]["file_data"])
        return File(mime, data, part["file"].get("filename"))
    if kind == "input_audio":
        audio = part["input_audio"]
        mime = {"mp3": "audio/mpeg", "wav": "audio/wav"}.get(audio["format"], audio["format"])
        return File(mime, base64.b64decode(audio["data"]))
    return None


def user_items(body: Mapping[str, Any]) -> list[Any]:
    items = body.get("input") if "input" in body else body.get("messages")
    return [item for item in items or [] if item.get("role") == "user"]


def files_by_user_item(body: Mapping[str, Any]) -> list[list[File | str]]:
    result = []
    for item in user_items(body):
        content = item["content"]
        parts = content if isinstance(content, list) else []
        result.append([f for p in parts if (f := part_file(p)) is not None])
    return result


# -- part 1: the corpus through persisted chats ---------------------------------------------------

RECORDINGS = {
    "ar_image": "activerecord_actsas_attachment_handling_handles_attachments_in_ask_method",
    "image": "chat_vision_models_openai_gpt-5-nano_can_understand_local_images",
    "mixed": (
        "chat_pdf_models_openai_gpt-5-nano_can_handle_array_of_mixed_files_with_auto-detection"
    ),
    "text_two_turns": "chat_text_models_openai_gpt-5-nano_can_understand_text",
    "remote_text": "chat_text_models_openai_gpt-5-nano_can_understand_remote_text",
    "remote_image": (
        "chat_vision_models_openai_gpt-5-nano_can_understand_remote_images_without_extension"
    ),
    "audio": "chat_audio_models_openai_gpt-audio-mini_can_understand_mp3_audio",
    "tool_text": "chat_tool_attachments_openai_gpt-5-nano_returns_text_and_attachments_from_tools",
    "tool_pdf": "chat_multimodal_tool_attachments_openai_gpt-5-nano_reads_pdfs_returned_from_tools",
}


@dataclass
class Ask:
    prompt: str | None
    files: list[tuple[str, str | None, bytes]]  # (filename, declared type, bytes)
    urls: list[str]
    body: Mapping[str, Any]
    calls: list[Mapping[str, Any]]


def recorded_asks(recording: Mapping[str, Any]) -> list[Ask]:
    """The asks of the original test, with their files as a user would hold them."""
    downloads = [
        i["request"]["url"] for i in recording["interactions"] if i["request"]["method"] == "GET"
    ]
    calls = model_calls(recording)
    if calls[0]["request"]["url"].endswith("/chat/completions"):
        body = calls[0]["request"]["body"]
        parts = body["messages"][0]["content"]
        prompt = next(p["text"] for p in parts if p["type"] == "text")
        audio = next(p["input_audio"] for p in parts if p["type"] == "input_audio")
        files: list[tuple[str, str | None, bytes]] = [
            ("speech.mp3", None, base64.b64decode(audio["data"]))
        ]
        return [Ask(prompt, files, [], body, list(calls))]
    history, asks = turns(recording)
    assert history == [] and not any(turn.fresh for turn in asks)
    result = []
    for index, turn in enumerate(asks):
        urls = downloads if index == 0 else []
        files = [] if urls else [(f.filename or "file", f.mime_type, f.data()) for f in turn.files]
        assert all(isinstance(name, str) for name, _, _ in files)
        result.append(Ask(turn.prompt, files, urls, turn.body, turn.calls))
    return result


def expected_stored(recording: Mapping[str, Any], ask: Ask) -> list[File]:
    """What the rows of an ask's user message must describe: the bytes as the user had them."""
    if ask.urls:
        stored = []
        for url in ask.urls:
            response = next(
                i["response"] for i in recording["interactions"] if i["request"]["url"] == url
            )
            raw = response["body"]
            data = base64.b64decode(raw) if response.get("body_base64") else raw.encode()
            mime = response["headers"]["content-type"].split(";")[0]
            stored.append(File(mime, data, url.rsplit("/", 1)[-1]))
        return stored
    recorded = files_by_user_item(ask.body)[-1]
    names = [name for name, _, _ in ask.files]
    return [File(f.mime, f.data, names[i]) for i, f in enumerate(recorded) if isinstance(f, File)]


def tool_files(recording: Mapping[str, Any]) -> list[File]:
    files = []
    for outputs in tool_outputs(recording).values():
        for output in outputs:
            if isinstance(output, Content):
                files += [File(a.type, a.data(), a.filename) for a in output.attachments]
    return files


async def replay_through_record(
    world: World, recording: Mapping[str, Any], kind: str, sources: SourceMaker, storage: Storage
) -> Any:
    replay = Replay(recording)
    ctx = replay.context(attachment_storage=storage)
    asks = recorded_asks(recording)
    first = asks[0].body
    chat = world.Chat(model=first["model"], provider="openai", context=ctx)
    await world.add(chat)
    if first.get("tools"):
        outputs = tool_outputs(recording)
        chat.with_tools(*[make_tool(spec, outputs) for spec in first["tools"]])
    for ask in asks:
        reasoning = ask.body.get("reasoning") or {}
        if reasoning.get("effort"):
            chat.with_thinking(effort=reasoning["effort"])
        given: list[Any] = list(ask.urls) + [
            sources.make(kind, name, mime, data) for name, mime, data in ask.files
        ]
        reply = await world.call(chat.ask, ask.prompt, attachments=given or None)
        recorded_reply = reply_object(ask.calls[-1]["response"])
        assert recorded_reply is not None
        text = recorded_reply.get("output") and expected_text(recorded_reply)
        if text is None:  # Chat Completions
            text = recorded_reply["choices"][0]["message"]["content"]
        assert reply.text == text

    posts = [s for s in replay.seen if s.method == "POST"]
    assert len(posts) == len(model_calls(recording))
    for sent, call in zip(posts, model_calls(recording), strict=True):
        # Exactly what was recorded, file parts included (a stored file re-sent on a later
        # turn must be byte-for-byte what the original test sent).
        assert user_items(sent.body) == user_items(call["request"]["body"])
    replay.assert_all_used()
    return chat


@pytest.mark.parametrize(
    ("name", "kind"),
    [(name, KINDS[i % len(KINDS)]) for i, name in enumerate(RECORDINGS)],
    ids=list(RECORDINGS),
)
async def test_corpus_files_through_persisted_chats(
    world: World, sources: SourceMaker, storage: LocalStorage, name: str, kind: str
) -> None:
    recording = load(OPENAI / f"{RECORDINGS[name]}.json")
    chat = await replay_through_record(world, recording, kind, sources, storage)
    asks = recorded_asks(recording)

    # Rows: one per file of each user message, describing the user's bytes.
    messages = world.messages()
    rows = attachment_rows(world)
    by_message: dict[Any, list[Any]] = {}
    for row in rows:
        by_message.setdefault(row.message_id, []).append(row)
    users = [m for m in messages if m.role == "user"]
    assert len(users) == len(asks)
    expected_by_user = [expected_stored(recording, ask) for ask in asks]
    for user, expected in zip(users, expected_by_user, strict=True):
        found = by_message.get(user.id, [])
        assert [(r.filename, r.content_type, r.byte_size, r.sha256) for r in found] == [
            (f.name, f.mime, len(f.data), sha(f.data)) for f in expected
        ]
        for row, file in zip(found, expected, strict=True):
            assert row.storage_key == sha(file.data)
            assert storage.read(row.storage_key) == file.data
    tools = [m for m in messages if m.role == "tool"]
    expected_tools = tool_files(recording)
    tool_rows = [r for m in tools for r in by_message.get(m.id, [])]
    assert [(r.filename, r.content_type, sha(storage.read(r.storage_key))) for r in tool_rows] == [
        (f.name, f.mime, sha(f.data)) for f in expected_tools
    ]
    assert set(by_message) <= {m.id for m in users + tools}

    # The history rebuilt from the rows sends the stored bytes again (stored copies of remote
    # files are sent inline: the URL may be gone by the next turn).
    llm = await world.call(chat.to_llm)
    again = llm.provider.build_request(llm.chat_request()).json
    rebuilt = [files for files in files_by_user_item(again) if files]
    wanted = [files for files in expected_by_user if files] + (
        [expected_tools] if expected_tools else []
    )
    assert [[(f.mime, f.data) for f in files] for files in rebuilt] == [  # type: ignore[union-attr]
        [(f.mime, f.data) for f in files] for files in wanted
    ]


@pytest.mark.parametrize("kind", KINDS)
async def test_every_source_kind_sends_and_stores_the_same_bytes(
    world: World, sources: SourceMaker, storage: LocalStorage, kind: str
) -> None:
    recording = load(OPENAI / f"{RECORDINGS['mixed']}.json")
    await replay_through_record(world, recording, kind, sources, storage)
    expected = expected_stored(recording, recorded_asks(recording)[0])
    assert [(r.filename, r.content_type, r.sha256) for r in attachment_rows(world)] == [
        (f.name, f.mime, sha(f.data)) for f in expected
    ]
    assert sorted(storage.keys()) == sorted(sha(f.data) for f in expected)


# -- part 2: behaviour, scripted with the fake model ----------------------------------------------


def sample_png() -> bytes:
    recording = load(OPENAI / f"{RECORDINGS['image']}.json")
    return recorded_asks(recording)[0].files[0][2]


def sample_pdf() -> bytes:
    recording = load(OPENAI / f"{RECORDINGS['mixed']}.json")
    return recorded_asks(recording)[0].files[1][2]


def sent_files(fake: FakeLLM, index: int = -1) -> list[list[tuple[str, str, int]]]:
    """Per user message of a fake request: (filename, type, size) of its files."""
    result = []
    for message in fake.requests[index]["messages"]:
        content = message["content"]
        if message["role"] == "user":
            files = content.get("attachments", []) if isinstance(content, dict) else []
            result.append([(f["filename"], f["mime_type"], f["size"]) for f in files])
    return result


async def test_create_user_message_then_complete_sends_the_stored_file(
    world: World, fake: FakeLLM, tmp_path: Path, storage: LocalStorage
) -> None:
    png = sample_png()
    path = tmp_path / "diagram.png"
    path.write_bytes(png)
    chat = await new_chat(world)
    row = await world.call(chat.create_user_message, "What's in it?", attachments=path)
    assert fake.requests == []
    assert [
        (r.message_id, r.filename, r.content_type, r.byte_size) for r in attachment_rows(world)
    ] == [(row.id, "diagram.png", "image/png", len(png))]
    fake.reply("a diagram")
    await world.call(chat.complete)
    assert sent_files(fake) == [[("diagram.png", "image/png", len(png))]]
    fake.reply("still a diagram")
    await world.call(chat.ask, "And again?")
    assert sent_files(fake) == [[("diagram.png", "image/png", len(png))], []]
    llm = await world.call(chat.to_llm)
    stored = llm.messages[0].attachments[0]
    assert stored.data() == png
    assert stored.storage_key == sha(png) and stored.sha256 == sha(png)


async def test_reusing_a_stored_row_stores_nothing(
    world: World, fake: FakeLLM, tmp_path: Path, storage: LocalStorage
) -> None:
    counting = CountingStorage(storage)
    sa_llm.configure(attachment_storage=counting)
    chat = await new_chat(world)
    fake.reply("ok").reply("ok again")
    await world.call(chat.ask, "first", attachments=[(sample_pdf(), "report.pdf")])
    assert counting.puts == 1
    [original] = attachment_rows(world)
    other = await new_chat(world)
    await world.call(other.ask, "same file, other chat", attachments=original)
    assert counting.puts == 1
    rows = attachment_rows(world)
    assert len(rows) == 2
    assert rows[1].storage_key == original.storage_key and rows[1].sha256 == original.sha256
    assert (rows[1].filename, rows[1].content_type, rows[1].byte_size) == (
        "report.pdf",
        "application/pdf",
        len(sample_pdf()),
    )
    assert rows[1].message_id != original.message_id
    assert list(storage.keys()) == [original.storage_key]
    assert sent_files(fake) == [[("report.pdf", "application/pdf", len(sample_pdf()))]]


async def test_the_same_file_twice_is_one_blob(
    world: World, fake: FakeLLM, tmp_path: Path, storage: LocalStorage
) -> None:
    data = b"name,value\na,1\n"
    chat = await new_chat(world)
    fake.reply("1").reply("2")
    await world.call(chat.ask, "one", attachments=[(data, "a.csv")])
    await world.call(chat.ask, "two", attachments={"file": (data, "b.csv"), "blank": ""})
    rows = attachment_rows(world)
    assert [(r.filename, r.content_type, r.storage_key) for r in rows] == [
        ("a.csv", "text/csv", sha(data)),
        ("b.csv", "text/csv", sha(data)),
    ]
    assert list(storage.keys()) == [sha(data)]


async def test_uploads_are_streamed_and_typed_by_content(
    world: World, fake: FakeLLM, storage: LocalStorage
) -> None:
    png = sample_png()
    chat = await new_chat(world)
    fake.reply("ok")
    upload = StarletteUploadFile(
        png, "../../etc/photo.jpg", "image/jpeg"
    )  # wrong type, sneaky name
    form = WerkzeugFileStorage(b"hello", "C:\\Users\\me\\notes.txt", "text/plain")
    stream = Unseekable(sample_pdf())
    await world.call(chat.ask, "three files", attachments=[upload, form, stream])
    assert [(r.filename, r.content_type) for r in attachment_rows(world)] == [
        ("photo.jpg", "image/png"),
        ("notes.txt", "text/plain"),
        ("attachment.pdf", "application/pdf"),
    ]
    assert sorted(storage.keys()) == sorted([sha(png), sha(b"hello"), sha(sample_pdf())])
    assert not upload.file.closed  # the caller's stream: read, not closed
    # Filenames never became paths: everything is under the storage's own layout.
    assert all(
        p.name in {sha(png), sha(b"hello"), sha(sample_pdf())}
        for p in storage.directory.rglob("*")
        if p.is_file()
    )


@pytest.mark.parametrize("problem", ["missing", "directory", "closed", "text_mode"])
async def test_unreadable_files_fail_before_the_user_message_is_saved(
    world: World, fake: FakeLLM, tmp_path: Path, storage: LocalStorage, problem: str
) -> None:
    good = tmp_path / "good.txt"
    good.write_text("fine")
    bad: Any
    if problem == "missing":
        bad = tmp_path / "nope.png"
    elif problem == "directory":
        bad = tmp_path
    elif problem == "closed":
        bad = good.open("rb")
        bad.close()
    else:
        bad = io.StringIO("text, not bytes")
    chat = await new_chat(world)
    with pytest.raises(AttachmentError):
        await world.call(chat.ask, "look", attachments=[good, bad])
    with pytest.raises(AttachmentError):
        await world.call(chat.create_user_message, "look", attachments=[bad])
    assert world.messages() == []
    assert attachment_rows(world) == []
    assert fake.requests == []


@pytest.mark.parametrize("kind", ["path", "bytes", "upload", "unseekable"])
async def test_size_limit(
    world: World, fake: FakeLLM, sources: SourceMaker, storage: LocalStorage, kind: str
) -> None:
    sa_llm.configure(max_attachment_bytes=1000)
    data = b"x" * 1001
    source = (
        Unseekable(data)
        if kind == "unseekable"
        else sources.make(kind, "big.txt", "text/plain", data)
    )
    chat = await new_chat(world)
    with pytest.raises(AttachmentError, match="1,000"):
        await world.call(chat.ask, "too big", attachments=source)
    assert world.messages() == [] and attachment_rows(world) == [] and fake.requests == []
    assert list(storage.keys()) == []  # a stream stopped at the limit leaves no blob
    fake.reply("fits")
    await world.call(chat.ask, "fits", attachments=(b"y" * 1000, "ok.txt"))
    assert [r.byte_size for r in attachment_rows(world)] == [1000]


async def test_a_type_the_model_cannot_read_fails_before_any_request_or_row(
    world: World, storage: LocalStorage
) -> None:
    replay = Replay({"interactions": []})
    ctx = replay.context()
    chat = world.Chat(model="deepseek-chat", provider="deepseek", context=ctx)
    await world.add(chat)
    with pytest.raises(UnsupportedAttachmentError, match=r"deepseek-chat .*image.*'chart.png'"):
        await world.call(chat.ask, "see", attachments=[(sample_png(), "chart.png")])
    with pytest.raises(UnsupportedAttachmentError, match="pdf"):
        await world.call(chat.create_user_message, "read", attachments=Unseekable(sample_pdf()))
    assert replay.seen == []
    assert world.messages() == [] and attachment_rows(world) == []


async def test_assumed_models_are_not_blocked(
    world: World, sources: SourceMaker, storage: LocalStorage
) -> None:
    recording = load(OPENAI / f"{RECORDINGS['image']}.json")
    replay = Replay(recording)
    chat = world.Chat(
        model="my-fine-tune", provider="openai", assume_model_exists=True, context=replay.context()
    )
    await world.add(chat)
    await world.call(chat.ask, "see", attachments=[(sample_png(), "image.png")])
    assert replay.seen[0].body["model"] == "my-fine-tune"
    assert [r.content_type for r in attachment_rows(world)] == ["image/png"]


async def test_rollback_leaves_no_row_and_gc_removes_the_blob(
    world: World, fake: FakeLLM, storage: LocalStorage
) -> None:
    chat = await new_chat(world)
    use_strategy(world.session, InTransactionStrategy())
    fake.reply("seen")
    await world.call(chat.ask, "look", attachments=[(b"secret plans", "plans.txt")])
    result = world.session.rollback()
    if world.mode == "async":
        await result
    assert world.messages() == [] and attachment_rows(world) == []
    assert list(storage.keys()) == [sha(b"secret plans")]  # written before the commit: fine
    report = collect_garbage(storage, referenced_keys(world), older_than=timedelta(0))
    assert report.deleted == [sha(b"secret plans")]
    assert list(storage.keys()) == []


async def test_a_failed_row_write_rolls_back_the_message(
    world: World, fake: FakeLLM, storage: LocalStorage
) -> None:
    Attachment = world.models["Attachment"]

    def refuse(mapper: Any, connection: Any, target: Any) -> None:
        raise RuntimeError("disk full")

    event.listen(Attachment, "before_insert", refuse)
    chat = await new_chat(world)
    with pytest.raises(RuntimeError, match="disk full"):
        await world.call(chat.ask, "look", attachments=[(b"data", "d.bin")])
    assert world.messages() == [] and attachment_rows(world) == []
    assert fake.requests == []


async def test_tool_results_keep_their_files(
    world: World, fake: FakeLLM, storage: LocalStorage
) -> None:
    pdf = sample_pdf()

    def fetch_report() -> Content:
        """Fetches the quarterly report."""
        return Content("Fetched.", (Attachment.from_bytes(pdf, filename="q3.pdf"),))

    chat = await new_chat(world)
    chat.with_tool(fetch_report)
    fake.tool_call("fetch_report", {}, id="call_1").reply("It says hello.").reply("Still hello.")
    await world.call(chat.ask, "Summarise the report")
    tool = next(m for m in world.messages() if m.role == "tool")
    assert [(r.message_id, r.filename, r.sha256) for r in attachment_rows(world)] == [
        (tool.id, "q3.pdf", sha(pdf))
    ]
    await world.call(chat.ask, "Again?")
    tool_json = next(m for m in fake.requests[-1]["messages"] if m["role"] == "tool")
    assert tool_json["content"]["attachments"] == [
        {"filename": "q3.pdf", "mime_type": "application/pdf", "size": len(pdf)}
    ]


async def test_message_rows_expose_their_files(
    world: World, fake: FakeLLM, storage: LocalStorage
) -> None:
    chat = await new_chat(world)
    fake.reply("ok")
    await world.call(chat.ask, "file", attachments=[(b"abc", "a.txt")])
    with Session(world.sync_engine) as session:
        message = session.scalars(select(world.Message).where(world.Message.role == "user")).one()
        [row] = message.attachments
        assert row.message is message
        assert row.read() == b"abc"
        with row.open() as handle:
            assert handle.read() == b"abc"
        value = message.to_llm()
        assert [(a.filename, a.type, a.data()) for a in value.attachments] == [
            ("a.txt", "text/plain", b"abc")
        ]
        session.delete(message)
        session.commit()
    assert attachment_rows(world) == []  # rows go with their message; blobs wait for gc
    assert storage.exists(sha(b"abc"))


async def test_history_files_cost_one_select(
    world: World, fake: FakeLLM, storage: LocalStorage
) -> None:
    engine = world.async_engine.sync_engine if world.async_engine else world.sync_engine
    counts = []
    for files in (0, 6):
        chat = await new_chat(world)
        for i in range(3):
            fake.reply(f"{i}")
            batch = [(f"{i}-{n}".encode(), f"f{n}.txt") for n in range(files)]
            await world.call(chat.ask, f"turn {i}", attachments=batch or None)
        chat.expire_history()  # a rebuild, not the history reused from the last turn
        counter = StatementCounter(engine)
        try:
            llm = await world.call(chat.to_llm)
        finally:
            counter.close()
        assert sum(len(m.attachments) for m in llm.messages) == 3 * files
        counts.append(counter.count("SELECT"))
    assert counts[0] == counts[1] <= 4


async def test_without_an_attachment_class_files_are_sent_not_stored(
    db_url: str, async_db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for mode in ("sync", "async"):
        world = make_world(mode, db_url, async_db_url, default_models())
        sa_llm.configure(attachment_storage=tmp_path / "unused")
        try:
            with fake_llm(echo=False) as fake, caplog.at_level(logging.WARNING):
                chat = await new_chat(world)
                fake.reply("ok")
                await world.call(chat.ask, "see", attachments=[(b"abc", "a.txt")])
                assert sent_files(fake) == [[("a.txt", "text/plain", 3)]]
                assert "not stored" in caplog.text
        finally:
            await close_world(world)
            sa_llm.reset_config()
    assert not (tmp_path / "unused").exists()


async def test_add_message_and_streams_store_files(
    world: World, fake: FakeLLM, storage: LocalStorage
) -> None:
    chat = await new_chat(world)
    note = Content("Here is the brief.", (Attachment.from_bytes(b"brief", filename="brief.md"),))
    row = await world.call(chat.add_message, sa_llm.Message(role="user", content=note))
    fake.reply("streamed answer", chunks=3)
    if world.mode == "async":
        chunks = [c async for c in chat.astream("and this", attachments=[(b"more", "more.md")])]
    else:
        chunks = list(chat.stream("and this", attachments=[(b"more", "more.md")]))
    assert "".join(c.content or "" for c in chunks) == "streamed answer"
    rows = attachment_rows(world)
    assert [(r.filename, r.content_type, r.sha256) for r in rows] == [
        ("brief.md", "text/markdown", sha(b"brief")),
        ("more.md", "text/markdown", sha(b"more")),
    ]
    assert rows[0].message_id == row.id
    assert sent_files(fake) == [
        [("brief.md", "text/markdown", 5)],
        [("more.md", "text/markdown", 4)],
    ]


async def test_an_empty_list_attaches_nothing(world: World, fake: FakeLLM) -> None:
    chat = await new_chat(world)
    fake.reply("ok")
    await world.call(chat.ask, "hi", attachments=[])
    await world.call(chat.create_user_message, "blank form field", attachments={"file": ""})
    assert [m.content for m in world.messages()] == ["hi", "ok", "blank form field"]
    assert attachment_rows(world) == []
    assert fake.requests[0]["messages"][0]["content"] == "hi"


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_legacy_chats_store_files(
    db_url: str, async_db_url: str, tmp_path: Path, mode: str
) -> None:
    from sa_llm.declarative import acts_as_chat
    from sa_llm.mixins import LegacyChatMixin, LegacyMessageMixin

    class Base(DeclarativeBase):
        pass

    @acts_as_chat(model=None)
    class Chat(LegacyChatMixin, Base):
        __tablename__ = "chats"

    @acts_as_message(model=None)
    class Message(LegacyMessageMixin, Base):
        __tablename__ = "messages"

    models = default_models("Attachment", base=Base, Chat=Chat, Message=Message, Model=None)
    world = make_world(mode, db_url, async_db_url, models)
    sa_llm.configure(attachment_storage=tmp_path / "blobs")
    try:
        with fake_llm(echo=False) as fake:
            chat = await new_chat(world)
            fake.reply("one").reply("two")
            await world.call(chat.ask, "see", attachments=[(b"legacy", "old.txt")])
            await world.call(chat.ask, "again")
            assert sent_files(fake) == [[("old.txt", "text/plain", 6)], []]
        assert [r.sha256 for r in attachment_rows(world)] == [sha(b"legacy")]
    finally:
        await close_world(world)
        sa_llm.reset_config()
        Base.registry.dispose()


# -- declaring ------------------------------------------------------------------------------------


def test_an_undecorated_attachment_class_is_left_alone() -> None:
    models = default_models()
    Base: Any = models["Base"]

    class Attachment(Base):  # type: ignore[misc]
        """What an older ``sa-llm install`` generated: no decorator."""

        __tablename__ = "attachments"
        id: Mapped[int] = mapped_column(primary_key=True)

    from sa_llm.declarative import chat_schema

    schema = chat_schema(models["Chat"])
    assert schema.attachment_cls is None
    assert not hasattr(models["Message"], "attachments")
    models["Base"].registry.dispose()


def test_a_differently_named_attachment_class_needs_naming() -> None:
    models = default_models()
    Base: Any = models["Base"]

    @acts_as_attachment()
    class ChatFile(AttachmentMixin, Base):  # type: ignore[misc]
        __tablename__ = "chat_files"

    with pytest.raises(ConfigurationError, match="attachment_class='ChatFile'"):
        models["Base"].registry.configure()
    models["Base"].registry.dispose()


def test_attachment_class_option() -> None:
    from sa_llm.declarative import chat_schema
    from sa_llm.mixins import MessageMixin

    class Base(DeclarativeBase):
        pass

    @acts_as_message(attachments="files", attachment_class="ChatFile")
    class Message(MessageMixin, Base):
        __tablename__ = "messages"

    @acts_as_attachment(message="message")
    class ChatFile(AttachmentMixin, Base):
        __tablename__ = "chat_files"

    schema = chat_schema(default_models(base=Base, Message=Message, ChatFile=ChatFile)["Chat"])
    assert schema.attachment_cls is ChatFile
    assert schema.message_attachments_attr == "files"
    assert schema.attachment_message_fk == "message_id"
    message = Message(role="user", content="x")
    message.files.append(  # type: ignore[attr-defined]
        ChatFile(
            filename="a",
            content_type="text/plain",
            byte_size=1,
            sha256="0" * 64,
            storage_key="0" * 64,
        )
    )
    assert message.files[0].message is message  # type: ignore[attr-defined]
    Base.registry.dispose()


def test_acts_as_attachment_checks_its_columns(fresh_base: type[DeclarativeBase]) -> None:
    with pytest.raises(ConfigurationError, match="storage_key"):

        @acts_as_attachment()
        class Attachment(fresh_base):  # type: ignore[misc,valid-type]
            __tablename__ = "attachments"
            id: Mapped[int] = mapped_column(primary_key=True)
            filename: Mapped[str]
            content_type: Mapped[str]


# -- garbage collection command -------------------------------------------------------------------


class CountingStorage:
    """A storage that counts writes (a test double satisfying the Storage protocol)."""

    def __init__(self, inner: LocalStorage) -> None:
        self.inner = inner
        self.puts = 0

    def put(self, stream: Any) -> str:
        self.puts += 1
        return self.inner.put(stream)

    def open(self, key: str) -> Any:
        return self.inner.open(key)

    def read(self, key: str) -> bytes:
        return self.inner.read(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def keys(self) -> Iterator[str]:
        return self.inner.keys()

    def modified(self, key: str) -> Any:
        return self.inner.modified(key)


def referenced_keys(world: World) -> set[str]:
    return {row.storage_key for row in attachment_rows(world)}


MODELS_MODULE = models_source("Attachment")


@pytest.mark.parametrize("lookup", ["table", "module"])
async def test_gc_command(
    world: World, fake: FakeLLM, storage: LocalStorage, db_url: str, tmp_path: Path, lookup: str
) -> None:
    chat = await new_chat(world)
    fake.reply("1").reply("2")
    await world.call(chat.ask, "keep", attachments=[(b"kept", "kept.txt")])
    await world.call(chat.ask, "drop", attachments=[(b"dropped", "dropped.txt")])
    with Session(world.sync_engine) as session:
        last_user = session.scalars(
            select(world.Message).where(world.Message.content == "drop")
        ).one()
        session.delete(last_user)
        session.commit()
    orphan = storage.put(io.BytesIO(b"never referenced"))
    assert referenced_keys(world) == {sha(b"kept")}

    url = sync_url(db_url).render_as_string(hide_password=False)
    args = ["attachments", "gc", "--database-url", url, "--storage", str(storage.directory)]
    if lookup == "table":
        args += ["--table", "attachments"]
    else:
        module = tmp_path / "app_models.py"
        module.write_text(MODELS_MODULE)
        args += ["--module", str(module)]
    try:
        recent = CliRunner().invoke(main, args)
        assert recent.exit_code == 0, recent.output
        assert "deleted 0" in recent.output and "kept 2" in recent.output
        dry = CliRunner().invoke(main, [*args, "--older-than", "0", "--dry-run"])
        assert dry.exit_code == 0, dry.output
        assert sorted(re.findall(r"would delete ([0-9a-f]{64})", dry.output)) == sorted(
            [sha(b"dropped"), orphan]
        )
        assert len(list(storage.keys())) == 3
        done = CliRunner().invoke(main, [*args, "--older-than", "0s"])
        assert done.exit_code == 0, done.output
        assert "1 referenced, deleted 2" in done.output
        assert list(storage.keys()) == [sha(b"kept")]
        bad = CliRunner().invoke(main, [*args, "--older-than", "soon"])
        assert bad.exit_code == 2 and "duration" in bad.output
    finally:
        for name in [m for m in sys.modules if m.startswith("_sa_llm_user")]:
            module_obj = sys.modules.pop(name)
            if hasattr(module_obj, "Base"):
                module_obj.Base.registry.dispose()


def test_gc_needs_an_attachment_class(tmp_path: Path) -> None:
    module = tmp_path / "app_models.py"
    module.write_text(MODELS_MODULE)
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    args = ["attachments", "gc", "--database-url", url, "--module", str(module)]
    try:
        result = CliRunner().invoke(main, [*args, "--class", "Chat", "--storage", str(tmp_path)])
        assert result.exit_code == 1
        assert "Chat has no storage_key column" in result.output
    finally:
        for name in [m for m in sys.modules if m.startswith("_sa_llm_user")]:
            module_obj = sys.modules.pop(name)
            if hasattr(module_obj, "Base"):
                module_obj.Base.registry.dispose()


def test_gc_reports_a_missing_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    result = CliRunner().invoke(
        main,
        [
            "attachments",
            "gc",
            "--database-url",
            url,
            "--table",
            "attachments",
            "--storage",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 1
    assert result.output.startswith("Error: database error:") and "attachments" in result.output


async def test_message_rows_hold_no_file_bytes(world: World) -> None:
    """The bytes are in the storage only: no base64 in message rows."""
    with fake_llm(echo=False) as fake:
        fake.reply("ok")
        chat = await new_chat(world)
        await world.call(chat.ask, "see", attachments=[(sample_pdf(), "r.pdf")])
    dumped = json.dumps([(m.content, m.content_raw) for m in world.messages()], default=str)
    assert base64.b64encode(sample_pdf()[:60]).decode()[:40] not in dumped
