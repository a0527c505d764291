"""The per-turn figures an operator sees live in `GET /websocket-status` are the ones the tenant API's
call view shows after the call (stored with the call row at its end)."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from shared.tenancy.admin import TenantAdmin
from shared.tenancy.cache import JsonCache
from shared.tenancy.call_state import CallStateStore
from shared.tenancy.database import TenantDatabase
from shared.tenancy.http_api import build_tenant_api
from shared.tenancy.transcript_buffer import TranscriptRecorder
from streaming_service.app import create_app
from streaming_service.engines.factory import build_engines
from streaming_service.tenancy_recorder import TenancyCallRecorder
from tests.e2e.conftest import VoiceStack, free_port, vendor_settings, wait_until
from tests.fakes.speech_marker import marked_speech


async def test_status_and_tenant_call_view_show_the_same_turn_figures(
        fakes, db: TenantDatabase, cache: JsonCache, admin: TenantAdmin, make_tenant) -> None:
    tenant = await make_tenant("obs")
    key = await admin.create_api_key(tenant.tenant_id)
    dg, el, oa = fakes
    settings = vendor_settings(dg, el, oa)
    recorder = TenancyCallRecorder(db, CallStateStore(db, cache), TranscriptRecorder(db, cache))
    app = create_app(settings, build_engines(settings), recorder=recorder)
    app.add_subapp("/api", build_tenant_api(db))
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stack = VoiceStack(dg, el, oa, settings, port, app, runner)
    try:
        async with stack.call(tenant_id=str(tenant.tenant_id)) as caller, aiohttp.ClientSession() as http:
            await caller.wait_for_agent(since=0)
            for line in ("I would like to book a haircut", "Tomorrow at three please"):
                spoken_at = await caller.say(marked_speech(line))
                await caller.wait_for_agent(since=spoken_at)
            status = await (await http.get(stack.http_url + "/websocket-status")).json()
        [live] = status["sessions"]
        await wait_until(lambda: not stack.state.sessions, timeout_s=20)
        async with aiohttp.ClientSession() as http:
            response = await http.get(f"{stack.http_url}/api/calls/{caller.call_sid}", headers={
                "X-Tenant-Id": str(tenant.tenant_id), "Authorization": f"Bearer {key}"})
            assert response.status == 200
            record = await response.json()
    finally:
        await stack.state.drain(0)
        await runner.cleanup()

    assert len(live["turn_metrics"]) == 2 and live["last_turn"] == live["turn_metrics"][-1]
    assert record["call_sid"] == caller.call_sid and record["ended_at"] is not None
    assert record["turn_metrics"] == live["turn_metrics"]
    for turn in record["turn_metrics"]:
        assert {"turn", "stt_ms", "llm_ttft_ms", "tts_ttfb_ms", "voice_to_voice_ms", "barge_in", "errors"} <= set(turn)
        assert turn["voice_to_voice_ms"] > 0
