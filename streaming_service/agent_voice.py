"""The agent's voice on the line: each sentence synthesised and sent to Twilio as its audio comes, marks to
know what was heard, `clear`, and a reply held by a suspected interruption, then sent again from the frame
the caller last heard.

Audio goes out in messages of up to 160 ms: what is ready is sent at once, never waited for, so batching adds
no delay; it cuts the messages (JSON, base64, socket writes) up to eightfold. While a reply is held nothing
more is sent, but its sentences keep being synthesised and kept, so a resume loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from shared import twilio_media as wire
from shared.audio.mulaw import FRAME_BYTES, FrameAssembler
from streaming_service.engines.base import CallContext, EngineError, TextToSpeech
from streaming_service.phrase_cache import PhraseCache
from streaming_service.playback import PlaybackTracker, SpokenSentence
from streaming_service.telemetry.call_telemetry import CallTelemetry
from streaming_service.turn_metrics import TurnMetrics

log = logging.getLogger("voice_agent.call")

FRAMES_PER_MESSAGE = 8  # 160 ms of agent audio per message to Twilio, at most


class Transport(Protocol):
    """The socket to Twilio, as the call needs it."""

    @property
    def closed(self) -> bool: ...

    async def send_str(self, data: str) -> None: ...

    async def close(self, *, code: int = 1000, message: bytes = b"") -> Any: ...


class AgentVoice:
    def __init__(self, call: CallContext, transport: Transport, tts: TextToSpeech, phrases: PhraseCache,
                 telemetry: CallTelemetry, voice_id: Callable[[], str | None],
                 on_audio: Callable[[], None]) -> None:
        self.call = call
        self.playback = PlaybackTracker()
        self.clears_sent = 0
        self.audio_started = False  # some of the current reply's audio went out (reset per reply)
        self.held_since: float | None = None  # a suspected interruption: clear sent, nothing more voiced
        self.resuming = False  # the held reply is being sent again: its clear is behind it
        self.idle = asyncio.Event()  # every sentence sent has played (its mark came back)
        self.idle.set()
        self._transport = transport
        self._tts = tts
        self._phrases = phrases
        self._telemetry = telemetry
        self._voice_id = voice_id
        self._on_audio = on_audio  # the first frame of a reply is out: the call is speaking
        self._unheld = asyncio.Event()  # cleared while held: no new sentence goes to the voice then
        self._unheld.set()

    @property
    def held(self) -> bool:
        return self.held_since is not None

    # --- speaking -----------------------------------------------------------------------------------

    async def speak(self, text: str, metrics: TurnMetrics, phrase: bool = False, previous_text: str = "",
                    next_text: str = "") -> None:
        """One sentence: synthesised and sent as it comes, then its mark. `phrase`: a fixed line (greeting,
        acknowledgement...): its cached audio when there is some, else synthesised and kept in the cache."""
        await self._unheld.wait()  # a held reply may yet be abandoned: voice no more of it until resumed
        sentence = self.playback.begin_sentence(text)
        frames = FrameAssembler()
        metrics.mark_tts_start(time.monotonic())
        cached = self._cached(text) if phrase else None
        audio = _single(cached) if cached is not None else self._tts.synthesize(
            text, self._voice_id(), previous_text=previous_text, next_text=next_text)
        cache_as = text if phrase and cached is None else None
        collected: list[bytes] = []
        try:
            with self._telemetry.span("tts", engine="cache" if cached is not None else self._tts.name,
                                      chars=len(text)) as span:
                async for chunk in audio:
                    if not frames.total_bytes:
                        span.add_event("first audio")  # the sentence's time to first byte, on the trace
                    metrics.mark_tts_first_byte(time.monotonic())
                    if cache_as is not None:
                        collected.append(chunk)
                    await self._send_frames(frames.push(chunk), sentence, metrics)
                await self._send_frames(frames.flush(), sentence, metrics)
                span.set_attribute("audio_ms", frames.total_bytes / 8)
        except EngineError as exc:
            log.error("speech synthesis failed", extra={"vendor": exc.vendor, "error": str(exc)})
            metrics.errors.append(exc.vendor)
            self._telemetry.vendor_error(exc.vendor, exc)
        finally:
            sentence.audio_ms = frames.total_bytes / 8
            sentence.complete = True
        if not sentence.audio:
            self.playback.drop(sentence)  # nothing was produced; nothing to wait for
        elif not self.held and not sentence.mark_sent:
            await self._send_mark(sentence)
        if cache_as is not None and collected:
            self._phrases.put(self._tts.name, self._voice_id(), cache_as, b"".join(collected))

    async def prewarm(self, texts: tuple[str, ...]) -> None:
        """Synthesise fixed lines a turn may need at once into the phrase cache, so they never wait on the voice."""
        try:
            for text in texts:
                if self._cached(text) is None:
                    with self._telemetry.span("tts", engine=self._tts.name, chars=len(text)):
                        audio = b"".join([chunk async for chunk in self._tts.synthesize(text, self._voice_id())])
                    if audio:
                        self._phrases.put(self._tts.name, self._voice_id(), text, audio)
        except Exception as exc:  # said live instead, when needed
            log.warning("phrases not prewarmed", extra={"error": type(exc).__name__})

    def _cached(self, text: str) -> bytes | None:
        return self._phrases.get(self._tts.name, self._voice_id(), text)

    async def _send_frames(self, frames: list[bytes], sentence: SpokenSentence, metrics: TurnMetrics) -> None:
        for first in range(0, len(frames), FRAMES_PER_MESSAGE):
            audio = b"".join(frames[first : first + FRAMES_PER_MESSAGE])
            sentence.audio += audio
            if self.held:
                continue  # held: kept for the resume, not sent
            metrics.mark_first_frame(time.monotonic())
            self._on_audio()
            await self._transmit(sentence, audio)

    async def _transmit(self, sentence: SpokenSentence, audio: bytes) -> None:
        """Audio of `sentence` from where it was sent up to, out now (and a position mark when one is due)."""
        position_mark = self.playback.frame_sent(sentence, len(audio))
        self.audio_started = True
        await self.send(wire.media_message(self.call.stream_sid, audio))
        if position_mark is not None:
            await self.send(wire.mark_message(self.call.stream_sid, position_mark))

    async def _send_mark(self, sentence: SpokenSentence) -> None:
        sentence.mark_sent = True
        self.idle.clear()
        await self.send(wire.mark_message(self.call.stream_sid, sentence.mark))

    def on_mark(self, name: str) -> bool:
        """Twilio played up to mark `name`. True when that leaves nothing of the reply still to play."""
        if self.playback.on_mark(name) is not None and not self.playback.pending and not self.held:
            self.idle.set()
            return True
        return False

    # --- interruptions ------------------------------------------------------------------------------

    async def hold(self) -> None:
        """Caller sound over the agent: `clear` now and voice nothing more until `resume` or `release`."""
        now = time.monotonic()
        self.held_since = now  # before the first await: no frame may follow the clear
        self._unheld.clear()
        self.playback.pause(now)
        await self.clear()

    async def resume(self) -> None:
        """Send the held reply again from the frame the caller last heard; then it runs live again."""
        self.resuming = True
        try:
            while self.held and not self._transport.closed:
                sentence = next((s for s in self.playback.unheard() if s.sent_bytes < len(s.audio)
                                 or (s.complete and not s.mark_sent)), None)
                if sentence is None:
                    self.release()  # no await since the check: the live speaker takes over seamlessly
                    break
                if sentence.sent_bytes < len(sentence.audio):
                    end = sentence.sent_bytes + FRAME_BYTES * FRAMES_PER_MESSAGE
                    await self._transmit(sentence, bytes(sentence.audio[sentence.sent_bytes : end]))
                else:
                    await self._send_mark(sentence)
        finally:
            self.resuming = False
        if not self.playback.pending:
            self.idle.set()

    def release(self) -> None:
        """The hold is over (resumed, or the reply given up): sentences go to the voice again."""
        self.held_since = None
        self._unheld.set()

    async def clear(self) -> None:
        await self.send(wire.clear_message(self.call.stream_sid))
        self.clears_sent += 1

    async def send(self, message: str) -> None:
        if self._transport.closed:
            return  # a send after close is a no-op, never an error
        try:
            await self._transport.send_str(message)
        except (ConnectionResetError, RuntimeError) as exc:
            log.info("send after the socket went away", extra={"error": str(exc)})


async def _single(data: bytes) -> AsyncIterator[bytes]:
    yield data
