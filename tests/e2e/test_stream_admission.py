"""Who may hold a Media Stream socket, through the real `/twilio-stream`:

- a stream token opens one stream, once: a replayed `start` (after the call, on this task or another task
  sharing Redis) is refused with 1008 and a log line, and the call's stored transcript is untouched;
- with Redis away the claim fails open (a caller is never refused because the cache blinked), and the call's
  record still refuses the replay's writes;
- the time from upgrade to `start` is bounded whatever frames arrive, and pre-`start` sockets are capped
  per address.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from twilio.request_validator import RequestValidator

from shared.tenancy import calls
from shared.tenancy.cache import JsonCache
from shared.tenancy.call_state import CallStateStore
from shared.tenancy.database import TenantDatabase
from shared.tenancy.transcript_buffer import TranscriptRecorder
from streaming_service.app import create_app
from streaming_service.engines.factory import build_engines
from streaming_service.stream_guard import PENDING, StreamClaims
from streaming_service.tenancy_recorder import TenancyCallRecorder
from tests.conftest import MakeTenant
from tests.e2e.conftest import TWILIO_TOKEN, VoiceStack, free_port, vendor_settings, wait_until
from tests.fakes.speech_marker import marked_speech

StartTask = Callable[..., Awaitable[VoiceStack]]


@pytest.fixture
async def start_task(fakes: Any, db: TenantDatabase) -> AsyncIterator[StartTask]:
    """One streaming service task, built as `python -m streaming_service` builds it with its data layer:
    stream claims in the given Redis, the call recorded in Postgres."""
    started: list[tuple[VoiceStack, JsonCache]] = []

    async def start(claims_redis_url: str, recording_cache: JsonCache, **overrides: Any) -> VoiceStack:
        settings = vendor_settings(*fakes, **overrides)
        claims_cache = (recording_cache if claims_redis_url == "same"
                        else JsonCache(claims_redis_url, prefix=recording_cache.prefix, retry_after_s=0))
        recorder = TenancyCallRecorder(db, CallStateStore(db, recording_cache),
                                       TranscriptRecorder(db, recording_cache))
        app = create_app(settings, build_engines(settings), recorder=recorder,
                         stream_claims=StreamClaims(claims_cache))
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        deepgram, elevenlabs, openai = fakes
        stack = VoiceStack(deepgram, elevenlabs, openai, settings, port, app, runner)
        started.append((stack, claims_cache))
        return stack

    yield start
    for stack, claims_cache in started:
        await stack.close()
        if claims_cache is not None:
            await claims_cache.close()


async def _finished_call(stack: VoiceStack, tenant_id: str) -> tuple[str, str]:
    """A whole call (greeting, one caller line, the answer, hang-up); its call SID and stream token."""
    async with stack.call(tenant_id) as caller:
        await caller.wait_for_agent(since=0)
        spoken_at = await caller.say(marked_speech("What time do you open"))
        await caller.wait_for_agent(since=spoken_at)
    await wait_until(lambda: not stack.state.sessions)  # the session closed: its transcript is flushed
    return caller.call_sid, caller.custom_parameters["stream_token"]


async def _replay(stack: VoiceStack, tenant_id: str, call_sid: str, token: str) -> Any:
    replay = stack.call(tenant_id, call_sid=call_sid, token=token)
    await replay.connect()
    return replay


async def test_a_replayed_start_is_refused_on_every_task_and_the_transcript_is_untouched(
        start_task: StartTask, cache: JsonCache, db: TenantDatabase, make_tenant: MakeTenant,
        redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    tenant = await make_tenant("replay")
    tenant_id = str(tenant.tenant_id)
    task_a = await start_task("same", cache)
    task_b = await start_task(redis_url, cache)  # another task: its own process memory, the same Redis
    call_sid, token = await _finished_call(task_a, tenant_id)
    stored = await calls.list_transcript(db, tenant.tenant_id, call_sid)
    assert [t.role for t in stored][:2] == ["agent", "caller"]
    # The claim lives in Redis for the token's remaining life (300 s at most), not forever.
    ttl = await cache.run(lambda r: r.ttl(cache.key("stream", "started", call_sid)), -2)
    assert 0 < ttl <= 301

    for task in (task_b, task_a):
        replay = await _replay(task, tenant_id, call_sid, token)
        await asyncio.wait_for(replay.closed.wait(), timeout=5)
        assert replay.close_code == 1008
        assert not task.state.sessions
    assert caplog.text.count("stream refused: this call's stream already started") == 2
    assert await calls.list_transcript(db, tenant.tenant_id, call_sid) == stored


async def test_with_redis_away_a_replay_is_let_through_but_cannot_touch_the_calls_record(
        start_task: StartTask, cache: JsonCache, db: TenantDatabase, make_tenant: MakeTenant) -> None:
    """Fail-open, deliberately: the claim cannot be shared, so another task accepts the `start`; the call's
    record (ended, in Postgres) refuses every write of that session."""
    tenant = await make_tenant("replayout")
    tenant_id = str(tenant.tenant_id)
    task_a = await start_task("same", cache)
    task_b = await start_task("redis://127.0.0.1:1/0", cache)  # its claims Redis is unreachable
    call_sid, token = await _finished_call(task_a, tenant_id)
    stored = await calls.list_transcript(db, tenant.tenant_id, call_sid)
    ended = await calls.get_call(db, tenant.tenant_id, call_sid)
    assert stored and ended is not None and ended.ended_at is not None

    replay = await _replay(task_b, tenant_id, call_sid, token)
    await replay.wait_for_agent(since=0)  # the replay was answered: a new session spoke its greeting
    spoken_at = await replay.say(marked_speech("Cancel all my bookings"))
    await replay.wait_for_agent(since=spoken_at)
    await replay.hang_up()
    await wait_until(lambda: not task_b.state.sessions)
    assert await calls.list_transcript(db, tenant.tenant_id, call_sid) == stored
    assert await calls.get_call(db, tenant.tenant_id, call_sid) == ended


def _signed(stack: VoiceStack, **headers: str) -> dict[str, str]:
    return {"X-Twilio-Signature": RequestValidator(TWILIO_TOKEN).compute_signature(stack.ws_url, {}), **headers}


async def test_frames_before_start_do_not_keep_a_socket_open(stack_factory: Any) -> None:
    stack = await stack_factory(stream_admission={"start_timeout_s": 1.0})
    async with aiohttp.ClientSession() as http, http.ws_connect(stack.ws_url, headers=_signed(stack)) as ws:

        async def keep_alive() -> None:  # what the probe did: a frame every so often, never a `start`
            while not ws.closed:
                await ws.send_str(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
                await ws.send_bytes(b"\x00" * 32)
                await asyncio.sleep(0.1)

        sender = asyncio.create_task(keep_alive())
        try:
            message = await ws.receive(timeout=15)  # without a bound, nothing would ever arrive
        finally:
            sender.cancel()
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1008
    await wait_until(lambda: stack.state.active_connections == 0)


async def test_sockets_waiting_for_start_are_capped_per_address(stack_factory: Any) -> None:
    """Callers arrive through a proxy or tunnel (the ALB, ngrok), which names them in X-Forwarded-For."""
    stack = await stack_factory(stream_admission={"start_timeout_s": 60, "max_pending_per_address": 2})
    pending = stack.app[PENDING]
    prober = _signed(stack, **{"X-Forwarded-For": "203.0.113.5"})
    async with aiohttp.ClientSession() as http:
        held = [await http.ws_connect(stack.ws_url, headers=prober) for _ in range(2)]
        await wait_until(lambda: pending.waiting("203.0.113.5") == 2)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(stack.ws_url, headers=prober)
        assert refused.value.status == 429
        # Another address is counted on its own, and a direct local process (the simulator) is not capped.
        other = await http.ws_connect(stack.ws_url, headers=_signed(stack, **{"X-Forwarded-For": "198.51.100.7"}))
        async with stack.call() as caller:
            await wait_until(lambda: stack.session(caller) is not None)
        await other.close()
        await held[0].close()
        await wait_until(lambda: pending.waiting("203.0.113.5") == 1)
        again = await http.ws_connect(stack.ws_url, headers=prober)  # a place freed: accepted again
        await wait_until(lambda: pending.waiting("203.0.113.5") == 2)
        for ws in (again, held[1]):
            await ws.close()
    await wait_until(lambda: pending.waiting("203.0.113.5") == 0)
