"""A stall of the service's event loop is logged with its length: `python -m streaming_service` in its own
process, stopped (SIGSTOP) for 400 ms as a CPU-bound step or a thread holding the GIL would stop it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import aiohttp

from tests.chaos.service_process import ServiceProcess
from tests.e2e.conftest import wait_until


def _stalls(service: ServiceProcess) -> list[int]:
    found = []
    for line in service.log_text().splitlines():
        if '"event loop stalled"' in line:
            found.append(int(json.loads(line)["stalled_ms"]))
    return found


async def test_the_serving_process_logs_a_stall_of_its_loop(tmp_path: Path) -> None:
    with ServiceProcess(tmp_path / "service.log", {}) as service:
        async with aiohttp.ClientSession() as http:
            await service.start(http)
            await asyncio.sleep(0.5)
            assert _stalls(service) == []  # start-up's own pauses (warm-ups, the heap freeze) are not counted
            assert service.server is not None
            os.kill(service.server.pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(0.4)
            finally:
                os.kill(service.server.pid, signal.SIGCONT)
            await wait_until(lambda: bool(_stalls(service)), timeout_s=10)
    assert max(_stalls(service)) >= 350
