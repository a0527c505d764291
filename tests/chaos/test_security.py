"""Security regressions on the stream, beyond tests/e2e/test_bad_input.py (forged and missing signatures,
forged/other-tenant/other-call/missing tokens, a second stream for a live call): replayed signatures and
tokens, expired tokens, tokens from another deployment's secret, and a start that names another tenant
after a valid one. Each is refused with a clear code and leaves the live call beside it untouched."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from twilio.request_validator import RequestValidator

from shared.stream_token import mint_stream_token
from tests.e2e.conftest import STREAM_SECRET, TWILIO_TOKEN, VoiceStack, wait_until


async def _refused_with(stack: VoiceStack, token: str, call_sid: str | None = None, tenant_id: str = "acme") -> int:
    caller = stack.call(tenant_id=tenant_id, token=token, call_sid=call_sid)
    await caller.connect()
    await asyncio.wait_for(caller.closed.wait(), timeout=5)
    return caller.close_code or 0


async def test_replayed_and_stale_stream_tokens_are_refused_beside_a_live_call(chaos_stack: VoiceStack) -> None:
    stack = chaos_stack
    async with stack.call() as live:
        await wait_until(lambda: stack.session(live) is not None)
        token = live.custom_parameters["stream_token"]
        cases = {
            "replayed for another call": await _refused_with(stack, token),
            "replayed for another tenant": await _refused_with(stack, token, call_sid=live.call_sid + "x",
                                                               tenant_id="globex"),
            "replayed for the live call": await _refused_with(stack, token, call_sid=live.call_sid),
            "expired": await _refused_with(stack, mint_stream_token(STREAM_SECRET, "acme", "CAexp", ttl_s=60,
                                                                    now=time.time() - 3600), call_sid="CAexp"),
            "another deployment's secret": await _refused_with(stack, mint_stream_token("other", "acme", "CAo"),
                                                               call_sid="CAo"),
            "tenant with a separator": await _refused_with(stack, token + "|globex"),
        }
        assert cases == dict.fromkeys(cases, 1008)
        assert set(stack.state.sessions) == {live.call_sid}  # the live call is untouched
        spoken = await live.say(b"\xff" * 1600)
        assert spoken and not live.closed.is_set()


@pytest.mark.parametrize("signed_url", ["http://127.0.0.1:{port}/voice", "ws://127.0.0.1:{port}/twilio-stream?x=1",
                                        "ws://evil.example/twilio-stream"])
async def test_a_signature_replayed_from_another_url_is_refused_before_upgrade(chaos_stack: VoiceStack,
                                                                                signed_url: str) -> None:
    url = signed_url.format(port=chaos_stack.port)
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, {"CallSid": "CA1"} if "voice" in url else {})
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(chaos_stack.ws_url, headers={"X-Twilio-Signature": signature})
    assert refused.value.status == 403
    assert not chaos_stack.state.sessions


@pytest.mark.parametrize(("call_sid", "tenant_id"), [("CAé", "acme"), ("CA1", "acmé"), ("CA\u202e1", "acme")])
async def test_non_ascii_call_or_tenant_in_start_is_refused_not_crashed(chaos_stack: VoiceStack, call_sid: str,
                                                                          tenant_id: str) -> None:
    """Found by the fuzzer: a valid token with a non-ASCII callSid made `hmac.compare_digest` raise."""
    token = mint_stream_token(STREAM_SECRET, "acme", "CA1")
    assert await _refused_with(chaos_stack, token, call_sid=call_sid, tenant_id=tenant_id) == 1008
