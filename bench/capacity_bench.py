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

`--measure` (for the capacity model in infra/README.md): the bench gets a Redis of its own (embedded, so
`INFO commandstats` counts only this run) and a scratch database (`pg_stat_database` counts only it); the
answered callers speak a line every `--talk-every-s` while on the line; it reports Redis commands and
database row writes / commits per call-minute, and the Deepgram and ElevenLabs slots held per call.
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
from tests.fakes.speech_marker import marked_speech

POLICIES = ("hold", "offline", "forward", "busy")
FALLBACK = "+15550107777"
GREETING_TIMEOUT_S = 20.0


@dataclass
class Costs:
    call_minutes: float = 0.0
    redis_commands: int = 0
    redis_by_command: dict[str, int] = field(default_factory=dict)
    db_rows_written: int = 0
    db_commits: int = 0
    peak_deepgram_slots: int = 0
    peak_elevenlabs_slots: int = 0
    mean_deepgram_slots: float = 0.0
    mean_elevenlabs_slots: float = 0.0
    tts_requests: int = 0
    llm_requests: int = 0
    redis_script_calls: int = 0  # each EVAL is one round trip; the commands inside it count in commandstats too


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

    def __init__(self, base: str, http: aiohttp.ClientSession, hold_line_s: float, talk_every_s: float = 0.0
                 ) -> None:
        self.base = base
        self.http = http
        self.hold_line_s = hold_line_s
        self.talk_every_s = talk_every_s
        self.call_seconds = 0.0

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
        on_line = time.monotonic()
        if self.talk_every_s > 0:  # a conversation: a line, the answer, quiet, the next line
            lines = ("What are your opening hours", "Can I book a haircut tomorrow at three", "My name is Sam")
            turn = 0
            while time.monotonic() - on_line + self.talk_every_s <= self.hold_line_s:
                spoken_at = await call.say(marked_speech(lines[turn % len(lines)]))
                turn += 1
                with contextlib.suppress(AssertionError, TimeoutError):
                    await call.wait_for_agent(since=spoken_at, timeout_s=GREETING_TIMEOUT_S)
                await asyncio.sleep(max(0.0, self.talk_every_s - (time.monotonic() - spoken_at)))
        await asyncio.sleep(max(0.0, self.hold_line_s - (time.monotonic() - on_line)))  # the slot stays taken
        self.call_seconds += time.monotonic() - on_line  # time on the line after the greeting
        await call.hang_up()
        return None


async def _redis_commands(redis_url: str) -> dict[str, int]:
    import redis.asyncio as redis

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def _db_writes(admin_dsn: str) -> tuple[int, int]:
    import asyncpg

    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        row = await conn.fetchrow("SELECT tup_inserted + tup_updated + tup_deleted AS rows, xact_commit "
                                  "FROM pg_stat_database WHERE datname = current_database()")
    finally:
        await conn.close()
    assert row is not None
    return int(row["rows"]), int(row["xact_commit"])


async def run(args: argparse.Namespace, costs: Costs | None = None) -> list[CallReport]:
    server_dsn = resolve_database_dsn(Settings(_env_file=None), allow_local=True)  # type: ignore[call-arg]
    redis_url = resolve_redis_url(Settings(_env_file=None), allow_local=True)  # type: ignore[call-arg]
    if costs is not None:  # a Redis of our own: its command counts are this run's alone
        import tempfile
        from pathlib import Path

        from shared.tenancy.embedded import start_embedded_redis

        redis_url = start_embedded_redis(Path(tempfile.mkdtemp(prefix="capbench-redis-")))
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
                                         "fleet_heartbeat_interval_s": 1.0},
                               max_calls_per_task=args.task_cap)
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
    peaks = {"deepgram": 0, "elevenlabs": 0}
    sums = {"deepgram": 0, "elevenlabs": 0}
    samples = 0

    async def watch_slots() -> None:
        from shared.capacity import CapacityLedger, VendorAccount

        ledger = CapacityLedger(cache)
        accounts = {"deepgram": VendorAccount("deepgram", "platform", "streams", args.budget),
                    "elevenlabs": VendorAccount("elevenlabs", "platform", "requests", args.tts_concurrency)}
        nonlocal samples
        while True:
            for vendor, account in accounts.items():
                used = await ledger.in_use(account) or 0
                peaks[vendor] = max(peaks[vendor], used)
                sums[vendor] += used
            samples += 1
            await asyncio.sleep(0.25)

    try:
        async with aiohttp.ClientSession() as http:
            twilio = Twilio(base, http, args.hold_line_s, args.talk_every_s if costs is not None else 0.0)

            async def one(report: CallReport) -> None:
                await asyncio.sleep(0.02 * report.call)  # a burst, in a known order
                await twilio.place(report, numbers[report.policy])

            watcher = asyncio.create_task(watch_slots())
            redis_before = await _redis_commands(redis_url) if costs is not None else {}
            db_before = await _db_writes(admin_dsn) if costs is not None else (0, 0)
            await asyncio.gather(*(one(r) for r in reports))
            watcher.cancel()
            if costs is not None:
                await asyncio.sleep(2.0)  # hang-up writes (transcripts, call records) and Postgres's stats settle
                redis_after = await _redis_commands(redis_url)
                db_after = await _db_writes(admin_dsn)
                costs.call_minutes = twilio.call_seconds / 60
                # The slot watcher's own reads (2 scripts a sample: EVAL + TIME, ZREMRANGEBYSCORE, ZCARD) are
                # the bench's, not the calls': taken out.
                watcher_ops = {"eval": 2 * samples, "time": 2 * samples, "zremrangebyscore": 2 * samples,
                               "zcard": 2 * samples}
                costs.redis_by_command = {
                    k: v - redis_before.get(k, 0) - watcher_ops.get(k, 0) for k, v in redis_after.items()
                    if k != "info" and v - redis_before.get(k, 0) - watcher_ops.get(k, 0) > 0}
                costs.redis_commands = sum(costs.redis_by_command.values())
                costs.db_rows_written, costs.db_commits = db_after[0] - db_before[0], db_after[1] - db_before[1]
                costs.peak_deepgram_slots, costs.peak_elevenlabs_slots = peaks["deepgram"], peaks["elevenlabs"]
                costs.mean_deepgram_slots = sums["deepgram"] / max(samples, 1)
                costs.mean_elevenlabs_slots = sums["elevenlabs"] / max(samples, 1)
                costs.redis_script_calls = costs.redis_by_command.get("eval", 0) + costs.redis_by_command.get(
                    "evalsha", 0)
    finally:
        await runner.cleanup()
        for fake in (dg, el, oa):
            await fake.stop()
        await cache.close()
        await db.close()
        await drop_database(server_dsn, admin_dsn)
    if costs is not None:
        costs.tts_requests, costs.llm_requests = len(el.requests), len(oa.requests)
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
    parser.add_argument("--task-cap", type=int, default=0,
                        help="max_calls_per_task of the one streaming task (0: none); below budget + extra, "
                        "the fleet fills too: refused streams are retried, then the overflow policy")
    parser.add_argument("--out", help="write the per-call report as JSON here")
    parser.add_argument("--measure", action="store_true",
                        help="own Redis; callers talk; Redis ops and DB writes per call-minute")
    parser.add_argument("--talk-every-s", type=float, default=10.0)
    args = parser.parse_args()
    costs = Costs() if args.measure else None
    reports = asyncio.run(run(args, costs))
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
    if costs is not None and costs.call_minutes > 0:
        per = costs.call_minutes
        print(f"\ncosts over {per:.1f} call-minutes ({sum(r.got == 'agent (vendors)' for r in reports)} calls "
              f"talking every {args.talk_every_s:.0f} s; webhook, stream, turns, hang-up, status callback):")
        top = sorted(costs.redis_by_command.items(), key=lambda kv: -kv[1])[:8]
        print(f"  Redis commands per call-minute: {costs.redis_commands / per:.1f} "
              f"(top: {', '.join(f'{k} {v / per:.1f}' for k, v in top)})")
        print(f"  database rows written per call-minute: {costs.db_rows_written / per:.1f}; "
              f"commits per call-minute: {costs.db_commits / per:.1f}")
        print(f"  (commands inside scripts count too); scripts (EVAL, one round trip each): "
              f"{costs.redis_script_calls / per:.1f}")
        print(f"  vendor requests per call-minute: ElevenLabs {costs.tts_requests / per:.1f}, "
              f"OpenAI {costs.llm_requests / per:.1f}")
        vendor_calls = sum(r.got.startswith("agent (vendors)") for r in reports)
        print(f"  slots held: Deepgram mean {costs.mean_deepgram_slots:.1f} / peak {costs.peak_deepgram_slots} "
              f"streams for {vendor_calls} vendor calls; ElevenLabs mean {costs.mean_elevenlabs_slots:.2f} / "
              f"peak {costs.peak_elevenlabs_slots} requests")
    if args.out:
        with open(args.out, "w") as out:
            json.dump({"calls": [asdict(r) for r in reports], "costs": asdict(costs) if costs else None}, out,
                      indent=2)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())


