"""Hostile or broken input gets a log line and a clear close code or is skipped, never a crash,
and never touches another call."""

from __future__ import annotations

import asyncio
import base64
import json
import logging

import aiohttp
import pytest

from tests.e2e.conftest import user_messages, wait_until
from tests.fakes.speech_marker import marked_speech


async def test_forged_or_missing_signature_is_refused_before_upgrade(stack, caplog):
    for auth_token in ("wrong-token", ""):
        caller = stack.call(auth_token=auth_token)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await caller.connect()
        assert refused.value.status == 403
        await caller.hang_up()
    assert stack.state.rejected_connections == 2 and not stack.state.sessions
    assert "X-Twilio-Signature" in caplog.text


@pytest.mark.parametrize("kind", ["forged", "other_tenant", "other_call", "missing"])
async def test_bad_stream_token_closes_with_policy_violation(stack, kind, caplog):
    caplog.set_level(logging.WARNING)
    if kind == "forged":
        caller = stack.call(token="eyJmb28iOiJiYXIifQ.c2lnbmF0dXJl")
    elif kind == "other_tenant":
        caller = stack.call(tenant_id="acme", token_tenant="globex")
    elif kind == "other_call":
        from shared.stream_token import mint_stream_token

        caller = stack.call(token=mint_stream_token("stream-secret-for-tests", "acme", "CAsomeoneelse"))
    else:
        caller = stack.call(token="")
    await caller.connect()
    await asyncio.wait_for(caller.closed.wait(), timeout=5)
    assert caller.close_code == 1008
    assert not stack.state.sessions
    assert "invalid stream token" in caplog.text


async def test_second_stream_for_a_live_call_is_refused(stack):
    async with stack.call() as first:
        await wait_until(lambda: stack.session(first) is not None)
        replay = stack.call(call_sid=first.call_sid)
        await replay.connect()
        await asyncio.wait_for(replay.closed.wait(), timeout=5)
        assert replay.close_code == 1008
        assert stack.session(first) is not None  # the live call is untouched


async def test_garbage_is_skipped_and_a_call_beside_it_is_unaffected(stack, caplog):
    caplog.set_level(logging.WARNING)
    async with stack.call() as good, stack.call(tenant_id="globex") as bad:
        await wait_until(lambda: stack.session(bad) is not None and stack.session(good) is not None)
        garbage = [
            "not json at all", "[]", "{}", '{"event": 5}', '{"event": "bogus"}',
            json.dumps({"event": "media", "streamSid": bad.stream_sid, "media": {"payload": "%%%"}}),
            json.dumps({"event": "media", "streamSid": bad.stream_sid, "media": None}),
            json.dumps({"event": "media", "streamSid": good.stream_sid,  # another call's stream
                        "media": {"payload": base64.b64encode(marked_speech("cancel everything")).decode()[:200]}}),
            json.dumps({"event": "mark", "streamSid": bad.stream_sid, "mark": {"name": "s999"}}),
            json.dumps({"event": "dtmf", "streamSid": bad.stream_sid, "dtmf": {"digit": "xx"}}),
            json.dumps({"event": "start", "start": {"streamSid": "MZx", "callSid": good.call_sid}}),
            "\x00\xff" * 50,
        ]
        for message in garbage * 5:
            await bad.send_raw(message)
        spoken_at = await good.say(marked_speech("Is the good call still fine"))
        await good.wait_for_agent(since=spoken_at)
        assert stack.session(bad) is not None, "the bad call survives its own garbage"
    assert "Is the good call still fine" in user_messages(stack.openai)
    assert stack.state.protocol_errors >= 40
    assert "malformed message skipped" in caplog.text


async def test_media_before_start_is_skipped(stack, caplog):
    caplog.set_level(logging.INFO)
    caller = stack.call()
    async with aiohttp.ClientSession() as http:
        from twilio.request_validator import RequestValidator

        sig = RequestValidator("twilio-test-token").compute_signature(stack.ws_url, {})
        ws = await http.ws_connect(stack.ws_url, headers={"X-Twilio-Signature": sig})
        await ws.send_str(caller._builder.connected())
        await ws.send_str(caller._builder.media(b"\xff" * 160))
        await ws.send_str(caller._builder.dtmf("1"))
        await ws.send_str(caller._builder.start(caller.custom_parameters))
        await wait_until(lambda: stack.session(caller) is not None)
        await ws.close()
    assert "message before start skipped" in caplog.text


async def test_oversized_message_closes_with_1009(stack):
    async with stack.call() as caller:
        await wait_until(lambda: stack.session(caller) is not None)
        await caller.send_raw("x" * (stack.settings.max_ws_message_bytes + 10))
        await asyncio.wait_for(caller.closed.wait(), timeout=5)
        assert caller.close_code == 1009
    await wait_until(lambda: not stack.state.sessions)


async def test_no_start_message_times_out_cleanly(stack_factory):
    stack = await stack_factory(stream_admission={"start_timeout_s": 0.3})
    async with aiohttp.ClientSession() as http:
        from twilio.request_validator import RequestValidator

        sig = RequestValidator("twilio-test-token").compute_signature(stack.ws_url, {})
        ws = await http.ws_connect(stack.ws_url, headers={"X-Twilio-Signature": sig})
        msg = await ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1008
