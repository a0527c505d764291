"""A fake ElevenLabs HTTP streaming TTS endpoint, speaking the real wire format over a real socket.

`POST /v1/text-to-speech/{voice_id}/stream?output_format=ulaw_8000` answers with chunked mu-law
8 kHz audio: a vowel-like buzz of about 60 ms per character, so a recording of a test call can be
listened to and audio length says how much text was spoken.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import web

from shared.audio import mulaw

MS_PER_CHAR = 60
SAMPLES_PER_CHAR = mulaw.SAMPLE_RATE * MS_PER_CHAR // 1000
_PITCH_HZ = 140.0
_FORMANTS_HZ = (700.0, 1200.0, 2600.0)  # roughly an "ah"


@dataclass
class RecordedTtsRequest:
    voice_id: str
    text: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any]
    received_at: float = field(default_factory=time.monotonic)  # the same clock as the simulator's events
    client_port: int = 0  # the client's end of the connection: the same port, a reused connection


def _peer_port(request: web.Request) -> int:
    peer = request.transport.get_extra_info("peername") if request.transport is not None else None
    return int(peer[1]) if peer else 0


def speech_like_ulaw(text: str) -> bytes:
    """Deterministic audio for `text`: a harmonic buzz per character, near-silence for spaces."""
    t = np.arange(SAMPLES_PER_CHAR) / mulaw.SAMPLE_RATE
    harmonics = np.arange(1, int(3400 / _PITCH_HZ))
    freqs = harmonics * _PITCH_HZ
    # Weight harmonics by closeness to the formants so it sounds like a vowel, not a pure tone.
    weights = sum(np.exp(-(((freqs - f) / 150.0) ** 2)) for f in _FORMANTS_HZ) + 0.05
    buzz = (weights[:, None] * np.sin(2 * math.pi * freqs[:, None] * t)).sum(axis=0)
    buzz /= np.abs(buzz).max()
    envelope = np.sin(np.pi * np.arange(SAMPLES_PER_CHAR) / SAMPLES_PER_CHAR) ** 0.5  # no clicks
    syllable = buzz * envelope
    pieces = [syllable * (0.02 if ch.isspace() else 0.3 + 0.1 * (ord(ch) % 3)) for ch in text]
    if not pieces:
        return b""
    pcm = (np.concatenate(pieces) * 32767).astype(np.int16)
    return mulaw.encode(pcm)


@dataclass
class FakeElevenLabs:
    api_key: str = "xi-test"
    first_byte_delay_s: float = 0.0
    chunk_bytes: int = 800  # 100 ms per network write
    chunk_delay_s: float = 0.002
    requests: list[RecordedTtsRequest] = field(default_factory=list)
    client_disconnects: int = 0
    # The plan's concurrent request limit (Free 2 ... Business 15); beyond it 429 too_many_concurrent_requests.
    max_concurrent: int = 0
    other_keys: set[str] = field(default_factory=set)  # more accounts' keys this fake accepts
    refused_concurrent: int = 0
    refused_busy: int = 0

    def __post_init__(self) -> None:
        self._failures: list[int] = []
        self._fail_all: int | None = None
        self._cut_after: int | None = None
        self._busy_next = 0
        self.in_flight = 0
        self._runner: web.AppRunner | None = None
        self._port = 0
        self.client_disconnected = asyncio.Event()

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/text-to-speech/{voice_id}/stream", self._stream)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])  # port 0 above: the OS picked a free one

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    # --- failure injection ------------------------------------------------------------------

    def fail_next(self, status: int = 500) -> None:
        self._failures.append(status)

    def fail_all(self, status: int | None) -> None:
        """Answer every request with `status`; `None` heals the server."""
        self._fail_all = status

    def busy_next(self, n: int = 1) -> None:
        """The next `n` requests get 429 `system_busy` (ElevenLabs: a retry usually works)."""
        self._busy_next += n

    def cut_after_bytes(self, n: int) -> None:
        """The next stream sends `n` bytes, then the connection drops mid-body."""
        self._cut_after = n

    # --- handler ----------------------------------------------------------------------------

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        arrived = asyncio.get_running_loop().time()
        try:
            body = await request.json()
        except ValueError:
            body = {}
        voice_id = request.match_info["voice_id"]
        self.requests.append(RecordedTtsRequest(
            voice_id=voice_id, text=str(body.get("text", "")), query=dict(request.query),
            headers=dict(request.headers), body=body, client_port=_peer_port(request),
        ))
        if request.headers.get("xi-api-key") not in {self.api_key, *self.other_keys}:
            return _error(401, "invalid_api_key", "Invalid API key")
        if self._busy_next:
            self._busy_next -= 1
            self.refused_busy += 1
            return _error(429, "system_busy", "We are experiencing high traffic; please try again.")
        if self.max_concurrent and self.in_flight >= self.max_concurrent:
            self.refused_concurrent += 1
            return _error(429, "too_many_concurrent_requests",
                          "Too many concurrent requests for your subscription.")
        self.in_flight += 1
        try:
            return await self._speak(request, body, arrived)
        finally:
            self.in_flight -= 1

    async def _speak(self, request: web.Request, body: dict[str, Any], arrived: float) -> web.StreamResponse:
        status = self._failures.pop(0) if self._failures else self._fail_all
        if status is not None:
            return _error(status, "internal_error", "Injected failure")
        if request.query.get("output_format") != "ulaw_8000":
            return _invalid(["query", "output_format"], "This fake only speaks ulaw_8000")
        text = body.get("text")
        if not isinstance(text, str) or not text:
            return _invalid(["body", "text"], "text is required")

        audio = speech_like_ulaw(text)
        cut_after, self._cut_after = self._cut_after, None
        # The first byte `first_byte_delay_s` after the request arrived: making the audio is inside that time.
        await asyncio.sleep(max(0.0, arrived + self.first_byte_delay_s - asyncio.get_running_loop().time()))
        response = web.StreamResponse(headers={"Content-Type": "audio/basic"})
        await response.prepare(request)
        sent = 0
        try:
            for start in range(0, len(audio), self.chunk_bytes):
                chunk = audio[start : start + self.chunk_bytes]
                if cut_after is not None and sent + len(chunk) >= cut_after:
                    await response.write(chunk[: cut_after - sent])
                    await asyncio.sleep(0.02)  # let the partial body reach the client first
                    assert request.transport is not None
                    request.transport.close()  # no terminating chunk: an incomplete body
                    return response
                await response.write(chunk)
                sent += len(chunk)
                await asyncio.sleep(self.chunk_delay_s)
            await response.write_eof()
        except ConnectionError:
            self.client_disconnects += 1
            self.client_disconnected.set()
        return response


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"detail": {"status": code, "message": message}}, status=status)


def _invalid(loc: list[str], message: str) -> web.Response:
    """422 as the API declares it (HTTPValidationError): a list of located errors."""
    return web.json_response({"detail": [{"loc": loc, "msg": message, "type": "value_error"}]}, status=422)
