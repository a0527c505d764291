"""Vendor 429s handled as the vendor means them (issue 17), with the vendors' fakes enforcing their limits
and the service's budgets shared through real Redis:

- Deepgram 429 on connect: a capacity signal. The call moves to the offline recogniser at once (no
  "trouble hearing you", no reconnect loop), the account's budget drops to what it held, and the metric is
  VendorCapacityExhausted, not VendorErrors.
- ElevenLabs `system_busy`: retried with jitter; the caller hears the vendor's voice.
- ElevenLabs `too_many_concurrent_requests`: a capacity signal; that sentence is said by the offline voice.
- Leases: a live call holds its Deepgram stream slot in Redis; it is released when the call ends.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from shared.capacity import FleetRoom, VendorAccount
from shared.tenancy.cache import JsonCache
from streaming_service.app import create_app
from streaming_service.call_session import APOLOGY_HEARING
from streaming_service.engines.factory import build_engines
from streaming_service.engines.offline_stt import OfflineSpeechToTextStream
from streaming_service.fleet_capacity import ServiceCapacity
from streaming_service.telemetry.service_telemetry import ServiceTelemetry
from tests.e2e.conftest import VoiceStack, free_port, vendor_settings, wait_until
from tests.e2e.observability_support import metric_values
from tests.fakes.deepgram_server import FakeDeepgram
from tests.fakes.elevenlabs_server import FakeElevenLabs
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.speech_marker import marked_speech

DEEPGRAM = VendorAccount("deepgram", "platform", "streams", 5)
ELEVENLABS = VendorAccount("elevenlabs", "platform", "requests", 5)


@pytest.fixture
async def cache(redis_url: str, redis_prefix: str) -> AsyncIterator[JsonCache]:
    json_cache = JsonCache(redis_url, prefix=f"{redis_prefix}:vc{secrets.token_hex(3)}", retry_after_s=0)
    yield json_cache
    await json_cache.close()


class CapacityStack:
    def __init__(self, stack: VoiceStack, capacity: ServiceCapacity, emf: list[str]) -> None:
        self.stack = stack
        self.capacity = capacity
        self.emf = emf

    def documents(self) -> list[dict[str, Any]]:
        import json

        return [json.loads(line) for line in self.emf]


@pytest.fixture
async def capacity_stack(fakes: tuple[FakeDeepgram, FakeElevenLabs, FakeOpenAI],
                         cache: JsonCache) -> AsyncIterator[CapacityStack]:
    dg, el, oa = fakes
    settings = vendor_settings(dg, el, oa, capacity={"deepgram_max_streams": 5,
                                                      "elevenlabs_max_concurrent_requests": 5})
    capacity = ServiceCapacity(settings, cache)
    emf: list[str] = []
    app = create_app(settings, build_engines(settings), telemetry=ServiceTelemetry.from_settings(settings, emf.append),
                     capacity=capacity)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stack = VoiceStack(dg, el, oa, settings, port, app, runner)
    yield CapacityStack(stack, capacity, emf)
    await stack.close()


def agent_lines(session: Any) -> list[str]:
    return [t["text"] for t in session.transcript if t["role"] == "agent"]


async def test_deepgram_429_is_a_capacity_signal_not_an_outage(capacity_stack: CapacityStack) -> None:
    stack, ledger = capacity_stack.stack, capacity_stack.capacity.ledger
    stack.deepgram.max_streams = 1  # the project's real limit is lower than our configured budget
    async with stack.call() as first:
        await first.wait_for_agent(since=0)
        assert await ledger.in_use(DEEPGRAM) == 1  # the live call holds its stream slot in Redis
        async with stack.call() as second:
            await second.wait_for_agent(since=0)
            await wait_until(lambda: stack.deepgram.refused_capacity == 1)
            session = stack.session(second)
            await wait_until(lambda: isinstance(session._stt, OfflineSpeechToTextStream))
            # Deepgram's limit is now the account's budget: the webhook would not admit another call here.
            assert await ledger.has_room(DEEPGRAM) is False
            assert stack.deepgram.refused_capacity == 1  # no reconnect loop against a full project
            assert APOLOGY_HEARING not in " ".join(agent_lines(session))
    await wait_until(lambda: not stack.state.sessions)
    assert await ledger.in_use(DEEPGRAM) == 0  # every slot released at hang-up
    documents = capacity_stack.documents()
    assert metric_values(documents, "VendorCapacityExhausted", vendor="deepgram") == [1]
    assert metric_values(documents, "VendorErrors", vendor="deepgram") == []


async def test_a_leased_recogniser_still_asks_for_the_final_at_the_callers_pause(capacity_stack: CapacityStack) -> None:
    """The lease wraps the call's Deepgram stream: the service's own end of turn (Finalize at the caller's
    pause) reaches the stream inside it, as it does without a lease."""
    stack = capacity_stack.stack
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)
        spoken_at = await caller.say(marked_speech("What are your opening hours"))
        await caller.wait_for_agent(since=spoken_at)
    assert [r.finalizes for r in stack.deepgram.records] == [1]


async def test_elevenlabs_system_busy_is_retried_and_the_vendor_voice_speaks(capacity_stack: CapacityStack) -> None:
    stack = capacity_stack.stack
    stack.elevenlabs.busy_next(2)
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)
        spoken_at = await caller.say(marked_speech("What are your opening hours"))
        await caller.wait_for_agent(since=spoken_at)
        session = stack.session(caller)
        assert session.engines.tts.fallbacks == 0  # never the offline voice
    assert stack.elevenlabs.refused_busy == 2
    assert session.engines.tts.primary.busy_retries == 2
    documents = capacity_stack.documents()
    assert metric_values(documents, "VendorCapacityExhausted") == []
    assert metric_values(documents, "VendorErrors") == []


async def test_elevenlabs_concurrency_429_feeds_the_budget_and_the_offline_voice_speaks(
        capacity_stack: CapacityStack) -> None:
    stack, ledger = capacity_stack.stack, capacity_stack.capacity.ledger
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)
        stack.elevenlabs.max_concurrent = -1  # the plan's limit, already reached by others: every request 429s
        stack.elevenlabs.in_flight = 0
        spoken_at = await caller.say(marked_speech("What are your opening hours"))
        await caller.wait_for_agent(since=spoken_at)
        assert caller.first_audio_after(spoken_at) is not None  # the caller heard the answer
        session = stack.session(caller)
        assert session.engines.tts.fallbacks >= 1  # said by the offline voice
        assert stack.elevenlabs.refused_concurrent >= 1
        assert await ledger.has_room(ELEVENLABS) is False  # the vendor's 429 lowered the budget
    documents = capacity_stack.documents()
    assert metric_values(documents, "VendorCapacityExhausted", vendor="elevenlabs") != []
    assert metric_values(documents, "VendorErrors", vendor="elevenlabs") == []


async def test_each_task_heartbeats_its_calls_and_cap_so_the_webhook_sees_a_full_fleet(
        fakes: tuple[FakeDeepgram, FakeElevenLabs, FakeOpenAI], cache: JsonCache) -> None:
    dg, el, oa = fakes
    settings = vendor_settings(dg, el, oa, max_calls_per_task=1,
                               capacity={"fleet_heartbeat_interval_s": 0.05, "fleet_heartbeat_ttl_s": 30})
    capacity = ServiceCapacity(settings, cache)
    app = create_app(settings, build_engines(settings), capacity=capacity)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stack = VoiceStack(dg, el, oa, settings, port, app, runner)
    try:
        async def room() -> tuple[int, int]:
            seen = await capacity.fleet.room()
            assert seen is not None
            return seen.tasks, seen.with_room

        await wait_until_async(lambda: room(), (1, 1))
        async with stack.call() as caller:
            await caller.wait_for_agent(since=0)
            await wait_until_async(lambda: room(), (1, 0))  # the one task is at its cap: the fleet is full
        await wait_until_async(lambda: room(), (1, 1))
    finally:
        await stack.close()
    assert await capacity.fleet.room() == FleetRoom(0, 0)  # a stopped task leaves the fleet


async def wait_until_async(probe: Any, expected: Any, attempts: int = 400) -> None:
    import asyncio

    for _ in range(attempts):
        if await probe() == expected:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"never saw {expected}, last {await probe()}")


async def test_offline_capacity_mode_answers_with_the_offline_engines_and_says_so(
        capacity_stack: CapacityStack) -> None:
    """The webhook found the tenant's vendors full and its policy is `offline`: no vendor is asked, and the
    caller is told why the voice is the basic one."""
    from streaming_service.engines.factory import OFFLINE_NOTICE

    stack = capacity_stack.stack
    caller = stack.call()
    caller.custom_parameters["capacity_mode"] = "offline"
    async with caller:
        await caller.wait_for_agent(since=0)
        session = stack.session(caller)
        greeting = agent_lines(session)[0]
        assert greeting.endswith(OFFLINE_NOTICE) and caller.agent_audio_ms() > 0
        assert session.engines.stt_fallback is None and "Offline" in type(session.engines.stt).__name__
    assert stack.deepgram.connections == 0 and stack.elevenlabs.requests == [] and stack.openai.requests == []


async def test_llm_requests_per_minute_budget_sends_turns_past_it_to_the_offline_policy(
        fakes: tuple[FakeDeepgram, FakeElevenLabs, FakeOpenAI], cache: JsonCache) -> None:
    dg, el, oa = fakes
    settings = vendor_settings(dg, el, oa, capacity={"openai_max_requests_per_minute": 1})
    capacity = ServiceCapacity(settings, cache)
    emf: list[str] = []
    app = create_app(settings, build_engines(settings), capacity=capacity,
                     telemetry=ServiceTelemetry.from_settings(settings, emf.append))
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stack = VoiceStack(dg, el, oa, settings, port, app, runner)
    try:
        async with stack.call() as caller:
            await caller.wait_for_agent(since=0)
            spoken_at = await caller.say(marked_speech("What are your opening hours"))
            await caller.wait_for_agent(since=spoken_at)
            asked = len(oa.requests)
            assert asked >= 1  # the one request this minute allows went to the model
            spoken_at = await caller.say(marked_speech("Can I book for Monday"))
            await caller.wait_for_agent(since=spoken_at)
            assert caller.first_audio_after(spoken_at) is not None  # answered, by the offline policy
            assert len(oa.requests) == asked
            assert stack.session(caller).engines.agent.over_budget_turns == 1
    finally:
        await stack.close()
    import json

    documents = [json.loads(line) for line in emf]
    assert metric_values(documents, "VendorCapacityExhausted", vendor="openai") == [1]
    assert metric_values(documents, "VendorErrors", vendor="openai") == []
