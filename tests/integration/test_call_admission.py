"""The webhook admits a call only when there is room for it (issue 17), against real Postgres and Redis:
a Deepgram stream slot in the tenant's vendor budget (a Redis lease per call, shared by every task and
webhook) and a streaming task with room (the tasks' heartbeats). Otherwise the tenant's overflow policy
answers: hold, offline, forward, busy. A stream the fleet refused is retried, then overflows the same way.
"""

from __future__ import annotations

import asyncio
import secrets
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

from functions.voice_webhook import twiml as twiml_text
from functions.voice_webhook.handler import LambdaHandler, WebhookConfig, create_handler
from functions.voice_webhook.tenancy_directory import TenancyCallDirectory
from local.apigw_adapter import lambda_route
from shared.app_secrets import AppSecrets
from shared.capacity import CapacityLedger, FleetRegistry, VendorAccount
from shared.settings import CapacityOptions
from shared.tenancy.cache import JsonCache
from shared.tenancy.embedded import app_dsn
from tests.conftest import MakeTenant, unique_number
from tests.integration.test_voice_webhook import STREAM_SECRET, TWILIO_TOKEN, _call_form, post_signed

FALLBACK = "+15550008888"
PLATFORM_STT = "deepgram"


def _config(dsn: str, redis_url: str, prefix: str, capacity: CapacityOptions) -> Callable[[], WebhookConfig]:
    async def directory() -> TenancyCallDirectory:
        return await TenancyCallDirectory.connect(dsn, redis_url, cache_prefix=prefix, capacity=capacity)

    return lambda: WebhookConfig(
        public_url="", stream_public_url="wss://stream.example.test", stream_token_ttl_s=300,
        load_secrets=lambda: AppSecrets(twilio_auth_token=TWILIO_TOKEN, stream_token_secret=STREAM_SECRET),
        connect_directory=directory, capacity=capacity)


async def _serve(handler: LambdaHandler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    route = lambda_route(handler, shape="rest", stage="prod", strip_prefix="/prod")
    for path in ("/voice", "/voice/after-stream", "/status"):
        app.router.add_post(f"/prod{path}", route)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/prod"


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    return f"{redis_prefix}:adm{secrets.token_hex(3)}"


@pytest.fixture
async def cache(redis_url: str, prefix: str) -> AsyncIterator[JsonCache]:
    json_cache = JsonCache(redis_url, prefix=prefix, retry_after_s=0)
    yield json_cache
    await json_cache.close()


CAPACITY = CapacityOptions(deepgram_max_streams=2, stream_retry_attempts=1, hold_music_url="",
                           hold_pause_s=3)


@pytest.fixture
async def webhook(admin_dsn: str, redis_url: str, prefix: str) -> AsyncIterator[str]:
    runner, base = await _serve(create_handler(_config(app_dsn(admin_dsn), redis_url, prefix, CAPACITY)))
    yield base
    await runner.cleanup()


def _sid() -> str:
    return "CA" + secrets.token_hex(16)


def _doc(body: str) -> ET.Element:
    return ET.fromstring(body)


def _params(body: str) -> dict[str, str | None]:
    return {p.get("name", ""): p.get("value") for p in _doc(body).iter("Parameter")}


async def _fill(webhook: str, number: str, calls: int) -> list[str]:
    sids = []
    for _ in range(calls):
        sid = _sid()
        status, body = await post_signed(f"{webhook}/voice", _call_form(number, sid))
        assert status == 200 and _doc(body).find("Connect/Stream") is not None, body
        assert "capacity_mode" not in _params(body)
        sids.append(sid)
    return sids


async def test_budget_full_offline_policy_answers_with_offline_engines(
        webhook: str, make_tenant: MakeTenant, cache: JsonCache) -> None:
    number = unique_number()
    await make_tenant("cap", numbers=[number], overflow_policy="offline")
    await _fill(webhook, number, 2)
    status, body = await post_signed(f"{webhook}/voice", _call_form(number, _sid()))
    assert status == 200
    assert _doc(body).find("Connect/Stream") is not None  # answered, by the offline engines
    assert _params(body)["capacity_mode"] == "offline"
    ledger = CapacityLedger(cache)
    assert await ledger.in_use(VendorAccount("deepgram", "platform", "streams", 2)) == 2


@pytest.mark.parametrize("policy", ["busy", "forward"])
async def test_budget_full_busy_and_forward(webhook: str, make_tenant: MakeTenant, policy: str) -> None:
    number = unique_number()
    await make_tenant("cap", numbers=[number], overflow_policy=policy, fallback_transfer_number=FALLBACK)
    await _fill(webhook, number, 2)
    status, body = await post_signed(f"{webhook}/voice", _call_form(number, _sid()))
    doc = _doc(body)
    assert status == 200 and doc.find("Connect") is None
    if policy == "busy":
        assert doc.findtext("Say") == twiml_text.BUSY_TEXT and doc.find("Hangup") is not None
    else:
        assert doc.findtext("Say") == twiml_text.FORWARD_TEXT and doc.findtext("Dial") == FALLBACK


async def test_hold_plays_then_retries_and_gets_in_when_a_slot_frees(
        webhook: str, make_tenant: MakeTenant) -> None:
    number = unique_number()
    await make_tenant("cap", numbers=[number], overflow_policy="hold", overflow_hold_s=600)
    first, _ = await _fill(webhook, number, 2)
    sid = _sid()
    _, body = await post_signed(f"{webhook}/voice", _call_form(number, sid))
    doc = _doc(body)
    assert doc.findtext("Say") == twiml_text.HOLD_TEXT and doc.find("Pause") is not None
    redirect = doc.findtext("Redirect") or ""
    assert redirect.startswith(f"{webhook}/voice?hold_since=")
    # Still full: more hold, without the announcement again.
    _, body = await post_signed(redirect, _call_form(number, sid))
    doc = _doc(body)
    assert doc.findtext("Say") == twiml_text.HOLD_AGAIN_TEXT  # not the whole announcement again
    assert doc.find("Pause") is not None and doc.find("Redirect") is not None
    # A call ends (Twilio's completed status callback frees its slot): the held caller gets in.
    await post_signed(f"{webhook}/status", _call_form(number, first, CallStatus="completed"))
    _, body = await post_signed(redirect, _call_form(number, sid))
    assert _doc(body).find("Connect/Stream") is not None and "capacity_mode" not in _params(body)


async def test_hold_past_its_limit_falls_back_to_offline(webhook: str, make_tenant: MakeTenant) -> None:
    number = unique_number()
    await make_tenant("cap", numbers=[number], overflow_policy="hold", overflow_hold_s=30)
    await _fill(webhook, number, 2)
    _, body = await post_signed(f"{webhook}/voice?hold_since=1000", _call_form(number, _sid()))
    assert _params(body)["capacity_mode"] == "offline"


async def test_a_crashed_tasks_leases_lapse(cache: JsonCache) -> None:
    ledger = CapacityLedger(cache)
    account = VendorAccount("deepgram", "platform", "streams", 1)
    assert (await ledger.acquire(account, "crashed-call", ttl_s=0.2)).granted
    assert not (await ledger.acquire(account, "next-call")).granted
    # Nothing renews the crashed task's lease: Redis drops it at its expiry (Redis's own clock).
    await asyncio.sleep(0.3)
    assert (await ledger.acquire(account, "next-call")).granted


async def test_vendor_429_lowers_the_budget_for_a_while(cache: JsonCache) -> None:
    ledger = CapacityLedger(cache, ceiling_ttl_s=30)
    account = VendorAccount("elevenlabs", "platform", "requests", 5)
    assert (await ledger.acquire(account, "a")).granted
    await ledger.vendor_refused(account, holding=1)  # the vendor's real limit is what we held
    assert not (await ledger.acquire(account, "b")).granted
    assert not await ledger.has_room(account)


async def test_full_fleet_overflows_even_with_vendor_room(
        webhook: str, make_tenant: MakeTenant, cache: JsonCache) -> None:
    number = unique_number()
    await make_tenant("cap", numbers=[number], overflow_policy="offline", fallback_transfer_number=FALLBACK)
    fleet = FleetRegistry(cache)
    await fleet.heartbeat("task-a", live_calls=3, cap=3, ttl_s=60)
    await fleet.heartbeat("task-b", live_calls=5, cap=5, ttl_s=60)
    _, body = await post_signed(f"{webhook}/voice", _call_form(number, _sid()))
    # Offline engines need a task too: a human is the next best thing.
    assert _doc(body).findtext("Dial") == FALLBACK
    await fleet.heartbeat("task-b", live_calls=4, cap=5, ttl_s=60)
    _, body = await post_signed(f"{webhook}/voice", _call_form(number, _sid()))
    assert _doc(body).find("Connect/Stream") is not None


async def test_refused_stream_is_retried_then_overflows(webhook: str, make_tenant: MakeTenant) -> None:
    number = unique_number()
    await make_tenant("cap", numbers=[number], overflow_policy="busy")
    sid = _sid()
    await _fill(webhook, number, 0)
    _, body = await post_signed(f"{webhook}/voice", _call_form(number, sid))
    action = _doc(body).find("Connect")
    assert action is not None
    # No task took the stream (none claimed it): Twilio asks the action URL, which tries a fresh stream.
    _, body = await post_signed(action.get("action") or "", _call_form(number, sid))
    retry = _doc(body).find("Connect")
    assert retry is not None and retry.get("action") == f"{webhook}/voice/after-stream?attempt=2"
    assert _params(body)["stream_token"] != ""
    _, body = await post_signed(retry.get("action") or "", _call_form(number, sid))
    assert _doc(body).findtext("Say") == twiml_text.BUSY_TEXT


async def test_a_stream_that_started_ends_as_before(
        webhook: str, make_tenant: MakeTenant, cache: JsonCache) -> None:
    number = unique_number()
    await make_tenant("cap", numbers=[number], overflow_policy="busy")
    sid = _sid()
    await post_signed(f"{webhook}/voice", _call_form(number, sid))
    await cache.run(lambda r: r.set(cache.key("stream", "started", sid), "MZ1", ex=60), None)
    _, body = await post_signed(f"{webhook}/voice/after-stream", _call_form(number, sid))
    assert _doc(body).find("Hangup") is not None and _doc(body).find("Connect") is None


async def test_redis_unreachable_admits(admin_dsn: str, make_tenant: MakeTenant) -> None:
    """Fail open: with Redis away nothing can be counted, and a call is admitted rather than refused."""
    number = unique_number()
    await make_tenant("cap", numbers=[number], overflow_policy="busy")
    tight = CapacityOptions(deepgram_max_streams=1)
    runner, base = await _serve(create_handler(_config(app_dsn(admin_dsn), "redis://127.0.0.1:1/0", "x", tight)))
    try:
        for _ in range(3):
            _, body = await post_signed(f"{base}/voice", _call_form(number, _sid()))
            assert _doc(body).find("Connect/Stream") is not None and "capacity_mode" not in _params(body)
    finally:
        await runner.cleanup()
