"""The tenants the local pages may pick, and the tenant API as a tenant reads it.

The call view never reads the database for calls: it asks the tenant API (`/api/calls`, a call's
transcript and per-turn figures, `/api/bookings`) with that tenant's own key, like a tenant's
dashboard would. Locally the operator holds no tenant keys, so one is minted per tenant the first
time the view needs it (labelled "local call view") and kept in memory; the demo tenant's stored key
is used when it is known.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp
from aiohttp import web

from local.web_phone.live_feed import LIVE_CALLS, SETTINGS, call_view
from shared.tenancy.admin import TenantAdmin
from streaming_service.operator_access import require_operator
from streaming_service.service_state import STATE

CALL_SID = re.compile(r"^CA[0-9a-fA-F]{32}$")
MAX_RECORDING_BYTES = 40 * 1024 * 1024
_ALLOWED_API = re.compile(r"^(calls|bookings|calls/CA[0-9a-fA-F]{32}(/transcript)?)$")


class TenantKeys:
    def __init__(self, admin_dsn: str, data_folder: Path) -> None:
        self.admin_dsn = admin_dsn
        self.data_folder = data_folder
        self._keys: dict[str, str] = {}

    async def tenants(self) -> list[dict[str, Any]]:
        async with TenantAdmin.connect(self.admin_dsn) as admin:
            rows = await admin.list_tenants()
        return [{"id": str(r["id"]), "slug": r["slug"], "name": r["name"], "numbers": list(r["numbers"])}
                for r in rows if r["active"]]

    async def key_for(self, tenant_id: UUID) -> str:
        if str(tenant_id) not in self._keys:
            stored_path = self.data_folder / "local-secrets.json"
            stored = json.loads(stored_path.read_text()) if stored_path.exists() else {}
            if stored.get("demo_tenant_id") == str(tenant_id) and stored.get("demo_api_key"):
                self._keys[str(tenant_id)] = stored["demo_api_key"]
            else:
                async with TenantAdmin.connect(self.admin_dsn) as admin:
                    self._keys[str(tenant_id)] = await admin.create_api_key(tenant_id, "local call view")
        return self._keys[str(tenant_id)]


TENANT_KEYS: web.AppKey[TenantKeys] = web.AppKey("web_phone_tenant_keys", TenantKeys)


async def list_tenants(request: web.Request) -> web.Response:
    require_operator(request, request.app[SETTINGS])
    return web.json_response({"items": await request.app[TENANT_KEYS].tenants()})


def _tenant(request: web.Request) -> UUID:
    try:
        return UUID(request.match_info["tenant_id"])
    except ValueError:
        raise web.HTTPBadRequest(text="tenant id must be a UUID") from None


async def tenant_api(request: web.Request) -> web.Response:
    """`GET /calls/api/{tenant_id}/{calls|calls/CA…|calls/CA…/transcript|bookings}`: the tenant API, as the tenant."""
    settings = request.app[SETTINGS]
    require_operator(request, settings)
    tenant_id, tail = _tenant(request), request.match_info["tail"]
    if not _ALLOWED_API.match(tail):
        raise web.HTTPNotFound()
    key = await request.app[TENANT_KEYS].key_for(tenant_id)
    headers = {"X-Tenant-Id": str(tenant_id), "Authorization": f"Bearer {key}"}
    url = f"http://127.0.0.1:{settings.port}/api/{tail}"
    async with aiohttp.ClientSession() as http, http.get(url, params=request.query, headers=headers) as answer:
        return web.Response(body=await answer.read(), status=answer.status, content_type="application/json")


async def live_calls(request: web.Request) -> web.Response:
    """`GET /calls/api/{tenant_id}/live`: this tenant's calls in progress, as the live feed draws them."""
    require_operator(request, request.app[SETTINGS])
    tenant_id = str(_tenant(request))
    calls = request.app[LIVE_CALLS]
    views = []
    for sid, session in list(request.app[STATE].sessions.items()):
        if session.call.tenant_id == tenant_id:
            live = calls.get(sid)
            live.session = session
            views.append({**call_view(live), "started_at": session.started_at.isoformat(), "events": []})
    return web.json_response({"items": views})


def _recording_path(request: web.Request) -> Path:
    sid = request.match_info["call_sid"]
    if not CALL_SID.match(sid):
        raise web.HTTPNotFound()
    return request.app[TENANT_KEYS].data_folder / "recordings" / f"{sid}.wav"


async def save_recording(request: web.Request) -> web.Response:
    """`PUT /phone/api/calls/{call_sid}/recording`: the page's WAV of both sides, kept for the call view."""
    require_operator(request, request.app[SETTINGS])
    path = _recording_path(request)
    body = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        body += chunk
        if len(body) > MAX_RECORDING_BYTES:
            break
    if len(body) > MAX_RECORDING_BYTES or not body.startswith(b"RIFF"):
        raise web.HTTPBadRequest(text="a WAV file under 40 MB is expected")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return web.json_response({"saved": path.name})


async def get_recording(request: web.Request) -> web.StreamResponse:
    require_operator(request, request.app[SETTINGS])
    path = _recording_path(request)
    if not path.exists():
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={"Content-Type": "audio/wav"})
