"""Tenant-facing read API (calls, a call's transcript, bookings) as an aiohttp sub-application.

Mount with `app.add_subapp("/api", build_tenant_api(db))`. Every request names its tenant in
`X-Tenant-Id` (missing/empty/malformed → 400) and proves it with that tenant's key in
`Authorization: Bearer …` (none or unknown → 401, another tenant's → 403). Errors share one shape:
`{"error": {"code": "...", "message": "..."}}`. Lists page with `limit` and an opaque `cursor`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from aiohttp import web

from shared.tenancy import bookings, calls
from shared.tenancy.admin import hash_api_key
from shared.tenancy.database import TenantDatabase

DB_KEY = web.AppKey("tenant_db", TenantDatabase)
TENANT_KEY = web.RequestKey("tenant_id", UUID)
MAX_LIMIT = 200
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message)
    except web.HTTPException as exc:  # aiohttp's own 404/405 in the same JSON shape
        return error_response(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)


@web.middleware
async def tenant_auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    raw_tenant = request.headers.get("X-Tenant-Id", "").strip()
    if not raw_tenant:
        raise ApiError(400, "missing_tenant", "X-Tenant-Id header is required")
    try:
        tenant_id = UUID(raw_tenant)
    except ValueError:
        raise ApiError(400, "invalid_tenant", "X-Tenant-Id must be a UUID") from None
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, "unauthorized", "Authorization: Bearer <api key> is required")
    key_tenant = await request.app[DB_KEY].tenant_for_api_key_hash(hash_api_key(key.strip()))
    if key_tenant is None:
        raise ApiError(401, "unauthorized", "unknown or revoked API key")
    if key_tenant != tenant_id:
        raise ApiError(403, "forbidden", "this API key does not belong to that tenant")
    request[TENANT_KEY] = tenant_id
    return await handler(request)


def _limit(request: web.Request, default: int = 50) -> int:
    try:
        limit = int(request.query.get("limit", default))
    except ValueError:
        raise ApiError(400, "invalid_limit", "limit must be an integer") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, "invalid_limit", f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def checked_text(value: str, code: str, what: str) -> str:
    """Text a client sent, refused at the edge when Postgres could not hold it (NUL, lone surrogates)."""
    if "\x00" in value:
        raise ApiError(400, code, f"{what} must not contain NUL bytes")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, code, f"{what} must be valid Unicode text") from None
    return value


def checked_instant(value: str, code: str, what: str) -> datetime:
    """An ISO 8601 date-time a client sent. Near year 1 or 9999 a UTC offset can push the instant out of
    the range a datetime holds; that is the client's input, so a 400, not an overflow in the driver."""
    try:
        parsed = datetime.fromisoformat(checked_text(value, code, what))
        if parsed.tzinfo is not None:
            parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ApiError(400, code, f"{what} must be an ISO 8601 date-time between years 1 and 9999 in UTC") from None
    return parsed


def call_sid_param(request: web.Request) -> str:
    return checked_text(request.match_info["call_sid"], "invalid_call_sid", "call id")


def encode_cursor(*values: str) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def decode_cursor(request: web.Request) -> list[str] | None:
    raw = request.query.get("cursor")
    if not raw:
        return None
    try:
        values = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        if not isinstance(values, list) or len(values) != 2:
            raise ValueError
        return [checked_text(str(v), "invalid_cursor", "cursor") for v in values]
    except (ValueError, binascii.Error, RecursionError):
        raise ApiError(400, "invalid_cursor", "cursor is not one this API returned") from None


def _page(items: list[Any], limit: int, cursor_of: Callable[[Any], str]) -> dict[str, Any]:
    return {"items": [i.to_json() for i in items],
            "next_cursor": cursor_of(items[-1]) if len(items) == limit else None}


async def list_calls(request: web.Request) -> web.Response:
    limit, cursor = _limit(request), decode_cursor(request)
    before = (checked_instant(cursor[0], "invalid_cursor", "cursor"), cursor[1]) if cursor else None
    items = await calls.list_calls(request.app[DB_KEY], request[TENANT_KEY], limit=limit, before=before)
    return web.json_response(_page(items, limit, lambda c: encode_cursor(c.started_at.isoformat(), c.call_sid)))


async def get_call(request: web.Request) -> web.Response:
    """One call with its per-turn figures (the same summaries `GET /websocket-status` shows live)."""
    record = await calls.get_call(request.app[DB_KEY], request[TENANT_KEY], call_sid_param(request))
    if record is None:
        raise ApiError(404, "not_found", "no such call")
    return web.json_response(record.to_json())


async def call_transcript(request: web.Request) -> web.Response:
    db, tenant_id, call_sid = request.app[DB_KEY], request[TENANT_KEY], call_sid_param(request)
    if await calls.get_call(db, tenant_id, call_sid) is None:
        raise ApiError(404, "not_found", "no such call")
    turns = await calls.list_transcript(db, tenant_id, call_sid)
    return web.json_response({"call_sid": call_sid, "items": [t.to_json() for t in turns]})


async def list_bookings(request: web.Request) -> web.Response:
    limit, cursor = _limit(request), decode_cursor(request)
    try:
        after = (checked_instant(cursor[0], "invalid_cursor", "cursor"), UUID(cursor[1])) if cursor else None
    except ValueError:
        raise ApiError(400, "invalid_cursor", "cursor is not one this API returned") from None
    starts_from = checked_instant(request.query["from"], "invalid_from", "from") if "from" in request.query else None
    items = await bookings.list_bookings(
        request.app[DB_KEY], request[TENANT_KEY], limit=limit, after=after, starts_from=starts_from,
        include_cancelled=request.query.get("include_cancelled") == "true")
    return web.json_response(_page(items, limit, lambda b: encode_cursor(b.starts_at.isoformat(), str(b.id))))


def build_tenant_api(db: TenantDatabase) -> web.Application:
    app = web.Application(middlewares=[error_middleware, tenant_auth_middleware])
    app[DB_KEY] = db
    app.router.add_get("/calls", list_calls)
    app.router.add_get("/calls/{call_sid}", get_call)
    app.router.add_get("/calls/{call_sid}/transcript", call_transcript)
    app.router.add_get("/bookings", list_bookings)
    return app
