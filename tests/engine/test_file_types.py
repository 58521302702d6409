"""File type detection from real file headers: ISO media brands and audio frame sync words.

Each header is built here byte for byte as the format specifies it (an ``ftyp`` box, an ADTS
or MPEG audio frame header, an ID3v2 tag), and the file is given a neutral name so that only
its content can decide the type.
"""

from __future__ import annotations

import struct

import pytest

import sa_llm
from sa_llm.content import Attachment, detect_mime_type
from sa_llm.types import Content


def ftyp(major: bytes, *compatible: bytes, minor: int = 0) -> bytes:
    """An ISO base media ``ftyp`` box followed by the start of an empty ``mdat`` box."""
    payload = major + struct.pack(">I", minor) + b"".join(compatible)
    return struct.pack(">I", 8 + len(payload)) + b"ftyp" + payload + b"\x00\x00\x00\x08mdat"


def adts(*, mpeg2: bool = False, protection: bool = False) -> bytes:
    """An ADTS frame header: 12 sync bits, the MPEG id, layer 00, AAC LC at 44.1 kHz stereo."""
    second = 0xF0 | (0x08 if mpeg2 else 0) | (0 if protection else 0x01)
    # profile LC (01), sampling index 4 (44.1 kHz), channel configuration 2, frame length 0x171
    return bytes([0xFF, second, 0x50, 0x80, 0x2E, 0x3F, 0xFC]) + bytes(32)


def mpeg_audio(second: int) -> bytes:
    """An MPEG audio frame header (11 sync bits) with ``second`` as its second byte."""
    return bytes([0xFF, second, 0x90, 0x64]) + bytes(32)


def id3(frame: bytes, tag_size: int = 23) -> bytes:
    """An ID3v2.4 tag of ``tag_size`` bytes (a syncsafe size) before ``frame``."""
    size = bytes([(tag_size >> 21) & 0x7F, (tag_size >> 14) & 0x7F, (tag_size >> 7) & 0x7F])
    header = b"ID3\x04\x00\x00" + size + bytes([tag_size & 0x7F])
    return header + bytes(tag_size) + frame


CASES = [
    # ISO base media: what the major brand (and, for HEIF, the compatible brands) announces.
    ("avif", ftyp(b"avif", b"avif", b"mif1", b"miaf"), "image/avif", "image"),
    ("avif-sequence", ftyp(b"avis", b"avis", b"msf1", b"miaf"), "image/avif", "image"),
    ("avif-in-mif1", ftyp(b"mif1", b"mif1", b"avif", b"miaf"), "image/avif", "image"),
    ("heic", ftyp(b"heic", b"mif1", b"heic"), "image/heic", "image"),
    ("quicktime", ftyp(b"qt  ", b"qt  ", minor=0x20050300), "video/quicktime", "video"),
    ("3gp4", ftyp(b"3gp4", b"isom", b"3gp4"), "video/3gpp", "video"),
    ("3gp5", ftyp(b"3gp5", b"3gp5", b"isom"), "video/3gpp", "video"),
    ("3g2a", ftyp(b"3g2a", b"3g2a"), "video/3gpp2", "video"),
    ("mp4", ftyp(b"isom", b"isom", b"iso2", b"avc1", b"mp41"), "video/mp4", "video"),
    ("mp42", ftyp(b"mp42", b"mp42", b"isom"), "video/mp4", "video"),
    ("m4a", ftyp(b"M4A ", b"M4A ", b"mp42", b"isom"), "audio/mp4", "audio"),
    # Frame sync words: ADTS (12 ones, layer 00) is AAC; MPEG audio (11 ones) is MP1/2/3.
    ("aac-mpeg4", adts(), "audio/aac", "audio"),
    ("aac-mpeg2", adts(mpeg2=True), "audio/aac", "audio"),
    ("aac-with-crc", adts(protection=True), "audio/aac", "audio"),
    ("mp3-mpeg1", mpeg_audio(0xFB), "audio/mpeg", "audio"),
    ("mp3-mpeg2", mpeg_audio(0xF3), "audio/mpeg", "audio"),
    ("mp3-mpeg2.5", mpeg_audio(0xE3), "audio/mpeg", "audio"),
    ("mp2-layer2", mpeg_audio(0xFD), "audio/mpeg", "audio"),
    ("id3-then-mp3", id3(mpeg_audio(0xFB)), "audio/mpeg", "audio"),
    ("id3-then-aac", id3(adts()), "audio/aac", "audio"),
    ("jpeg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(32), "image/jpeg", "image"),
]


@pytest.mark.parametrize(
    ("data", "mime", "kind"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_the_header_decides_the_type(data: bytes, mime: str, kind: str) -> None:
    assert detect_mime_type(data, "upload.bin") == mime
    attachment = Attachment.from_bytes(data, filename="upload.bin")
    assert (attachment.type, attachment.kind) == (mime, kind)


def test_a_large_id3_tag_still_means_mpeg_audio() -> None:
    """A tag longer than the sniffed head (cover art): its frame cannot be seen; MP3 it is."""
    data = id3(adts(), tag_size=4096)
    assert detect_mime_type(data[:512], "song") == "audio/mpeg"


@pytest.mark.parametrize(
    ("name", "mime"),
    [
        ("clip.mov", "video/quicktime"),
        ("clip.3gp", "video/3gpp"),
        ("clip.3g2", "video/3gpp2"),
        ("photo.avif", "image/avif"),
        ("voice.aac", "audio/aac"),
    ],
)
def test_the_name_decides_when_the_content_says_nothing(name: str, mime: str) -> None:
    assert detect_mime_type(b"\x00\x01\x02\x03" * 8, name) == mime


def test_a_quicktime_clip_reaches_the_provider_as_quicktime() -> None:
    """What a user notices: the MIME type in the request body, here Gemini's ``inline_data``."""
    chat = sa_llm.context(gemini_api_key="k").chat("gemini-2.5-flash")
    clip = Attachment.from_bytes(ftyp(b"qt  ", b"qt  ") + bytes(64), filename="clip")
    chat.add_message(sa_llm.Message(role="user", content=Content("What happens?", (clip,))))
    body = chat.provider.build_request(chat.chat_request()).json
    parts = body["contents"][0]["parts"]
    assert [p["inline_data"]["mime_type"] for p in parts if "inline_data" in p] == [
        "video/quicktime"
    ]
