"""The caller simulator behaves as Twilio does: marks after playback, clear echoes pending marks at
once, and a line the service hung up never leaves a speaker waiting."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from local.call_simulator import SimulatedCall
from shared import twilio_media as wire
from tests.e2e.conftest import free_port


async def _serve(handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_get("/twilio-stream", handler)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"ws://127.0.0.1:{port}/twilio-stream"


async def test_marks_echo_only_after_their_audio_played_and_clear_echoes_pending_at_once():
    seen: list[tuple[float, str]] = []
    stream_sid: list[str] = []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            event = wire.parse_inbound(msg.data)
            if isinstance(event, wire.Start):
                stream_sid.append(event.stream_sid)
                sent_at = time.monotonic()
                await ws.send_str(wire.media_message(event.stream_sid, b"\x00" * 8000))  # one second
                await ws.send_str(wire.mark_message(event.stream_sid, "first"))
                await ws.send_str(wire.media_message(event.stream_sid, b"\x00" * 8000))
                await ws.send_str(wire.mark_message(event.stream_sid, "second"))
                seen.append((sent_at, "sent"))
            elif isinstance(event, wire.Mark):
                seen.append((time.monotonic(), event.name))
                if event.name == "first":
                    await ws.send_str(wire.clear_message(stream_sid[0]))
                    seen.append((time.monotonic(), "clear"))
        return ws

    runner, url = await _serve(handler)
    try:
        async with SimulatedCall(url, custom_parameters={}) as call:
            for _ in range(200):
                if any(name == "second" for _, name in seen):
                    break
                await asyncio.sleep(0.02)
    finally:
        await runner.cleanup()
    times = dict((name, at) for at, name in seen)
    assert times["first"] - times["sent"] >= 0.95  # echoed only after its second of audio played
    # The pending mark came back at once after the clear, not after the second of audio before it played
    # (a bound in audio terms, loose enough for a loaded machine).
    assert times["second"] - times["clear"] < 0.5
    assert call.recording.agent  # played audio was recorded


async def test_say_returns_when_the_service_hangs_up_mid_sentence():
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if isinstance(wire.parse_inbound(msg.data), wire.Media):
                await ws.close()
        return ws

    runner, url = await _serve(handler)
    try:
        call = SimulatedCall(url, custom_parameters={})
        await call.connect()
        await asyncio.wait_for(call.say(b"\x00" * 16000), timeout=5)  # 2 s of speech, line dies at once
        assert await asyncio.wait_for(call.say(b"\x00" * 160), timeout=1)  # and later lines don't wait
        await call.hang_up()
    finally:
        await runner.cleanup()
