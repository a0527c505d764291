"""Preemptive generation through the whole audio pipeline (simulated caller, fake Deepgram, fake model):
the agent starts on the caller's words when they go quiet, before the turn ends; a final that matches
keeps that reply, words that go on discard it, and nothing with a side effect runs before the final."""

from __future__ import annotations

from shared.settings import EndpointingOptions
from tests.e2e.conftest import user_messages, wait_until
from tests.fakes.openai_server import ToolCall
from tests.fakes.speech_marker import marked_speech


def quiet(ms: int) -> bytes:
    return b"\xff" * (8 * ms)  # mu-law silence


async def test_the_agent_starts_before_the_turn_ends_and_the_final_keeps_that_reply(stack):
    stack.openai.first_token_delay_s = 0.35
    stack.openai.script("We offer haircuts and colour.")
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)
        said_at = await caller.say(marked_speech("What do you offer"))
        await wait_until(lambda: caller.first_audio_after(said_at) is not None)
        session = stack.session(caller)
        await wait_until(lambda: len(session.turns) == 1)
    [turn] = session.turns
    assert turn["preemptive"] == "hit" and turn["agent_lead_ms"] > 0  # started before the final transcript
    assert user_messages(stack.openai) == ["What do you offer"]  # one model request: the draft was the reply
    assert stack.deepgram.records[0].finalizes >= 1  # the local end of speech asked for the final
    assert [i["content"] for i in session.conversation.items if i.get("role") == "user"] == ["What do you offer"]


async def test_words_after_a_short_pause_discard_the_draft_and_the_turn_is_the_whole_sentence(stack_factory):
    # The turn ends after 700 ms of quiet, the draft starts after 60: a 350 ms pause is between the two,
    # with room for a loaded machine's scheduling.
    stack = await stack_factory(endpointing=EndpointingOptions(stt_endpointing_ms=700))
    stack.openai.script("A draft on half the words.", "Sure, a haircut. What day suits you?")
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)
        said_at = await caller.say(marked_speech("I'd like to book") + quiet(350) + marked_speech("a haircut please"))
        await wait_until(lambda: caller.first_audio_after(said_at) is not None)
        session = stack.session(caller)
        await wait_until(lambda: len(session.turns) == 1)
    # The pause was longer than the draft's wait, shorter than the turn's: one turn, the whole sentence.
    assert user_messages(stack.openai)[0] == "I'd like to book"  # a draft started in the pause...
    assert user_messages(stack.openai)[-1] == "I'd like to book a haircut please"  # ...and the turn is whole
    assert [i["content"] for i in session.conversation.items if i.get("role") == "user"] == [
        "I'd like to book a haircut please"]
    assert "A draft on half the words." not in str(session.conversation.items)
    assert [e["text"] for e in session.transcript if e["role"] == "caller"] == ["I'd like to book a haircut please"]
    assert session.turns[0]["drafts_discarded"] == 1  # the model run the pause cost, for the operator's metric


async def test_nothing_with_a_side_effect_runs_before_the_final(stack_factory):
    # A caller who pauses longer (the turn ends after 800 ms of quiet, the draft starts after 150): the
    # draft on the first words asks the model, which says end the call; then the caller goes on.
    stack = await stack_factory(endpointing=EndpointingOptions(stt_endpointing_ms=800))
    stack.openai.script(ToolCall("end_call"), "We open at nine.")
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)
        said_at = await caller.say(marked_speech("Thanks that is all") + quiet(600)
                                   + marked_speech("oh wait when do you open"))
        await wait_until(lambda: caller.first_audio_after(said_at) is not None)
        session = stack.session(caller)
        await caller.wait_for_agent(since=said_at, quiet_s=0.8)
        assert not caller.closed.is_set()
    # The draft reached the model on the first words and was told to end the call...
    assert user_messages(stack.openai)[0] == "Thanks that is all"
    assert session.call.outcome.action == "continue"  # ...which never ran
    assert session.transcript[-1]["text"] == "We open at nine."
    assert user_messages(stack.openai)[-1] == "Thanks that is all oh wait when do you open"


async def test_the_final_is_asked_for_once_the_pause_is_long_enough_in_audio_and_the_agent_starts_on_it(stack):
    # The pause is the caller's audio, as the recogniser hears it; counted by the clock instead, frames
    # arriving a little early put it one frame (20 ms) later about half the time. The agent starts on the
    # final's words as they arrive, not at the next frame (20 ms more).
    stack.openai.script(*(f"Answer {n}." for n in range(6)))
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)
        for question in ("What do you offer", "When are you open", "Where are you", "Do you take cards",
                         "Can I park there", "Thanks a lot"):
            said_at = await caller.say(marked_speech(question))
            await wait_until(lambda: caller.first_audio_after(said_at) is not None)  # noqa: B023 - awaited here
            await caller.wait_for_agent(since=said_at)
        session = stack.session(caller)
        await wait_until(lambda: len(session.turns) == 6)
    after = EndpointingOptions().preemptive_after_silence_ms
    assert stack.deepgram.records[0].quiet_at_finalize_ms == [after] * 6
    assert [t["preemptive"] for t in session.turns] == ["hit"] * 6
    # The final comes back within a frame's time but on a loaded machine: most drafts start on it at once.
    started_after = [t["draft_after_quiet_ms"] for t in session.turns]
    assert sorted(started_after)[len(started_after) // 2] == after, started_after


async def test_a_gap_between_words_shorter_than_the_draft_pause_asks_for_nothing(stack):
    # Most gaps between a caller's words are 20-40 ms (espeak-ng's voice: 82 of 100 gaps in 15 questions):
    # under the draft's pause, they start no draft and split no final.
    after = EndpointingOptions().preemptive_after_silence_ms
    stack.openai.script("Sure, a cleaning. What day suits you?")
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)
        said_at = await caller.say(marked_speech("I would like") + quiet(after - 40) + marked_speech("a cleaning"))
        await wait_until(lambda: caller.first_audio_after(said_at) is not None)
        session = stack.session(caller)
        await wait_until(lambda: len(session.turns) == 1)
    [turn] = session.turns
    assert stack.deepgram.records[0].quiet_at_finalize_ms == [after]  # once, at the end of the sentence
    assert turn["preemptive"] == "hit" and turn["drafts_discarded"] == 0
    assert user_messages(stack.openai) == ["I would like a cleaning"]
