"""Every core of a task: `python -m streaming_service` with WORKERS=2 (a real subprocess: a supervisor and two
worker processes on one port) against the fake ECS agent (local/rehearsal/ecs.py).

Both workers take calls; scale-in protection covers the whole task (set while any worker has a call, cleared
when none has, given back at once on SIGTERM); SIGTERM drains the live calls on both workers, which keep
being answered until they hang up, and the task exits cleanly with none cut."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from local.rehearsal.ecs import EcsAgent
from streaming_service.task_protection import TASK_ROLE_ACTIONS
from streaming_service.workers import child_pids, process_state
from tests.chaos.harness import TimedCall
from tests.chaos.service_process import ServiceProcess
from tests.e2e.conftest import free_port, wait_until
from tests.fakes.speech_marker import marked_speech

TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/voiceagent/workers"
MAX_DIALS = 16  # calls placed until both workers hold one (the supervisor alternates them: two suffice)


def _log_entries(service: ServiceProcess) -> list[dict[str, object]]:
    entries = []
    for line in service.log_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def _worker_of(service: ServiceProcess, call_sid: str) -> object:
    for entry in _log_entries(service):
        if entry.get("call_sid") == call_sid and "worker" in entry:
            return entry["worker"]
    return None


async def _calls_on_both_workers(service: ServiceProcess, http: aiohttp.ClientSession
                                 ) -> dict[object, list[TimedCall]]:
    by_worker: dict[object, list[TimedCall]] = {}
    for _ in range(MAX_DIALS):
        sim = service.call(http, tenant_id="workers")
        await sim.connect()
        await sim.wait_for_agent(since=0, timeout_s=60)
        call_sid = sim.call_sid
        await wait_until(lambda: _worker_of(service, call_sid) is not None)  # noqa: B023 - awaited here
        by_worker.setdefault(_worker_of(service, call_sid), []).append(sim)
        if len(by_worker) == 2:
            return by_worker
    raise AssertionError(f"{MAX_DIALS} calls all landed on worker(s) {list(by_worker)}")


async def test_two_workers_share_the_port_and_the_task_drains_and_protects_as_one(tmp_path: Path) -> None:
    agent = EcsAgent(TASK_ARN, set(TASK_ROLE_ACTIONS))
    runner = web.AppRunner(agent.app(), shutdown_timeout=0.5)
    await runner.setup()
    agent_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", agent_port).start()
    service = ServiceProcess(tmp_path / "service.log", {
        "WORKERS": "2", "ECS_AGENT_URI": f"http://127.0.0.1:{agent_port}/v4/rehearsal",
        "DRAIN__DRAIN_TIMEOUT_S": "60"})
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            await service.start(http)
            server = service.server
            assert server is not None
            await wait_until(lambda: sorted(e.get("worker") for e in _log_entries(service)  # type: ignore[type-var]
                                            if e.get("message") == "serving") == [0, 1], timeout_s=60)

            # Calls on both workers: the task is protected; all hung up: protection cleared.
            first = await _calls_on_both_workers(service, http)
            await wait_until(lambda: agent.enabled)
            for sims in first.values():
                for sim in sims:
                    await sim.hang_up()
            await wait_until(lambda: not agent.enabled)

            # Live calls on both workers again, then a deploy's SIGTERM.
            second = await _calls_on_both_workers(service, http)
            await wait_until(lambda: agent.enabled)
            live = [sim for sims in second.values() for sim in sims]
            server.send_signal(signal.SIGTERM)
            # Draining gives protection up at once, while the calls are still live on both workers.
            await wait_until(lambda: not agent.enabled)
            assert not any(sim.closed.is_set() for sim in live)

            async def talk(sim: TimedCall) -> float:
                spoken_at = await sim.say(marked_speech("Are you still there"))
                await sim.wait_for_agent(since=spoken_at, timeout_s=30)
                heard = sim.heard_ms_since(spoken_at)
                await sim.hang_up()
                return heard

            heard = await asyncio.gather(*(talk(sim) for sim in live))
            exit_code = await asyncio.to_thread(server.wait, 60)
    finally:
        service.stop()
        await runner.cleanup()
    assert all(ms > 0 for ms in heard), "every live call on either worker was answered during the drain"
    assert exit_code == 0
    drained = [e for e in _log_entries(service) if e.get("message") == "drained"]
    assert sorted((e.get("worker"), e.get("cut_calls")) for e in drained) == [(0, 0), (1, 0)]
    assert [change.enabled for change in agent.history] == [False, True, False, True, False]
    # Each worker keeps what its start-up built out of the collector's walks (a full collection of it
    # stalled every call's audio 120-220 ms): what is left to walk is a small part of it.
    frozen = {e.get("worker"): e for e in _log_entries(service) if e.get("message") == "start-up heap frozen"}
    assert sorted(frozen) == [0, 1]  # type: ignore[type-var]
    assert all(int(e["frozen_objects"]) > 20 * int(e["tracked_objects"]) for e in frozen.values())  # type: ignore[call-overload]
    # ...and has loaded its offline recogniser (Deepgram's fallback) before taking calls.
    assert {e.get("worker") for e in _log_entries(service)
            if e.get("message") == "recogniser warmed up" and e.get("engine") == "pocketsphinx"} == {0, 1}
    assert "Traceback" not in service.log_text()


async def test_a_worker_that_dies_is_replaced_its_orphans_reaped_and_the_port_keeps_serving(tmp_path: Path) -> None:
    """A killed worker's recogniser host leaves after it; the supervisor (PID 1 in the container, a subreaper
    here) adopts and reaps it rather than keeping a zombie per crash."""
    service = ServiceProcess(tmp_path / "service.log", {"WORKERS": "2"})
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            await service.start(http)

            def serving() -> list[object]:
                return [e.get("worker") for e in _log_entries(service) if e.get("message") == "serving"]

            await wait_until(lambda: sorted(serving()) == [0, 1], timeout_s=60)  # type: ignore[type-var]
            (started,) = [e for e in _log_entries(service)
                          if e.get("message") == "worker started" and e.get("worker") == 1]
            worker = int(started["worker_pid"])  # type: ignore[call-overload]
            hosts = child_pids(worker)  # its offline recogniser's decoder host, started at warm-up
            assert hosts
            os.kill(worker, signal.SIGKILL)
            await wait_until(lambda: serving().count(1) == 2, timeout_s=60)

            def reaped() -> set[int]:
                return {pid for e in _log_entries(service) if e.get("message") == "orphans reaped"
                        for pid in e.get("pids", [])}  # type: ignore[attr-defined]

            await wait_until(lambda: hosts <= reaped(), timeout_s=15)
            assert not any(process_state(pid) for pid in hosts)  # gone, not zombies ("Z")
            async with service.call(http) as sim:  # the port still takes calls
                await sim.wait_for_agent(since=0, timeout_s=60)
                assert sim.agent_audio_ms() > 0
    finally:
        service.stop()
    assert any(e.get("message") == "worker exited; starting another" and e.get("worker") == 1
               for e in _log_entries(service))


async def test_calls_go_to_the_worker_with_fewest_and_the_task_admits_up_to_its_cap(tmp_path: Path) -> None:
    # The supervisor hands each connection to the worker with the fewest calls: one at a time, they alternate
    # (with SO_REUSEPORT the kernel's hash kept 8 calls even at every step about one time in sixteen). The
    # task's cap holds across both workers (fixed halves of it refused calls the task had room for).
    cap = 8
    service = ServiceProcess(tmp_path / "service.log", {"WORKERS": "2", "MAX_CALLS_PER_TASK": str(cap)})
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            await service.start(http)
            await wait_until(lambda: sorted(e.get("worker") for e in _log_entries(service)  # type: ignore[type-var]
                                            if e.get("message") == "serving") == [0, 1], timeout_s=60)
            calls = [service.call(http, tenant_id="workers") for _ in range(cap)]
            for sim in calls:  # one at a time: each registered (and counted by both workers) before the next
                await sim.connect()
                await wait_until(lambda: _worker_of(service, sim.call_sid) is not None)  # noqa: B023 - awaited here
            placed = [_worker_of(service, sim.call_sid) for sim in calls]
            assert all(abs(placed[:n].count(0) - placed[:n].count(1)) <= 1 for n in range(1, cap + 1)), placed
            over = service.call(http, tenant_id="workers")
            with pytest.raises(aiohttp.WSServerHandshakeError) as full:
                await over.connect()
            assert full.value.status == 503
            for sim in calls:
                await sim.hang_up()
            # Room again once the calls have ended, on whichever worker the next call lands.
            again = service.call(http, tenant_id="workers")
            await wait_until(lambda: service.log_text().count('"message": "call closed"') == cap, timeout_s=30)
            await again.connect()
            await wait_until(lambda: _worker_of(service, again.call_sid) is not None)
            await again.hang_up()
    finally:
        service.stop()
    assert sorted(placed) == [0] * 4 + [1] * 4  # type: ignore[type-var]
    refusals = [e for e in _log_entries(service) if e.get("message") == "stream refused: task at its call cap"]
    assert len(refusals) == 1
    assert "Traceback" not in service.log_text()
