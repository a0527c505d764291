"""`WS /twilio-stream`: verify, read Twilio's messages, and feed one CallSession.

Bad input never escapes this module: a forged signature is refused before the upgrade, a bad
stream token closes with 1008, malformed messages are logged and skipped, an oversized one closes
with 1009 (aiohttp's `max_msg_size`), and nothing here can touch another call.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import WSCloseCode, WSMsgType, web
from twilio.request_validator import RequestValidator

from shared import twilio_media as wire
from shared.stream_token import InvalidStreamToken, verify_stream_token
from streaming_service.call_session import CallSession
from streaming_service.engines.base import CallContext
from streaming_service.service_state import STATE, ServiceState
from streaming_service.stream_guard import CLAIMS, PENDING, StreamClaims, client_address

log = logging.getLogger("voice_agent.stream")

MAX_PROTOCOL_ERRORS = 200


def stream_url_candidates(request: web.Request, configured: str) -> list[str]:
    """The URL Twilio signed: the configured public stream URL, else this request's own URL."""
    if configured:
        return [configured]
    forwarded = request.headers.get("X-Forwarded-Proto", "")
    secure = request.secure or forwarded == "https"
    host = request.headers.get("X-Forwarded-Host") or request.host
    schemes = ["wss"] if secure else ["ws", "wss"]
    return [f"{scheme}://{host}{request.path}" for scheme in schemes]


def signature_ok(request: web.Request, state: ServiceState) -> bool:
    if state.settings.insecure_skip_twilio_verification:
        return True
    token = state.settings.secret("twilio_auth_token")
    signature = request.headers.get("X-Twilio-Signature", "")
    if not token or not signature:
        return False
    validator = RequestValidator(token)
    return any(validator.validate(url, {}, signature)
               for url in stream_url_candidates(request, state.settings.stream_public_url))


class _MessageReader:
    """Parses Twilio's text frames; a malformed one is logged and skipped, too many close the socket."""

    def __init__(self, ws: web.WebSocketResponse, state: ServiceState) -> None:
        self.ws = ws
        self.state = state
        self.errors = 0

    async def parse(self, data: str, warning: str) -> wire.InboundMessage | None:
        try:
            return wire.parse_inbound(data)
        except wire.ProtocolError as exc:
            await self.malformed(exc, warning)
            return None

    async def malformed(self, exc: wire.ProtocolError, warning: str) -> None:
        self.errors += 1
        self.state.protocol_errors += 1
        log.warning(warning, extra={"error": str(exc)})
        if self.errors >= MAX_PROTOCOL_ERRORS:
            await self.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"too many malformed messages")


async def handle_twilio_stream(request: web.Request) -> web.StreamResponse:
    state: ServiceState = request.app[STATE]
    state.connection_attempts += 1
    if state.draining:
        state.rejected_connections += 1
        return web.json_response({"error": "draining"}, status=503)
    if state.full:
        # Refused before the upgrade: Twilio ends <Connect> and asks the after-stream URL what to do.
        state.rejected_connections += 1
        state.refused_full += 1
        log.warning("stream refused: task at its call cap", extra={"cap": state.settings.max_calls_per_task})
        return web.json_response({"error": "full"}, status=503)
    if not signature_ok(request, state):
        state.rejected_connections += 1
        log.warning("stream upgrade refused: bad or missing X-Twilio-Signature",
                    extra={"remote": request.remote})
        return web.json_response({"error": "invalid signature"}, status=403)
    pending, address = request.app[PENDING], client_address(request)
    if pending.full(address):
        state.rejected_connections += 1
        log.warning("stream upgrade refused: too many sockets waiting for start from one address",
                    extra={"remote": str(address)[:64], "cap": pending.max_per_address})
        return web.json_response({"error": "too many pending streams"}, status=429)

    ws = web.WebSocketResponse(max_msg_size=state.settings.max_ws_message_bytes)
    # Counted against the cap from here until its session registers (or the socket gives up): a burst of
    # upgrades all passing the check before any session exists would otherwise overshoot the cap.
    state.admitting_changed(+1)
    try:
        await ws.prepare(request)
    except BaseException:
        state.admitting_changed(-1)
        raise
    admitting = True
    state.active_connections += 1
    session: CallSession | None = None
    try:
        with pending.holding(address):  # until `start` arrives, not while the session opens
            start = await _await_start(ws, state)
        if start is not None:
            session = await _open_session(ws, state, start, request.app[CLAIMS])
        state.admitting_changed(-1)
        admitting = False
        if session is not None:
            await _pump(ws, session, state)
    except Exception:
        log.exception("stream handler failed")
        await ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"internal error")
    finally:
        state.active_connections -= 1
        if admitting:
            state.admitting_changed(-1)
        if session is not None:
            await session.close("stream closed")
            state.unregister(session)
        if not ws.closed:
            await ws.close()
    return ws


async def _await_start(ws: web.WebSocketResponse, state: ServiceState) -> wire.Start | None:
    """Read until `start`. The whole wait is bounded from the upgrade: frames that are not `start` (binary,
    `connected`, junk) do not buy a socket more time."""
    reader = _MessageReader(ws, state)
    deadline = asyncio.get_running_loop().time() + state.settings.stream_admission.start_timeout_s
    while True:
        try:
            msg = await asyncio.wait_for(ws.receive(), timeout=max(0.0, deadline - asyncio.get_running_loop().time()))
        except TimeoutError:
            log.warning("no start message in time")
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"no start")
            return None
        if msg.type is not WSMsgType.TEXT:
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return None
            continue
        event = await reader.parse(msg.data, "malformed message before start")
        if event is None:
            if ws.closed:
                return None
            continue
        if isinstance(event, wire.Start):
            return event
        if isinstance(event, wire.Stop):
            return None
        if not isinstance(event, wire.Connected):
            log.info("message before start skipped", extra={"event": type(event).__name__})


async def _open_session(ws: web.WebSocketResponse, state: ServiceState, start: wire.Start, claims: StreamClaims
                        ) -> CallSession | None:
    """Verify the start's token, claim its call, build the session."""
    params = start.custom_parameters
    tenant_id = params.get("tenant_id", "")
    expires_at = time.time() + state.settings.stream_token_ttl_s
    if not state.settings.insecure_skip_twilio_verification:
        try:
            expires_at = verify_stream_token(state.settings.secret("stream_token_secret"),
                                             params.get("stream_token", ""), call_sid=start.call_sid,
                                             tenant_id=tenant_id).expires_at
        except InvalidStreamToken as exc:
            state.rejected_connections += 1
            log.warning("stream refused: invalid stream token",
                        extra={"reason": str(exc), "call_sid": start.call_sid[:40]})
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"invalid stream token")
            return None
    if state.has_call(start.call_sid):
        state.rejected_connections += 1
        log.warning("stream refused: call already has a live stream", extra={"call_sid": start.call_sid})
        await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"duplicate stream")
        return None
    # One stream per call, once: the token travels in the TwiML and in `start`, so a captured one could open
    # a session again (after the call, or on another task) for as long as it lives. Claimed for that long.
    if not await claims.claim(start.call_sid, expires_at, owner=start.stream_sid):
        state.rejected_connections += 1
        log.warning("stream refused: this call's stream already started (replayed token)",
                    extra={"call_sid": start.call_sid})
        await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"stream already started")
        return None
    tenant_settings = await state.tenant_settings(tenant_id)
    capacity_mode = params.get("capacity_mode", "")
    if capacity_mode == "offline":  # the webhook found the tenant's vendors full: say so, honestly
        from streaming_service.engines.factory import OFFLINE_NOTICE

        greeting = tenant_settings.get("greeting") or state.settings.default_greeting
        tenant_settings = {**tenant_settings, "greeting": f"{greeting} {OFFLINE_NOTICE}"}
    call = CallContext(call_sid=start.call_sid, stream_sid=start.stream_sid, tenant_id=tenant_id,
                       caller_number=params.get("caller", ""), dialled_number=params.get("dialled", ""),
                       tenant_settings=tenant_settings)
    # The webhook's X-Ray header, so the call's spans continue the webhook's trace.
    telemetry = state.telemetry.for_call(call, params.get("trace_header", ""))
    engines = await state.engines_for(call, capacity_mode)
    session = CallSession(call, engines, ws, state.settings, state.recorder, state.phrases, telemetry)
    state.register(session)
    await session.start()
    return session


async def _pump(ws: web.WebSocketResponse, session: CallSession, state: ServiceState) -> None:
    """50 messages a second per call, nearly all `media`: parsed in line (no coroutine per message) and
    handed over first."""
    reader = _MessageReader(ws, state)
    stream_sid = session.call.stream_sid
    on_media = session.on_media
    async for msg in ws:
        if msg.type is not WSMsgType.TEXT:
            if msg.type is WSMsgType.ERROR:
                log.warning("socket error", extra={"error": str(ws.exception())})
            continue
        try:
            event = wire.parse_inbound(msg.data)
        except wire.ProtocolError as exc:
            await reader.malformed(exc, "malformed message skipped")
            if ws.closed:
                return
            continue
        if type(event) is wire.Media and event.stream_sid == stream_sid:
            await on_media(event.payload)
        elif isinstance(event, wire.Connected | wire.Start):
            log.warning("unexpected message mid-stream skipped", extra={"event": type(event).__name__})
        elif event.stream_sid != stream_sid:
            log.warning("message for another stream skipped")
        elif isinstance(event, wire.Mark):
            session.on_mark(event.name)
        elif isinstance(event, wire.Dtmf):
            await session.on_dtmf(event.digit)
        elif isinstance(event, wire.Stop):
            log.info("twilio stopped the stream")
            return
    if ws.close_code == WSCloseCode.MESSAGE_TOO_BIG:
        state.protocol_errors += 1
        log.warning("oversized message: socket closed with 1009")
