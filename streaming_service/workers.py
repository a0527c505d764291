"""Every core of a task: `WORKERS` processes serving one port, and a supervisor doing the task's own duties.

With `WORKERS` > 1, `python -m streaming_service` becomes a supervisor that spawns that many workers. Each
worker is the ordinary service (streaming_service/__main__.py `run`), serving the connections the supervisor
hands it (`Dispatcher`): the supervisor alone listens on the port, accepts, and passes each connection's socket
to the worker with the fewest calls (SCM_RIGHTS over a socket pair; ties in turn). With SO_REUSEPORT the kernel
picked the worker by a hash of the connection, not by load, and the shares drifted apart at random: at 30
calls on two workers one held 22 (bench/worker_scaling.py), its vCPU past its limit while the other idled.
The supervisor binds the port at start (a port already taken stops it there) and accepts once a worker is
ready; until then connections wait in the listen backlog.
Each worker keeps its own:
- admission: every worker admits a call while the *task* is under `max_calls_per_task`, counting the calls
  (and the streams being admitted) of every worker from the shared slots below (`WorkerSlot`); the dispatch
  keeps the shares even, and a worker may still hold more than half the task's calls. Each worker checks and
  counts an admission in one step of its loop, so the task passes its cap only by calls that other workers
  admit in those same few microseconds (at most one each).
- draining: the supervisor forwards SIGTERM to every worker; each drains its own live calls.

What belongs to the whole task runs in the supervisor alone, from the workers' live-call counts in a small
shared-memory array (one slot per worker, written only by that worker whenever its count changes):
- the `ActiveCalls` EMF gauge (the sum of the slots, on the usual fixed cadence);
- ECS scale-in protection (set while any worker has a call, cleared when all are idle or the task drains).
Workers run neither. The supervisor reads the slots every `POLL_S`, so protection follows a new call
within that time.

A worker that dies is replaced. Its children outlive it: each offline recogniser host leaves once its worker is
gone (streaming_service/engines/offline_stt.py). In the container the supervisor is PID 1, so those orphans
become its children, and a PID 1 that never waits for them keeps every one as a zombie, some more after each
crash. The supervisor makes itself their parent anywhere (a child subreaper, so it is the same on a laptop)
and reaps the exited ones on each poll, never a worker (multiprocessing waits for those itself).

The supervisor is a small process: it imports this module, the settings, logging and the metrics writer, never
the service itself (streaming_service/__main__.py imports the app and engines inside `run`, which only workers
call): about 50 MB idle where a full service is about 160 MB (bench/memory_bench.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
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
LISTEN_BACKLOG = 1024
_READY = b"ready"  # a worker to the supervisor, once it serves: connections may come
_CONNECTION = b"c"  # the supervisor to a worker, carrying one accepted connection's socket
_SPAWN = multiprocessing.get_context("spawn")  # fresh interpreters: no loop, thread or socket inherited
_PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


@dataclass(frozen=True)
class WorkerSlot:
    """A worker's slot in the task's shared call counts: it writes its own, reads the others'."""

    live: Any  # multiprocessing Array("i"), one slot per worker
    index: int

    def publish(self, calls: int) -> None:
        self.live[self.index] = calls

    def others(self) -> int:
        """The calls on the task's other workers (a word-sized read of each slot: no lock needed)."""
        return sum(self.live[:]) - self.live[self.index]


class _WorkerTag(logging.Filter):
    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.index
        return True


def _worker(index: int, live: Any, channel: socket.socket) -> None:
    """A worker process: the service on the connections the supervisor hands it over `channel`, reporting its
    live calls into `live[index]`."""
    from streaming_service.__main__ import run  # here, not at the top: __main__ imports this module
    from streaming_service.server import run_event_loop

    settings = get_settings()
    configure_logging(settings.log_level)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_WorkerTag(index))
    run_event_loop(run(settings, worker=WorkerSlot(live, index), handed=channel))


def take_handed_connections(channel: socket.socket, serve: Callable[[socket.socket], Any]) -> None:
    """In a worker: serve each connection the supervisor passes over `channel`, and tell it this worker is
    ready for them. `serve(sock)` starts serving one accepted socket; taking stops when the supervisor is gone."""
    loop = asyncio.get_running_loop()
    channel.setblocking(False)
    serving: set[asyncio.Future[Any]] = set()

    def take() -> None:
        while True:
            try:
                data, fds, _flags, _address = socket.recv_fds(channel, 16, 8)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.error("connections from the supervisor stopped", extra={"error": str(exc)})
                stop()
                return
            if not data and not fds:  # the supervisor is gone
                stop()
                return
            for fd in fds:
                conn = socket.socket(fileno=fd)
                conn.setblocking(False)
                started = asyncio.ensure_future(serve(conn))
                serving.add(started)
                started.add_done_callback(_served(serving, conn))

    def stop() -> None:
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(channel.fileno())

    loop.add_reader(channel.fileno(), take)
    channel.send(_READY)


def _served(serving: set[asyncio.Future[Any]], conn: socket.socket) -> Callable[[asyncio.Future[Any]], None]:
    def done(started: asyncio.Future[Any]) -> None:
        serving.discard(started)
        if not started.cancelled() and started.exception() is not None:  # e.g. reset before it was served
            log.info("handed connection not served", extra={"error": str(started.exception())})
            conn.close()
    return done


class Dispatcher:
    """In the supervisor: the port's one listening socket; each connection goes to the ready worker with the
    fewest calls, counting those just sent that its slot does not show yet."""

    def __init__(self, live: Any, count: int, port: int) -> None:
        self.live = live
        self.port = port
        self.channels: list[socket.socket | None] = [None] * count
        self.ready = [False] * count
        self.sent = [0] * count  # connections sent since `sent_reset_at`: not yet calls in the slots
        self.sent_reset_at = time.monotonic()
        self.next = 0  # ties go in turn
        self.listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None

    def channel_for(self, index: int) -> socket.socket:
        """A new worker's end of its channel (passed to it at spawn: the supervisor closes its copy after)."""
        self.forget(index)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        self.channels[index] = ours
        asyncio.get_running_loop().add_reader(ours.fileno(), self._heard, index, ours)
        return theirs

    def forget(self, index: int) -> None:
        channel, self.channels[index], self.ready[index] = self.channels[index], None, False
        if channel is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(channel.fileno())
            channel.close()

    def _heard(self, index: int, channel: socket.socket) -> None:
        try:
            message = channel.recv(16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            message = b""
        if message == _READY:
            self.ready[index] = True
            log.info("worker ready for connections", extra={"worker": index})
            if self._accepting is None and self.listener is not None:
                self._accepting = asyncio.create_task(self._accept(self.listener))
        elif not message and self.channels[index] is channel:  # the worker is gone
            self.forget(index)

    def listen(self) -> None:
        self.listener = socket.create_server(("0.0.0.0", self.port), backlog=LISTEN_BACKLOG)
        self.listener.setblocking(False)

    async def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _address = await loop.sock_accept(listener)
            except OSError as exc:  # e.g. out of file descriptors: keep the port, try again shortly
                log.error("accept failed", extra={"error": str(exc)})
                await asyncio.sleep(0.1)
                continue
            with conn:
                self.dispatch(conn)

    def dispatch(self, conn: socket.socket) -> int | None:
        """Pass `conn` to a worker; returns which, or None when no worker is ready (the caller is refused)."""
        if time.monotonic() - self.sent_reset_at >= POLL_S * 5:  # by now what was sent shows in the slots
            self.sent = [0] * len(self.sent)
            self.sent_reset_at = time.monotonic()
        count = len(self.channels)
        order = sorted((i for i in range(count) if self.ready[i]),
                       key=lambda i: (self.live[i] + self.sent[i], (i - self.next) % count))
        for index in order:
            channel = self.channels[index]
            if channel is None:
                continue
            try:
                socket.send_fds(channel, [_CONNECTION], [conn.fileno()])
            except (BlockingIOError, InterruptedError):
                continue  # its queue is full: the next worker
            except OSError:
                self.forget(index)  # gone
                continue
            self.sent[index] += 1
            self.next = (index + 1) % count
            return index
        log.error("no worker ready: connection refused")
        return None

    async def close(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
        if self.listener is not None:
            self.listener.close()
        for index in range(len(self.channels)):
            self.forget(index)


def become_subreaper() -> bool:
    """Orphans of this process's descendants become its children, as they would if it were PID 1 (Linux)."""
    try:
        return bool(ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def reap_orphans(own: set[int]) -> list[int]:
    """Wait for the children that have exited and are not in `own` (adopted orphans); returns their pids.
    Only exited ones: a live child is never waited for, so none is taken from the code that started it."""
    reaped = []
    for pid in sorted(child_pids() - own):
        if process_state(pid) == "Z":
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    reaped.append(pid)
    return reaped


def child_pids(pid: int | None = None) -> set[int]:
    """A process's children (this one's by default), from /proc: orphans it adopted included."""
    pids: set[int] = set()
    for task in Path(f"/proc/{pid or 'self'}/task").glob("*"):
        with contextlib.suppress(OSError):
            pids.update(int(pid) for pid in (task / "children").read_text().split())
    return pids


def process_state(pid: int) -> str:
    """/proc's one-letter state ("R", "S", "Z" for exited and not yet waited for...); "" once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return ""


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.count = settings.workers
        self.live = _SPAWN.Array("i", self.count, lock=False)
        self.processes: list[BaseProcess] = []
        self.started_at: list[float] = [0.0] * self.count  # monotonic, per worker slot
        self.draining = False
        self.dispatcher = Dispatcher(self.live, self.count, settings.port)

    def _spawn(self, index: int) -> BaseProcess:
        self.live[index] = 0
        self.started_at[index] = time.monotonic()
        channel = self.dispatcher.channel_for(index)
        process = _SPAWN.Process(target=_worker, args=(index, self.live, channel), name=f"worker-{index}")
        process.start()
        channel.close()  # the worker has its own copy now
        log.info("worker started", extra={"worker": index, "worker_pid": process.pid})
        return process

    def live_calls(self) -> int:
        return sum(self.live[:])

    def wanted_protection(self) -> Wanted:
        return Wanted(live_calls=self.live_calls(), draining=self.draining)

    def _reap_orphans(self) -> None:
        own = {p.pid for p in self.processes if p.pid is not None}  # multiprocessing waits for its workers
        if reaped := reap_orphans(own):
            log.info("orphans reaped", extra={"pids": reaped})

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
        subreaper = become_subreaper()
        self.dispatcher.listen()
        self.processes = [self._spawn(i) for i in range(self.count)]
        log.info("supervising", extra={"workers": self.count, "port": self.settings.port, "subreaper": subreaper})
        seen = -1
        try:
            while not stop.is_set():
                total = self.live_calls()
                if total != seen:
                    seen = total
                    if protection is not None:
                        protection.changed()
                self._respawn_dead()
                self._reap_orphans()
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
            await self.dispatcher.close()
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
