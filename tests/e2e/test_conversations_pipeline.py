"""The scripted calls of tests/conversations/*.yaml through the whole audio pipeline.

A simulated Twilio caller speaks each line as audio; the streaming service hears it (VAD, endpointing),
the offline rule-based policy answers with the real booking tools against Postgres, and the offline
espeak voice speaks the answer back as 20 ms frames with marks. Barge-ins ("heard_sentences") are the
caller really talking over the agent's audio; silence is really silence, timed by the session.

Recognition is the fake Deepgram reading marked speech, so the words heard are exactly the script's:
the offline recogniser's accuracy is measured on its own (bench/offline_stt_wer.py), and a booking
scenario must not depend on it. The caller plays audio 4x faster than real time to keep this quick.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web

from local.call_simulator import SimulatedCall
from shared.settings import Settings
from shared.stream_token import mint_stream_token
from shared.tenancy import bookings
from shared.tenancy.database import TenantDatabase
from streaming_service.agents.booking_store import PostgresBookingStore
from streaming_service.agents.offline_policy.offline_runtime import OfflinePolicyRuntime
from streaming_service.app import create_app
from streaming_service.call_session import Engines
from streaming_service.engines.deepgram_stt import DeepgramSpeechToText
from streaming_service.engines.offline_tts import OfflineTextToSpeech
from streaming_service.service_state import STATE
from tests.e2e.conftest import STREAM_SECRET, TWILIO_TOKEN, free_port, wait_until
from tests.fakes.deepgram_server import FakeDeepgram
from tests.fakes.speech_marker import marked_speech
from tests.integration.test_conversations import (
    CALLER,
    EXTRA_SETTINGS,
    NOW,
    SCENARIOS,
    TENANT_DEFAULTS,
    _assert_booking,
    _local,
)

SPEED = 4.0


@pytest.fixture
async def deepgram() -> AsyncIterator[FakeDeepgram]:
    fake = FakeDeepgram()
    await fake.start()
    yield fake
    await fake.stop()


async def _serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


def _agent_lines(session: Any, since_index: int) -> str:
    return " ".join(e["text"] for e in session.transcript[since_index:] if e["role"] == "agent")


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_conversation_through_the_audio_pipeline(name: str, db: TenantDatabase, make_tenant: Any,
                                                       deepgram: FakeDeepgram) -> None:
    script = SCENARIOS[name]
    overrides = script.get("tenant") or {}
    tenant = await make_tenant(**{k: v for k, v in (TENANT_DEFAULTS | overrides).items() if k not in EXTRA_SETTINGS})
    caller_id = script.get("caller_id", CALLER)
    for existing in script.get("existing_bookings") or []:
        start = _local(existing["start"])
        await bookings.create_booking(
            db, tenant.tenant_id, starts_at=start, ends_at=start + timedelta(minutes=30),
            customer_name=existing.get("name", ""), notes=existing.get("service"),
            customer_phone=caller_id if existing.get("phone") == "caller" else existing.get("phone"), now=NOW)

    settings = Settings(_env_file=None, deepgram_api_key=deepgram.api_key,  # type: ignore[call-arg]
                        deepgram_base_url=deepgram.ws_url, twilio_auth_token=TWILIO_TOKEN,
                        stream_token_secret=STREAM_SECRET, silence={"reprompt_after_s": 1.5, "max_reprompts": 2})
    engines = Engines(stt=DeepgramSpeechToText(settings), tts=OfflineTextToSpeech(),
                      agent=OfflinePolicyRuntime(bookings=PostgresBookingStore(db), clock=lambda: NOW))
    tenant_settings = tenant.settings.to_json() | EXTRA_SETTINGS | overrides

    async def lookup(_: str) -> dict[str, Any]:
        return tenant_settings

    app = create_app(settings, engines, tenant_settings=lookup)
    runner, port = await _serve(app)
    call = SimulatedCall(f"ws://127.0.0.1:{port}/twilio-stream", custom_parameters={}, auth_token=TWILIO_TOKEN,
                         call_sid=f"CA{tenant.slug}", speed=SPEED)
    call.custom_parameters = {"tenant_id": str(tenant.tenant_id), "caller": caller_id,
                              "stream_token": mint_stream_token(STREAM_SECRET, str(tenant.tenant_id), call.call_sid)}
    try:
        await call.connect()
        await wait_until(lambda: call.call_sid in app[STATE].sessions)
        session = app[STATE].sessions[call.call_sid]
        await call.wait_for_agent(since=0, timeout_s=30)
        await _play(script, call, session, db, tenant.tenant_id)
        if (script.get("expect") or {}).get("outcome") == "hangup":
            await asyncio.wait_for(call.closed.wait(), timeout=30)
    finally:
        await call.hang_up()
        await app[STATE].drain(0)
        await runner.cleanup()

    expect = script.get("expect") or {}
    assert session.call.outcome.action == expect.get("outcome", "continue"), session.transcript
    if "transfer_to" in expect:
        assert session.call.outcome.transfer_to == expect["transfer_to"]
    if "bookings" in expect:
        rows = await bookings.list_bookings(db, tenant.tenant_id, include_cancelled=True)
        assert len(rows) == len(expect["bookings"]), ([(r.starts_at, r.customer_name) for r in rows],
                                                      session.transcript)
        for wanted in expect["bookings"]:
            _assert_booking(rows, wanted, caller_id)


async def _play(script: dict[str, Any], call: SimulatedCall, session: Any, db: TenantDatabase, tenant_id: Any) -> None:
    barge_next = False
    for step in script["turns"]:
        if call.closed.is_set():
            raise AssertionError(f"the call ended before: {step}")
        before = len(session.transcript)
        if step.get("silence"):
            # Say nothing: the session's silence timer must speak next (a reprompt or the goodbye).
            await wait_until(lambda b=before: any(e["role"] == "agent" for e in session.transcript[b:])
                             or call.closed.is_set(), timeout_s=20)
            await call.wait_for_agent(since=time.monotonic() - 5, timeout_s=30)
            continue
        spoken_at = await call.say(marked_speech(step["caller"]))
        if "heard_sentences" in step:
            # Talk over the reply once the caller has heard `heard_sentences` of its sentences.
            heard = step["heard_sentences"]
            await wait_until(lambda at=spoken_at: call.first_audio_after(at) is not None, timeout_s=20)
            await wait_until(lambda at=spoken_at, n=heard: sum(  # type: ignore[misc]
                1 for e in call.events if e.kind == "mark-echo" and e.at > at) >= n, timeout_s=30)
            barge_next = True
            continue
        await call.wait_for_agent(since=spoken_at, quiet_s=0.4, timeout_s=30)
        if barge_next:
            assert session.barge_ins >= 1, "the caller talked over the agent but no barge-in happened"
            barge_next = False
        reply = _agent_lines(session, before)
        for wanted in step.get("agent_says") or []:
            assert wanted.lower() in reply.lower(), f"{step['caller']!r} → {reply!r}: missing {wanted!r}"
        if step.get("expect_no_booking_yet"):
            assert await bookings.list_bookings(db, tenant_id, include_cancelled=True) == []
