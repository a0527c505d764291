"""Placing a browser call through the same signed path as a Twilio call.

1. `POST /phone/api/calls` (operator only): the server plays Twilio's part of the call set-up. It POSTs
   the real `/voice` webhook with a form signed by the Twilio auth token (as `voice-agent call` does),
   reads the TwiML's `<Connect><Stream>` URL and `<Parameter>`s (the signed stream token among them),
   and answers the page with them and a one-time ticket (valid for `TICKET_TTL_S`).
2. `GET /phone/relay?ticket=…` (operator only, WebSocket): a browser cannot set `X-Twilio-Signature` on
   a WebSocket upgrade, so the page connects here instead. The ticket is consumed on first use; the relay
   opens the TwiML's stream URL with the signature over that URL, exactly as Twilio does, and then passes
   text frames both ways unchanged. The page speaks the Media Streams protocol itself (`connected`,
   `start` with the TwiML's customParameters, media, marks, DTMF, `stop`); the service verifies the
   signature and the stream token as for any call.
3. When the service closes the stream, the relay requests the `<Connect action>` URL, signed, as Twilio
   would, and shows the TwiML it answered in the call's live feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

from local.web_phone.live_feed import LIVE_CALLS, SETTINGS
from streaming_service.operator_access import require_operator

log = logging.getLogger("voice_agent.web_phone")

TICKET_TTL_S = 30.0
ACCOUNT_SID = "AC" + "0" * 32
BROWSER_CALLER = "+15557654321"


@dataclass
class StreamTicket:
    call_sid: str
    stream_url: str  # what the TwiML says, and what the signature covers
    connect_url: str  # where the relay connects (ws:// locally, the TwiML's URL behind https)
    custom_parameters: dict[str, str]
    action_url: str
    form: dict[str, str]
    expires_at: float


class Tickets:
    def __init__(self) -> None:
        self._tickets: dict[str, StreamTicket] = {}

    def issue(self, ticket: StreamTicket) -> str:
        now = time.monotonic()
        for key, held in list(self._tickets.items()):
            if held.expires_at < now:
                del self._tickets[key]
        key = secrets.token_urlsafe(24)
        self._tickets[key] = ticket
        return key

    def pending(self, key: str) -> bool:
        return key in self._tickets

    def redeem(self, key: str) -> StreamTicket | None:
        """One use only, and only before it expires."""
        ticket = self._tickets.pop(key, None)
        if ticket is None or ticket.expires_at < time.monotonic():
            return None
        return ticket


TICKETS: web.AppKey[Tickets] = web.AppKey("web_phone_tickets", Tickets)


def signed_form_headers(auth_token: str, url: str, form: dict[str, str]) -> dict[str, str]:
    signature = RequestValidator(auth_token).compute_signature(url, form)
    return {"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"}


def read_stream_twiml(twiml: str) -> tuple[str, dict[str, str], str]:
    """The `<Connect><Stream>` URL, its `<Parameter>`s, and the `<Connect action>` URL."""
    root = ElementTree.fromstring(twiml)
    connect = root.find("Connect")
    stream = connect.find("Stream") if connect is not None else None
    if connect is None or stream is None:
        raise ValueError("the webhook did not connect a stream")
    parameters = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    return stream.get("url", ""), parameters, connect.get("action", "")


def _local_base(request: web.Request) -> str:
    """Where this process itself listens (the webhook is called here; it is signed for PUBLIC_URL)."""
    return f"http://127.0.0.1:{request.app[SETTINGS].port}"


async def place_call(request: web.Request) -> web.Response:
    """`POST /phone/api/calls` {"to": "+1555…", "from": "+1555…"}: run `/voice` as Twilio would."""
    settings = request.app[SETTINGS]
    require_operator(request, settings)
    body: dict[str, Any] = await request.json() if request.can_read_body else {}
    to, from_ = str(body.get("to", "")), str(body.get("from") or BROWSER_CALLER)
    if not to.startswith("+") or not to[1:].isdigit() or not from_[1:].isdigit():
        raise web.HTTPBadRequest(text="to and from must be E.164 numbers")
    call_sid = "CA" + uuid.uuid4().hex
    form = {"CallSid": call_sid, "AccountSid": ACCOUNT_SID, "From": from_, "To": to, "CallStatus": "ringing",
            "Direction": "inbound", "ApiVersion": "2010-04-01"}
    token = settings.secret("twilio_auth_token") or ""
    signed_url = settings.public_url.rstrip("/") + "/voice"
    async with aiohttp.ClientSession() as http, http.post(
            _local_base(request) + "/voice", data=form, headers=signed_form_headers(token, signed_url, form)) as answer:
        twiml = await answer.text()
        if answer.status != 200:
            return web.json_response({"error": f"/voice answered {answer.status}", "twiml": twiml[:500]}, status=502)
    try:
        stream_url, parameters, action_url = read_stream_twiml(twiml)
    except (ValueError, ElementTree.ParseError):
        return web.json_response({"error": "no stream in the TwiML (is the number a tenant's?)", "twiml": twiml},
                                 status=502)
    # As the simulator does: locally the TwiML names wss:// on a plain-HTTP server; the signature covers it.
    connect_url = stream_url if settings.public_url.startswith("https") else stream_url.replace("wss://", "ws://", 1)
    ticket = request.app[TICKETS].issue(StreamTicket(call_sid, stream_url, connect_url, parameters, action_url,
                                                     form, time.monotonic() + TICKET_TTL_S))
    request.app[LIVE_CALLS].get(call_sid)
    _keep(request.app, _unanswered_after_ttl(request.app, ticket, form, token))
    return web.json_response({
        "call_sid": call_sid, "account_sid": ACCOUNT_SID, "stream_url": stream_url,
        "custom_parameters": parameters, "relay": f"/phone/relay?ticket={ticket}", "twiml": twiml,
        "ticket_ttl_s": TICKET_TTL_S,
    })


async def relay(request: web.Request) -> web.StreamResponse:
    """`GET /phone/relay?ticket=…`: the page's WebSocket, passed on to the stream with Twilio's signature."""
    settings = request.app[SETTINGS]
    require_operator(request, settings)
    ticket = request.app[TICKETS].redeem(request.query.get("ticket", ""))
    if ticket is None:
        raise web.HTTPForbidden(text="unknown, used or expired ticket: place the call again")
    token = settings.secret("twilio_auth_token") or ""
    signature = RequestValidator(token).compute_signature(ticket.stream_url, {})
    browser = web.WebSocketResponse(max_msg_size=settings.max_ws_message_bytes)
    await browser.prepare(request)
    live = request.app[LIVE_CALLS].get(ticket.call_sid)
    live.relay_open = True
    try:
        async with aiohttp.ClientSession() as http:
            try:
                service = await http.ws_connect(ticket.connect_url, headers={"X-Twilio-Signature": signature},
                                                max_msg_size=0)
            except aiohttp.WSServerHandshakeError as exc:
                live.note("error", text=f"the stream refused the upgrade: {exc.status}")
                await browser.close(code=1011, message=b"stream refused")
                return browser
            await _pump_both_ways(browser, service)
            live.note("stream_closed", code=service.close_code)
            if ticket.action_url:
                live.after_stream_twiml = await _after_stream(http, token, ticket)
                live.note("after_stream", twiml=live.after_stream_twiml)
            await _status_callback(http, settings.public_url, settings.port, token, ticket.form, "completed")
    finally:
        live.relay_open = False
        live.changed.set()
    return browser


async def _pump_both_ways(browser: web.WebSocketResponse, service: aiohttp.ClientWebSocketResponse) -> None:
    """Text frames both ways until either side closes; then close the other side cleanly (1000)."""
    async def to_service() -> None:
        async for message in browser:
            if message.type is aiohttp.WSMsgType.TEXT:
                await service.send_str(message.data)

    async def to_browser() -> None:
        async for message in service:
            if message.type is aiohttp.WSMsgType.TEXT and not browser.closed:
                await browser.send_str(message.data)

    tasks = [asyncio.create_task(to_service()), asyncio.create_task(to_browser())]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:  # the reader of the side still open must stop before that side is closed
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    if not service.closed:
        await service.close()
    if not browser.closed:
        await browser.close(code=aiohttp.WSCloseCode.OK, message=b"call ended")


async def _after_stream(http: aiohttp.ClientSession, token: str, ticket: StreamTicket) -> str:
    """Once the stream is over, Twilio requests the `<Connect action>` URL (signed) and runs its TwiML."""
    form = {**ticket.form, "CallStatus": "in-progress"}
    try:
        async with http.post(ticket.action_url, data=form,
                             headers=signed_form_headers(token, ticket.action_url, form)) as answer:
            return await answer.text()
    except aiohttp.ClientError as exc:
        log.warning("after-stream request failed", extra={"error": str(exc)})
        return ""


async def _status_callback(http: aiohttp.ClientSession, public_url: str, port: int, token: str,
                           form: dict[str, str], status: str) -> None:
    """Twilio's final call status callback (`POST /status`, signed) once the call is over."""
    fields = {**form, "CallStatus": status, "CallbackSource": "call-progress-events"}
    signed_url = public_url.rstrip("/") + "/status"
    try:
        async with http.post(f"http://127.0.0.1:{port}/status", data=fields,
                             headers=signed_form_headers(token, signed_url, fields)) as answer:
            await answer.read()
    except aiohttp.ClientError as exc:
        log.warning("status callback failed", extra={"error": str(exc)})


async def _unanswered_after_ttl(app: web.Application, ticket_key: str, form: dict[str, str], token: str) -> None:
    """A call the page never connected ends as Twilio would end it: no-answer."""
    await asyncio.sleep(TICKET_TTL_S + 0.5)
    if app[TICKETS].pending(ticket_key):  # never redeemed (and by now expired)
        app[TICKETS].redeem(ticket_key)
        settings = app[SETTINGS]
        async with aiohttp.ClientSession() as http:
            await _status_callback(http, settings.public_url, settings.port, token, form, "no-answer")


class Background:
    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()


BACKGROUND: web.AppKey[Background] = web.AppKey("web_phone_background", Background)


def _keep(app: web.Application, work: Any) -> None:
    """Work that outlives the request; cancelled when the server shuts down (see `mount_web_phone`)."""
    task: asyncio.Task[None] = asyncio.ensure_future(work)
    app[BACKGROUND].tasks.add(task)
    task.add_done_callback(app[BACKGROUND].tasks.discard)


async def cancel_background(app: web.Application) -> None:
    for task in list(app[BACKGROUND].tasks):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
