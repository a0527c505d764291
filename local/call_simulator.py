"""A caller on a Twilio Media Stream, behaving as Twilio does.

It signs the WebSocket upgrade, sends `connected` and `start`, then one 20 ms mu-law frame per tick
(the caller's words when it is speaking, silence otherwise). Audio the service sends is buffered and
played in real time; a `mark` is echoed once the audio before it has played; `clear` drops the buffer
and echoes every pending mark at once. Both sides are recorded for a WAV file.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
import wave
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np
from twilio.request_validator import RequestValidator

from shared import twilio_media as wire
from shared.audio import mulaw


@dataclass
class AgentAudioEvent:
    at: float
    kind: str  # media | mark | clear | mark-echo
    detail: str = ""
    size: int = 0


@dataclass
class _Utterance:
    frames: deque[bytes]
    done: asyncio.Future[float]


@dataclass
class CallRecording:
    caller: bytearray = field(default_factory=bytearray)  # mu-law, one frame per tick
    agent: bytearray = field(default_factory=bytearray)  # mu-law as played, one frame per tick

    def write_wav(self, path: str | Path) -> None:
        """Stereo PCM16 8 kHz: left = caller, right = agent, time-aligned."""
        length = max(len(self.caller), len(self.agent))
        left = mulaw.decode(bytes(self.caller).ljust(length, b"\xff"))
        right = mulaw.decode(bytes(self.agent).ljust(length, b"\xff"))
        stereo = np.column_stack([left, right]).astype("<i2")
        with wave.open(str(path), "wb") as out:
            out.setnchannels(2)
            out.setsampwidth(2)
            out.setframerate(mulaw.SAMPLE_RATE)
            out.writeframes(stereo.tobytes())


class SimulatedCall:
    def __init__(self, ws_url: str, *, custom_parameters: dict[str, str], call_sid: str | None = None,
                 stream_sid: str | None = None, auth_token: str = "", signed_url: str | None = None,
                 speed: float = 1.0, http: aiohttp.ClientSession | None = None) -> None:
        self.ws_url = ws_url
        self.signed_url = signed_url or ws_url
        self.custom_parameters = custom_parameters
        self.call_sid = call_sid or "CA" + uuid.uuid4().hex
        self.stream_sid = stream_sid or "MZ" + uuid.uuid4().hex
        self.auth_token = auth_token
        self.tick_s = mulaw.FRAME_MS / 1000 / speed
        self.events: list[AgentAudioEvent] = []
        self.recording = CallRecording()
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self._builder = wire.InboundBuilder(self.stream_sid, self.call_sid)
        self._http = http
        self._own_http = http is None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._utterances: deque[_Utterance] = deque()
        self._playout: deque[bytes | str] = deque()  # frames and mark names, in arrival order
        self._tasks: list[asyncio.Task[None]] = []
        self._last_media_at = 0.0

    # --- connecting -----------------------------------------------------------------------------

    async def connect(self) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        headers = {}
        if self.auth_token:
            signature = RequestValidator(self.auth_token).compute_signature(self.signed_url, {})
            headers["X-Twilio-Signature"] = signature
        self._ws = await self._http.ws_connect(self.ws_url, headers=headers, max_msg_size=0)
        await self._ws.send_str(self._builder.connected())
        await self._ws.send_str(self._builder.start(self.custom_parameters))
        self._tasks = [asyncio.create_task(self._clock()), asyncio.create_task(self._receive())]

    async def __aenter__(self) -> SimulatedCall:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.hang_up()

    # --- what the caller does ---------------------------------------------------------------------

    async def say(self, ulaw: bytes) -> float:
        """Speak (paced in real time); returns the monotonic time the last frame was sent, or the time
        the line went dead if the other side hung up first."""
        return await self.say_nowait(ulaw)

    def say_nowait(self, ulaw: bytes) -> asyncio.Future[float]:
        utterance = _Utterance(deque(mulaw.frames(ulaw)), asyncio.get_running_loop().create_future())
        if self._line_dead():
            utterance.done.set_result(time.monotonic())
        else:
            self._utterances.append(utterance)
        return utterance.done

    def _line_dead(self) -> bool:
        return self.closed.is_set() or (self._ws is not None and self._ws.closed)

    def _release_utterances(self) -> None:
        """Nobody will send these frames any more: whoever waits on them must not wait forever."""
        while self._utterances:
            utterance = self._utterances.popleft()
            if not utterance.done.done():
                utterance.done.set_result(time.monotonic())

    async def press(self, digit: str) -> None:
        await self._send(self._builder.dtmf(digit))

    async def send_raw(self, text: str) -> None:
        """For hostile-input tests: anything at all, as a text frame."""
        await self._send(text)

    async def hang_up(self) -> None:
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(Exception):
                await self._ws.send_str(self._builder.stop())
            with contextlib.suppress(Exception):
                await self._ws.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._own_http and self._http is not None:
            await self._http.close()
        self.closed.set()

    # --- what the caller hears --------------------------------------------------------------------

    @property
    def playing(self) -> bool:
        return any(isinstance(item, bytes) for item in self._playout)

    async def wait_for_agent(self, quiet_s: float = 0.6, timeout_s: float = 20.0, since: float | None = None) -> None:
        """Wait until the agent has spoken (after `since`) and then gone quiet: nothing left to play
        and no new audio for `quiet_s`."""
        deadline = time.monotonic() + timeout_s
        since = since if since is not None else time.monotonic()
        while time.monotonic() < deadline and not self.closed.is_set():
            spoke = self._last_media_at > since
            if spoke and not self.playing and time.monotonic() - self._last_media_at >= quiet_s:
                return
            await asyncio.sleep(0.02)
        if not self.closed.is_set():
            raise TimeoutError("the agent did not finish speaking in time")

    def first_audio_after(self, t: float) -> float | None:
        return next((e.at for e in self.events if e.kind == "media" and e.at >= t), None)

    def clears_after(self, t: float) -> list[float]:
        return [e.at for e in self.events if e.kind == "clear" and e.at >= t]

    def agent_audio_ms(self) -> float:
        return sum(e.size for e in self.events if e.kind == "media") / mulaw.BYTES_PER_MS

    # --- internals ------------------------------------------------------------------------------------

    async def _send(self, text: str) -> None:
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(ConnectionResetError, RuntimeError):
                await self._ws.send_str(text)

    def _next_caller_frame(self) -> bytes:
        while self._utterances:
            utterance = self._utterances[0]
            if utterance.frames:
                frame = utterance.frames.popleft()
                if not utterance.frames:
                    self._utterances.popleft()
                    if not utterance.done.done():
                        utterance.done.set_result(time.monotonic())
                return frame
            self._utterances.popleft()
        return mulaw.silence(mulaw.FRAME_MS)

    async def _clock(self) -> None:
        """One tick per 20 ms: send a caller frame, play an agent frame, echo due marks."""
        next_tick = time.monotonic()
        try:
            while self._ws is not None and not self._ws.closed:
                frame = self._next_caller_frame()
                self.recording.caller += frame
                await self._send(self._builder.media(frame))
                played = self._play_one_frame()
                self.recording.agent += played or mulaw.silence(mulaw.FRAME_MS)
                await self._echo_due_marks()
                next_tick += self.tick_s
                await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
        finally:
            self._release_utterances()

    def _play_one_frame(self) -> bytes | None:
        if self._playout and isinstance(self._playout[0], bytes):
            return self._playout.popleft()  # type: ignore[return-value]
        return None

    async def _echo_due_marks(self) -> None:
        while self._playout and isinstance(self._playout[0], str):
            name = self._playout.popleft()
            assert isinstance(name, str)
            self.events.append(AgentAudioEvent(time.monotonic(), "mark-echo", name))
            await self._send(self._builder.mark(name))

    async def _receive(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            now = time.monotonic()
            try:
                event = wire.parse_outbound(msg.data)
            except wire.ProtocolError as exc:  # Twilio would drop it (error 31951); so do we, on record
                self.events.append(AgentAudioEvent(now, "protocol-error", str(exc)))
                continue
            if isinstance(event, wire.Media):
                self._last_media_at = now
                self.events.append(AgentAudioEvent(now, "media", size=len(event.payload)))
                payload = event.payload
                self._playout.extend(payload[i : i + mulaw.FRAME_BYTES]
                                     for i in range(0, len(payload), mulaw.FRAME_BYTES))
            elif isinstance(event, wire.Mark):
                self.events.append(AgentAudioEvent(now, "mark", event.name))
                self._playout.append(event.name)
            elif isinstance(event, wire.Clear):
                self.events.append(AgentAudioEvent(now, "clear"))
                pending_marks = [item for item in self._playout if isinstance(item, str)]
                self._playout.clear()
                for name in pending_marks:  # Twilio echoes every pending mark at once after a clear
                    self.events.append(AgentAudioEvent(now, "mark-echo", name))
                    await self._send(self._builder.mark(name))
        self.close_code = self._ws.close_code
        self.closed.set()
        self._release_utterances()


@dataclass
class DialledCall:
    """A call placed the way Twilio places it: `/voice`, the TwiML's stream, then `<Connect action>`."""

    call: SimulatedCall
    twiml: str
    action_url: str
    form: dict[str, str]
    after_stream_twiml: str = ""


def _signed_headers(auth_token: str, url: str, form: dict[str, str]) -> dict[str, str]:
    signature = RequestValidator(auth_token).compute_signature(url, form)
    return {"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"}


async def dial(base_url: str, *, to: str, from_: str, auth_token: str, http: aiohttp.ClientSession,
               speed: float = 1.0) -> DialledCall:
    """POST `/voice` as Twilio does and open the stream the TwiML asks for."""
    import xml.etree.ElementTree as ElementTree

    call_sid = "CA" + uuid.uuid4().hex
    form = {"CallSid": call_sid, "AccountSid": "AC" + "0" * 32, "From": from_, "To": to,
            "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01"}
    url = base_url.rstrip("/") + "/voice"
    async with http.post(url, data=form, headers=_signed_headers(auth_token, url, form)) as response:
        twiml = await response.text()
        if response.status != 200:
            raise RuntimeError(f"/voice answered {response.status}: {twiml[:200]}")
    root = ElementTree.fromstring(twiml)
    connect = root.find("Connect")
    stream = connect.find("Stream") if connect is not None else None
    if connect is None or stream is None:
        raise RuntimeError(f"the webhook did not connect a stream: {twiml[:300]}")
    parameters = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    stream_url = stream.get("url", "")
    # Locally the TwiML may name a wss:// URL on a plain-HTTP server; Twilio signs what the TwiML says.
    connect_url = stream_url if base_url.startswith("https") else stream_url.replace("wss://", "ws://", 1)
    simulated = SimulatedCall(connect_url, custom_parameters=parameters, call_sid=call_sid, auth_token=auth_token,
                              signed_url=stream_url, speed=speed, http=http)
    return DialledCall(simulated, twiml, connect.get("action", ""), form)


async def after_stream(dialled: DialledCall, auth_token: str, http: aiohttp.ClientSession) -> str:
    """Once the service closed the stream, Twilio requests the `<Connect action>` URL."""
    if not dialled.action_url:
        return ""
    form = {**dialled.form, "CallStatus": "in-progress"}
    headers = _signed_headers(auth_token, dialled.action_url, form)
    async with http.post(dialled.action_url, data=form, headers=headers) as response:
        dialled.after_stream_twiml = await response.text()
    return dialled.after_stream_twiml
