"""DeepgramSpeechToText through the real deepgram-sdk against the fake server over real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest
from pydantic import SecretStr

from shared.audio import mulaw
from shared.settings import EndpointingOptions, Settings
from streaming_service.engines.base import EngineError, SpeechToTextStream, TranscriptEvent, TranscriptKind
from streaming_service.engines.deepgram_stt import DeepgramSpeechToText, DeepgramStreamOptions
from tests.fakes.deepgram_server import FakeDeepgram
from tests.fakes.speech_marker import marked_speech, unmarked_speech

PHRASE = "I would like to book a table for two at seven"
OTHER = "actually make it eight please"
FAST = DeepgramStreamOptions(backoff_initial_s=0.02, backoff_max_s=0.2, close_timeout_s=2.0)
HANG_GUARD_S = 8.0  # only stops a broken test from hanging; never asserted on


@pytest.fixture
async def fake() -> AsyncIterator[FakeDeepgram]:
    async with FakeDeepgram() as server:
        yield server


def settings_for(fake: FakeDeepgram, key: str = "test-key") -> Settings:
    return Settings(deepgram_api_key=SecretStr(key), deepgram_base_url=fake.ws_url,
                    endpointing=EndpointingOptions(stt_endpointing_ms=300, utterance_end_ms=1000))


class Listener:
    """Collects a stream's events in the background so tests can wait on them."""

    def __init__(self, stream: SpeechToTextStream) -> None:
        self.events: list[TranscriptEvent] = []
        self.error: BaseException | None = None
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._collect(stream))

    async def _collect(self, stream: SpeechToTextStream) -> None:
        try:
            async for event in stream.events():
                self.events.append(event)
                self._changed.set()
        except EngineError as exc:
            self.error = exc
        finally:
            self._changed.set()

    @property
    def finals(self) -> list[str]:
        return [e.text for e in self.events if e.kind is TranscriptKind.FINAL]

    def kinds(self) -> list[TranscriptKind]:
        return [e.kind for e in self.events]

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(HANG_GUARD_S):
            while not condition():
                if self._task.done():
                    raise AssertionError(f"events ended early: {self.error!r}, {self.events}")
                self._changed.clear()
                await self._changed.wait()

    async def ended(self) -> None:
        async with asyncio.timeout(HANG_GUARD_S):
            await self._task


async def open_stream(fake: FakeDeepgram, options: DeepgramStreamOptions = FAST,
                      key: str = "test-key") -> tuple[SpeechToTextStream, Listener]:
    stream = await DeepgramSpeechToText(settings_for(fake, key), options).open_stream("CA-test")
    return stream, Listener(stream)


async def feed(stream: SpeechToTextStream, audio: bytes) -> None:
    """Faster than real time, in Twilio-sized frames, yielding so the sender keeps up."""
    for frame in mulaw.frames(audio):
        await stream.send_audio(frame)
        await asyncio.sleep(0)


def turn(text: str) -> bytes:
    return mulaw.silence(200) + marked_speech(text) + mulaw.silence(1200)


async def test_phrase_gives_interims_then_speech_final(fake: FakeDeepgram) -> None:
    stream, listener = await open_stream(fake)
    await feed(stream, turn(PHRASE))
    await listener.wait_until(lambda: TranscriptKind.UTTERANCE_END in listener.kinds())
    kinds = listener.kinds()
    assert kinds[0] is TranscriptKind.SPEECH_STARTED
    final_at = kinds.index(TranscriptKind.FINAL)
    interims = [e.text for e in listener.events[:final_at] if e.kind is TranscriptKind.INTERIM]
    assert interims and all(PHRASE.startswith(text) for text in interims)
    assert listener.events[final_at] == TranscriptEvent(TranscriptKind.FINAL, PHRASE, speech_final=True)
    assert kinds[final_at + 1 :] == [TranscriptKind.UTTERANCE_END]
    query = fake.records[0].query
    assert query["encoding"] == "mulaw" and query["sample_rate"] == "8000"
    assert query["endpointing"] == "300" and query["utterance_end_ms"] == "1000"
    assert query["vad_events"] == "true" and query["interim_results"] == "true"
    await stream.close()
    await listener.ended()
    assert fake.records[0].close_streams == 1


async def test_two_utterances(fake: FakeDeepgram) -> None:
    stream, listener = await open_stream(fake)
    await feed(stream, turn(PHRASE) + turn(OTHER))
    await listener.wait_until(lambda: listener.kinds().count(TranscriptKind.UTTERANCE_END) == 2)
    assert listener.finals == [PHRASE, OTHER]
    assert listener.kinds().count(TranscriptKind.SPEECH_STARTED) == 2
    await stream.close()


async def test_unmarked_speech_uses_default_transcript(fake: FakeDeepgram) -> None:
    stream, listener = await open_stream(fake)
    await feed(stream, mulaw.silence(100) + unmarked_speech(800) + mulaw.silence(400))
    await listener.wait_until(lambda: bool(listener.finals))
    assert listener.finals == [fake.default_transcript]
    await stream.close()


async def test_close_flushes_pending_speech_and_is_idempotent(fake: FakeDeepgram) -> None:
    stream, listener = await open_stream(fake)
    await feed(stream, marked_speech(PHRASE))  # no trailing silence: only CloseStream finalises it
    await stream.close()
    await stream.close()
    await stream.send_audio(mulaw.silence(100))  # after close: a no-op
    await listener.ended()
    assert listener.finals == [PHRASE]
    assert fake.records[0].close_code == 1000 and fake.records[0].close_streams == 1


async def test_keepalive_while_silent_prevents_idle_close() -> None:
    async with FakeDeepgram(idle_timeout_s=0.5) as fake:
        stream, _ = await open_stream(fake, DeepgramStreamOptions(keepalive_interval_s=0.1))
        await feed(stream, mulaw.silence(200))
        await fake.wait_until(lambda: fake.keepalives >= 10, HANG_GUARD_S)  # > 1 s without audio
        assert fake.connections == 1 and fake.records[0].close_code is None
        await stream.close()


async def test_idle_close_1011_reconnects(fake: FakeDeepgram) -> None:
    fake.idle_timeout_s = 0.2  # KeepAlive every 4 s is too slow for this server
    stream, listener = await open_stream(fake)
    await fake.wait_until(lambda: fake.connections >= 2, HANG_GUARD_S)
    assert fake.records[0].close_code == 1011
    fake.idle_timeout_s = 10.0
    await feed(stream, turn(PHRASE))
    await listener.wait_until(lambda: bool(listener.finals))
    assert listener.finals == [PHRASE]
    await stream.close()


async def test_drop_mid_utterance_resends_unfinished_audio(fake: FakeDeepgram) -> None:
    stream, listener = await open_stream(fake)
    await feed(stream, turn(PHRASE))
    await listener.wait_until(lambda: listener.finals == [PHRASE])
    second = marked_speech(OTHER)
    half = len(second) // 2
    await feed(stream, mulaw.silence(200) + second[:half])
    await listener.wait_until(lambda: any(e.kind is TranscriptKind.INTERIM and OTHER.startswith(e.text)
                                          for e in listener.events))
    await fake.drop_all()
    await feed(stream, second[half:] + mulaw.silence(1200))
    await listener.wait_until(lambda: len(listener.finals) == 2)
    assert listener.finals == [PHRASE, OTHER]  # whole, and the first phrase not repeated
    assert fake.connections == 2
    # The new connection heard the unfinished half again, not the finalised first phrase.
    assert half < fake.bytes_received[1] < half + len(second) + mulaw.BYTES_PER_MS * 1800
    await stream.close()


async def test_stalled_socket_is_replaced_by_the_watchdog(fake: FakeDeepgram) -> None:
    stream, listener = await open_stream(fake, DeepgramStreamOptions(result_timeout_s=0.3))
    audio = turn(PHRASE)
    cut = len(audio) // 3
    await feed(stream, audio[:cut])
    await listener.wait_until(lambda: TranscriptKind.INTERIM in listener.kinds())
    fake.stall_live()
    await feed(stream, audio[cut:])
    await listener.wait_until(lambda: bool(listener.finals))
    assert listener.finals == [PHRASE]
    assert fake.connections >= 2 and fake.records[0].muted
    await stream.close()


async def test_refused_during_outage_then_recovers(fake: FakeDeepgram) -> None:
    stream, listener = await open_stream(fake)
    audio = turn(PHRASE)
    cut = len(audio) // 3
    await feed(stream, audio[:cut])
    await listener.wait_until(lambda: TranscriptKind.INTERIM in listener.kinds())
    fake.refuse_for(0.5)
    await fake.drop_all()
    await feed(stream, audio[cut:])
    await listener.wait_until(lambda: bool(listener.finals))
    assert listener.finals == [PHRASE]
    assert fake.refused >= 1 and fake.connections == 2
    await stream.close()


async def test_refused_at_start_then_connects(fake: FakeDeepgram) -> None:
    fake.refuse_for(0.5)
    stream, listener = await open_stream(fake)
    await feed(stream, turn(PHRASE))  # buffered until the handshake succeeds
    await listener.wait_until(lambda: bool(listener.finals))
    assert listener.finals == [PHRASE] and fake.refused >= 1
    await stream.close()


async def test_refused_beyond_budget_raises_engine_error(fake: FakeDeepgram) -> None:
    fake.refuse_for(60)
    stream, listener = await open_stream(fake, DeepgramStreamOptions(reconnect_budget_s=0.3,
                                                                     backoff_initial_s=0.02))
    await feed(stream, turn(PHRASE))
    await listener.ended()
    assert isinstance(listener.error, EngineError) and listener.error.vendor == "deepgram"
    assert "503" in str(listener.error) and fake.connections == 0
    await stream.close()


async def test_bad_api_key_raises_engine_error_without_retrying(fake: FakeDeepgram) -> None:
    stream, listener = await open_stream(fake, key="wrong-key")
    await listener.ended()
    assert isinstance(listener.error, EngineError) and "401" in str(listener.error)
    assert fake.unauthorised == 1
    await stream.close()


async def test_api_key_is_never_logged(fake: FakeDeepgram, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    stream, listener = await open_stream(fake, key="test-key")
    await feed(stream, turn(PHRASE))
    await listener.wait_until(lambda: bool(listener.finals))
    await fake.drop_all()
    await feed(stream, turn(OTHER))
    await listener.wait_until(lambda: len(listener.finals) == 2)
    await stream.close()
    assert any(r.getMessage() == "deepgram stream reconnecting" for r in caplog.records)
    assert all("test-key" not in str(r.__dict__) for r in caplog.records)


async def test_socket_offers_no_compression(fake: FakeDeepgram) -> None:
    stream, listener = await open_stream(fake)
    await feed(stream, turn(PHRASE))
    await listener.wait_until(lambda: bool(listener.finals))
    assert fake.records[0].extensions == ""  # no permessage-deflate: mu-law audio does not compress
    await stream.close()


async def test_quiet_audio_goes_in_batches_speech_and_its_tail_frame_by_frame_while_words_are_awaited(
        fake: FakeDeepgram) -> None:
    stream, listener = await open_stream(fake)
    await fake.wait_until(lambda: fake.connections == 1)
    quiet = mulaw.silence(1000)
    await feed(stream, quiet)
    await fake.wait_until(lambda: fake.bytes_received == [len(quiet)])  # the last part by the flush timer
    record = fake.records[0]
    assert len(record.binary_sizes) <= len(quiet) // (FAST.quiet_batch_ms * mulaw.BYTES_PER_MS) + 2
    sent_quiet = len(record.binary_sizes)
    stream.words_awaited(True)  # the agent is talking: a barge-in is judged by these words
    speech, tail = marked_speech(PHRASE), mulaw.silence(1000)  # the tail: shorter than utterance_end_ms + 250
    await feed(stream, speech + tail)
    await fake.wait_until(lambda: fake.bytes_received == [len(quiet) + len(speech) + len(tail)])
    frames = (len(speech) + len(tail)) // mulaw.FRAME_BYTES
    assert len(record.binary_sizes) - sent_quiet >= 0.9 * frames  # as they came, not batched
    await listener.wait_until(lambda: TranscriptKind.UTTERANCE_END in listener.kinds())
    assert listener.finals == [PHRASE]
    await stream.close()


async def test_speech_no_one_awaits_word_by_word_goes_in_batches_and_its_end_at_the_first_quiet_frame(
        fake: FakeDeepgram) -> None:
    """The agent silent: the caller's speech goes in `speech_batch_ms` sends, its tail frame by frame. A batch
    longer than the test may wait shows that the end of the speech went with the first quiet frame, not by the
    batch's timer."""
    options = DeepgramStreamOptions(backoff_initial_s=0.02, close_timeout_s=2.0, speech_batch_ms=100)
    stream, listener = await open_stream(fake, options)
    await fake.wait_until(lambda: fake.connections == 1)
    speech, tail = marked_speech(PHRASE), mulaw.silence(1000)
    await feed(stream, speech + tail)
    await fake.wait_until(lambda: fake.bytes_received == [len(speech) + len(tail)])
    sizes = fake.records[0].binary_sizes
    speech_frames, tail_frames = len(speech) // mulaw.FRAME_BYTES, len(tail) // mulaw.FRAME_BYTES
    assert len(sizes) <= speech_frames // 5 + tail_frames + 4  # a send per 100 ms of speech, then per frame
    assert len(sizes) >= tail_frames
    await listener.wait_until(lambda: TranscriptKind.UTTERANCE_END in listener.kinds())
    assert listener.finals == [PHRASE]
    await stream.close()

    never = DeepgramStreamOptions(backoff_initial_s=0.02, close_timeout_s=2.0,
                                  speech_batch_ms=int(HANG_GUARD_S * 2000))
    stream, listener = await open_stream(fake, never)
    await fake.wait_until(lambda: fake.connections == 2)
    await feed(stream, speech)  # its gaps between words send what is held before them, not its last word
    await asyncio.sleep(0.05)
    assert fake.bytes_received[1] < len(speech)
    await feed(stream, mulaw.silence(20))
    await fake.wait_until(lambda: fake.bytes_received[1] == len(speech) + mulaw.FRAME_BYTES)
    await stream.close()


async def test_speech_after_quiet_brings_the_quiet_batchs_flush_forward(fake: FakeDeepgram) -> None:
    """Quiet held for a long batch, then a word's first frame and nothing more (the caller's line stalls): the
    held audio goes within a speech batch, not when the quiet batch would have."""
    options = DeepgramStreamOptions(backoff_initial_s=0.02, close_timeout_s=2.0,
                                    quiet_batch_ms=int(HANG_GUARD_S * 2000), speech_batch_ms=100)
    stream, _ = await open_stream(fake, options)
    quiet, loud = mulaw.silence(40), mulaw.encode(np.full(mulaw.FRAME_BYTES, 8000, dtype=np.int16))
    stream.words_awaited(True)  # one frame out at once: the connection is up and its sender idle
    await feed(stream, loud)
    await fake.wait_until(lambda: fake.bytes_received == [len(loud)])
    assert await stream.finalize()  # the speech's tail ends here: the quiet after it is held for its batch
    await fake.wait_until(lambda: fake.records[0].finalizes == 1)
    stream.words_awaited(False)
    await feed(stream, quiet + loud)
    await fake.wait_until(lambda: fake.bytes_received == [len(loud) + len(quiet) + len(loud)])
    await stream.close()


async def test_after_finalize_the_rest_of_the_tail_goes_in_batches(fake: FakeDeepgram) -> None:
    """Once the service asks for the final at a pause, it times the pause itself: the quiet after it goes in
    batches like any quiet, not frame by frame; the caller speaking again is sent as it comes."""
    stream, listener = await open_stream(fake)
    await fake.wait_until(lambda: fake.connections == 1)
    speech, pause = marked_speech(PHRASE), mulaw.silence(60)
    await feed(stream, speech + pause)
    assert await stream.finalize()
    await listener.wait_until(lambda: listener.finals == [PHRASE])
    record = fake.records[0]
    before_tail = len(record.binary_sizes)
    tail = mulaw.silence(1000)
    await feed(stream, tail)
    await fake.wait_until(lambda: fake.bytes_received == [len(speech) + len(pause) + len(tail)])
    assert len(record.binary_sizes) - before_tail <= len(tail) // (FAST.quiet_batch_ms * mulaw.BYTES_PER_MS) + 2
    again = marked_speech("and one more thing")
    await feed(stream, again)
    frames_sent = len(record.binary_sizes)
    await fake.wait_until(lambda: sum(fake.bytes_received) == len(speech) + len(pause) + len(tail) + len(again))
    assert len(record.binary_sizes) - frames_sent <= 2  # already out, frame by frame
    await stream.close()


async def test_the_sdks_socket_client_keeps_this_services_transport_where_it_is_looked_for(
        fake: FakeDeepgram) -> None:
    """The handshake await, the in-line audio and the typed reading of results all reach the socket through
    `transport_of`: if an SDK release stopped keeping its transport as `_websocket`, each would quietly fall back
    to the slower path. So: a connection the SDK opens has it, and it reads the fake's messages as the SDK's
    own models."""
    from deepgram.listen.v1.socket_client import V1SocketClientResponse
    from deepgram.listen.v1.types import ListenV1Results

    from streaming_service.engines.deepgram_socket import UncompressedSocket, server_messages, transport_of

    engine = DeepgramSpeechToText(settings_for(fake), FAST)
    async with engine._client.listen.v1.connect(model="nova-3", encoding="mulaw", sample_rate=8000,
                                                interim_results=True, endpointing=300) as conn:
        transport = transport_of(conn)
        assert isinstance(transport, UncompressedSocket)
        await transport.open()
        for frame in mulaw.frames(turn(PHRASE)):
            assert transport.send_now(frame)
        async with asyncio.timeout(HANG_GUARD_S):
            async for message in server_messages(conn, V1SocketClientResponse):
                if isinstance(message, ListenV1Results) and message.speech_final:
                    assert message.channel.alternatives[0].transcript == PHRASE
                    break
