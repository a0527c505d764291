"""The rehearsal's caller: a Twilio call placed exactly as Twilio places it against the deployed shape's
outputs, a booking made by voice, the after-stream callback, and what it left behind read back as a
tenant would (the tenant API through the ALB) and as the operator would (the booking row, scale-in
protection on the ECS agent, the MCP calls the API saw)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp
from aiohttp import web

from local.rehearsal.cloud_assembly import RehearsalFault
from local.rehearsal.ecs import EcsAgent
from local.rehearsal.front_doors import HttpApiFrontDoor

CALLER = "+15557654321"
OPENAI_HOST = "api.openai.com"
# A caller repeats a yes that may have been misheard (the offline recogniser on a busy machine sometimes
# does): a second "Yes" either confirms the booking or answers "anything else?", before the goodbye.
SCRIPT = ("I'd like to book a haircut tomorrow at three", "My name is John Smith", "Yes please", "Yes",
          "No thank you goodbye")
TENANT_SETTINGS: dict[str, Any] = {
    "greeting": "Thanks for calling Rehearsal Salon. How can I help you today?",
    "timezone": "America/New_York",
    "services": ["haircut", "colouring"],
    "business_hours": {day: [["09:00", "18:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
    "toolbox": [{"name": "loyalty_points", "description": "Look up a caller's loyalty points.",
                 "input_schema": {"type": "object", "properties": {"phone": {"type": "string"}},
                                  "required": ["phone"]},
                 "target": {"method": "GET", "url": "https://loyalty.example.com/points/{{phone}}"}}],
}


async def openai_outage(request: web.Request) -> web.Response:
    """OpenAI's API during an outage: the documented error shape, 503."""
    await request.read()
    return web.json_response({"error": {"message": "The engine is currently overloaded (rehearsal outage)",
                                        "type": "server_error", "param": None, "code": None}}, status=503)


@dataclass
class RehearsalReport:
    env_name: str
    hops: list[tuple[float, str]] = field(default_factory=list)
    booking: dict[str, Any] | None = None
    transcript: list[dict[str, Any]] = field(default_factory=list)
    after_stream_twiml: str = ""
    mcp_calls: int = 0
    protection_changes: list[bool] = field(default_factory=list)
    traces: dict[str, list[str]] = field(default_factory=dict)
    call_trace: dict[str, Any] = field(default_factory=dict)
    webhook_url: str = ""



@dataclass
class DeployedShape:
    """What the call needs of the running shape."""

    http: aiohttp.ClientSession  # resolves the AWS names as Twilio's side of the internet would
    webhook_url: str  # the VoiceWebhookUrl output: what the number is configured with, and Twilio signs
    twilio_auth_token: str
    tenant_api: str  # the tenant API's base URL on the ALB
    admin_dsn: str
    agent: EcsAgent
    api: HttpApiFrontDoor
    workdir: Path
    hop: Callable[[str], None]


class BookingCall:
    def __init__(self, shape: DeployedShape, tenant: dict[str, Any], report: RehearsalReport) -> None:
        self.shape = shape
        self.tenant = tenant
        self.report = report
        self.hop = shape.hop

    def mcp_calls(self) -> int:
        return sum(1 for key, status, _ in self.shape.api.calls if key == "POST /mcp" and status == 200)

    async def dial(self) -> Any:
        from local.call_simulator import dial

        self.report.webhook_url = self.shape.webhook_url
        base = self.shape.webhook_url.removesuffix("/voice")
        started = time.perf_counter()
        dialled = await dial(base, to=self.tenant["number"], from_=CALLER,
                             auth_token=self.shape.twilio_auth_token, http=self.shape.http)
        self.hop(f"Twilio: POST {self.report.webhook_url} (signed for that URL) -> TwiML <Connect><Stream "
                 f"url={dialled.call.signed_url}> ({(time.perf_counter() - started) * 1000:.0f} ms)")
        await dialled.call.connect()
        return dialled

    async def run(self) -> None:
        from local.call_simulator import after_stream
        from streaming_service.engines.offline_tts import OfflineTextToSpeech

        voice = OfflineTextToSpeech(voice="en-us", rate_wpm=150)
        dialled = await self.dial()
        call = dialled.call
        await call.wait_for_agent(since=0, timeout_s=60)
        self.hop("caller heard the greeting")
        await self.wait_protection(True)
        for line in SCRIPT:
            if call.closed.is_set():
                break
            audio = b"".join([chunk async for chunk in voice.synthesize(line)])
            spoken_at = await call.say(audio)
            with contextlib.suppress(TimeoutError):
                await call.wait_for_agent(since=spoken_at, quiet_s=1.2, timeout_s=45)
            self.hop(f"caller said {line!r}; agent answered after "
                     f"{((call.first_audio_after(spoken_at) or spoken_at) - spoken_at) * 1000:.0f} ms")
        await asyncio.wait_for(call.closed.wait(), 30)
        self.report.after_stream_twiml = await after_stream(dialled, self.shape.twilio_auth_token, self.shape.http)
        self.hop(f"Twilio: <Connect action> -> {self.report.after_stream_twiml[-40:]!r}")
        call.recording.write_wav(self.shape.workdir / "call.wav")
        await self.wait_protection(False)
        await self.read_back(call.call_sid)

    async def wait_protection(self, enabled: bool) -> None:
        deadline = time.monotonic() + 15
        while self.shape.agent.enabled is not enabled:
            if time.monotonic() > deadline:
                raise RehearsalFault("ECS agent task-protection",
                                     f"protection never became {enabled} (history {self.shape.agent.history})")
            await asyncio.sleep(0.1)
        self.report.protection_changes.append(enabled)
        self.hop(f"ECS agent: scale-in protection {'set' if enabled else 'cleared'}")

    async def read_back(self, call_sid: str) -> None:
        tenant = self.tenant
        headers = {"X-Tenant-Id": tenant["tenant_id"], "Authorization": f"Bearer {tenant['api_key']}"}
        deadline = time.monotonic() + 45
        while True:
            url = f"{self.shape.tenant_api}/calls/{call_sid}/transcript"
            async with self.shape.http.get(url, headers=headers) as r:
                body = await r.json() if r.status == 200 else {}
            turns = body.get("turns") or body.get("transcript") or body.get("items") or []
            if turns or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        self.report.transcript = list(turns)
        self.hop(f"tenant API through the ALB: {len(turns)} transcript entries for {call_sid}")
        from shared.tenancy import bookings
        from shared.tenancy.database import TenantDatabase
        from shared.tenancy.embedded import app_dsn

        db = await TenantDatabase.connect(app_dsn(self.shape.admin_dsn), min_size=1, max_size=1)
        try:
            found = await bookings.list_bookings(db, UUID(tenant["tenant_id"]), limit=10)
        finally:
            await db.close()
        self.report.booking = found[0].__dict__ if found else None
        self.report.mcp_calls = self.mcp_calls()
        self.hop(f"booking in Postgres: {self.report.booking and self.report.booking.get('customer_name')}; "
                 f"MCP calls from the task to the tool proxy: {self.report.mcp_calls}")

