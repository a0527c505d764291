"""More concurrent calls than the vendor budget allows: every caller is answered by its tenant's policy.

One process: the signed /voice webhook (the Lambda handler behind the API-Gateway adapter), the streaming
service built as deployed (vendor engines from Settings, Redis leases, fleet heartbeat), real Postgres and
Redis, and vendor fakes that enforce their own limits (Deepgram refuses the stream past `--budget` with its
429, ElevenLabs answers `too_many_concurrent_requests` past `--tts-concurrency`). Four tenants, one per
overflow policy (hold, offline, forward, busy), share the platform's Deepgram budget.

`--budget + --extra` callers dial at once, staggered by a few milliseconds, and stay on the line for
`--hold-line-s`. Twilio is simulated: TwiML is followed as Twilio would (a `<Connect><Stream>` is opened
and its `<Connect action>` asked when a stream is refused, `<Redirect>` after the hold audio, `<Dial>` and
`<Say>`/`<Hangup>` recorded). A caller "hears silence or an error" when a stream gave no agent audio
within 20 s, when a TwiML document has nothing to say or dial, or when any request failed.

Prints what each call got, a summary per policy, and exits 1 if any caller heard silence or an error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import sys
import time
import xml.etree.ElementTree as ElementTree
from collections import Counter
from dataclasses import asdict, dataclass, field

import aiohttp
from aiohttp import web

from functions.voice_webhook.handler import WebhookConfig, create_handler
from functions.voice_webhook.tenancy_directory import TenancyCallDirectory
from local.apigw_adapter import lambda_route
from local.call_simulator import SimulatedCall, _signed_headers
from shared.app_secrets import AppSecrets
from shared.settings import Settings
from shared.tenancy.admin import TenantAdmin
from shared.tenancy.cache import JsonCache
from shared.tenancy.call_state import CallStateStore
from shared.tenancy.database import TenantDatabase
from shared.tenancy.directory import TenantDirectory
from shared.tenancy.embedded import (
    app_dsn,
    create_scratch_database,
    drop_database,
    resolve_database_dsn,
    resolve_redis_url,
)
from shared.tenancy.transcript_buffer import TranscriptRecorder
from streaming_service.app import create_app
from streaming_service.engines.factory import build_engines
from streaming_service.fleet_capacity import ServiceCapacity
from streaming_service.stream_guard import StreamClaims
from streaming_service.tenancy_recorder import TenancyCallRecorder, tenant_settings_lookup
from tests.e2e.conftest import STREAM_SECRET, TWILIO_TOKEN, free_port, vendor_settings
from tests.fakes.deepgram_server import FakeDeepgram
from tests.fakes.elevenlabs_server import FakeElevenLabs
from tests.fakes.openai_server import FakeOpenAI

POLICIES = ("hold", "offline", "forward", "busy")
FALLBACK = "+15550107777"
GREETING_TIMEOUT_S = 20.0


@dataclass
class CallReport:
    call: int
    policy: str
    got: str = ""  # agent (vendors) | agent (offline engines) | forwarded | busy apology | ERROR ...
    said: list[str] = field(default_factory=list)  # <Say> lines the caller heard
    held_s: float = 0.0
    refused_streams: int = 0
    agent_audio_ms: float = 0.0
    silent_or_error: bool = False
    detail: str = ""


class Twilio:
    """Follows TwiML for one call the way Twilio does, for as much as this bench needs."""

    def __init__(self, base: str, http: aiohttp.ClientSession, hold_line_s: float) -> None:
        self.base = base
        self.http = http
        self.hold_line_s = hold_line_s

    async def post(self, url: str, form: dict[str, str]) -> str:
        async with self.http.post(url, data=form, headers=_signed_headers(TWILIO_TOKEN, url, form)) as response:
            text = await response.text()
            if response.status != 200:
                raise RuntimeError(f"{url} answered {response.status}")
            return text

    async def place(self, report: CallReport, number: str) -> None:
        call_sid = "CA" + secrets.token_hex(16)
        form = {"CallSid": call_sid, "AccountSid": "AC" + "0" * 32, "From": "+15557770000", "To": number,
                "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01"}
        started = time.monotonic()
        try:
            twiml = await self.post(self.base + "/voice", form)
            for _ in range(50):  # bounded: hold redirects and stream retries
                root = ElementTree.fromstring(twiml)
                report.said += [say.text or "" for say in root.findall("Say")]
                connect = root.find("Connect")
                if connect is not None:
                    next_twiml = await self._stream(report, connect, form)
                    if next_twiml is None:
                        break
                    twiml = next_twiml
                    continue
                if root.find("Redirect") is not None:
                    pause = root.find("Pause")
                    await asyncio.sleep(float(pause.get("length", "1")) if pause is not None else 1.0)
                    report.held_s = time.monotonic() - started
                    twiml = await self.post(root.findtext("Redirect") or "", form)
                    continue
                if root.find("Dial") is not None:
                    report.got = f"forwarded to {root.findtext('Dial')}"
                elif root.find("Hangup") is not None and report.said:
                    report.got = "busy apology"
                else:
                    report.got, report.silent_or_error = "ERROR: TwiML with nothing to say", True
                break
            else:
                report.got, report.silent_or_error = "ERROR: endless TwiML", True
        except Exception as exc:
            report.got, report.silent_or_error = f"ERROR: {type(exc).__name__}: {exc}", True
        finally:
            status = {**form, "CallStatus": "completed"}
            try:
                await self.post(self.base + "/status", status)
            except Exception as exc:
                report.detail += f" status callback failed: {exc}"

    async def _stream(self, report: CallReport, connect: ElementTree.Element, form: dict[str, str]) -> str | None:
        stream = connect.find("Stream")
        assert stream is not None
        params = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
        url = stream.get("url", "")
        call = SimulatedCall(url, custom_parameters=params, call_sid=form["CallSid"], auth_token=TWILIO_TOKEN,
                             http=self.http)
        try:
            await call.connect()
        except aiohttp.WSServerHandshakeError:
            # Refused before the upgrade (a full or draining task): Twilio asks the action URL what next.
            report.refused_streams += 1
            return await self.post(connect.get("action", ""), form)
        with contextlib.suppress(AssertionError, TimeoutError):  # no audio is what gets reported
            await call.wait_for_agent(since=0, timeout_s=GREETING_TIMEOUT_S)
        report.agent_audio_ms = call.agent_audio_ms()
        mode = params.get("capacity_mode", "")
        if report.agent_audio_ms <= 0:
            report.got, report.silent_or_error = "ERROR: silence on the stream", True
        else:
            report.got = "agent (offline engines, told so)" if mode == "offline" else "agent (vendors)"
        await asyncio.sleep(self.hold_line_s)  # stay on the line: the slot stays taken
        await call.hang_up()
        return None


async def run(args: argparse.Namespace) -> list[CallReport]:
    server_dsn = resolve_database_dsn(Settings(_env_file=None), allow_local=True)  # type: ignore[call-arg]
    redis_url = resolve_redis_url(Settings(_env_file=None), allow_local=True)  # type: ignore[call-arg]
    admin_dsn = await create_scratch_database(server_dsn, prefix="va_capbench")
    prefix = f"capbench{secrets.token_hex(3)}"
    dg, el = FakeDeepgram(max_streams=args.budget), FakeElevenLabs(max_concurrent=args.tts_concurrency)
    oa = FakeOpenAI()
    for fake in (dg, el, oa):
        await fake.start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = vendor_settings(dg, el, oa, public_url=base, stream_public_url=f"ws://127.0.0.1:{port}/twilio-stream",
                               capacity={"deepgram_max_streams": args.budget,
                                         "elevenlabs_max_concurrent_requests": args.tts_concurrency,
                                         "hold_music_url": "", "hold_pause_s": 1,
                                         "fleet_heartbeat_interval_s": 1.0})
    db = await TenantDatabase.connect(app_dsn(admin_dsn), min_size=1, max_size=10)
    cache = JsonCache(redis_url, prefix=prefix)
    directory = TenantDirectory(db, cache)
    numbers: dict[str, str] = {}
    async with TenantAdmin.connect(admin_dsn, directory) as admin:
        for policy in POLICIES:
            tenant_id = await admin.create_tenant(f"cap_{policy}", f"Capacity {policy}")
            numbers[policy] = "+1555011" + str(POLICIES.index(policy)).zfill(4)
            await admin.add_number(tenant_id, numbers[policy])
            await admin.set_settings(tenant_id, overflow_policy=policy, overflow_hold_s=args.hold_s,
                                     fallback_transfer_number=FALLBACK if policy == "forward" else None)
    recorder = TenancyCallRecorder(db, CallStateStore(db, cache), TranscriptRecorder(db, cache))
    app = create_app(settings, build_engines(settings), recorder=recorder,
                     tenant_settings=tenant_settings_lookup(directory), stream_claims=StreamClaims(cache),
                     capacity=ServiceCapacity(settings, cache, directory))

    async def webhook_directory() -> TenancyCallDirectory:
        return await TenancyCallDirectory.connect(app_dsn(admin_dsn), redis_url, cache_prefix=prefix,
                                                  capacity=settings.capacity)

    handler = create_handler(lambda: WebhookConfig(
        public_url=base, stream_public_url=settings.stream_public_url, stream_token_ttl_s=300,
        load_secrets=lambda: AppSecrets(twilio_auth_token=TWILIO_TOKEN, stream_token_secret=STREAM_SECRET),
        connect_directory=webhook_directory, capacity=settings.capacity))
    route = lambda_route(handler, shape="rest", stage="local", function_name="voice_webhook")
    for path in ("/voice", "/voice/after-stream", "/status"):
        app.router.add_post(path, route)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    reports = [CallReport(i + 1, POLICIES[i % len(POLICIES)]) for i in range(args.budget + args.extra)]
    try:
        async with aiohttp.ClientSession() as http:
            twilio = Twilio(base, http, args.hold_line_s)

            async def one(report: CallReport) -> None:
                await asyncio.sleep(0.02 * report.call)  # a burst, in a known order
                await twilio.place(report, numbers[report.policy])

            await asyncio.gather(*(one(r) for r in reports))
    finally:
        await runner.cleanup()
        for fake in (dg, el, oa):
            await fake.stop()
        await cache.close()
        await db.close()
        await drop_database(server_dsn, admin_dsn)
    print(f"deepgram fake: {dg.refused_capacity} handshakes refused with 429 (limit {args.budget}); "
          f"elevenlabs fake: {el.refused_concurrent} too_many_concurrent_requests (limit {args.tts_concurrency})")
    return reports


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=10, help="Deepgram streams (our budget and the fake's limit)")
    parser.add_argument("--extra", type=int, default=10, help="callers beyond the budget")
    parser.add_argument("--tts-concurrency", type=int, default=5)
    parser.add_argument("--hold-s", type=int, default=3, help="the hold tenant's overflow_hold_s")
    parser.add_argument("--hold-line-s", type=float, default=6.0, help="how long an answered caller stays on")
    parser.add_argument("--out", help="write the per-call report as JSON here")
    args = parser.parse_args()
    reports = asyncio.run(run(args))
    print(f"{'call':>4}  {'policy':<8} {'got':<34} {'held s':>6} {'refused':>7} {'audio ms':>8}  said")
    for r in reports:
        print(f"{r.call:>4}  {r.policy:<8} {r.got:<34} {r.held_s:>6.1f} {r.refused_streams:>7} "
              f"{r.agent_audio_ms:>8.0f}  {' / '.join(r.said)[:90]}")
    print("\nper policy:")
    for policy in POLICIES:
        got = Counter(r.got for r in reports if r.policy == policy)
        print(f"  {policy:<8} " + ", ".join(f"{n} x {what}" for what, n in sorted(got.items())))
    bad = [r for r in reports if r.silent_or_error]
    print(f"\ncalls: {len(reports)} (budget {args.budget} + {args.extra}); "
          f"answered by the agent with vendors: {sum(r.got == 'agent (vendors)' for r in reports)}; "
          f"heard silence or an error: {len(bad)}")
    if args.out:
        with open(args.out, "w") as out:
            json.dump([asdict(r) for r in reports], out, indent=2)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())


