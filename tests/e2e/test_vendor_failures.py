"""A vendor failing mid-call never leaves the caller in silence and never loses what was said."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from shared.audio import mulaw
from streaming_service.call_session import APOLOGY_AGENT, CANNOT_HEAR_GOODBYE, CANNOT_HEAR_TRANSFER
from streaming_service.engines.fallback_agent import SWITCH_NOTICE
from streaming_service.engines.offline_stt import OfflineSpeechToTextStream, offline_streams_open
from tests.e2e.conftest import user_messages, wait_until
from tests.fakes.speech_marker import marked_speech


async def test_stt_socket_dropped_mid_utterance_loses_no_words(stack):
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)
        before = sum(stack.deepgram.bytes_received)
        pending = caller.say_nowait(marked_speech("I would like to move my appointment to Friday"))
        # Mid-utterance in audio time: 0.8 s of the 2.3 s line has reached the recogniser.
        await stack.deepgram.wait_until(lambda: sum(stack.deepgram.bytes_received) >= before + 6400)
        assert not pending.done()
        await stack.deepgram.drop_all()
        spoken_at = await pending
        await caller.wait_for_agent(since=spoken_at)
    assert stack.deepgram.connections >= 2
    assert user_messages(stack.openai)[-1] == "I would like to move my appointment to Friday"


def agent_lines(session):
    return [t["text"] for t in session.transcript if t["role"] == "agent"]


async def test_llm_5xx_hands_the_call_to_the_offline_policy_and_it_goes_on(stack):
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)
        stack.openai.fail_next(500)
        stack.openai.fail_next(500)  # the SDK retries once; both fail
        spoken_at = await caller.say(marked_speech("Can I book for Monday"))
        await caller.wait_for_agent(since=spoken_at)
        session = stack.session(caller)
        switched = agent_lines(session)[-1]
        assert switched.startswith(SWITCH_NOTICE.strip()) and len(switched) > len(SWITCH_NOTICE)
        assert caller.first_audio_after(spoken_at) is not None
        spoken_at = await caller.say(marked_speech("Monday at ten"))
        await caller.wait_for_agent(since=spoken_at)
        answer = agent_lines(session)[-1]
    # Later turns stay with the offline policy: the failing vendor is not asked again mid-call.
    assert "Monday at ten" not in user_messages(stack.openai)
    assert answer and not answer.startswith(SWITCH_NOTICE.strip())


async def test_llm_hang_is_cut_by_the_timeout_and_the_offline_policy_answers(stack_factory):
    stack = await stack_factory(openai_timeout_s=1.0)
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)
        stack.openai.hang_next()
        spoken_at = await caller.say(marked_speech("Hello is anyone there"))
        await caller.wait_for_agent(since=spoken_at, timeout_s=15)
        assert agent_lines(stack.session(caller))[-1].startswith(SWITCH_NOTICE.strip())
        gap = caller.first_audio_after(spoken_at) - spoken_at
    assert gap < 10  # bounded: never the open-ended silence of a hung request


async def test_llm_stream_cut_mid_sentence_is_finished_by_the_offline_policy(stack):
    stack.openai.script("Sure, I can help you with that booking right away. Which day works for you?")
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)
        stack.openai.cut_next_after_deltas(4)
        spoken_at = await caller.say(marked_speech("I need an appointment"))
        await caller.wait_for_agent(since=spoken_at)
        said = agent_lines(stack.session(caller))[-1]
    assert SWITCH_NOTICE.strip() in said and said.index(SWITCH_NOTICE.strip()) > 0  # what was said, then the switch


async def test_when_the_fallback_fails_too_the_caller_hears_an_apology(stack_factory):
    """Both brains down (OpenAI failing, and the offline policy unable to answer): still never silence."""
    stack = await stack_factory(agent_engine="vendor")
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)
        session = stack.session(caller)
        session.engines.agent.offline = session.engines.agent.primary  # the "fallback" is the failing vendor
        for _ in range(4):
            stack.openai.fail_next(500)
        spoken_at = await caller.say(marked_speech("Can you hear me"))
        await caller.wait_for_agent(since=spoken_at)
        assert agent_lines(session)[-1].endswith(APOLOGY_AGENT)


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
    stack.openai.script("Our prices start at twenty dollars for a haircut.")  # one sentence: one TTS stream
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)
        stack.elevenlabs.cut_after_bytes(1600)
        spoken_at = await caller.say(marked_speech("Tell me about prices"))
        await caller.wait_for_agent(since=spoken_at)
        heard_ms = sum(e.size for e in caller.events if e.kind == "media" and e.at >= spoken_at) / 8
        said = agent_lines(stack.session(caller))[-1]
    assert stack.state.engines.tts.fallbacks >= 1
    assert said == "Our prices start at twenty dollars for a haircut."
    # The vendor sent 200 ms before the cut; the offline voice said the sentence again, whole.
    assert heard_ms > 200 + 1000


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


@pytest.mark.parametrize("person", ["+15550009999", ""])
async def test_past_the_process_offline_recognisers_a_caller_is_told_and_put_through(stack_factory, person):
    """Deepgram refuses the key, so every call needs an offline recogniser, and this process may run one
    (each costs 0.11-0.15 of a core: more would slow every call of the task). The first call gets it and goes on;
    the second hears why after its greeting and is put through to the tenant's person (or told to call back),
    and the line closes; once the first hangs up, the next call gets the recogniser again."""
    async def tenant_settings(_tenant: str) -> dict[str, Any]:
        return {"fallback_transfer_number": person} if person else {}

    assert offline_streams_open() == 0  # none leaked by earlier tests
    stack = await stack_factory(deepgram_api_key="not-the-key", capacity={"offline_stt_max_streams": 1},
                                tenant_settings=tenant_settings, caller_speed=4.0)
    async with stack.call() as first:
        await first.wait_for_agent(since=0)
        listening = stack.session(first)
        await wait_until(lambda: isinstance(listening._stt, OfflineSpeechToTextStream))
        async with stack.call() as second:
            await wait_until(lambda: stack.session(second) is not None)
            refused = stack.session(second)
            await wait_until(second.closed.is_set, timeout_s=20)  # the service closed the stream
        said = agent_lines(refused)
        assert said == [stack.settings.default_greeting, CANNOT_HEAR_TRANSFER if person else CANNOT_HEAR_GOODBYE]
        outcome = refused.call.outcome
        assert (outcome.action, outcome.transfer_to) == (("transfer", person) if person else ("hangup", ""))
        assert listening.state != "ended" and isinstance(listening._stt, OfflineSpeechToTextStream)
        assert offline_streams_open() == 1
    await wait_until(lambda: offline_streams_open() == 0)  # hung up: the recogniser is free again
    async with stack.call() as third:
        await wait_until(lambda: isinstance(getattr(stack.session(third), "_stt", None), OfflineSpeechToTextStream))


async def test_a_hung_model_is_covered_by_a_filler_then_handed_to_the_offline_policy(stack_factory):
    """Default read timeout (10 s) left as is: the first-event deadline and the filler line keep every
    silence the caller hears short."""
    stack = await stack_factory(openai_timeout_s=10.0, agent_first_event_timeout_s=3.0)
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)
        stack.openai.hang_next()
        spoken_at = await caller.say(marked_speech("Do you have anything on Friday"))
        await caller.wait_for_agent(since=spoken_at, quiet_s=2.5, timeout_s=20)
        lines = agent_lines(stack.session(caller))
        first_ms, longest_silence_ms = heard_after_speech_ms(caller)
    assert lines[-2] == stack.settings.silence.thinking_filler_text
    assert lines[-1].startswith(SWITCH_NOTICE.strip())
    assert first_ms < 2500  # the filler starts well before the 3 s deadline
    # The filler plays about a second; after it, the fallback's answer follows within the deadline.
    assert longest_silence_ms < 2500


def heard_after_speech_ms(caller) -> tuple[float, float]:
    """From the end of the caller's last words: how long until the first agent frame they heard, and the
    longest silence until the last one. Audio time, on the caller's playout clock (both sides are recorded
    one 20 ms frame per tick), so a slow test process does not stretch the measure."""
    silent = mulaw.silence(mulaw.FRAME_MS)

    def frames(audio: bytearray) -> list[bytes]:
        return [bytes(audio[i : i + mulaw.FRAME_BYTES]) for i in range(0, len(audio), mulaw.FRAME_BYTES)]

    spoke = max(i for i, frame in enumerate(frames(caller.recording.caller)) if frame != silent)
    heard = [spoke, *(i for i, frame in enumerate(frames(caller.recording.agent)) if i > spoke and frame != silent)]
    longest = max(b - a for a, b in itertools.pairwise(heard))
    return (heard[1] - spoke) * mulaw.FRAME_MS, longest * mulaw.FRAME_MS
