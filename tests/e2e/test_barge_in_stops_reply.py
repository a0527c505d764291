"""A true barge-in stops the reply that is still being generated, not only the audio already queued.

The model streams a word every 80 ms and the TTS streams in real time, so when the caller talks over the
agent most of the reply does not exist yet: a barge-in that cleared the line but left the reply running
would keep sending its later sentences. The caller says real words (not a cough or a backchannel).
"""

from __future__ import annotations

import asyncio
import time

from tests.e2e.conftest import user_messages, wait_until
from tests.fakes.openai_server import ToolCall
from tests.fakes.speech_marker import marked_speech

LONG_REPLY = ("Let me tell you about all of our services in detail. We offer haircuts and colouring. "
              "We also do beard trims and hot towel shaves. Our stylists are available six days a week. "
              "We open at nine in the morning and close at seven in the evening. "
              "Parking is free behind the building, and we take cards and cash.")
NEXT_REPLY = "Of course. What day would suit you for the haircut?"


async def interrupt_a_slow_reply(stack):
    """The caller asks, hears the first sentence of a slowly generated reply, then talks over it with real
    words. Returns the caller, the session, when the interruption began and when the next reply was voiced."""
    stack.openai.inter_token_delay_s = 0.08
    stack.elevenlabs.first_byte_delay_s = 0.15
    stack.elevenlabs.chunk_delay_s = 0.1  # 800 bytes (100 ms of audio) every 100 ms: real time
    stack.openai.script(LONG_REPLY, NEXT_REPLY)
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)  # the greeting
        asked_at = await caller.say(marked_speech("What services do you offer"))
        # The caller has heard the first sentence (its mark came back) while the model is still talking.
        await wait_until(lambda: any(e.kind == "mark-echo" and e.at > asked_at for e in caller.events))
        assert len(stack.elevenlabs.requests) < 1 + len(LONG_REPLY.split(". "))  # the reply is unfinished
        interrupt_at = time.monotonic()
        caller.say_nowait(marked_speech("Actually just book me a haircut"))
        await wait_until(lambda: bool(caller.clears_after(interrupt_at)), timeout_s=3)
        await wait_until(lambda: any(r.text.startswith("Of course") for r in stack.elevenlabs.requests),
                         timeout_s=10)
        next_reply_at = next(r.received_at for r in stack.elevenlabs.requests if r.text.startswith("Of course"))
        await wait_until(lambda: caller.first_audio_after(next_reply_at) is not None, timeout_s=5)
        session = stack.session(caller)
    return caller, session, interrupt_at, next_reply_at


def assert_stopped_at_the_clear(stack, caller, session, interrupt_at: float, next_reply_at: float) -> None:
    [clear_at] = caller.clears_after(interrupt_at)  # one clear for one interruption
    leaked = [e for e in caller.events if e.kind == "media" and clear_at < e.at < next_reply_at]
    leaked_ms = sum(e.size for e in leaked) / 8  # mu-law 8 kHz: 8 bytes per ms
    assert leaked == [], f"{leaked_ms:.0f} ms of agent audio after the clear, before the next reply"
    assert user_messages(stack.openai)[-1] == "Actually just book me a haircut"
    assert session.barge_ins == 1
    assert session.clears_sent == len(caller.clears_after(0))  # counted as the caller saw them
    spoken = [r.text for r in stack.elevenlabs.requests if r.received_at > clear_at]
    assert all(text not in LONG_REPLY for text in spoken), spoken  # nothing more of the old reply was voiced


async def test_true_barge_in_sends_no_agent_media_between_the_clear_and_the_next_reply(stack):
    """Default options: the clear goes out when the sound begins and the words then end the held reply."""
    assert_stopped_at_the_clear(stack, *await interrupt_a_slow_reply(stack))


async def test_without_false_interruption_resume_a_barge_in_clears_once_and_stops_the_reply(stack_factory):
    stack = await stack_factory(interruption={"resume_false_interruptions": False})
    assert_stopped_at_the_clear(stack, *await interrupt_a_slow_reply(stack))


async def test_with_interruptions_off_the_caller_cannot_cut_the_reply(stack_factory):
    stack = await stack_factory(interruption={"enabled": False})
    stack.openai.script("Our opening hours are nine to five on weekdays, and ten to two on Saturdays.")
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)
        asked_at = await caller.say(marked_speech("When are you open"))
        await wait_until(lambda: caller.first_audio_after(asked_at) is not None)
        over_at = time.monotonic()
        await caller.say(marked_speech("Actually just book me a haircut"))
        await caller.wait_for_agent(since=over_at)
        session = stack.session(caller)
    assert caller.clears_after(over_at) == [] and session.barge_ins == 0
    first = next(t for t in session.transcript if t["text"].startswith("Our opening hours"))
    assert not first["interrupted"]


async def test_the_interrupted_turn_is_counted_as_a_barge_in(stack):
    _, session, _, _ = await interrupt_a_slow_reply(stack)
    assert [t["barge_in"] for t in session.turns][-2:] == [True, False]


async def test_talking_over_the_goodbye_does_not_cut_it_short(stack_factory):
    """The call is ending: the caller's words over the goodbye neither clear it nor stop it."""
    stack = await stack_factory(interruption={"resume_false_interruptions": False})
    stack.openai.script(ToolCall("end_call", {}), "Thanks for calling, goodbye!")
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)
        session = stack.session(caller)
        said_at = await caller.say(marked_speech("That is all thank you"))
        await wait_until(lambda: caller.first_audio_after(said_at) is not None, timeout_s=10)
        over_at = time.monotonic()
        caller.say_nowait(marked_speech("Wait one more thing please"))
        await asyncio.wait_for(caller.closed.wait(), timeout=20)
    assert caller.clears_after(over_at) == []
    assert session.barge_ins == 0
    last = session.transcript[-1]
    assert last["role"] == "agent" and "Goodbye" in last["text"]
    assert not last["interrupted"] and last["heard"] == last["text"]
    assert session.call.outcome.action == "hangup"


async def test_the_callers_words_go_to_the_recogniser_frame_by_frame_only_while_the_agent_talks(stack):
    """While the agent talks, a barge-in is judged by the caller's words as they come: every frame of their
    speech goes to Deepgram at once. While the agent is silent nothing waits on the words one by one (the end of
    the turn waits for the pause): the speech goes in batches, a send per 100 ms."""
    stack.elevenlabs.chunk_delay_s = 0.1  # the voice in real time: the agent is heard for a while
    stack.openai.script(LONG_REPLY, NEXT_REPLY)
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)  # the greeting is over: the caller has the floor
        record = stack.deepgram.records[-1]
        question = marked_speech("What services do you offer")
        before = len(record.binary_sizes)
        asked_at = await caller.say(question)
        await wait_until(lambda: caller.first_audio_after(asked_at) is not None, timeout_s=10)
        frames = len(question) // 160
        assert len(record.binary_sizes) - before <= frames // 2  # batched (frame by frame: one send a frame)
        await wait_until(lambda: any(e.kind == "mark-echo" and e.at > asked_at for e in caller.events))
        interrupt_at = time.monotonic()
        caller.say_nowait(marked_speech("Actually just book me a haircut"))
        await wait_until(lambda: bool(caller.clears_after(interrupt_at)), timeout_s=3)
        [clear_at] = caller.clears_after(interrupt_at)[:1]
        over_agent = [at for at in record.binary_at if interrupt_at <= at <= clear_at]
        frames_over_agent = (clear_at - interrupt_at) / 0.02
        assert len(over_agent) >= 0.6 * frames_over_agent, (len(over_agent), frames_over_agent)
