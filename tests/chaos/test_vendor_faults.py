"""Vendor faults injected for real (sockets cut, handshakes refused, 5xx, hangs, cut streams) with a
simulated caller on the line. Dead air is measured at the caller: the longest stretch with no agent
audio playing, from the end of the caller's words to the end of the answer.

tests/e2e/test_vendor_failures.py covers the single-fault basics; these add the timings, the offline
takeovers and the long outage."""

from __future__ import annotations

from typing import Literal

import pytest

from streaming_service.call_session import APOLOGY_HEARING
from streaming_service.engines.fallback_agent import SWITCH_NOTICE, FallbackAgentRuntime
from tests.chaos.conftest import StackFactory
from tests.chaos.harness import DEAD_AIR_LIMIT_S
from tests.e2e.conftest import VoiceStack, user_messages, wait_until
from tests.fakes.speech_marker import marked_speech

AgentFault = Literal["5xx", "hang", "stream_cut", "malformed_tool_call"]
LONG_REPLY = ("Sure, I can help you with that booking right away. We have plenty of times next week. "
              "Which day works best for you?")


def _inject(stack: VoiceStack, fault: AgentFault) -> None:
    if fault == "5xx":
        stack.openai.fail_next(503)
        stack.openai.fail_next(503)  # the SDK retries once; both fail
    elif fault == "hang":
        stack.openai.hang_next()
    elif fault == "stream_cut":
        stack.openai.script(LONG_REPLY)
        stack.openai.cut_next_after_deltas(4)
    else:
        stack.openai.malformed_tool_call_next()


@pytest.mark.parametrize("fault", ["5xx", "hang", "stream_cut", "malformed_tool_call"])
async def test_agent_fault_offline_policy_takes_over_without_dead_air(chaos_stack_factory: StackFactory,
                                                                      fault: AgentFault) -> None:
    # The per-event model timeout is the configured bound on a hang; 1 s keeps the caller under 2 s.
    stack = await chaos_stack_factory(openai_timeout_s=1.0)
    agent = stack.state.engines.agent
    assert isinstance(agent, FallbackAgentRuntime)
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)
        _inject(stack, fault)
        spoken_at = await caller.say(marked_speech("Can I book a haircut for Monday"))
        await caller.wait_for_agent(since=spoken_at, timeout_s=15)
        session = stack.session(caller)
        assert session is not None
        dead_air = caller.dead_air_s(spoken_at)
        assert dead_air <= DEAD_AIR_LIMIT_S, f"{fault}: {dead_air:.2f} s of dead air"
        assert agent.is_offline(session.call)
        answer = session.transcript[-1]["text"]
        assert SWITCH_NOTICE.strip() in answer and len(answer) > len(SWITCH_NOTICE) + 5  # notice, then the policy

        # The call goes on, on the offline policy: no more requests to the failed vendor.
        requests = len(stack.openai.requests)
        spoken_at = await caller.say(marked_speech("What time do you open"))
        await caller.wait_for_agent(since=spoken_at, timeout_s=15)
        assert caller.dead_air_s(spoken_at) <= DEAD_AIR_LIMIT_S
        assert len(stack.openai.requests) == requests
        assert session.transcript[-2] == {**session.transcript[-2], "role": "caller", "text": "What time do you open"}
        assert session.state != "ended"


@pytest.mark.parametrize("fault", ["5xx", "stream_cut"])
async def test_tts_fault_offline_voice_speaks_the_rest(chaos_stack: VoiceStack, fault: str) -> None:
    stack = chaos_stack
    stack.openai.script(LONG_REPLY)
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)
        if fault == "5xx":
            stack.elevenlabs.fail_all(500)
        else:
            stack.elevenlabs.cut_after_bytes(1600)  # 200 ms of the first sentence, then the socket drops
        spoken_at = await caller.say(marked_speech("Can I book a haircut"))
        await caller.wait_for_agent(since=spoken_at, timeout_s=20)
        dead_air = caller.dead_air_s(spoken_at)
    tts = stack.state.engines.tts
    assert getattr(tts, "fallbacks", 0) >= 1
    # Every sentence was heard (the offline voice says a failed sentence again, whole): at least ~40 ms
    # per character of the reply, far more than the 200 ms the vendor managed.
    assert caller.heard_ms_since(spoken_at) >= 40 * len(LONG_REPLY)
    assert dead_air <= DEAD_AIR_LIMIT_S, f"{dead_air:.2f} s of dead air"


@pytest.mark.chaos_long
async def test_stt_drop_mid_utterance_and_10s_refusal_loses_no_words(chaos_stack: VoiceStack) -> None:
    stack = chaos_stack
    # Real time: the outage is wall-clock, and a faster caller would send 30 s of audio in it, more than
    # the recogniser keeps for resending (max_buffer_s).
    async with stack.call(speed=1.0) as caller:
        await caller.wait_for_agent(since=0)
        before = "I would like to move my appointment to Friday"
        after = "And my name is Jordan Lee"
        sent = sum(stack.deepgram.bytes_received)
        pending = caller.say_nowait(marked_speech(before))
        # Mid-utterance in audio time: 0.8 s of the 2.3 s line has reached the recogniser.
        await stack.deepgram.wait_until(lambda: sum(stack.deepgram.bytes_received) >= sent + 6400)
        stack.deepgram.refuse_for(10)
        await stack.deepgram.drop_all()
        await pending
        session = stack.session(caller)
        assert session is not None
        # A long gap: the caller is told, politely, once.
        await wait_until(lambda: any(t["text"] == APOLOGY_HEARING for t in session.transcript), timeout_s=8)
        await caller.wait_for_agent(since=0, timeout_s=10)
        await caller.say(marked_speech(after))  # still inside the outage
        assert stack.deepgram.refused >= 1
        await wait_until(lambda: after in user_messages(stack.openai), timeout_s=25)
        await caller.wait_for_agent(since=0, timeout_s=15)
    # Both utterances reached the agent, each once, in order; Deepgram (not the offline fallback) heard them.
    [last] = [body for body in stack.openai.requests if after in str(body.get("messages"))][-1:]
    users = [str(m["content"]) for m in last["messages"] if m.get("role") == "user"]
    assert users[-2:] == [before, after]
    assert [t["text"] for t in session.transcript if t["role"] == "caller"] == [before, after]
    assert type(session._stt).__name__ == "DeepgramStream"
    assert [t["text"] for t in session.transcript].count(APOLOGY_HEARING) == 1
