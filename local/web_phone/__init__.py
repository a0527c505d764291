"""The local web phone (`/phone`) and live call view (`/calls`), mounted by `voice-agent serve`.

Operator pages only (`require_operator`: direct loopback, or `Authorization: Bearer OPERATOR_TOKEN`);
they are part of the local one-process server, never of the deployed streaming service.

- `/phone`: talk to the agent from a browser. The page speaks Twilio's Media Streams protocol over a
  relay that adds Twilio's signature (see `placing.py`); its AudioWorklet captures the microphone as
  8 kHz mu-law and plays the agent with Twilio's buffer, mark and `clear` rules.
- `/calls`: a tenant's live and recent calls, read through the tenant API.
- Both follow calls live through `live_feed.py`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from local.web_phone.live_feed import LIVE_CALLS, SETTINGS, LiveCalls, call_events, tap_calls
from local.web_phone.placing import BACKGROUND, TICKETS, Background, Tickets, cancel_background, place_call, relay
from local.web_phone.tenant_access import (
    TENANT_KEYS,
    TenantKeys,
    get_recording,
    list_tenants,
    live_calls,
    save_recording,
    tenant_api,
)
from shared.settings import Settings
from streaming_service.operator_access import require_operator
from streaming_service.service_state import STATE

STATIC = Path(__file__).parent / "static"
_PAGES = {"/phone": "phone.html", "/calls": "calls.html"}
_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}


def _page(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def serve(request: web.Request) -> web.StreamResponse:
        require_operator(request, request.app[SETTINGS])
        return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-store"})

    return serve


async def _static(request: web.Request) -> web.StreamResponse:
    require_operator(request, request.app[SETTINGS])
    name = request.match_info["name"]
    path = STATIC / name
    if "/" in name or name.startswith(".") or path.suffix not in _STATIC_TYPES or not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={"Content-Type": _STATIC_TYPES[path.suffix], "Cache-Control": "no-store"})


def mount_web_phone(app: web.Application, settings: Settings, admin_dsn: str, data_folder: Path) -> None:
    """Add the pages and their API to the local server's app (before it starts)."""
    app[SETTINGS] = settings
    app[LIVE_CALLS] = LiveCalls()
    app[TICKETS] = Tickets()
    app[TENANT_KEYS] = TenantKeys(admin_dsn, data_folder)
    app[BACKGROUND] = Background()
    app.on_cleanup.append(cancel_background)

    async def tap(app: web.Application) -> None:  # at start-up, after the banner named the engines
        tap_calls(app[STATE], app[LIVE_CALLS])

    app.on_startup.append(tap)
    for path, name in _PAGES.items():
        app.router.add_get(path, _page(name))
    app.router.add_get("/phone/static/{name}", _static)
    app.router.add_get("/phone/api/tenants", list_tenants)
    app.router.add_post("/phone/api/calls", place_call)
    app.router.add_get("/phone/api/calls/{call_sid}/events", call_events)
    app.router.add_put("/phone/api/calls/{call_sid}/recording", save_recording)
    app.router.add_get("/phone/relay", relay)
    app.router.add_get("/calls/api/{tenant_id}/live", live_calls)
    app.router.add_get("/calls/api/{tenant_id}/{tail:.+}", tenant_api)
    app.router.add_get("/calls/recordings/{call_sid}.wav", get_recording)
