"""ElevenLabsTextToSpeech through the real `elevenlabs` SDK against the fake server over a socket."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest
from pydantic import SecretStr

from shared.audio import mulaw
from shared.settings import Settings
from streaming_service.engines.base import EngineError
from streaming_service.engines.elevenlabs_tts import ElevenLabsTextToSpeech
from tests.fakes.elevenlabs_server import MS_PER_CHAR, FakeElevenLabs


@pytest.fixture
async def fake() -> AsyncIterator[FakeElevenLabs]:
    server = FakeElevenLabs()
    await server.start()
    yield server
    await server.stop()


def make_tts(fake: FakeElevenLabs, key: str = "xi-test") -> ElevenLabsTextToSpeech:
    settings = Settings(
        elevenlabs_api_key=SecretStr(key), elevenlabs_base_url=fake.base_url,
        elevenlabs_voice_id="voice-default", elevenlabs_model="eleven_flash_v2_5",
    )
    return ElevenLabsTextToSpeech(settings)


@pytest.fixture
async def tts(fake: FakeElevenLabs) -> AsyncIterator[ElevenLabsTextToSpeech]:
    engine = make_tts(fake)
    yield engine
    await engine.aclose()


async def collect(tts: ElevenLabsTextToSpeech, text: str, voice: str | None = None) -> list[bytes]:
    return [chunk async for chunk in tts.synthesize(text, voice)]


async def test_audio_is_proportional_to_text_and_streams_in_chunks(
    fake: FakeElevenLabs, tts: ElevenLabsTextToSpeech
) -> None:
    short = b"".join(await collect(tts, "Hi there."))
    text = "Your table for four is booked for seven tonight."
    chunks = await collect(tts, text)
    audio = b"".join(chunks)

    assert len(chunks) > 3
    assert mulaw.duration_ms(audio) == len(text) * MS_PER_CHAR
    assert mulaw.duration_ms(short) == len("Hi there.") * MS_PER_CHAR
    pcm = mulaw.decode(audio)
    assert np.abs(pcm).max() > 5000  # audible, not silence


async def test_request_uses_ulaw_model_voice_and_key(
    fake: FakeElevenLabs, tts: ElevenLabsTextToSpeech
) -> None:
    await collect(tts, "Hello.")
    await collect(tts, "Hello again.", voice="tenant-voice")

    first, second = fake.requests
    assert first.voice_id == "voice-default" and second.voice_id == "tenant-voice"
    assert first.query == {"output_format": "ulaw_8000", "optimize_streaming_latency": "3"}
    assert first.headers["xi-api-key"] == "xi-test"
    assert first.body["text"] == "Hello." and first.body["model_id"] == "eleven_flash_v2_5"


async def test_blank_text_makes_no_request(fake: FakeElevenLabs, tts: ElevenLabsTextToSpeech) -> None:
    assert await collect(tts, "   ") == []
    assert fake.requests == []


async def test_bad_key_is_an_engine_error(fake: FakeElevenLabs) -> None:
    tts = make_tts(fake, key="wrong")
    try:
        with pytest.raises(EngineError, match="401") as caught:
            await collect(tts, "Hello.")
        assert caught.value.vendor == "elevenlabs"
        assert "wrong" not in str(caught.value)
    finally:
        await tts.aclose()


async def test_server_error_is_an_engine_error_and_not_retried(
    fake: FakeElevenLabs, tts: ElevenLabsTextToSpeech
) -> None:
    fake.fail_next(500)
    with pytest.raises(EngineError, match="500"):
        await collect(tts, "Hello.")
    assert len(fake.requests) == 1
    assert b"".join(await collect(tts, "Hello."))  # the next sentence works again


async def test_fail_all_until_healed(fake: FakeElevenLabs, tts: ElevenLabsTextToSpeech) -> None:
    fake.fail_all(503)
    for _ in range(2):
        with pytest.raises(EngineError, match="503"):
            await collect(tts, "Hello.")
    fake.fail_all(None)
    assert await collect(tts, "Hello.")


async def test_stream_cut_mid_sentence_is_an_engine_error(
    fake: FakeElevenLabs, tts: ElevenLabsTextToSpeech
) -> None:
    fake.cut_after_bytes(1200)
    received: list[bytes] = []
    with pytest.raises(EngineError, match="elevenlabs"):
        async for chunk in tts.synthesize("This sentence will be cut off halfway through."):
            received.append(chunk)
    assert 0 < len(b"".join(received)) <= 1200


async def test_cancelling_the_consumer_stops_the_request(fake: FakeElevenLabs) -> None:
    fake.chunk_delay_s = 0.05  # a long, slow stream so it is surely mid-flight when cancelled
    tts = make_tts(fake)
    first_chunk = asyncio.Event()

    async def speak() -> None:
        async for _ in tts.synthesize("A very long sentence " * 20):
            first_chunk.set()

    task = asyncio.create_task(speak())
    await asyncio.wait_for(first_chunk.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The server notices the client went away: the request really stopped.
    await asyncio.wait_for(fake.client_disconnected.wait(), 5)
    assert fake.client_disconnects == 1
    await tts.aclose()


async def test_aclose_of_the_iterator_stops_the_request(
    fake: FakeElevenLabs, tts: ElevenLabsTextToSpeech
) -> None:
    fake.chunk_delay_s = 0.05
    stream = tts.synthesize("Another long sentence " * 20)
    assert await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    await asyncio.wait_for(fake.client_disconnected.wait(), 5)


async def test_first_byte_delay_is_honoured(fake: FakeElevenLabs, tts: ElevenLabsTextToSpeech) -> None:
    """A slow first byte is waited for, not cut off: the audio arrives whole, after the delay."""
    fake.first_byte_delay_s = 0.2
    stream = tts.synthesize("Still here.")
    first = await anext(stream)
    first_at = time.monotonic()
    rest = [chunk async for chunk in stream]
    assert first_at - fake.requests[-1].received_at >= 0.2  # a lower bound: load cannot make it flaky
    assert mulaw.duration_ms(first + b"".join(rest)) == len("Still here.") * MS_PER_CHAR


async def test_first_audio_is_handed_on_as_it_arrives(fake: FakeElevenLabs, tts: ElevenLabsTextToSpeech) -> None:
    """The voice streams a sentence in small writes, paced: the first one goes on to the caller as it comes,
    not held until a kilobyte (128 ms of audio, the SDK's default chunk) has arrived behind it."""
    fake.chunk_bytes = mulaw.FRAME_BYTES
    fake.chunk_delay_s = 0.02
    stream = tts.synthesize("Your table for four is booked for seven tonight.")
    first = await anext(stream)
    rest = b"".join([chunk async for chunk in stream])
    assert len(first) == mulaw.FRAME_BYTES  # exactly the first write
    assert mulaw.duration_ms(first + rest) == len("Your table for four is booked for seven tonight.") * MS_PER_CHAR


async def test_sentences_reuse_one_pooled_connection(fake: FakeElevenLabs, tts: ElevenLabsTextToSpeech) -> None:
    """Every sentence of every call reuses the connection the last one left (no handshake per sentence), and
    sentences spoken at once each get a connection of their own, kept for later ones."""

    async def call_says(sentences: int) -> None:
        for _ in range(sentences):
            await collect(tts, "One more sentence.")

    for _ in range(8):
        await call_says(3)  # calls one after another
    assert len({request.client_port for request in fake.requests}) == 1
    fake.requests.clear()
    await asyncio.gather(*(call_says(3) for _ in range(4)))  # four calls speaking at once
    assert 1 < len({request.client_port for request in fake.requests}) <= 4
