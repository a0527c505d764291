"""Run an aiohttp app until SIGTERM/SIGINT, then drain live calls before exiting.

Draining: `/ready` turns 503 at once (the load balancer stops sending new calls), new streams are
refused, live calls get up to `drain.drain_timeout_s` to finish, then the process exits.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
from collections.abc import Coroutine
from functools import partial
from typing import Any, TypeVar

import uvloop
from aiohttp import web

from streaming_service.service_state import STATE, ServiceState
from streaming_service.workers import take_handed_connections

log = logging.getLogger("voice_agent.server")

T = TypeVar("T")


def run_event_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run the deployed service (one process, or each worker) on uvloop: libuv's loop spends less CPU per
    socket event, timer and future than asyncio's, and a call is 100 socket messages a second."""
    return uvloop.run(main)


def freeze_start_up_heap() -> None:
    """Keep what start-up built (modules, pydantic schemas, the warmed agents SDK: some 200k objects) out of
    the cyclic collector's walks. A full collection walked them all: 120 to 220 ms in which no call's audio
    moved, about every 30 s at 50 calls. They stay alive anyway; what calls create is collected as before."""
    gc.collect()
    gc.freeze()
    log.info("start-up heap frozen", extra={"frozen_objects": gc.get_freeze_count(),
                                            "tracked_objects": len(gc.get_objects())})


async def serve_until_signalled(app: web.Application, host: str, port: int, drain_timeout_s: float,
                                started: asyncio.Event | None = None, handed: socket.socket | None = None) -> int:
    """Serve; on SIGTERM drain and stop. Returns how many calls were cut at the drain deadline.
    `handed`: a worker of several serves the connections its supervisor accepts and passes over this channel
    instead of listening itself (streaming_service/workers.py)."""
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=5)
    await runner.setup()  # the app's start-up (warm-up included) has run
    freeze_start_up_heap()
    loop = asyncio.get_running_loop()
    if handed is None:
        await web.TCPSite(runner, host, port).start()
    else:
        assert runner.server is not None
        take_handed_connections(handed, partial(loop.connect_accepted_socket, runner.server))
    state: ServiceState = app[STATE]
    # From here: start-up's own pauses (warm-ups, the freeze) are not stalls any call hears.
    loop_watch = asyncio.create_task(state.telemetry.watch_event_loop())
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("serving", extra={"host": host, "port": port})
    if started is not None:
        started.set()
    try:
        await stop.wait()
        log.info("signal received: draining")
        return await state.drain(drain_timeout_s)
    finally:
        loop_watch.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
