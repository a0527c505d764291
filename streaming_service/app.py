"""The streaming service's HTTP surface: health, readiness, status, metrics, and the Twilio stream.

Public: `/`, `/ready` and `/twilio-stream` (signed by Twilio). Operator only (streaming_service/operator_access.py):
`/websocket-status` and `/websocket-metrics`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from shared.settings import Settings
from streaming_service.call_recorder import CallRecorder, LoggingCallRecorder
from streaming_service.call_session import Engines
from streaming_service.data_layer import ServiceData
from streaming_service.engines.factory import CallEngineFactory
from streaming_service.fleet_capacity import ServiceCapacity
from streaming_service.operator_access import require_operator
from streaming_service.service_state import STATE, ServiceState, TenantSettingsLookup, no_tenant_settings
from streaming_service.stream_guard import CLAIMS, PENDING, PendingSockets, StreamClaims
from streaming_service.stream_handler import handle_twilio_stream
from streaming_service.task_protection import TaskProtection
from streaming_service.telemetry.service_telemetry import ServiceTelemetry
from streaming_service.warm_up import warm_up_agents, warm_up_recognisers
from streaming_service.workers import WorkerSlot

SERVICE_NAME = "Programmable Voice Agent"


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "healthy", "service": SERVICE_NAME})


async def ready(request: web.Request) -> web.Response:
    state: ServiceState = request.app[STATE]
    if state.draining:
        return web.json_response({"status": "draining", "active_calls": len(state.sessions)}, status=503)
    if state.full:
        return web.json_response({"status": "full", "active_calls": len(state.sessions)}, status=503)
    return web.json_response({"status": "ready", "active_calls": len(state.sessions)})


async def websocket_metrics(request: web.Request) -> web.Response:
    state: ServiceState = request.app[STATE]
    require_operator(request, state.settings)
    return web.json_response(state.metrics())


async def websocket_status(request: web.Request) -> web.Response:
    """Live call SIDs and tenant ids: an operator's page, never the public's."""
    state: ServiceState = request.app[STATE]
    require_operator(request, state.settings)
    return web.json_response({"sessions": [s.snapshot() for s in state.sessions.values()]})


async def _telemetry_lifetime(app: web.Application) -> AsyncIterator[None]:
    """While serving: the periodic ActiveCalls gauge, and scale-in protection in ECS. At shutdown: spans
    flushed, protection cleared."""
    state = app[STATE]
    reporter = None
    if state.reports_task and state.telemetry.metrics.writer.enabled:
        reporter = asyncio.create_task(state.telemetry.report_active_calls(lambda: len(state.sessions)))
    heartbeat = None
    if state.capacity is not None:
        # The task's calls (every worker's) against the task's cap: the fleet sees room here exactly when
        # this worker would admit a call.
        heartbeat = asyncio.create_task(state.capacity.run(
            lambda: state.task_calls, state.settings.max_calls_per_task, lambda: state.draining,
            state.telemetry.metrics if state.telemetry.metrics.writer.enabled else None))
    protection = None
    if state.reports_task and state.settings.ecs_agent_uri:
        state.protection = TaskProtection(state.settings.ecs_agent_uri)
        protection = asyncio.create_task(state.protection.run(state.wanted_protection))
    yield
    for task in (reporter, protection, heartbeat):
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if state.capacity is not None:
        await state.capacity.leave()
    if state.protection is not None and state.protection.enabled:
        async with aiohttp.ClientSession() as session:  # leave no protection behind a stopped process
            await state.protection.set(session, False)
    await state.telemetry.close()


async def _warm_up(app: web.Application) -> None:
    await warm_up_agents()
    await warm_up_recognisers(app[STATE].engines.stt, app[STATE].engines.stt_fallback)


def create_app(settings: Settings, engines: Engines, recorder: CallRecorder | None = None,
               tenant_settings: TenantSettingsLookup | None = None,
               telemetry: ServiceTelemetry | None = None, stream_claims: StreamClaims | None = None,
               capacity: ServiceCapacity | None = None, data: ServiceData | None = None,
               worker: WorkerSlot | None = None) -> web.Application:
    """`stream_claims`: shared through the service's Redis when it has one, else held in this process.
    `capacity`: vendor budgets and fleet heartbeats through that Redis (None: no limits counted).
    `data`: where tenants' own vendor keys are read (None: every call uses the platform's accounts).
    `worker`: set in a worker of several; it then reports its live calls there, admits calls against the whole
    task's, and leaves the ActiveCalls gauge and scale-in protection to the supervisor
    (streaming_service/workers.py)."""
    app = web.Application(client_max_size=settings.max_ws_message_bytes)
    app[CLAIMS] = stream_claims or StreamClaims()
    app[PENDING] = PendingSockets(settings.stream_admission.max_pending_per_address)
    call_engines = CallEngineFactory(settings, engines, capacity, data)
    app[STATE] = ServiceState(settings=settings, engines=engines, recorder=recorder or LoggingCallRecorder(),
                                tenant_settings=tenant_settings or no_tenant_settings,
                                telemetry=telemetry or ServiceTelemetry.from_settings(settings),
                                capacity=capacity,
                                call_engines=call_engines.for_call, worker=worker)
    app.cleanup_ctx.append(_telemetry_lifetime)

    async def close_engines(_: web.Application) -> None:  # the app owns the engines it serves calls with
        await call_engines.aclose()

    app.on_cleanup.append(close_engines)
    app.on_startup.append(_warm_up)
    app.router.add_get("/", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/websocket-metrics", websocket_metrics)
    app.router.add_get("/websocket-status", websocket_status)
    app.router.add_get("/twilio-stream", handle_twilio_stream)
    return app
