"""Every core of a task: `WORKERS` processes serving one port, and a supervisor doing the task's own duties.

With `WORKERS` > 1, `python -m streaming_service` becomes a supervisor that spawns that many workers. Each
worker is the ordinary service (streaming_service/__main__.py `run`) listening with SO_REUSEPORT, so the
kernel spreads new connections across them. Each worker keeps its own:
- admission cap: `max_calls_per_task` split across the workers (`worker_cap`; 0 stays "no cap"). The kernel
  picks the worker by a hash of the connection, not by load, so a worker may refuse a call (503) while
  another still has room; the task as a whole never holds more than `max_calls_per_task` (or one call per
  worker when the cap is smaller than the worker count: a share of 0 would mean "no cap").
- draining: the supervisor forwards SIGTERM to every worker; each drains its own live calls.

What belongs to the whole task runs in the supervisor alone, from the workers' live-call counts in a small
shared-memory array (one slot per worker, written only by that worker on every register/unregister):
- the `ActiveCalls` EMF gauge (the sum of the slots, on the usual fixed cadence);
- ECS scale-in protection (set while any worker has a call, cleared when all are idle or the task drains).
Workers run neither. The supervisor reads the slots every `POLL_S`, so protection follows a new call
within that time.

The supervisor is a small process: it imports this module, the settings, logging and the metrics writer, never
the service itself (streaming_service/__main__.py imports the app and engines inside `run`, which only workers
call): about 50 MB idle where a full service is about 160 MB (bench/memory_bench.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Sequence
from multiprocessing.process import BaseProcess
from typing import Any

import aiohttp

from shared.settings import Settings, get_settings
from shared.structured_logging import configure_logging
from streaming_service.task_protection import TaskProtection, Wanted
from streaming_service.telemetry.service_telemetry import ServiceTelemetry

log = logging.getLogger("voice_agent.workers")

POLL_S = 0.2  # how often the supervisor reads the workers' live-call counts and checks they are alive
STOP_GRACE_S = 10.0  # beyond the drain timeout, before a worker that has not exited is killed
RESPAWN_AFTER_S = 5.0  # a worker that dies is replaced, but no sooner than this after its last start
_SPAWN = multiprocessing.get_context("spawn")  # fresh interpreters: no loop, thread or socket inherited


def worker_cap(task_cap: int, workers: int, index: int) -> int:
    """Worker `index`'s share of the task's cap; the shares add up to the cap (0: no cap anywhere)."""
    if task_cap <= 0:
        return 0
    share = task_cap // workers + (1 if index < task_cap % workers else 0)
    return max(1, share)


class _WorkerTag(logging.Filter):
    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.index
        return True


def _worker(index: int, workers: int, live: Any) -> None:
    """A worker process: the service on the shared port, reporting its live calls into `live[index]`."""
    from streaming_service.__main__ import run  # here, not at the top: __main__ imports this module
    from streaming_service.server import run_event_loop

    settings = get_settings()
    configure_logging(settings.log_level)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_WorkerTag(index))
    cap = worker_cap(settings.max_calls_per_task, workers, index)
    settings = settings.model_copy(update={"max_calls_per_task": cap})

    def changed(live_calls: int) -> None:
        live[index] = live_calls

    run_event_loop(run(settings, live_calls_changed=changed, reuse_port=True))


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.count = settings.workers
        self.live = _SPAWN.Array("i", self.count, lock=False)
        self.processes: list[BaseProcess] = []
        self.started_at: list[float] = [0.0] * self.count  # monotonic, per worker slot
        self.draining = False

    def _spawn(self, index: int) -> BaseProcess:
        self.live[index] = 0
        self.started_at[index] = time.monotonic()
        process = _SPAWN.Process(target=_worker, args=(index, self.count, self.live), name=f"worker-{index}")
        process.start()
        log.info("worker started", extra={"worker": index, "worker_pid": process.pid})
        return process

    def live_calls(self) -> int:
        return sum(self.live[:])

    def wanted_protection(self) -> Wanted:
        return Wanted(live_calls=self.live_calls(), draining=self.draining)

    def _respawn_dead(self) -> None:
        for index, process in enumerate(self.processes):
            if not process.is_alive() and time.monotonic() - self.started_at[index] >= RESPAWN_AFTER_S:
                log.error("worker exited; starting another", extra={"worker": index,
                                                                     "exit_code": process.exitcode})
                self.processes[index] = self._spawn(index)

    async def run(self) -> int:
        telemetry = ServiceTelemetry.from_settings(self.settings)
        tasks: list[asyncio.Task[None]] = []
        if telemetry.metrics.writer.enabled:
            tasks.append(asyncio.create_task(telemetry.report_active_calls(self.live_calls)))
        protection = TaskProtection(self.settings.ecs_agent_uri) if self.settings.ecs_agent_uri else None
        if protection is not None:
            tasks.append(asyncio.create_task(protection.run(self.wanted_protection)))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        self.processes = [self._spawn(i) for i in range(self.count)]
        log.info("supervising", extra={"workers": self.count, "port": self.settings.port})
        seen = -1
        try:
            while not stop.is_set():
                total = self.live_calls()
                if total != seen:
                    seen = total
                    if protection is not None:
                        protection.changed()
                self._respawn_dead()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(POLL_S):
                        await stop.wait()
            log.info("signal received: draining every worker", extra={"live_calls": self.live_calls()})
            self.draining = True  # a draining task gives up scale-in protection: it is stopping anyway
            if protection is not None:
                protection.changed()
            return await self._stop_workers(self.processes)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if protection is not None and protection.enabled:
                async with aiohttp.ClientSession() as session:  # leave no protection behind a stopped task
                    await protection.set(session, False)
            await telemetry.close()

    async def _stop_workers(self, processes: Sequence[BaseProcess]) -> int:
        """SIGTERM to every worker (each drains its calls), wait up to the drain timeout; returns how many
        workers had to be killed."""
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGTERM)
        deadline = asyncio.get_running_loop().time() + self.settings.drain.drain_timeout_s + STOP_GRACE_S
        killed = 0
        for process in processes:
            remaining = max(0.0, deadline - asyncio.get_running_loop().time())
            await asyncio.to_thread(process.join, remaining)
            if process.is_alive():
                process.kill()
                await asyncio.to_thread(process.join)
                killed += 1
        log.info("workers stopped", extra={"killed": killed})
        return killed


def supervise(settings: Settings) -> int:
    """Run the workers until SIGTERM/SIGINT; the process's exit code."""
    killed = asyncio.run(Supervisor(settings).run())
    return 1 if killed else 0
