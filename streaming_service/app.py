"""The streaming service's HTTP surface: health, readiness, status, metrics, and the Twilio stream."""

from __future__ import annotations

from aiohttp import web

from shared.settings import Settings
from streaming_service.call_recorder import CallRecorder, LoggingCallRecorder
from streaming_service.call_session import Engines
from streaming_service.service_state import STATE, ServiceState, TenantSettingsLookup, no_tenant_settings
from streaming_service.stream_handler import handle_twilio_stream

SERVICE_NAME = "Programmable Voice Agent"


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "healthy", "service": SERVICE_NAME})


async def ready(request: web.Request) -> web.Response:
    state: ServiceState = request.app[STATE]
    if state.draining:
        return web.json_response({"status": "draining", "active_calls": len(state.sessions)}, status=503)
    return web.json_response({"status": "ready", "active_calls": len(state.sessions)})


async def websocket_metrics(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].metrics())


async def websocket_status(request: web.Request) -> web.Response:
    state: ServiceState = request.app[STATE]
    return web.json_response({"sessions": [s.snapshot() for s in state.sessions.values()]})


def create_app(settings: Settings, engines: Engines, recorder: CallRecorder | None = None,
               tenant_settings: TenantSettingsLookup | None = None) -> web.Application:
    app = web.Application(client_max_size=settings.max_ws_message_bytes)
    app[STATE] = ServiceState(settings=settings, engines=engines, recorder=recorder or LoggingCallRecorder(),
                                tenant_settings=tenant_settings or no_tenant_settings)
    app.router.add_get("/", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/websocket-metrics", websocket_metrics)
    app.router.add_get("/websocket-status", websocket_status)
    app.router.add_get("/twilio-stream", handle_twilio_stream)
    return app
