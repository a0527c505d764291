"""A stall of the service's event loop is logged with its length: `python -m streaming_service` in its own
process, stopped (SIGSTOP) for 400 ms as a CPU-bound step or a thread holding the GIL would stop it."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp

from bench.call_bench import loop_stalls
from tests.chaos.service_process import ServiceProcess
from tests.e2e.conftest import wait_until


async def test_the_serving_process_logs_a_stall_of_its_loop(tmp_path: Path) -> None:
    with ServiceProcess(tmp_path / "service.log", {}) as service:
        async with aiohttp.ClientSession() as http:
            await service.start(http)
            await asyncio.sleep(0.5)
            # Start-up's own pauses (warm-ups, the heap freeze) are not counted.
            assert loop_stalls(service.log_path) == [0, 0]
            os.kill(service.pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(0.4)
            finally:
                os.kill(service.pid, signal.SIGCONT)
            await wait_until(lambda: loop_stalls(service.log_path)[0] > 0, timeout_s=10)
    assert loop_stalls(service.log_path)[1] >= 350
