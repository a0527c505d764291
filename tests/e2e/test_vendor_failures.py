"""A vendor failing mid-call never leaves the caller in silence and never loses what was said."""

from __future__ import annotations

import asyncio
import time

from streaming_service.call_session import APOLOGY_AGENT
from tests.e2e.test_live_call import user_messages, wait_until
from tests.fakes.speech_marker import marked_speech


async def test_stt_socket_dropped_mid_utterance_loses_no_words(stack):
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)
        pending = caller.say_nowait(marked_speech("I would like to move my appointment to Friday"))
        await asyncio.sleep(0.8)  # mid-utterance
        await stack.deepgram.drop_all()
        spoken_at = await pending
        await caller.wait_for_agent(since=spoken_at)
    assert stack.deepgram.connections >= 2
    assert user_messages(stack.openai)[-1] == "I would like to move my appointment to Friday"


async def test_llm_5xx_gives_a_short_apology_and_the_call_goes_on(stack):
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)
        stack.openai.fail_next(500)
        stack.openai.fail_next(500)  # the SDK retries once; both fail
        spoken_at = await caller.say(marked_speech("Can I book for Monday"))
        await caller.wait_for_agent(since=spoken_at)
        session = stack.session(caller)
        assert session.transcript[-1]["text"].endswith(APOLOGY_AGENT)
        assert caller.first_audio_after(spoken_at) is not None
        spoken_at = await caller.say(marked_speech("Monday at ten"))
        await caller.wait_for_agent(since=spoken_at)
    assert user_messages(stack.openai)[-1] == "Monday at ten"
    assert session.turns[0]["errors"] == ["openai"]


async def test_llm_hang_is_cut_by_the_timeout_and_apologised_for(stack_factory):
    stack = await stack_factory(openai_timeout_s=1.0)
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)
        stack.openai.hang_next()
        spoken_at = await caller.say(marked_speech("Hello is anyone there"))
        await caller.wait_for_agent(since=spoken_at, timeout_s=15)
        assert stack.session(caller).transcript[-1]["text"] == APOLOGY_AGENT
        gap = caller.first_audio_after(spoken_at) - spoken_at
    assert gap < 10  # bounded: never the open-ended silence of a hung request


async def test_llm_stream_cut_mid_sentence_still_speaks_and_apologises(stack):
    stack.openai.script("Sure, I can help you with that booking right away. Which day works for you?")
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)
        stack.openai.cut_next_after_deltas(4)
        spoken_at = await caller.say(marked_speech("I need an appointment"))
        await caller.wait_for_agent(since=spoken_at)
        said = stack.session(caller).transcript[-1]["text"]
    assert said.endswith(APOLOGY_AGENT)


async def test_tts_failure_falls_back_to_the_offline_voice(stack):
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)
        before = len(stack.elevenlabs.requests)
        stack.elevenlabs.fail_all(500)
        spoken_at = await caller.say(marked_speech("What time do you close"))
        await caller.wait_for_agent(since=spoken_at)
        heard_ms = sum(e.size for e in caller.events if e.kind == "media" and e.at >= spoken_at) / 8
    assert len(stack.elevenlabs.requests) > before  # the vendor was tried
    assert heard_ms > 1000  # and the caller still heard the reply, in the offline voice
    assert stack.state.engines.tts.fallbacks >= 1


async def test_tts_stream_cut_mid_sentence_is_finished_by_the_offline_voice(stack):
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)
        stack.elevenlabs.cut_after_bytes(1600)
        spoken_at = await caller.say(marked_speech("Tell me about prices"))
        await caller.wait_for_agent(since=spoken_at)
    assert stack.state.engines.tts.fallbacks >= 1
    assert time.monotonic() > spoken_at


async def test_stt_unrecoverable_falls_back_to_offline_recogniser(stack_factory):
    stack = await stack_factory()
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)
        stack.deepgram.refuse_for(60)
        await stack.deepgram.drop_all()
        session = stack.session(caller)
        # The Deepgram adapter gives up after its retry budget and the offline recogniser takes over.
        await wait_until(lambda: type(session._stt).__name__ == "OfflineSpeechToTextStream", timeout_s=20)
    assert session.state != "ended" or session.call.outcome.action == "continue"
