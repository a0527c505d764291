"""The floor under the service's CPU per call: Twilio's 50 media messages a second per call through the same
parts the service uses, and nothing else (no session, no turns, no vendor SDK).

A bare aiohttp server on uvloop takes N callers' media (20 ms frames, paced), in stages that each add one step
of the service's per-frame path:

- `receive`: aiohttp reads each message and drops it;
- `parse`: `shared.twilio_media.parse_inbound` (orjson, base64, checks);
- `vad`: the caller speech detector on each frame (`streaming_service/voice_activity.py`; the frames are loud,
  so webrtcvad runs on every one, as while a caller talks);
- `forward`: each frame written to a WebSocket of its own per call, as the caller's speech goes to Deepgram
  (`UncompressedSocket.send_now`, streaming_service/engines/deepgram_socket.py), to a sink in another process.

    .venv/bin/python -m bench.media_floor_bench --calls 50 --seconds 20

The service in `bench/call_bench.py` does all of this and the call around it (turns, voice, agents); what it
spends above `forward` is what the call itself costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np
import uvloop
from aiohttp import web

from bench.call_bench import _proc_cpu_s, free_port
from shared import twilio_media as wire
from shared.audio import mulaw

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("receive", "parse", "vad", "forward")


def loud_frame() -> bytes:
    """20 ms of a 300 Hz tone at speech level: past the detector's energy floor, so webrtcvad runs."""
    t = np.arange(mulaw.FRAME_BYTES) / mulaw.SAMPLE_RATE
    return mulaw.encode((4000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16))


async def serve(stage: str, port: int, sink_port: int) -> None:
    from streaming_service.engines.deepgram_socket import UncompressedSocket
    from streaming_service.voice_activity import CallerSpeechDetector

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        vad = CallerSpeechDetector()
        sink = UncompressedSocket(f"ws://127.0.0.1:{sink_port}", {}) if stage == "forward" else None
        if sink is not None:
            await sink.open()
        async for msg in ws:
            if stage == "receive" or msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            event = wire.parse_inbound(msg.data)
            if not isinstance(event, wire.Media):
                continue
            if stage != "parse":
                vad.process(event.payload)
            if sink is not None:
                sink.send_now(event.payload)
        if sink is not None:
            await sink.close()
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


async def sink(port: int) -> None:
    from websockets.asyncio.server import ServerConnection, serve

    async def drain(connection: ServerConnection) -> None:
        async for _ in connection:
            pass

    async with serve(drain, "127.0.0.1", port, compression=None):
        print("ready", flush=True)
        await asyncio.Event().wait()


async def callers(port: int, calls: int, seconds: float) -> None:
    message = wire.InboundBuilder("MZ" + "0" * 32, "CA" + "0" * 32).media(loud_frame())

    async def one(session: aiohttp.ClientSession, index: int) -> None:
        await asyncio.sleep(index * mulaw.FRAME_MS / 1000 / calls)  # spread over a frame, as calls are
        async with session.ws_connect(f"http://127.0.0.1:{port}/") as ws:
            began, sent = time.monotonic(), 0
            while time.monotonic() - began < seconds:
                sent += 1
                await ws.send_str(message)
                await asyncio.sleep(max(0.0, began + sent * mulaw.FRAME_MS / 1000 - time.monotonic()))

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(one(session, i) for i in range(calls)))


def _start(*args: str) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-m", "bench.media_floor_bench", *args], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


def measure(stage: str, calls: int, seconds: float) -> dict[str, object]:
    port, sink_port = free_port(), free_port()
    sink_process = _start("--role", "sink", "--port", str(sink_port))
    server = _start("--role", "server", "--stage", stage, "--port", str(port), "--sink-port", str(sink_port))
    try:
        before = _proc_cpu_s(server.pid)
        uvloop.run(callers(port, calls, seconds))
        cpu_s = _proc_cpu_s(server.pid) - before
    finally:
        for process in (server, sink_process):
            process.kill()
            process.wait()
    return {"stage": stage, "calls": calls, "cpu_s_per_call_minute": round(cpu_s / (calls * seconds / 60), 3)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", choices=("bench", "server", "sink"), default="bench")
    parser.add_argument("--stage", choices=STAGES, default="receive")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--sink-port", type=int, default=0)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    if args.role == "server":
        uvloop.run(serve(args.stage, args.port, args.sink_port))
    elif args.role == "sink":
        uvloop.run(sink(args.port))
    else:
        for stage in STAGES:
            print(json.dumps(measure(stage, args.calls, args.seconds)), flush=True)


if __name__ == "__main__":
    main()
