"""A deploy: SIGTERM to `python -m streaming_service` (a real subprocess) with 50 live calls.

`/ready` turns 503 at once, new streams are refused with a clean HTTP 503 before any upgrade, every
live call keeps being served until it ends by itself or the drain time runs out, and none is cut
before that time."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from tests.chaos.harness import TimedCall
from tests.chaos.service_process import ServiceProcess
from tests.e2e.conftest import STREAM_SECRET, TWILIO_TOKEN
from tests.fakes.speech_marker import marked_speech

LIVE_CALLS = 50
DRAIN_S = 8.0


async def _dial(ws_url: str, http: aiohttp.ClientSession) -> TimedCall:
    from shared.stream_token import mint_stream_token

    sim = TimedCall(ws_url, custom_parameters={}, auth_token=TWILIO_TOKEN, http=http)
    sim.custom_parameters = {"tenant_id": "drain", "caller": "+15550001111",
                             "stream_token": mint_stream_token(STREAM_SECRET, "drain", sim.call_sid)}
    await sim.connect()
    await sim.wait_for_agent(since=0, timeout_s=60)
    return sim


async def _closed_at(sim: TimedCall) -> float:
    await sim.closed.wait()
    return time.monotonic()


@pytest.mark.parametrize("live_calls", [
    pytest.param(4, id="4-calls"),  # the short form, in `make test`
    pytest.param(LIVE_CALLS, id="50-calls", marks=pytest.mark.chaos_long),
])
async def test_sigterm_with_live_calls_cuts_none_before_the_drain_time(tmp_path: Path, live_calls: int) -> None:
    service = ServiceProcess(tmp_path / "service.log", {"DRAIN__DRAIN_TIMEOUT_S": str(DRAIN_S)})
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            await service.start(http)
            server, port = service.server, service.port
            assert server is not None
            ws_url = f"ws://127.0.0.1:{port}/twilio-stream"
            calls = list(await asyncio.gather(*(_dial(ws_url, http) for _ in range(live_calls))))
            watchers = [asyncio.create_task(_closed_at(sim)) for sim in calls]

            server.send_signal(signal.SIGTERM)
            signalled_at = time.monotonic()
            ready_status = 200
            for _ in range(50):  # the signal is handled on the service's loop: the first answers may race it
                async with http.get(f"http://127.0.0.1:{port}/ready") as response:
                    ready_status = response.status
                if ready_status != 200:
                    break
                await asyncio.sleep(0.02)
            assert ready_status == 503

            # A new stream during the drain: refused before the upgrade, with a clear status.
            newcomer = TimedCall(ws_url, custom_parameters={}, auth_token=TWILIO_TOKEN, http=http)
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await newcomer.connect()
            assert refused.value.status == 503

            # Live calls are still served: each half says something and hears an answer; the first half
            # then hangs up, the second half stays on until the drain time cuts it.
            async def talk(sim: TimedCall, hang_up: bool) -> float:
                spoken_at = await sim.say(marked_speech("Are you still there"))
                await sim.wait_for_agent(since=spoken_at, timeout_s=DRAIN_S)
                heard = sim.heard_ms_since(spoken_at)
                if hang_up:
                    await sim.hang_up()
                return heard

            heard = await asyncio.gather(*(talk(sim, i < live_calls // 2) for i, sim in enumerate(calls)))
            closed = await asyncio.wait_for(asyncio.gather(*watchers), timeout=DRAIN_S + 20)
            exit_code = await asyncio.to_thread(server.wait, 30)
    finally:
        service.stop()
    assert all(ms > 0 for ms in heard), "every live call was answered during the drain"
    stayed = closed[live_calls // 2:]
    cut_early = [t - signalled_at for t in stayed if t - signalled_at < DRAIN_S]
    assert cut_early == [], "calls cut before the drain time"
    assert all(sim.close_code == 1001 for sim in calls[live_calls // 2:])  # going away, at the deadline
    assert exit_code == 0
    log = service.log_text()
    assert "Traceback" not in log
    assert f'"cut_calls": {live_calls - live_calls // 2}' in log
