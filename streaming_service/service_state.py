"""Process-wide state of the streaming service: live sessions, counters, draining."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from shared.settings import Settings
from streaming_service.call_recorder import CallRecorder
from streaming_service.call_session import CallSession, Engines
from streaming_service.engines.base import CallContext
from streaming_service.phrase_cache import PhraseCache
from streaming_service.task_protection import TaskProtection, Wanted
from streaming_service.telemetry.service_telemetry import ServiceTelemetry
from streaming_service.workers import WorkerSlot

log = logging.getLogger("voice_agent.service")

TenantSettingsLookup = Callable[[str], Awaitable[dict[str, Any]]]
# Engines for one call (its tenant's accounts, capacity leases; "offline" capacity mode: the offline twins).
CallEngineSource = Callable[[CallContext, str], Awaitable[Engines]]


async def no_tenant_settings(tenant_id: str) -> dict[str, Any]:
    return {}


@dataclass
class ServiceState:
    settings: Settings
    engines: Engines
    recorder: CallRecorder
    phrases: PhraseCache = field(default_factory=PhraseCache)
    tenant_settings: TenantSettingsLookup = no_tenant_settings
    telemetry: ServiceTelemetry = field(default_factory=ServiceTelemetry.off)
    sessions: dict[str, CallSession] = field(default_factory=dict)
    connection_attempts: int = 0
    rejected_connections: int = 0
    active_connections: int = 0
    protocol_errors: int = 0
    calls_total: int = 0
    draining: bool = False
    refused_full: int = 0
    admitting: int = 0  # upgraded streams whose session is not registered yet (they count against the cap)
    protection: TaskProtection | None = None
    call_engines: CallEngineSource | None = None
    capacity: Any = None  # streaming_service.fleet_capacity.ServiceCapacity when Redis is shared
    # In a worker of several: its slot in the task's shared call counts. The task-level duties (ActiveCalls
    # gauge, scale-in protection) are then the supervisor's, from those counts (streaming_service/workers.py).
    worker: WorkerSlot | None = None
    _drained: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def reports_task(self) -> bool:
        return self.worker is None

    @property
    def own_calls(self) -> int:
        """This process's calls, the streams it is admitting included."""
        return len(self.sessions) + self.admitting

    @property
    def task_calls(self) -> int:
        """The task's calls: this process's, and in a worker of several the other workers' too."""
        return self.own_calls + (self.worker.others() if self.worker is not None else 0)

    @property
    def full(self) -> bool:
        cap = self.settings.max_calls_per_task
        return cap > 0 and self.task_calls >= cap

    def admitting_changed(self, by: int) -> None:
        self.admitting += by
        self._changed()

    def wanted_protection(self) -> Wanted:
        return Wanted(live_calls=len(self.sessions), draining=self.draining)

    def _changed(self) -> None:
        if self.protection is not None:
            self.protection.changed()
        if self.worker is not None:
            self.worker.publish(self.own_calls)

    def register(self, session: CallSession) -> None:
        self.sessions[session.call.call_sid] = session
        self.calls_total += 1
        self._drained.clear()
        self._changed()

    def unregister(self, session: CallSession) -> None:
        if self.sessions.get(session.call.call_sid) is session:
            del self.sessions[session.call.call_sid]
        self._changed()
        if not self.sessions:
            self._drained.set()

    async def engines_for(self, call: CallContext, capacity_mode: str = "") -> Engines:
        if self.call_engines is not None:
            return await self.call_engines(call, capacity_mode)
        if capacity_mode == "offline":
            from streaming_service.engines.factory import offline_engines

            return offline_engines(self.engines)
        return self.engines

    def has_call(self, call_sid: str) -> bool:
        return call_sid in self.sessions

    def metrics(self) -> dict[str, Any]:
        return {
            "active_connections": self.active_connections,
            "active_calls": len(self.sessions),
            "connection_attempts": self.connection_attempts,
            "rejected_connections": self.rejected_connections,
            "protocol_errors": self.protocol_errors,
            "calls_total": self.calls_total,
            "barge_ins": sum(s.barge_ins for s in self.sessions.values()),
            "draining": self.draining,
            "full": self.full,
            "refused_full": self.refused_full,
            "max_calls": self.settings.max_calls_per_task,
            "scale_in_protected": self.protection.enabled if self.protection else None,
        }

    async def drain(self, timeout_s: float) -> int:
        """Refuse new streams, let live calls finish; returns how many were still live at the end."""
        self.draining = True
        self._changed()  # a draining task gives up scale-in protection: it is stopping anyway
        started = time.monotonic()
        log.info("draining", extra={"live_calls": len(self.sessions), "timeout_s": timeout_s})
        if self.sessions:
            self._drained.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), timeout=timeout_s)
        remaining = len(self.sessions)
        for session in list(self.sessions.values()):
            await session.end_now("service shutting down")
        log.info("drained", extra={"cut_calls": remaining, "waited_s": round(time.monotonic() - started, 1)})
        return remaining


STATE: web.AppKey[ServiceState] = web.AppKey("state", ServiceState)
