"""Run the three vendor fakes in their own process (for benchmarks and the soak run).

Prints one JSON line with their URLs, then serves until stdin closes or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

import uvloop

from tests.fakes.deepgram_server import FakeDeepgram
from tests.fakes.elevenlabs_server import FakeElevenLabs
from tests.fakes.openai_server import FakeOpenAI


async def serve(llm_first_token_ms: int, tts_first_byte_ms: int) -> None:
    dg, el, oa = FakeDeepgram(), FakeElevenLabs(), FakeOpenAI()
    el.first_byte_delay_s = tts_first_byte_ms / 1000
    oa.first_token_delay_s = llm_first_token_ms / 1000
    for fake in (dg, el, oa):
        await fake.start()
    print(json.dumps({"deepgram": dg.ws_url, "deepgram_key": dg.api_key, "elevenlabs": el.base_url,
                      "elevenlabs_key": el.api_key, "openai": oa.base_url, "openai_key": oa.api_key}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.readline() else None)
    await stop.wait()
    for fake in (dg, el, oa):
        await fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--llm-first-token-ms", type=int, default=0)
    parser.add_argument("--tts-first-byte-ms", type=int, default=0)
    args = parser.parse_args()
    uvloop.run(serve(args.llm_first_token_ms, args.tts_first_byte_ms))  # as the service: cheap per event


if __name__ == "__main__":
    main()
