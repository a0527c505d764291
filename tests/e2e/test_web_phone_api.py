"""The web phone's server side, without a browser: operator-only pages, a call placed through the signed
`/voice` webhook, and a one-time ticket that lets the page's WebSocket reach the stream through a relay
that adds Twilio's signature (the service verifies it and the stream token as for any call)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from local.stack import DEMO_NUMBER, LocalStack, build_local_stack
from shared import twilio_media as wire
from shared.settings import Settings
from streaming_service.service_state import STATE
from tests.e2e.conftest import free_port

TUNNELLED = {"X-Forwarded-For": "203.0.113.9"}
PAGES = ("/phone", "/calls", "/phone/static/phone.js", "/phone/api/tenants")


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[LocalStack]:
    port = free_port()
    built = await build_local_stack(Settings(_env_file=None), port, tmp_path / "data")  # type: ignore[call-arg]
    runner = web.AppRunner(built.app, handle_signals=False, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield built
    await runner.cleanup()


async def test_the_pages_are_for_local_operators_only(stack: LocalStack) -> None:
    async with aiohttp.ClientSession() as http:
        for path in PAGES:
            async with http.get(stack.base_url + path, headers=TUNNELLED) as refused:
                assert refused.status == 403, path
            async with http.get(stack.base_url + path) as served:
                assert served.status == 200, path
        async with http.post(stack.base_url + "/phone/api/calls", json={"to": DEMO_NUMBER}, headers=TUNNELLED) as no:
            assert no.status == 403


async def test_a_ticket_opens_one_signed_stream_and_only_once(stack: LocalStack) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(stack.base_url + "/phone/api/calls", json={"to": DEMO_NUMBER}) as placed:
            assert placed.status == 200
            call = await placed.json()
        assert call["custom_parameters"]["tenant_id"] == stack.demo_tenant_id  # from the real webhook's TwiML
        relay = stack.base_url.replace("http", "ws", 1) + call["relay"]
        builder = wire.InboundBuilder("MZ" + "1" * 32, call["call_sid"], call["account_sid"])
        async with http.ws_connect(relay) as ws:
            await ws.send_str(builder.connected())
            await ws.send_str(builder.start(call["custom_parameters"]))
            state = stack.app[STATE]
            for _ in range(100):  # the service accepted the signature and the token: a session exists
                if call["call_sid"] in state.sessions:
                    break
                await asyncio.sleep(0.05)
            assert call["call_sid"] in state.sessions
            first = json.loads((await ws.receive(timeout=10)).data)  # the greeting, as Twilio would get it
            assert first["event"] in ("media", "mark") and first["streamSid"] == builder.stream_sid
            views = f"{stack.base_url}/calls/api/{stack.demo_tenant_id}"
            async with http.get(f"{views}/live") as live:  # the call view lists it while it is live
                assert [c["call_sid"] for c in (await live.json())["items"]] == [call["call_sid"]]
            session = state.sessions[call["call_sid"]]
            for _ in range(200):  # the greeting has been said (the page would echo marks; not needed here)
                if session.transcript:
                    break
                await asyncio.sleep(0.05)
            await ws.send_str(builder.stop())
        for _ in range(100):  # and, once ended, through the tenant API as the tenant reads it
            async with http.get(f"{views}/calls/{call['call_sid']}/transcript") as stored:
                items = (await stored.json()).get("items") if stored.status == 200 else None
            if items:
                break
            await asyncio.sleep(0.1)
        assert items and items[0]["role"] == "agent" and "Demo Salon" in items[0]["text"]
        async with http.get(f"{views}/calls", headers=TUNNELLED) as refused:
            assert refused.status == 403
        with pytest.raises(aiohttp.WSServerHandshakeError) as again:
            await http.ws_connect(relay)  # the ticket was used
        assert again.value.status == 403
        with pytest.raises(aiohttp.WSServerHandshakeError) as forged:
            await http.ws_connect(stack.base_url.replace("http", "ws", 1) + "/phone/relay?ticket=made-up")
        assert forged.value.status == 403


async def test_a_call_the_page_never_connects_ends_as_no_answer(stack: LocalStack, monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    from local.web_phone import placing

    monkeypatch.setattr(placing, "TICKET_TTL_S", 0.3)
    async with aiohttp.ClientSession() as http:
        async with http.post(stack.base_url + "/phone/api/calls", json={"to": DEMO_NUMBER}) as placed:
            call = await placed.json()
        record_url = f"{stack.base_url}/calls/api/{stack.demo_tenant_id}/calls/{call['call_sid']}"
        status = ""
        for _ in range(60):  # Twilio's status callback (signed, POST /status) once the ticket expired
            async with http.get(record_url) as answer:
                status = (await answer.json()).get("status", "")
            if status == "no-answer":
                break
            await asyncio.sleep(0.1)
        assert status == "no-answer"
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(stack.base_url.replace("http", "ws", 1) + call["relay"])  # too late
