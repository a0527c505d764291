"""Natural turn-taking through the whole audio pipeline (simulated caller, fake Deepgram, fake voice):
a cough or an "mm-hm" over the agent never costs the caller the answer; real words still interrupt."""

from __future__ import annotations

import asyncio
import time

from tests.e2e.conftest import user_messages, wait_until
from tests.e2e.heard_audio import compare, expected_frames, played_frames
from tests.fakes.openai_server import ToolCall
from tests.fakes.speech_marker import marked_speech, sound_without_words

ANSWER = ("We offer haircuts, colouring and beard trims. Our stylists work six days a week, "
          "and we open at nine every morning.")
MAX_GAP_FRAMES = 15  # 300 ms replayed or lost at most


async def _ask_and_wait_for_audio(stack, caller, question: str) -> tuple[float, int, int]:
    await caller.wait_for_agent(since=0)  # the greeting
    tts_before = len(stack.elevenlabs.requests)
    spoken_at = await caller.say(marked_speech(question))
    recording_from = len(caller.recording.agent)
    await wait_until(lambda: caller.first_audio_after(spoken_at) is not None)
    return spoken_at, recording_from, tts_before


def _heard(stack, caller, recording_from: int, tts_before: int):
    texts = [r.text for r in stack.elevenlabs.requests[tts_before:]]
    return compare(played_frames(caller.recording.agent[recording_from:]), expected_frames(texts))


async def test_a_cough_mid_answer_then_the_answer_is_heard_to_the_end(stack, tmp_path):
    stack.openai.script(ANSWER)
    async with stack.call() as caller:
        _spoken_at, recording_from, tts_before = await _ask_and_wait_for_audio(stack, caller, "What do you offer")
        await asyncio.sleep(1.2)
        cough_at = time.monotonic()
        cough_end = await caller.say(sound_without_words(400, "cough"))
        await wait_until(lambda: caller.first_audio_after(cough_end) is not None)  # the answer resumes
        await caller.wait_for_agent(since=cough_end)
        session = stack.session(caller)
        caller.recording.write_wav(tmp_path / "cough.wav")

    assert caller.clears_after(cough_at), "the cough was loud enough to clear playback"
    heard = _heard(stack, caller, recording_from, tts_before)
    assert heard.complete and 0 <= heard.gap_frames <= MAX_GAP_FRAMES, heard
    assert session.false_interruptions == 1 and session.barge_ins == 0
    assert user_messages(stack.openai) == ["What do you offer"]  # the cough was never a turn
    assert session.conversation.last_assistant_text() == ANSWER  # the history says it was all heard


async def test_mm_hm_over_the_agent_is_not_a_turn_and_the_answer_goes_on(stack):
    stack.openai.script(ANSWER)
    async with stack.call() as caller:
        _spoken_at, recording_from, tts_before = await _ask_and_wait_for_audio(stack, caller, "What do you offer")
        await asyncio.sleep(1.2)
        said_at = await caller.say(marked_speech("mm-hm"))  # long enough for the VAD: a clear, then a resume
        await wait_until(lambda: caller.first_audio_after(said_at) is not None)
        await caller.wait_for_agent(since=said_at)
        await asyncio.sleep(0.5)  # a turn, had one been taken, would reach the model by now
        session = stack.session(caller)

    assert user_messages(stack.openai) == ["What do you offer"]
    assert session.backchannels == 1 and session.barge_ins == 0
    heard = _heard(stack, caller, recording_from, tts_before)
    assert heard.complete and heard.gap_frames <= MAX_GAP_FRAMES, heard
    assert session.conversation.last_assistant_text() == ANSWER


async def test_a_real_interruption_clears_and_is_answered(stack):
    stack.openai.script(ANSWER, "Sure, a haircut it is. What day suits you?")
    async with stack.call() as caller:
        _spoken_at, _, _ = await _ask_and_wait_for_audio(stack, caller, "What do you offer")
        await asyncio.sleep(1.5)
        interrupt_at = time.monotonic()
        caller.say_nowait(marked_speech("Just book me a haircut please"))
        await wait_until(lambda: caller.clears_after(interrupt_at), timeout_s=3)
        await wait_until(lambda: len(user_messages(stack.openai)) == 2, timeout_s=10)
        await caller.wait_for_agent(since=interrupt_at)
        session = stack.session(caller)

    assert user_messages(stack.openai)[1] == "Just book me a haircut please"
    assert session.barge_ins == 1 and session.false_interruptions == 0
    assistant = [i["content"] for i in session.conversation.items if i.get("role") == "assistant"]
    heard = assistant[1]
    assert heard and ANSWER.startswith(heard) and len(heard) < len(ANSWER)  # only what was heard
    assert session.conversation.last_assistant_text() == "Sure, a haircut it is. What day suits you?"


async def test_a_tool_turn_says_an_acknowledgement_first(stack):
    stack.openai.first_token_delay_s = 0.3  # each model call takes a while: the tool, then the answer
    answer = "We are open nine to five on weekdays."
    # No routing call: a plain question starts at the general agent, which calls its tool at once.
    stack.openai.script(ToolCall("business_info", {"question": "hours"}), answer)
    async with stack.call() as caller:
        _, recording_from, _ = await _ask_and_wait_for_audio(stack, caller, "When are you open")
        await caller.wait_for_agent(since=time.monotonic(), quiet_s=1.0)
        session = stack.session(caller)
    assert len(stack.openai.requests) == 2  # the tool call and the answer: routing cost no round trip
    first_tools = {t.get("function", {}).get("name") for t in stack.openai.requests[0].get("tools", [])}
    assert "business_info" in first_tools and "transfer_to_general" not in first_tools
    ack = stack.settings.silence.tool_acknowledgement_text
    assert session.transcript[-1]["text"] == f"{ack} {answer}"
    heard = played_frames(caller.recording.agent[recording_from:])
    assert heard == expected_frames([ack, answer])  # the acknowledgement first, then the answer, both whole
    # The answer is voiced stitched to what was said before it, so it keeps one prosody with it.
    assert [r.body.get("previous_text") for r in stack.elevenlabs.requests if r.text == answer] == [ack]


async def test_mm_hm_in_the_pause_between_sentences_is_not_a_turn(stack):
    """The agent has said its first sentence and is still thinking up the next: nothing is playing, but the
    agent has the floor. An "mm-hm" there is a backchannel, not a new turn."""
    stack.openai.inter_token_delay_s = 0.25  # the second sentence takes seconds to exist
    first = "Sure thing."
    second = "We offer haircuts, colouring, beard trims and hot towel shaves six days a week."
    stack.openai.script(f"{first} {second}")
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)
        asked_at = await caller.say(marked_speech("What do you offer"))
        session = stack.session(caller)
        await wait_until(lambda: any(e.kind == "mark-echo" and e.at > asked_at for e in caller.events))
        # The first sentence has played; the reply is still being generated.
        await wait_until(lambda: not session.playback.pending and session._reply is not None
                         and not session._reply.done() and session.voice.audio_started, timeout_s=5)
        said_at = await caller.say(marked_speech("mm-hm"))
        await wait_until(lambda: any(r.text.startswith("We offer") for r in stack.elevenlabs.requests),
                         timeout_s=15)
        await caller.wait_for_agent(since=said_at)

    assert user_messages(stack.openai) == ["What do you offer"]  # the mm-hm never reached the model
    assert session.backchannels == 1 and session.barge_ins == 0
    assert session.conversation.last_assistant_text() == f"{first} {second}"


async def test_a_first_piece_cut_mid_sentence_is_voiced_as_going_on(stack):
    """The first piece goes before its sentence ends (first audio sooner); the voice is told the words
    already streamed after it, so the cut sounds like a sentence going on, not ending."""
    stack.openai.inter_token_delay_s = 0.02
    answer = "We are open from nine in the morning to five in the evening on weekdays."
    stack.openai.script(answer)
    async with stack.call() as caller:
        await _ask_and_wait_for_audio(stack, caller, "When are you open")
        await caller.wait_for_agent(since=time.monotonic(), quiet_s=1.0)
    first, rest = (r for r in stack.elevenlabs.requests if answer.startswith(r.text) or answer.endswith(r.text))
    assert first.text == "We are open from nine in the morning"  # cut where a phrase begins, mid-sentence
    assert first.body.get("next_text", "").startswith("to")  # ...and voiced as going on
    assert rest.text == "to five in the evening on weekdays." and rest.body.get("previous_text") == first.text
