"""Fuzzing the decoders and every provider's reply parsers with mutations of the corpus.

Whatever a provider (or a proxy, or a broken connection) sends, parsing either yields chunks or
raises one of sa_llm's typed :class:`~sa_llm.errors.ProviderError` classes: never a
``KeyError``, ``TypeError``, ``IndexError`` or ``AttributeError`` from deep inside a codec. The
inputs are the recorded replies of ``tests/fixtures/wire`` with their JSON mutated (a value
replaced by another type, a key removed, a list emptied) or their bytes damaged (flipped,
cut, spliced); a new recording, or a new provider, is fuzzed without new test code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sa_llm
from sa_llm.errors import ProviderError
from sa_llm.providers import create_provider
from sa_llm.providers.base import HttpResponse, Provider
from sa_llm.providers.sse import SSEDecoder
from sa_llm.testing.replay import _body_bytes

WIRE = Path(__file__).parents[1] / "fixtures" / "wire"
PROVIDERS = sorted(p.name for p in WIRE.iterdir() if p.is_dir())
FUZZ = settings(
    max_examples=int(os.environ.get("SA_LLM_FUZZ_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def _replies(provider: str) -> Iterator[tuple[str, dict[str, str], bytes]]:
    """(model, headers, body) of every successful model reply recorded for ``provider``."""
    for path in sorted((WIRE / provider).glob("*.json")):
        for item in json.loads(path.read_text(encoding="utf-8"))["interactions"]:
            request, response = item["request"], item["response"]
            if request["method"] != "POST" or response["status"] != 200:
                continue
            body = request.get("body")
            model = body.get("model", "") if isinstance(body, dict) else ""
            if not model:  # Bedrock: the model id is in the path
                model = request["url"].split("/model/")[-1].split("/")[0]
            yield str(model), dict(response["headers"]), _body_bytes(response)


@cache
def corpus(provider: str) -> tuple[list[Any], list[Any]]:
    """The recorded whole replies and streams of ``provider``."""
    whole, streams = [], []
    for model, headers, body in _replies(provider):
        kind = headers.get("content-type", "")
        if "event-stream" in kind or "eventstream" in kind:
            streams.append((model, headers, body))
        elif "json" in kind:
            whole.append((model, headers, body))
    return whole, streams


def provider_for(name: str, model: str) -> Provider:
    config = sa_llm.get_config().replace(
        api_keys={name: "fuzz"},
        **{f"{n}_api_key": "fuzz" for n in ("openai", "anthropic", "gemini", "openrouter",
                                           "deepseek", "mistral", "xai", "ollama")},
        bedrock_region="us-east-1",
        bedrock_access_key_id="AKIDFUZZ",
        bedrock_secret_access_key="fuzz",
    )  # fmt: skip
    return create_provider(name, config, model)


def mutate(data: st.DataObject, value: Any, depth: int = 0) -> Any:
    """``value`` with one node somewhere inside replaced, removed or emptied."""
    if depth > 12 or data.draw(st.integers(0, 5)) == 0:
        return data.draw(JSON_VALUES)
    if isinstance(value, dict) and value:
        key = data.draw(st.sampled_from(sorted(value)))
        changed: dict[str, Any] = dict(value)
        if data.draw(st.integers(0, 3)) == 0:
            del changed[key]
        else:
            changed[key] = mutate(data, value[key], depth + 1)
        return changed
    if isinstance(value, list) and value:
        index = data.draw(st.integers(0, len(value) - 1))
        items = list(value)
        items[index] = mutate(data, value[index], depth + 1)
        return items
    return data.draw(JSON_VALUES)


def mutate_sse(data: st.DataObject, body: bytes) -> bytes:
    """An SSE body with the JSON of a few of its ``data:`` lines mutated."""
    lines = body.split(b"\n")
    candidates = [i for i, line in enumerate(lines) if line.startswith(b"data: {")]
    if not candidates:
        return body
    for _ in range(data.draw(st.integers(1, 3))):
        index = data.draw(st.sampled_from(candidates))
        try:
            payload = json.loads(lines[index][6:])
        except ValueError:
            continue
        lines[index] = b"data: " + json.dumps(mutate(data, payload)).encode()
    return b"\n".join(lines)


def damage(data: st.DataObject, body: bytes) -> bytes:
    """Bytes flipped, cut short or spliced with garbage."""
    if not body:
        return body
    kind = data.draw(st.sampled_from(["flip", "cut", "splice"]))
    position = data.draw(st.integers(0, len(body) - 1))
    if kind == "flip":
        return body[:position] + bytes([body[position] ^ 0xFF]) + body[position + 1 :]
    if kind == "cut":
        return body[:position]
    return body[:position] + data.draw(st.binary(min_size=1, max_size=16)) + body[position:]


#: How a test spoils a recorded body.
Spoil = Callable[[st.DataObject, bytes], bytes]


def parse_stream(provider: Provider, body: bytes, piece: int) -> None:
    parser = provider.stream_parser()
    for start in range(0, len(body), piece):
        parser.feed(body[start : start + piece])
    parser.close()


def only_typed_errors(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except ProviderError:
        pass  # the promise: a typed error, with the provider's name
    except sa_llm.SaLLMError as exc:
        pytest.fail(f"a misuse error for a provider's reply: {exc!r}")


def _skip_without(recorded: list[Any], what: str) -> None:
    if not recorded:
        pytest.skip(f"no recorded {what}")


def mutate_json(data: st.DataObject, body: bytes) -> bytes:
    """A JSON body with some of its values mutated (see :func:`mutate`)."""
    return json.dumps(mutate(data, json.loads(body))).encode()


@pytest.mark.parametrize("spoil", [mutate_json, damage], ids=["mutated_json", "damaged_bytes"])
@pytest.mark.parametrize("name", PROVIDERS)
@FUZZ
@given(data=st.data())
def test_whole_replies(name: str, spoil: Spoil, data: st.DataObject) -> None:
    whole, _ = corpus(name)
    _skip_without(whole, "whole replies")
    model, headers, body = data.draw(st.sampled_from(whole))
    spoiled = spoil(data, body)
    provider = provider_for(name, model)
    only_typed_errors(provider.parse_response, HttpResponse(200, headers, spoiled))


@pytest.mark.parametrize("spoil", [mutate_sse, damage], ids=["mutated_events", "damaged_bytes"])
@pytest.mark.parametrize("name", PROVIDERS)
@FUZZ
@given(data=st.data())
def test_streams(name: str, spoil: Spoil, data: st.DataObject) -> None:
    _, streams = corpus(name)
    _skip_without(streams, "streams")
    model, _, body = data.draw(st.sampled_from(streams))
    provider = provider_for(name, model)
    piece = data.draw(st.integers(1, 4096))
    only_typed_errors(parse_stream, provider, spoil(data, body), piece)


@FUZZ
@given(body=st.binary(max_size=2048), cuts=st.lists(st.integers(0, 2048), max_size=8))
def test_sse_decoder_takes_any_bytes_in_any_pieces(body: bytes, cuts: list[int]) -> None:
    """Any bytes decode to the same events however they are split (no error is possible)."""
    whole = SSEDecoder()
    expected = [*whole.feed(body), *whole.flush()]
    pieces = SSEDecoder()
    events: list[Any] = []
    start = 0
    for cut in sorted(c for c in cuts if c <= len(body)):
        events.extend(pieces.feed(body[start:cut]))
        start = cut
    events.extend(pieces.feed(body[start:]))
    events.extend(pieces.flush())
    assert events == expected
