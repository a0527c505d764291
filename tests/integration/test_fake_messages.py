"""The fakes send only what the vendors' own SDK types describe, field for field.

Every message a fake sends on the wire is read raw (aiohttp, not the SDK, which tolerates a lot) and
validated with the SDK's pydantic type in strict mode. The SDK models allow unknown fields, so the check
also walks the validated object and fails on any field the SDK type does not declare: a fake that
invents a field, misspells one or leaves out a required one fails here, not in production.
"""

from __future__ import annotations

import json
import typing
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pydantic
import pytest
from deepgram.listen.v1.types import (
    ListenV1Metadata,
    ListenV1Results,
    ListenV1SpeechStarted,
    ListenV1UtteranceEnd,
)
from elevenlabs.types import HttpValidationError
from openai.types import ErrorObject
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent

from shared.audio import mulaw
from tests.fakes.deepgram_server import FakeDeepgram
from tests.fakes.elevenlabs_server import FakeElevenLabs
from tests.fakes.openai_server import FakeOpenAI, ToolCall
from tests.fakes.speech_marker import marked_speech

SILENCE_1S = b"\xff" * 8000


def exact(sdk_type: Any, data: Any) -> Any:
    """`data` validated strictly as `sdk_type`, with no field the type does not declare."""
    value = pydantic.TypeAdapter(sdk_type).validate_python(data, strict=True)
    _no_undeclared_fields(value, sdk_type.__name__ if hasattr(sdk_type, "__name__") else "event")
    return value


def _no_undeclared_fields(value: Any, path: str) -> None:
    if isinstance(value, pydantic.BaseModel):
        extra = value.model_extra or {}
        assert not extra, f"{path} ({type(value).__name__}): fields the SDK does not declare: {sorted(extra)}"
        for name in type(value).model_fields:
            _no_undeclared_fields(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _no_undeclared_fields(item, f"{path}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_undeclared_fields(item, f"{path}.{key}")


def test_the_check_catches_an_undeclared_or_missing_field() -> None:
    """The checker itself: an invented field and a missing required one both fail."""
    good = {"type": "SpeechStarted", "channel": [0], "timestamp": 0.5}
    exact(ListenV1SpeechStarted, good)
    with pytest.raises(AssertionError, match="invented"):
        exact(ListenV1SpeechStarted, good | {"invented": 1})
    with pytest.raises(pydantic.ValidationError):
        exact(ListenV1SpeechStarted, {"type": "SpeechStarted", "channel": [0]})
    with pytest.raises(pydantic.ValidationError):  # strict: no "0.5" for a float
        exact(ListenV1SpeechStarted, good | {"timestamp": "0.5"})


# --- Deepgram live /v1/listen ---------------------------------------------------------------------

DEEPGRAM_TYPES = {"Results": ListenV1Results, "SpeechStarted": ListenV1SpeechStarted,
                  "UtteranceEnd": ListenV1UtteranceEnd, "Metadata": ListenV1Metadata}


async def test_deepgram_fake_messages_are_listen_v1_types() -> None:
    query = ("encoding=mulaw&sample_rate=8000&channels=1&interim_results=true&vad_events=true"
             "&utterance_end_ms=1000&endpointing=300&smart_format=true")
    async with FakeDeepgram() as fake, aiohttp.ClientSession() as http, \
            http.ws_connect(f"{fake.ws_url}/v1/listen?{query}",
                            headers={"Authorization": f"Token {fake.api_key}"}) as ws:
        audio = (marked_speech("I would like a haircut") + SILENCE_1S * 2   # final, UtteranceEnd
                 + marked_speech("tomorrow") + SILENCE_1S * 4             # silence finals
                 + marked_speech("at three"))                              # cut short by Finalize
        for start in range(0, len(audio), mulaw.FRAME_BYTES * 10):
            await ws.send_bytes(audio[start : start + mulaw.FRAME_BYTES * 10])
        await ws.send_str(json.dumps({"type": "Finalize"}))
        await ws.send_str(json.dumps({"type": "CloseStream"}))
        received = [json.loads(msg.data) async for msg in ws if msg.type == aiohttp.WSMsgType.TEXT]

    kinds = [m["type"] for m in received]
    assert set(kinds) == set(DEEPGRAM_TYPES), kinds
    for message in received:
        exact(DEEPGRAM_TYPES[message["type"]], message)
    results = [m for m in received if m["type"] == "Results"]
    assert any(not m["is_final"] for m in results) and any(m["speech_final"] for m in results)
    assert any(m["from_finalize"] for m in results)
    assert any(m["is_final"] and not m["channel"]["alternatives"][0]["transcript"] for m in results)


# --- OpenAI Chat Completions and Responses ---------------------------------------------------------

# The SDK's stream-event union is discriminated by `type` through its own metadata, not pydantic's.
RESPONSE_EVENTS: dict[str, type[pydantic.BaseModel]] = {
    typing.get_args(member.model_fields["type"].annotation)[0]: member
    for member in typing.get_args(typing.get_args(ResponseStreamEvent)[0])}


@pytest.fixture
async def openai_fake() -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI()
    await fake.start()
    yield fake
    await fake.stop()


async def _post(fake: FakeOpenAI, path: str, body: dict[str, Any], key: str | None = None
                ) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.post(
            fake.base_url + path, json=body, headers={"Authorization": f"Bearer {key or fake.api_key}"}) as resp:
        return resp.status, await resp.text()


def _sse_data(text: str) -> list[dict[str, Any]]:
    events = []
    for block in text.split("\n\n"):
        data = [line.removeprefix("data: ") for line in block.splitlines() if line.startswith("data: ")]
        if data and data[0] != "[DONE]":
            events.append(json.loads("\n".join(data)))
    return events


CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "Book me in"}]}


async def test_deepgram_fake_counts_the_audio_messages_for_a_bench_in_another_process() -> None:
    async with FakeDeepgram() as fake, aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{fake.ws_url}/v1/listen?encoding=mulaw&sample_rate=8000",
                                   headers={"Authorization": f"Token {fake.api_key}"}) as ws:
            for size in (160, 800, 2000):
                await ws.send_bytes(bytes([0xFF]) * size)
            await fake.wait_until(lambda: fake.bytes_received == [2960])
        async with http.get(f"{fake.ws_url.replace('ws://', 'http://')}/stats") as response:
            assert await response.json() == {"connections": 1, "audio_messages": 3, "audio_bytes": 2960}


@pytest.mark.parametrize("stream", [True, False])
async def test_openai_fake_chat_completions_are_sdk_types(openai_fake: FakeOpenAI, stream: bool) -> None:
    openai_fake.script("Sure, what time?", ToolCall("check_availability", {"date": "2026-12-01"}),
                       [ToolCall("end_call"), ToolCall("transfer_call", {"reason": "asked"})])
    for _ in range(3):
        status, text = await _post(openai_fake, "/chat/completions", CHAT | {"stream": stream})
        assert status == 200
        if stream:
            chunks = _sse_data(text)
            assert text.rstrip().endswith("data: [DONE]") and chunks
            for chunk in chunks:
                exact(ChatCompletionChunk, chunk)
        else:
            exact(ChatCompletion, json.loads(text))


@pytest.mark.parametrize("stream", [True, False])
async def test_openai_fake_responses_are_sdk_types(openai_fake: FakeOpenAI, stream: bool) -> None:
    openai_fake.script("Sure, what time?", ToolCall("check_availability", {"date": "2026-12-01"}))
    body = {"model": "fake-model", "input": [{"role": "user", "content": "Book me in"}], "stream": stream}
    for _ in range(2):
        status, text = await _post(openai_fake, "/responses", body)
        assert status == 200
        if stream:
            events = _sse_data(text)
            named = [line.removeprefix("event: ") for line in text.splitlines() if line.startswith("event: ")]
            assert named == [e["type"] for e in events] and events[-1]["type"] == "response.completed"
            for event in events:
                exact(RESPONSE_EVENTS[event["type"]], event)
        else:
            exact(Response, json.loads(text))


async def test_openai_fake_errors_are_sdk_error_objects(openai_fake: FakeOpenAI) -> None:
    openai_fake.fail_next(500)
    answers = [await _post(openai_fake, "/chat/completions", CHAT, key="sk-wrong"),
               await _post(openai_fake, "/chat/completions", CHAT)]
    assert [status for status, _ in answers] == [401, 500]
    for _, text in answers:
        exact(ErrorObject, json.loads(text)["error"])


# --- ElevenLabs ------------------------------------------------------------------------------------


async def test_elevenlabs_fake_validation_errors_are_sdk_http_validation_errors() -> None:
    """ElevenLabs' audio stream has no SDK type (raw bytes); its 422 body does: HTTPValidationError."""
    fake = FakeElevenLabs()
    await fake.start()
    try:
        async with aiohttp.ClientSession() as http:
            for query, body in (("output_format=mp3_44100_128", {"text": "Hi"}),
                                ("output_format=ulaw_8000", {"text": ""})):
                async with http.post(f"{fake.base_url}/v1/text-to-speech/voice1/stream?{query}", json=body,
                                     headers={"xi-api-key": fake.api_key}) as resp:
                    assert resp.status == 422
                    exact(HttpValidationError, await resp.json())
            async with http.post(f"{fake.base_url}/v1/text-to-speech/voice1/stream?output_format=ulaw_8000",
                                 json={"text": "Hi"}, headers={"xi-api-key": fake.api_key}) as resp:
                assert resp.status == 200 and resp.headers["Content-Type"] == "audio/basic"
                assert len(await resp.read()) == 2 * 480  # 60 ms of mu-law per character
    finally:
        await fake.stop()
