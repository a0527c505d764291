"""Who may read the operational pages (`/websocket-status`, `/websocket-metrics`, the local web phone and
call view): an operator, never the public.

An operator either presents `Authorization: Bearer <OPERATOR_TOKEN>`, or, when no token is configured,
talks to the process over loopback directly. A request that came through a proxy or tunnel (ngrok, the
ALB) carries forwarding headers and is not local, whatever its socket says.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging

from aiohttp import web

from shared.settings import Settings

log = logging.getLogger("voice_agent.operator")

FORWARDING_HEADERS = ("X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded", "X-Real-IP")


def _is_loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def is_direct_local(request: web.Request) -> bool:
    """The peer is this machine and nothing relayed the request."""
    return _is_loopback(request.remote) and not any(h in request.headers for h in FORWARDING_HEADERS)


def operator_allowed(request: web.Request, settings: Settings) -> bool:
    token = settings.secret("operator_token")
    if token:
        presented = request.headers.get("Authorization", "")
        scheme, _, value = presented.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())
    return is_direct_local(request)


def require_operator(request: web.Request, settings: Settings) -> None:
    """Raise 401 (token configured) or 403 (local only) unless the request is an operator's."""
    if operator_allowed(request, settings):
        return
    log.warning("operational page refused", extra={"path": request.path, "remote": request.remote})
    if settings.secret("operator_token"):
        raise web.HTTPUnauthorized(text="operator token required", headers={"WWW-Authenticate": "Bearer"})
    raise web.HTTPForbidden(text="operational pages are served to local requests only (or set OPERATOR_TOKEN)")
