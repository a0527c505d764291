"""Deepgram live speech to text (`/v1/listen` through `deepgram-sdk` 7.x), with reconnects that lose no words.

One stream per call. `send_audio` appends to a buffer; audio that is due goes to the socket (without
permessage-deflate: deepgram_socket.py) at once while the connection is open and idle, else a sender task
writes it (the handshake, a backlog, a resend after a reconnect, Finalize and CloseStream keep their order).
The SDK's socket client still opens, reads, finalizes and closes; only the audio bytes skip its `send_media`, a
one-line await of the same socket. While the caller is quiet, audio goes out in sends of `quiet_batch_ms`.
From the first loud frame until `speech_tail_ms` after the last one (the stretch in which Deepgram finds speech,
interim words and the end of the turn), quiet frames go out as they arrive, so the end of speech and the
endpoint are never late; loud frames too while something waits on the words as they come (`words_awaited`: the
agent is talking, and a barge-in is judged by them), else in sends of `speech_batch_ms` (interim words up to
that much later, when nothing waits on them). A `finalize()` ends that stretch early: the service then times
the pause itself.
The buffer keeps every byte since the last final result, so after a dropped socket the new
connection is fed that audio again: speech that was not yet final is transcribed once, and speech
already final is never resent. Deepgram's `start`/`duration` are relative to each connection, so
each connection remembers where in the call's audio it began.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import websockets.exceptions
from deepgram import AsyncDeepgramClient, DeepgramClientEnvironment
from deepgram.core.api_error import ApiError
from deepgram.listen.v1.socket_client import AsyncV1SocketClient, V1SocketClientResponse
from deepgram.listen.v1.types import ListenV1Error, ListenV1Results, ListenV1SpeechStarted, ListenV1UtteranceEnd
from deepgram.listen.v2.socket_client import V2SocketClientResponse
from deepgram.listen.v2.types import ListenV2TurnInfo

from shared.audio import mulaw
from shared.audio.mulaw import BYTES_PER_MS, SAMPLE_RATE
from shared.settings import Settings
from streaming_service.engines.base import (
    EngineError,
    SpeechToText,
    SpeechToTextStream,
    TranscriptEvent,
    TranscriptKind,
    VendorCapacityError,
)
from streaming_service.engines.deepgram_socket import (
    UncompressedSocket,
    complete_handshake,
    server_messages,
    transport_of,
)

logger = logging.getLogger(__name__)

VENDOR = "deepgram"
_FATAL_STATUS = {400, 401, 402, 403, 404}  # retrying cannot fix these


@dataclass(frozen=True)
class DeepgramStreamOptions:
    """Connection resilience; defaults suit a phone call."""

    keepalive_interval_s: float = 4.0  # Deepgram closes after 10 s without audio or KeepAlive
    result_timeout_s: float = 8.0  # audio sent but no message back for this long: socket stalled
    reconnect_budget_s: float = 15.0  # total outage we ride out (a 10 s refusal, with backoff slack)
    delayed_notice_after_s: float = 3.0  # an outage this long is reported (DELAYED) so the caller is told
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 2.0
    connect_timeout_s: float = 5.0
    close_timeout_s: float = 3.0  # CloseStream -> remaining results -> socket closed
    max_buffer_s: float = 30.0  # audio kept for resending after a drop
    max_chunk_bytes: int = 4000  # 500 ms per binary frame when catching up
    # Batching of quiet audio (one WebSocket frame per send, each with its own syscall and mask):
    # Deepgram asks for 20 to 250 ms a send (github.com/orgs/deepgram/discussions/224).
    quiet_batch_ms: int = 250  # caller silence goes out this much at a time (at most this late)
    # The caller's speech while nothing waits on its words as they come (the agent is silent): this much a
    # send. The first quiet frame after it sends what is held, so the end of speech is never late.
    speech_batch_ms: int = 100
    quiet_rms: float = 100.0  # a 20 ms frame quieter than this is silence (the VAD's floor is 200)
    # After the last loud frame, every frame is sent at once for this long; None: the endpointing settings'
    # longest wait (stt_endpointing_ms or utterance_end_ms; Flux's end-of-turn timeout) plus 250 ms.
    speech_tail_ms: int | None = None


_FLUX_END_OF_TURN_TIMEOUT_MS = 5000  # Flux's default eot_timeout_ms: the longest it waits to end a turn


class _Reconnect(Exception):
    """The connection is unusable (dropped, closed by the server, stalled)."""


_RECOVERABLE = (OSError, TimeoutError, EOFError, websockets.exceptions.WebSocketException, _Reconnect)
_END = object()


class DeepgramSpeechToText(SpeechToText):
    name = "deepgram"

    def __init__(self, settings: Settings, options: DeepgramStreamOptions | None = None) -> None:
        key = settings.deepgram_api_key.get_secret_value() if settings.deepgram_api_key else ""
        if not key:
            raise EngineError(VENDOR, "DEEPGRAM_API_KEY is not set")
        self._settings = settings
        self._options = options or DeepgramStreamOptions()
        base = settings.deepgram_base_url.rstrip("/")
        rest = base.replace("wss://", "https://", 1).replace("ws://", "http://", 1)
        environment = DeepgramClientEnvironment(base=rest, production=base, agent=base, agent_rest=rest)
        # The SDK's socket hook (process-wide in the SDK, so always this one class): no permessage-deflate.
        self._client = AsyncDeepgramClient(api_key=key, environment=environment,
                                           transport_factory=UncompressedSocket)

    async def open_stream(self, call_sid: str) -> SpeechToTextStream:
        """Returns at once; connecting happens in the background and audio buffers meanwhile."""
        stream = DeepgramStream(self._client, self._settings, self._options, call_sid)
        stream.start()
        return stream


class DeepgramStream(SpeechToTextStream):
    def __init__(self, client: AsyncDeepgramClient, settings: Settings, options: DeepgramStreamOptions,
                 call_sid: str) -> None:
        self._client = client
        self._settings = settings
        self._options = options
        self._call_sid = call_sid
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._finished = False  # _END or an EngineError has been queued
        self._closing = False
        self._runner: asyncio.Task[None] | None = None
        # Audio since the last final result: call byte offsets [_buf_start, _buf_start + len(_buf)).
        self._buf = bytearray()
        self._buf_start = 0
        self._sent_upto = 0  # call byte offset sent on the current connection
        self._conn_base = 0  # call byte offset where the current connection's audio begins
        self._audio_ready = asyncio.Event()
        self._last_send = time.monotonic()
        self._unanswered_since: float | None = None  # audio sent, nothing heard back yet
        self._speech_announced_at: int | None = None  # call byte offset of the last SpeechStarted
        self._connected_at: float | None = None  # when the current connection's handshake succeeded
        self._heard_back = False  # the current connection delivered at least one message
        self.connections = 0
        self._finalize_wanted = False  # send Finalize once the audio before it is out
        # Batching: quiet audio waits for a full batch (or the timer); audio up to _urgent_until goes at once.
        self._batch_bytes = max(1, options.quiet_batch_ms * BYTES_PER_MS)
        self._speech_batch_bytes = max(1, options.speech_batch_ms * BYTES_PER_MS)
        self._words_awaited = False  # see words_awaited(): each loud frame then goes at once
        tail_ms = options.speech_tail_ms
        if tail_ms is None:
            endpointing = settings.endpointing
            longest = _FLUX_END_OF_TURN_TIMEOUT_MS if self._flux else \
                max(endpointing.stt_endpointing_ms, endpointing.utterance_end_ms)
            tail_ms = longest + 250
        self._tail_bytes = tail_ms * BYTES_PER_MS
        self._below_quiet = mulaw.codes_below(int(options.quiet_rms))
        self._urgent_until = -1  # call byte offset: audio ending at or before it is sent as it arrives
        self._flush_timer: asyncio.TimerHandle | None = None
        self._flush_timer_ms = 0  # the shortest batch the flush timer is due within
        # The current connection's socket while its sender waits with everything sent: audio due then is
        # written at once from send_audio (the sender task would add a wakeup and the async send per frame).
        self._idle_socket: UncompressedSocket | None = None

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run(), name=f"deepgram-stt-{self._call_sid}")

    # --- the seam ---------------------------------------------------------------------------

    async def send_audio(self, ulaw: bytes) -> None:
        if self._closing or self._finished or not ulaw:
            return
        self._buf += ulaw
        overflow = len(self._buf) - int(self._options.max_buffer_s * SAMPLE_RATE)
        if overflow > 0:  # a long outage: keep the newest audio
            del self._buf[:overflow]
            self._buf_start += overflow
            self._sent_upto = max(self._sent_upto, self._buf_start)
        end = self._buf_start + len(self._buf)
        held = end - self._sent_upto
        if self._loud(ulaw):
            self._urgent_until = end + self._tail_bytes
            if self._words_awaited or held >= self._speech_batch_bytes:
                self._send_due()
            else:
                self._flush_within(self._options.speech_batch_ms)
        elif end <= self._urgent_until or held >= self._batch_bytes:  # the speech's tail, or a full batch
            self._send_due()
        else:
            self._flush_within(self._options.quiet_batch_ms)

    def words_awaited(self, awaited: bool) -> None:
        self._words_awaited = awaited

    def _flush_within(self, batch_ms: int) -> None:
        """Audio held for a batch is never held longer than one, even if no more comes (speech after quiet
        brings a quiet batch's timer forward)."""
        timer = self._flush_timer
        if timer is not None and self._flush_timer_ms <= batch_ms:  # most frames: no clock, no new timer
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + batch_ms / 1000
        self._flush_timer_ms = batch_ms
        if timer is not None:
            if timer.when() <= due:
                return
            timer.cancel()
        self._flush_timer = loop.call_at(due, self._send_due)

    def _send_due(self) -> None:
        """What is due goes out now: in line when the socket is idle, else by the sender task."""
        if not self._send_now():
            self._audio_ready.set()

    def _send_now(self) -> bool:
        """Writes what is due straight to an idle, open socket; False leaves it to the sender task."""
        socket = self._idle_socket
        if socket is None or self._finalize_wanted or self._closing:
            return False
        chunk = bytes(self._buf[self._sent_upto - self._buf_start :])
        if not chunk:  # nothing due (an empty binary message would end Deepgram's stream)
            return True
        if len(chunk) > self._options.max_chunk_bytes or not socket.send_now(chunk):
            return False
        self._cancel_flush_timer()
        self._sent(len(chunk))
        return True

    def _sent(self, size: int) -> None:
        """`size` more bytes of the buffer are on the current connection: the watchdog waits for an answer."""
        self._sent_upto += size
        self._last_send = time.monotonic()
        if self._unanswered_since is None:
            self._unanswered_since = self._last_send

    def _loud(self, ulaw: bytes) -> bool:
        """Whether any 20 ms frame of `ulaw` is louder than `quiet_rms`."""
        if not ulaw.translate(None, self._below_quiet):  # no sample that loud, so no frame either
            return False
        quiet_rms = self._options.quiet_rms
        if len(ulaw) <= mulaw.FRAME_BYTES:  # Twilio's frame: nearly every call
            return mulaw.rms(ulaw) >= quiet_rms
        return any(mulaw.rms(ulaw[start : start + mulaw.FRAME_BYTES]) >= quiet_rms
                   for start in range(0, len(ulaw), mulaw.FRAME_BYTES))

    async def finalize(self) -> bool:
        """Finalize after the audio already given (the sender keeps the order); Flux has no such message."""
        if self._flux or self._closing or self._finished:
            return False
        # The caller's pause is the service's to time from here (its own end of turn needs the final, not
        # Deepgram's endpointing): the rest of the speech tail goes in quiet batches until the caller is loud.
        self._urgent_until = min(self._urgent_until, self._buf_start + len(self._buf))
        self._finalize_wanted = True
        self._audio_ready.set()
        return True

    async def events(self) -> AsyncIterator[TranscriptEvent]:
        while True:
            item = await self._events.get()
            if item is _END:
                return
            if isinstance(item, EngineError):
                raise item
            yield item

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._cancel_flush_timer()
        self._audio_ready.set()  # the sender flushes, then sends CloseStream
        if self._runner is not None:
            try:
                async with asyncio.timeout(self._options.close_timeout_s):
                    await asyncio.shield(self._runner)
            except TimeoutError:
                self._runner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._runner
        self._finish(_END)

    # --- connection lifecycle ---------------------------------------------------------------

    async def _run(self) -> None:
        outage_since: float | None = None
        attempt = 0
        noticed_at: float | None = None
        try:
            while not self._closing:
                try:
                    await self._connect_and_serve()
                    return
                except ApiError as exc:
                    if exc.status_code == 429:
                        # The project's concurrent-stream limit: a capacity signal, not an outage to ride out.
                        raise VendorCapacityError(VENDOR, "429 on connect: concurrency limit") from None
                    if exc.status_code in _FATAL_STATUS:
                        raise EngineError(VENDOR, f"handshake rejected (HTTP {exc.status_code})") from None
                    reason = f"HTTP {exc.status_code}"
                except _RECOVERABLE as exc:
                    reason = type(exc).__name__ + (f": {exc}" if isinstance(exc, _Reconnect) else "")
                if self._closing:
                    return
                now = time.monotonic()
                if outage_since is None or self._last_connection_worked(now):
                    outage_since, attempt = now, 0  # a new outage starts its own retry budget
                attempt += 1
                remaining = outage_since + self._options.reconnect_budget_s - now
                if now - outage_since >= self._options.delayed_notice_after_s and noticed_at != outage_since:
                    noticed_at = outage_since  # once per outage
                    self._emit(TranscriptEvent(TranscriptKind.DELAYED))
                if remaining <= 0:
                    raise EngineError(VENDOR, f"no connection after {attempt} attempts ({reason})")
                delay = min(self._options.backoff_max_s, self._options.backoff_initial_s * 2 ** (attempt - 1),
                            remaining)
                logger.warning("deepgram stream reconnecting", extra={
                    "call_sid": self._call_sid, "attempt": attempt, "reason": reason,
                    "delay_s": round(delay, 3), "buffered_ms": len(self._buf) // BYTES_PER_MS})
                await asyncio.sleep(delay)
        except EngineError as exc:
            logger.error("deepgram stream failed", extra={"call_sid": self._call_sid, "error": str(exc)})
            self._finish(exc)
        except Exception as exc:  # a bug must still end events(), not hang the call
            logger.exception("deepgram stream crashed", extra={"call_sid": self._call_sid})
            self._finish(EngineError(VENDOR, f"unexpected {type(exc).__name__}"))
        finally:
            self._finish(_END)

    def _last_connection_worked(self, now: float) -> bool:
        """A socket that talked to us or stayed up a while ends an outage; one that dies at once
        (accepts, then drops) must not reset the retry budget forever."""
        connected_at, self._connected_at = self._connected_at, None
        return connected_at is not None and (self._heard_back or now - connected_at >= 2.0)

    @property
    def _flux(self) -> bool:
        return self._settings.deepgram_model.startswith("flux")

    async def _connect_and_serve(self) -> None:
        endpointing = self._settings.endpointing
        stack = contextlib.AsyncExitStack()
        async with asyncio.timeout(self._options.connect_timeout_s):
            if self._flux:
                # Flux (/v2/listen): the model ends turns itself (EndOfTurn), so no endpointing parameters.
                # Not used yet: EagerEndOfTurn (for preemptive generation) and eot_threshold tuning.
                conn: Any = await stack.enter_async_context(self._client.listen.v2.connect(
                    model=self._settings.deepgram_model, encoding="mulaw", sample_rate=SAMPLE_RATE))
            else:
                language = {"language": self._settings.deepgram_language} if self._settings.deepgram_language else {}
                conn = await stack.enter_async_context(self._client.listen.v1.connect(
                    model=self._settings.deepgram_model, encoding="mulaw", sample_rate=SAMPLE_RATE, channels=1,
                    interim_results=True, endpointing=endpointing.stt_endpointing_ms,
                    utterance_end_ms=endpointing.utterance_end_ms, vad_events=True, smart_format=True,
                    punctuate=True, **language))
            try:
                await complete_handshake(conn)
            except BaseException:
                await stack.aclose()
                raise
        # Resend everything not yet final; the new connection's time 0 is the oldest kept byte.
        self._conn_base = self._sent_upto = self._buf_start
        self._unanswered_since = None
        self._connected_at = self._last_send = time.monotonic()
        self._heard_back = False
        if self.connections:
            logger.info("deepgram stream reconnected", extra={
                "call_sid": self._call_sid, "connections": self.connections + 1,
                "resending_ms": len(self._buf) // BYTES_PER_MS})
        self.connections += 1
        try:
            await self._serve(conn)
        finally:
            with contextlib.suppress(Exception):  # a dead socket may not close politely
                async with asyncio.timeout(1.0):
                    await stack.aclose()

    async def _serve(self, conn: AsyncV1SocketClient) -> None:
        receiver = asyncio.create_task(self._receive(conn))
        helpers = {asyncio.create_task(self._send(conn)), asyncio.create_task(self._keepalive(conn)),
                   asyncio.create_task(self._watchdog())}
        tasks = {receiver, *helpers}
        try:
            while True:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if (exc := task.exception()) is not None:
                        raise exc
                if receiver in done:
                    return
                tasks -= done
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # --- per-connection tasks ----------------------------------------------------------------

    async def _send(self, conn: AsyncV1SocketClient) -> None:
        socket = transport_of(conn)  # None on another transport: the sender task sends everything
        while True:
            if self._sent_upto < self._buf_start + len(self._buf):
                offset = self._sent_upto - self._buf_start
                chunk = bytes(self._buf[offset : offset + self._options.max_chunk_bytes])
                await conn.send_media(chunk)
                self._sent(len(chunk))
                continue
            if self._finalize_wanted:
                self._finalize_wanted = False
                await conn.send_finalize()
                continue
            if self._closing:
                await conn.send_close_stream()
                return
            self._audio_ready.clear()
            self._cancel_flush_timer()  # everything is sent: the next quiet batch starts its own timer
            self._idle_socket = socket
            try:
                await self._audio_ready.wait()
            finally:
                self._idle_socket = None

    def _cancel_flush_timer(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None

    async def _keepalive(self, conn: AsyncV1SocketClient) -> None:
        interval = self._options.keepalive_interval_s
        while not self._closing:
            idle = time.monotonic() - self._last_send
            if idle >= interval:
                if self._flux:  # /v2/listen has no KeepAlive message: 20 ms of mu-law silence
                    await conn.send_media(b"\xff" * 160)
                else:
                    await conn.send_keep_alive()
                self._last_send = time.monotonic()
                idle = 0.0
            await asyncio.sleep(interval - idle)

    async def _watchdog(self) -> None:
        timeout = self._options.result_timeout_s
        while True:
            await asyncio.sleep(timeout / 4)
            since = self._unanswered_since
            if since is not None and time.monotonic() - since > timeout and not self._closing:
                raise _Reconnect(f"no results for {timeout:.1f} s")

    async def _receive(self, conn: AsyncV1SocketClient) -> None:
        async for message in server_messages(conn, V2SocketClientResponse if self._flux else V1SocketClientResponse):
            self._unanswered_since = None
            self._heard_back = True
            if isinstance(message, ListenV2TurnInfo):
                self._on_turn_info(message)
            elif isinstance(message, ListenV1Results):
                self._on_results(message)
            elif isinstance(message, ListenV1SpeechStarted):
                at = self._conn_base + int((message.timestamp or 0.0) * SAMPLE_RATE)
                # A resend replays the start of the current utterance: announce it only once.
                last = self._speech_announced_at
                if last is None or at > last + 250 * BYTES_PER_MS:
                    self._speech_announced_at = at
                    self._emit(TranscriptEvent(TranscriptKind.SPEECH_STARTED))
            elif isinstance(message, ListenV1UtteranceEnd):
                self._emit(TranscriptEvent(TranscriptKind.UTTERANCE_END))
            elif isinstance(message, ListenV1Error):
                logger.warning("deepgram error message", extra={
                    "call_sid": self._call_sid, "variant": message.variant, "description": message.description})
        if not self._closing:
            raise _Reconnect("server closed the stream")

    def _on_results(self, message: ListenV1Results) -> None:
        alternatives = message.channel.alternatives if message.channel else None
        text = (alternatives[0].transcript or "").strip() if alternatives else ""
        if message.is_final:
            # Everything up to the end of a final result is transcribed for good: stop keeping it.
            end = self._conn_base + round(((message.start or 0.0) + (message.duration or 0.0)) * SAMPLE_RATE)
            end = min(end, self._sent_upto)
            if end > self._buf_start:
                del self._buf[: end - self._buf_start]
                self._buf_start = end
            if text or message.speech_final or message.from_finalize:  # an empty speech_final ends the turn too
                self._emit(TranscriptEvent(TranscriptKind.FINAL, text, bool(message.speech_final),
                                           from_finalize=bool(message.from_finalize)))
        elif text:
            self._emit(TranscriptEvent(TranscriptKind.INTERIM, text))

    def _on_turn_info(self, message: ListenV2TurnInfo) -> None:
        """Flux: StartOfTurn opens a turn (barge-in), Update carries interim words, EndOfTurn closes the turn
        (instead of endpointing). EagerEndOfTurn and TurnResumed are not used yet."""
        text = (message.transcript or "").strip()
        if message.event == "StartOfTurn":
            self._emit(TranscriptEvent(TranscriptKind.SPEECH_STARTED))
        elif message.event == "Update" and text:
            self._emit(TranscriptEvent(TranscriptKind.INTERIM, text))
        elif message.event == "EndOfTurn":
            # The turn's audio is transcribed for good: stop keeping it for a resend.
            del self._buf[: self._sent_upto - self._buf_start]
            self._buf_start = self._sent_upto
            if text:
                self._emit(TranscriptEvent(TranscriptKind.FINAL, text, True))

    def _emit(self, event: TranscriptEvent) -> None:
        if not self._finished:
            self._events.put_nowait(event)

    def _finish(self, item: object) -> None:
        self._cancel_flush_timer()
        if not self._finished:
            self._finished = True
            self._events.put_nowait(item)
