"""`make demo`: a whole booking call on the embedded defaults, printed as it happens.

The server (webhook, stream, offline engines, Postgres, Redis) runs in this process; the caller is
the Twilio simulator, speaking lines synthesised by the offline voice and answering what the agent
asks. At the end: the transcript with per-turn latency, the booking row read back from Postgres,
and both sides of the call in `demo.wav`.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from uuid import UUID

import aiohttp
from aiohttp import web

from local.call_simulator import SimulatedCall, after_stream, dial
from local.stack import DEMO_CALLER, DEMO_NUMBER, LocalStack, build_local_stack
from shared.settings import Settings
from shared.tenancy import bookings
from streaming_service.call_session import CallSession
from streaming_service.service_state import STATE

OPENING_LINE = "I'd like to book a haircut tomorrow at three"
CALLER_NAME = "John Smith"


def caller_reply(agent_said: str) -> str:
    """What a caller booking a haircut answers to the agent's last words."""
    said = agent_said.lower()
    if "name" in said:
        return f"My name is {CALLER_NAME}"
    if "number" in said and "call" in said:
        return "The number I'm calling from"
    if any(cue in said for cue in ("shall i", "should i", "is that right", "correct", "confirm", "book it")):
        return "Yes please"
    if "anything else" in said or "booked" in said:
        return "No thank you goodbye"
    if "what time" in said or "what day" in said:
        return "Tomorrow at three"
    return OPENING_LINE


def call_is_over(call: SimulatedCall, session: CallSession) -> bool:
    """The line is dead, or the agent has said goodbye (the service is closing the stream once its
    last words have played): the caller has nothing more to say."""
    return call.closed.is_set() or session.call.ending


@dataclass
class DemoResult:
    transcript: list[dict[str, Any]]
    turns: list[dict[str, Any]]
    booking: dict[str, Any] | None
    after_stream_twiml: str
    wav_path: Path
    engines: dict[str, str] = field(default_factory=dict)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TranscriptPrinter:
    """Prints transcript entries and turn latencies as the session produces them."""

    def __init__(self, out: TextIO, started: float) -> None:
        self.out = out
        self.started = started
        self._printed = 0
        self._turns = 0

    def update(self, session: CallSession) -> None:
        for entry in session.transcript[self._printed:]:
            who = "caller (heard as)" if entry["role"] == "caller" else "agent"
            note = f"  [cut off; caller heard: {entry['heard']!r}]" if entry["interrupted"] else ""
            self.out.write(f"[{time.monotonic() - self.started:5.1f}s] {who:>17}: {entry['text']}{note}\n")
        self._printed = len(session.transcript)
        for turn in session.turns[self._turns:]:
            self.out.write(f"{'':9}{'latency':>17}: voice-to-voice {turn['voice_to_voice_ms']} ms "
                           f"(STT {turn['stt_ms']} ms, agent first token {turn['llm_ttft_ms']} ms, "
                           f"TTS first byte {turn['tts_ttfb_ms']} ms)\n")
        self._turns = len(session.turns)
        self.out.flush()


async def _await(predicate: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the call did not progress")
        await asyncio.sleep(0.05)


async def place_demo_call(stack: LocalStack, out: TextIO, wav_path: Path, max_turns: int = 8) -> DemoResult:
    from streaming_service.engines.offline_tts import OfflineTextToSpeech

    caller_voice = OfflineTextToSpeech(voice="en-us", rate_wpm=150)
    token = stack.settings.secret("twilio_auth_token")
    started = time.monotonic()
    printer = TranscriptPrinter(out, started)
    async with aiohttp.ClientSession() as http:
        dialled = await dial(stack.base_url, to=DEMO_NUMBER, from_=DEMO_CALLER, auth_token=token, http=http)
        call = dialled.call
        await call.connect()
        state = stack.app[STATE]
        await _await(lambda: call.call_sid in state.sessions, 10)
        session = state.sessions[call.call_sid]
        await call.wait_for_agent(since=0, timeout_s=30)
        for _ in range(max_turns):
            printer.update(session)
            if call_is_over(call, session):
                break
            agent_said = next((e["text"] for e in reversed(session.transcript) if e["role"] == "agent"), "")
            line = caller_reply(agent_said)
            out.write(f"[{time.monotonic() - started:5.1f}s] {'caller says':>17}: {line}\n")
            audio = b"".join([chunk async for chunk in caller_voice.synthesize(line)])
            spoken_at = await call.say(audio)
            try:
                await call.wait_for_agent(since=spoken_at, quiet_s=1.0, timeout_s=30)
            except TimeoutError:
                out.write("(the agent did not answer in time)\n")
        await asyncio.wait_for(call.closed.wait(), timeout=15)
        printer.update(session)
        twiml = await after_stream(dialled, token, http)
        await call.hang_up()
    call.recording.write_wav(wav_path)
    booking = await _booking_for(stack, call.call_sid)
    return DemoResult(session.transcript, session.turns, booking, twiml, wav_path, stack.engines)


async def free_previous_demo_booking(stack: LocalStack) -> None:
    """A second `make demo` books the same slot: cancel what earlier demo calls booked, so it is free."""
    tenant = UUID(stack.demo_tenant_id)
    for booking in await bookings.list_bookings(stack.data.db, tenant, limit=500):
        if booking.customer_phone == DEMO_CALLER:
            await bookings.cancel_booking(stack.data.db, tenant, booking.id)


async def _booking_for(stack: LocalStack, call_sid: str) -> dict[str, Any] | None:
    """The booking this call made, as Postgres has it (read under the tenant, through RLS)."""
    rows = await bookings.list_bookings(stack.data.db, UUID(stack.demo_tenant_id), limit=500)
    made = [b.to_json() for b in rows if b.call_sid == call_sid]
    return made[-1] if made else None


async def run_demo(out: TextIO = sys.stdout, wav_path: Path = Path("demo.wav"),
                   settings: Settings | None = None, data_folder: Path | None = None) -> DemoResult:
    settings = settings or Settings()
    port = _free_port()
    stack = await build_local_stack(settings, port, data_folder)
    out.write(f"engines: {stack.engines}  data: Postgres {_where(stack.admin_dsn)}, Redis {_where(stack.redis_url)}\n")
    await free_previous_demo_booking(stack)
    runner = web.AppRunner(stack.app, handle_signals=False, shutdown_timeout=2)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        result = await place_demo_call(stack, out, wav_path)
    finally:
        await runner.cleanup()
    out.write(f"\nBooking read back from Postgres: {result.booking}\n")
    out.write(f"Twilio's next step after the stream (<Connect action>): {result.after_stream_twiml}\n")
    out.write(f"Both sides of the call: {result.wav_path} (left: caller, right: agent)\n")
    return result


def _where(url: str) -> str:
    return url.split("@")[-1].split("?")[0]
