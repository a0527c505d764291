"""A true barge-in stops the reply that is still being generated, not only the audio already queued.

The model streams a word every 80 ms and the TTS streams in real time, so when the caller talks over the
agent most of the reply does not exist yet: a barge-in that cleared the line but left the reply running
would keep sending its later sentences. The caller says real words (not a cough or a backchannel).
"""

from __future__ import annotations

import time

from tests.e2e.conftest import user_messages, wait_until
from tests.fakes.speech_marker import marked_speech

LONG_REPLY = ("Let me tell you about all of our services in detail. We offer haircuts and colouring. "
              "We also do beard trims and hot towel shaves. Our stylists are available six days a week. "
              "We open at nine in the morning and close at seven in the evening. "
              "Parking is free behind the building, and we take cards and cash.")
NEXT_REPLY = "Of course. What day would suit you for the haircut?"


async def test_true_barge_in_sends_no_agent_media_between_the_clear_and_the_next_reply(stack):
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

    clear_at = caller.clears_after(interrupt_at)[0]
    leaked = [e for e in caller.events if e.kind == "media" and clear_at < e.at < next_reply_at]
    leaked_ms = sum(e.size for e in leaked) / 8  # mu-law 8 kHz: 8 bytes per ms
    assert leaked == [], f"{leaked_ms:.0f} ms of agent audio after the clear, before the next reply"
    assert user_messages(stack.openai)[-1] == "Actually just book me a haircut"
    assert session.barge_ins == 1
    spoken = [r.text for r in stack.elevenlabs.requests if r.received_at > clear_at]
    assert all(text not in LONG_REPLY for text in spoken), spoken  # nothing more of the old reply was voiced
