"""An in-process fake of Deepgram's live `/v1/listen` WebSocket, speaking the real wire protocol.

Everything is driven by AUDIO time (8000 received bytes = 1 s), never the wall clock, so tests are
deterministic however fast they feed audio. Speech is found by energy per 20 ms frame; what was
said comes from `speech_marker` packets inside the audio (else `default_transcript`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

from shared.audio import mulaw
from tests.fakes.speech_marker import MarkerDecoder

ENERGY_THRESHOLD_RMS = 500.0
INTERIM_EVERY_MS = 200
SILENCE_FINAL_MS = 3000  # like Deepgram, finalise (empty) results during long silence


@dataclass
class ConnectionRecord:
    query: dict[str, str]
    bytes_received: int = 0
    keepalives: int = 0
    finalizes: int = 0
    quiet_at_finalize_ms: list[int] = field(default_factory=list)  # caller audio since speech, at each Finalize
    close_streams: int = 0
    close_code: int | None = None
    muted: bool = False  # stalled: reads everything, answers nothing
    sent: list[dict[str, Any]] = field(default_factory=list)
    flux: bool = False  # /v2/listen: Flux's TurnInfo events instead of Results
    turn_index: int = 0
    extensions: str = ""  # the client's Sec-WebSocket-Extensions offer ("" when it offers none)
    binary_sizes: list[int] = field(default_factory=list)  # bytes in each audio message, in order
    binary_at: list[float] = field(default_factory=list)  # when each arrived (monotonic)


class _Recogniser:
    """Per-connection transcription state machine; returns the messages to send."""

    def __init__(self, query: dict[str, str], default_transcript: str, ms_per_word: int) -> None:
        self.vad_events = query.get("vad_events") == "true"
        self.interim = query.get("interim_results") == "true"
        endpointing = query.get("endpointing", "10")
        self.endpointing_ms: int | None = None if endpointing == "false" else int(endpointing)
        self.utterance_end_ms = int(query["utterance_end_ms"]) if "utterance_end_ms" in query else None
        self.default_transcript = default_transcript
        self.ms_per_word = ms_per_word
        self.markers = MarkerDecoder()
        self.pending_texts: list[tuple[int, str]] = []  # (stream byte offset, text)
        self.partial = b""
        self.now_ms = 0  # audio time processed so far
        self.result_end_ms = 0  # results tile the stream: next result starts here
        self.speech_start_ms: int | None = None  # set while inside an utterance
        self.last_speech_ms = 0  # end of the most recent speech frame
        self.texts: list[str] = []
        self.last_interim_ms = 0
        self.utterance_end_due: int | None = None
        self.request_id = str(uuid.uuid4())

    def feed(self, audio: bytes) -> list[dict[str, Any]]:
        self.pending_texts += self.markers.feed(audio)
        data = self.partial + audio
        whole = len(data) - len(data) % mulaw.FRAME_BYTES
        self.partial = data[whole:]
        out: list[dict[str, Any]] = []
        for i in range(0, whole, mulaw.FRAME_BYTES):
            out += self._frame(data[i : i + mulaw.FRAME_BYTES])
        return out

    def _frame(self, frame: bytes) -> list[dict[str, Any]]:
        speech = mulaw.rms(frame) > ENERGY_THRESHOLD_RMS
        start, self.now_ms = self.now_ms, self.now_ms + mulaw.FRAME_MS
        out: list[dict[str, Any]] = []
        if speech:
            if self.speech_start_ms is None:
                self.speech_start_ms, self.last_interim_ms = start, start
                self.utterance_end_due = None  # the gap was too short for an UtteranceEnd
                if self.vad_events:
                    out.append({"type": "SpeechStarted", "channel": [0], "timestamp": start / 1000})
            self.last_speech_ms = self.now_ms
            # Markers inside audio heard so far belong to this utterance.
            frame_end = self.now_ms * mulaw.BYTES_PER_MS
            self.texts += [text for offset, text in self.pending_texts if offset < frame_end]
            self.pending_texts = [(o, t) for o, t in self.pending_texts if o >= frame_end]
            if self.interim and self.now_ms - self.last_interim_ms >= INTERIM_EVERY_MS:
                self.last_interim_ms = self.now_ms
                out.append(self._results(self._interim_text(), is_final=False))
            return out
        silent_ms = self.now_ms - self.last_speech_ms
        if self.speech_start_ms is not None and self.endpointing_ms is not None \
                and silent_ms >= self.endpointing_ms:
            out.append(self._finish_utterance(speech_final=True))
        if self.utterance_end_due is not None and self.now_ms >= self.utterance_end_due:
            if self.speech_start_ms is not None:  # endpointing disabled: finalise here
                out.append(self._finish_utterance(speech_final=False))
            out.append({"type": "UtteranceEnd", "channel": [0, 1],
                        "last_word_end": self.last_speech_ms / 1000})
            self.utterance_end_due = None
        if self.speech_start_ms is None and self.now_ms - self.result_end_ms >= SILENCE_FINAL_MS:
            out.append(self._results("", is_final=True))
        return out

    def _words(self) -> list[str]:
        return " ".join(self.texts or [self.default_transcript]).split()

    def _interim_text(self) -> str:
        words = self._words()
        elapsed = self.now_ms - (self.speech_start_ms or 0)
        return " ".join(words[: max(1, min(len(words), elapsed // self.ms_per_word))])

    def _finish_utterance(self, speech_final: bool, from_finalize: bool = False) -> dict[str, Any]:
        message = self._results(" ".join(self._words()), is_final=True, speech_final=speech_final,
                                from_finalize=from_finalize)
        if self.utterance_end_ms is not None and self.interim:
            self.utterance_end_due = self.last_speech_ms + self.utterance_end_ms
        self.speech_start_ms, self.texts = None, []
        return message

    def finalize(self) -> list[dict[str, Any]]:
        if self.speech_start_ms is not None:
            return [self._finish_utterance(speech_final=False, from_finalize=True)]
        return [self._results("", is_final=True, from_finalize=True)]

    def close(self) -> list[dict[str, Any]]:
        return [self._finish_utterance(speech_final=False)] if self.speech_start_ms is not None else []

    def _results(self, transcript: str, is_final: bool, speech_final: bool = False,
                 from_finalize: bool = False) -> dict[str, Any]:
        start = self.result_end_ms
        if is_final:
            self.result_end_ms = self.now_ms
        words = transcript.split()
        speech_from = self.speech_start_ms if self.speech_start_ms is not None else start
        step = (max(self.last_speech_ms, speech_from + 1) - speech_from) / max(len(words), 1)
        return {
            "type": "Results", "channel_index": [0, 1],
            "duration": (self.now_ms - start) / 1000, "start": start / 1000,
            "is_final": is_final, "speech_final": speech_final, "from_finalize": from_finalize,
            "channel": {"alternatives": [{
                "transcript": transcript, "confidence": 0.99 if words else 0.0,
                "words": [{"word": w.lower(), "start": (speech_from + i * step) / 1000,
                           "end": (speech_from + (i + 1) * step) / 1000, "confidence": 0.99,
                           "punctuated_word": w} for i, w in enumerate(words)],
            }]},
            "metadata": {"request_id": self.request_id, "model_uuid": "fake-model-uuid",
                         "model_info": {"name": "fake-nova", "version": "0", "arch": "fake"}},
        }


class FakeDeepgram:
    """`async with FakeDeepgram() as dg:` or start()/stop(); point DEEPGRAM_BASE_URL at `dg.ws_url`."""

    def __init__(self, api_key: str = "test-key", default_transcript: str = "hello there",
                 idle_timeout_s: float = 10.0, ms_per_word: int = 260, max_streams: int = 0) -> None:
        self.api_key = api_key
        self.other_keys: set[str] = set()  # more projects' keys this fake accepts (tenants' own accounts)
        # Deepgram's per-project concurrent stream limit (50 on pay-as-you-go and Growth); 0: none.
        self.max_streams = max_streams
        self.refused_capacity = 0  # handshakes answered 429
        self.authorizations: list[str] = []  # the Authorization header of every accepted handshake
        self.default_transcript = default_transcript
        self.idle_timeout_s = idle_timeout_s
        self.ms_per_word = ms_per_word
        self.records: list[ConnectionRecord] = []
        self.refused = 0  # handshakes answered 503
        self.unauthorised = 0
        self._refuse_until = 0.0
        self._live: dict[web.WebSocketResponse, tuple[web.Request, ConnectionRecord]] = {}
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Event()  # set on every handshake and client message
        self.port = 0

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        return len(self.records)

    @property
    def bytes_received(self) -> list[int]:
        return [r.bytes_received for r in self.records]

    @property
    def keepalives(self) -> int:
        return sum(r.keepalives for r in self.records)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/listen", self._listen)
        app.router.add_get("/v2/listen", self._listen)  # Flux: turn-taking in the model
        app.router.add_get("/stats", self._stats)  # for benchmarks in another process
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        await self.drop_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDeepgram:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def wait_until(self, condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
        """Wait until `condition()` holds, re-checking whenever a client does something."""
        async with asyncio.timeout(timeout_s):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    # --- failure injection -----------------------------------------------------------------

    async def drop_all(self) -> None:
        """Cut every live socket without a close frame (the client sees 1006)."""
        for request, _ in list(self._live.values()):
            if request.transport is not None:
                request.transport.abort()
        self._live.clear()
        await asyncio.sleep(0)

    def stall_live(self) -> None:
        """Live sockets stay open and keep reading but never answer again (a silent stall)."""
        for _, record in self._live.values():
            record.muted = True

    def refuse_for(self, seconds: float) -> None:
        """Answer handshakes with HTTP 503 for the next `seconds` (wall clock)."""
        self._refuse_until = asyncio.get_running_loop().time() + seconds

    # --- the endpoint ----------------------------------------------------------------------

    async def _stats(self, _: web.Request) -> web.Response:
        """What every connection so far sent: how many audio messages (one per send, a cost per send to the
        service) and bytes."""
        return web.json_response({"connections": len(self.records),
                                  "audio_messages": sum(len(r.binary_sizes) for r in self.records),
                                  "audio_bytes": sum(self.bytes_received)})

    async def _listen(self, request: web.Request) -> web.StreamResponse:
        self._changed.set()
        if asyncio.get_running_loop().time() < self._refuse_until:
            self.refused += 1
            return web.Response(status=503, text="Service Unavailable")
        authorization = request.headers.get("Authorization", "")
        if authorization not in {f"Token {key}" for key in (self.api_key, *self.other_keys)}:
            self.unauthorised += 1
            return web.Response(status=401, text="Invalid credentials.")
        if self.max_streams and len(self._live) >= self.max_streams:
            self.refused_capacity += 1
            # Deepgram's error body (err_code / err_msg / request_id) with 429 Too Many Requests.
            return web.json_response({"err_code": "TOO_MANY_REQUESTS", "request_id": str(uuid.uuid4()),
                                      "err_msg": "Too many requests. Please try again later."}, status=429)
        query = dict(request.query)
        if query.get("encoding") != "mulaw" or query.get("sample_rate") != "8000":
            return web.Response(status=400, text="Bad Request: expected encoding=mulaw&sample_rate=8000")
        # permessage-deflate only if the client offers it (aiohttp's default); the service's client offers none.
        ws = web.WebSocketResponse(autoping=True)
        record = ConnectionRecord(query=query, flux=request.path.startswith("/v2/"),
                                  extensions=request.headers.get("Sec-WebSocket-Extensions", ""))
        if record.flux:  # Flux always reports interim words and ends turns itself
            query = {**query, "interim_results": "true", "vad_events": "true", "endpointing": "300"}
        self._live[ws] = (request, record)  # counts toward max_streams from the handshake on
        try:
            await ws.prepare(request)
            self.authorizations.append(authorization)
            self.records.append(record)
            await self._serve(ws, record, _Recogniser(query, self.default_transcript, self.ms_per_word))
        finally:
            self._live.pop(ws, None)
        return ws

    async def _serve(self, ws: web.WebSocketResponse, record: ConnectionRecord, rec: _Recogniser) -> None:
        audio = hashlib.sha256()
        while not ws.closed:
            try:
                msg = await ws.receive(timeout=self.idle_timeout_s)
                self._changed.set()
            except TimeoutError:
                record.close_code = 1011
                await ws.close(code=1011, message=b"NET-0001: no audio received within the timeout")
                return
            if msg.type == WSMsgType.BINARY:
                record.bytes_received += len(msg.data)
                record.binary_sizes.append(len(msg.data))
                record.binary_at.append(time.monotonic())
                audio.update(msg.data)
                await self._send(ws, record, rec.feed(msg.data))
            elif msg.type == WSMsgType.TEXT:
                kind = json.loads(msg.data).get("type")
                if kind == "KeepAlive":
                    record.keepalives += 1
                elif kind == "Finalize":
                    record.finalizes += 1
                    record.quiet_at_finalize_ms.append(rec.now_ms - rec.last_speech_ms)
                    await self._send(ws, record, rec.finalize())
                elif kind == "CloseStream":
                    record.close_streams += 1
                    await self._send(ws, record, [*rec.close(), self._metadata(rec, audio.hexdigest())])
                    record.close_code = 1000
                    await ws.close(code=1000)
                    return
            else:  # CLOSE, CLOSING, CLOSED, ERROR: the client went away
                return

    @staticmethod
    async def _send(ws: web.WebSocketResponse, record: ConnectionRecord, messages: list[dict[str, Any]]
                    ) -> None:
        if record.flux:
            messages = [m for m in (FakeDeepgram._turn_info(record, m) for m in messages) if m is not None]
        for message in messages:
            if ws.closed or record.muted:
                return
            record.sent.append(message)
            with contextlib.suppress(ConnectionError):
                await ws.send_str(json.dumps(message))

    @staticmethod
    def _turn_info(record: ConnectionRecord, message: dict[str, Any]) -> dict[str, Any] | None:
        """The v1 recogniser's messages as Flux's (`/v2/listen`) TurnInfo events: StartOfTurn, Update, EndOfTurn."""
        kind = message.get("type")
        if kind == "SpeechStarted":
            event, transcript = "StartOfTurn", ""
        elif kind == "Results":
            transcript = message["channel"]["alternatives"][0]["transcript"]
            if message.get("speech_final"):
                event = "EndOfTurn"
            elif not message.get("is_final") and transcript:
                event = "Update"
            else:
                return None
        else:
            return None
        info = {"type": "TurnInfo", "request_id": message.get("metadata", {}).get("request_id", "fake"),
                "sequence_id": len(record.sent), "event": event, "turn_index": record.turn_index,
                "audio_window_start": 0.0, "audio_window_end": float(message.get("start", 0.0))
                + float(message.get("duration", 0.0)), "transcript": transcript,
                "words": [{"word": w, "confidence": 0.99} for w in transcript.split()],
                "end_of_turn_confidence": 0.9 if event == "EndOfTurn" else 0.1}
        if event == "EndOfTurn":
            record.turn_index += 1
        return info

    @staticmethod
    def _metadata(rec: _Recogniser, sha256: str) -> dict[str, Any]:
        return {"type": "Metadata", "transaction_key": "deprecated", "request_id": rec.request_id,
                "sha256": sha256, "created": datetime.now(UTC).isoformat(),
                "duration": rec.now_ms / 1000, "channels": 1}
