"""Offline recogniser load: N streams decoding at once in one process, each fed in real time.

The offline recogniser is Deepgram's fallback and the `offline` overflow policy's recogniser; what one
stream costs sizes `CAPACITY__OFFLINE_STT_MAX_STREAMS`. Each stream hears the same ~7.5 s of synthesised
caller speech (two questions, a second of silence after each) in 20 ms frames paced by the clock. Reported
for 1, 2, 4 and 10 streams:

- CPU-s per stream per second of audio, of this process and its decoder hosts (the child processes that
  decode);
- wall time over audio time: above 1, the decoding falls behind the callers;
- how late this process's event loop ran (20 ms sleeps), p99 and worst: in the service, every call's
  audio and turn-taking waits that long.

    .venv/bin/python -m bench.offline_stt_load [--streams 1 2 4 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

from bench.call_bench import _pct, _proc_cpu_s
from bench.offline_stt_wer import synthesise_call_audio
from shared.audio import mulaw
from streaming_service.engines.base import SpeechToTextStream, TranscriptKind
from streaming_service.engines.offline_stt import OfflineSpeechToText
from streaming_service.engines.offline_tts import OfflineTextToSpeech

LINES = ["I would like to book a cleaning for next Tuesday morning please", "What are your opening hours on Saturday"]
TICK_S = mulaw.FRAME_MS / 1000


async def _caller_audio() -> bytes:
    tts = OfflineTextToSpeech()
    return b"".join([await synthesise_call_audio(tts, line) + mulaw.silence(1000) for line in LINES])


async def _finals(stream: SpeechToTextStream) -> list[str]:
    return [event.text async for event in stream.events() if event.kind is TranscriptKind.FINAL]


async def measure(streams: int, audio: bytes, stt: OfflineSpeechToText) -> dict[str, Any]:
    opened = [await stt.open_stream(f"bench-{i}") for i in range(streams)]
    heard = [asyncio.create_task(_finals(stream)) for stream in opened]
    late_ms: list[float] = []

    async def watch_loop() -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(TICK_S)
            late_ms.append((time.monotonic() - started - TICK_S) * 1000)

    watch = asyncio.create_task(watch_loop())
    cpu_before, started = _proc_cpu_s(os.getpid()), time.monotonic()
    for index, frame in enumerate(mulaw.frames(audio)):
        for stream in opened:
            await stream.send_audio(frame)
        await asyncio.sleep(max(0.0, started + (index + 1) * TICK_S - time.monotonic()))
    for stream in opened:
        await stream.close()
    finals = await asyncio.gather(*heard)
    wall_s, cpu_s = time.monotonic() - started, _proc_cpu_s(os.getpid()) - cpu_before
    watch.cancel()
    audio_s = mulaw.duration_ms(audio) / 1000
    return {"streams": streams, "cpu_s_per_stream_audio_s": round(cpu_s / streams / audio_s, 3),
            "wall_over_audio": round(wall_s / audio_s, 2),
            "loop_late_p99_ms": round(_pct(late_ms, 0.99), 1), "loop_late_max_ms": round(max(late_ms), 1),
            "heard": finals[0]}


async def run(counts: list[int]) -> list[dict[str, Any]]:
    audio, stt = await _caller_audio(), OfflineSpeechToText()
    await stt.warm_up()
    return [await measure(n, audio, stt) for n in counts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4, 10])
    args = parser.parse_args()
    for row in asyncio.run(run(args.streams)):
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
