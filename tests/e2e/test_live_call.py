"""A whole call through the streaming service: greeting, turns, barge-in, keypad, silence, ending."""

from __future__ import annotations

import asyncio
import logging
import time

from shared.audio import mulaw
from shared.structured_logging import current_call_sid
from tests.e2e.conftest import user_messages, wait_until
from tests.fakes.openai_server import ToolCall
from tests.fakes.speech_marker import marked_speech


async def test_multi_turn_conversation(stack):
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)  # the greeting
        session = stack.session(caller)
        assert session.conversation.items[0]["content"].startswith("Hello! Thanks for calling")

        for line in ("I would like to book a haircut", "Tomorrow at three please"):
            spoken_at = await caller.say(marked_speech(line))
            await caller.wait_for_agent(since=spoken_at)

        assert user_messages(stack.openai) == ["I would like to book a haircut", "Tomorrow at three please"]
        texts = [(i.get("role"), i.get("content") if isinstance(i.get("content"), str) else "...")
                 for i in session.conversation.items]
        assert [r for r, _ in texts] == ["assistant", "user", "assistant", "user", "assistant"]
        assert len(session.turns) == 2
        for turn in session.turns:
            assert turn["voice_to_voice_ms"] is not None and turn["voice_to_voice_ms"] > 0
            assert turn["llm_ttft_ms"] is not None and turn["tts_ttfb_ms"] is not None
            assert turn["stt_ms"] is not None
        # Every sentence was followed by a mark, and Twilio echoed them all after playing.
        marks = [e.detail for e in caller.events if e.kind == "mark"]
        echoed = [e.detail for e in caller.events if e.kind == "mark-echo"]
        assert marks and marks == echoed
        await wait_until(lambda: not session.playback.pending, timeout_s=3)  # the last echo is in flight
        assert stack.elevenlabs.requests, "replies were spoken by the TTS vendor"


async def test_status_and_metrics_routes_show_the_live_call(stack):
    import aiohttp

    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)
        spoken_at = await caller.say(marked_speech("Hello there"))
        await caller.wait_for_agent(since=spoken_at)
        async with aiohttp.ClientSession() as http:
            health = await (await http.get(stack.http_url + "/")).json()
            ready = await http.get(stack.http_url + "/ready")
            metrics = await (await http.get(stack.http_url + "/websocket-metrics")).json()
            status = await (await http.get(stack.http_url + "/websocket-status")).json()
    assert health == {"status": "healthy", "service": "Programmable Voice Agent"}
    assert ready.status == 200
    assert metrics["active_connections"] == 1 and metrics["connection_attempts"] == 1
    [live] = status["sessions"]
    assert live["call_sid"] == caller.call_sid and live["stream_sid"] == caller.stream_sid
    assert live["tenant_id"] == "acme" and live["turns"] == 1
    assert live["last_turn"]["voice_to_voice_ms"] > 0 and live["started_at"]


async def test_barge_in_clears_playback_and_keeps_only_what_was_heard(stack):
    long_reply = ("Let me tell you about all of our services in detail. We offer haircuts and colouring. "
                  "We also do beard trims and hot towel shaves. Our stylists are available six days a week. "
                  "We open at nine in the morning and close at seven in the evening.")
    stack.openai.script(long_reply)
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)
        spoken_at = await caller.say(marked_speech("What services do you offer"))
        # The caller has heard the first sentence: its mark came back after its audio played.
        await wait_until(lambda: any(e.kind == "mark-echo" and e.at > spoken_at for e in caller.events))
        interrupt_at = time.monotonic()
        caller.say_nowait(marked_speech("Actually just book me a haircut"))
        await wait_until(lambda: caller.clears_after(interrupt_at), timeout_s=3)
        session = stack.session(caller)
        await wait_until(lambda: len(user_messages(stack.openai)) == 2, timeout_s=10)

    assert session.barge_ins == 1
    heard = [i for i in session.conversation.items if i.get("role") == "assistant"][1]["content"]
    assert heard and long_reply.startswith(heard) and len(heard) < len(long_reply) / 2
    # What the model sees next is what the caller heard, not what was generated.
    second_request = [b for b in stack.openai.requests if b.get("messages")][-1]["messages"]
    assistant_texts = [m.get("content") for m in second_request if m["role"] == "assistant"]
    assert heard in assistant_texts and long_reply not in assistant_texts
    interrupted = [t for t in session.transcript if t["interrupted"]]
    assert interrupted and interrupted[0]["heard"] == heard


async def test_backchannel_while_agent_speaks_is_not_a_barge_in(stack):
    stack.openai.script("Our opening hours are nine to five on weekdays, and ten to two on Saturdays. "
                        "On Sundays we are closed.")
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)
        spoken_at = await caller.say(marked_speech("When are you open"))
        await wait_until(lambda: caller.first_audio_after(spoken_at) is not None)
        short_at = time.monotonic()
        await caller.say(marked_speech("mhm", ms_per_word=120))  # 120 ms: under the minimum speech duration
        await caller.wait_for_agent(since=spoken_at)
        assert caller.clears_after(short_at) == []
        assert stack.session(caller).barge_ins == 0


async def test_keypad_digits_reach_the_agent(stack):
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)
        pressed_at = time.monotonic()
        for digit in "12#":
            await caller.press(digit)
        await caller.wait_for_agent(since=pressed_at)
    assert any("pressed 1 2" in m for m in user_messages(stack.openai))


class _CallOfEachLine(logging.Handler):
    """Which call each log line was written for, as the JSON log would say."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[str, str | None]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.getMessage(), current_call_sid()))


async def test_silence_reprompts_then_says_goodbye_and_hangs_up(stack_factory):
    stack = await stack_factory(silence={"reprompt_after_s": 1.0, "max_reprompts": 1})
    # Another call on the line that keeps talking: the silence checks share one tick, each in its own call's
    # context (its log lines and the replies it starts).
    busy = stack.call()
    await busy.connect()
    caller = stack.call()
    lines = _CallOfEachLine()
    call_log = logging.getLogger("voice_agent.call")
    level = call_log.level
    call_log.setLevel(logging.INFO)
    call_log.addHandler(lines)
    try:
        await caller.connect()
        session = None
        await wait_until(lambda: stack.session(caller) is not None)
        session = stack.session(caller)
        while not caller.closed.is_set():
            await busy.say(marked_speech("still here") + mulaw.silence(300))
        await asyncio.wait_for(caller.closed.wait(), timeout=25)
    finally:
        call_log.removeHandler(lines)
        call_log.setLevel(level)
    assert ("ending call after repeated silence", session.call.call_sid) in lines.lines
    assert stack.session(busy) is not None and not stack.session(busy).call.ending  # the talker's call goes on
    said = [t["text"] for t in session.transcript if t["role"] == "agent"]
    assert said[1] == stack.settings.silence.reprompt_text
    assert said[2] == stack.settings.silence.goodbye_text
    assert caller.close_code == 1000
    assert session.call.outcome.action == "hangup"
    # The socket closed only after the goodbye's mark came back: Twilio played all of it.
    last_mark = [e for e in caller.events if e.kind == "mark"][-1]
    assert any(e.kind == "mark-echo" and e.detail == last_mark.detail for e in caller.events)
    await caller.hang_up()
    await busy.hang_up()


async def test_agent_end_call_tool_ends_after_goodbye(stack):
    stack.openai.script(ToolCall("end_call", {}))  # the tool says the goodbye: no model call after it
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)
        session = stack.session(caller)
        await caller.say(marked_speech("That is all goodbye"))
        await asyncio.wait_for(caller.closed.wait(), timeout=15)
    assert session.call.outcome.action == "hangup"
    assert caller.close_code == 1000
    assert session.transcript[-1]["text"] == "Thanks for calling. Goodbye!"
    assert user_messages(stack.openai) == ["That is all goodbye"]
    assert stack.state.recorder.outcomes[caller.call_sid]["action"] == "hangup"


async def test_agent_audio_goes_out_in_messages_of_up_to_160_ms(stack):
    """Outbound media is batched (one JSON message, one base64 and one write per 160 ms, not per 20 ms) and
    the caller still hears every frame of the reply in order, then its mark."""
    stack.openai.script("We offer haircuts, colouring and beard trims, six days a week.")
    async with stack.call() as caller:
        await caller.wait_for_agent(since=0)
        said_at = await caller.say(marked_speech("What do you offer"))
        await caller.wait_for_agent(since=said_at)
    sizes = [e.size for e in caller.events if e.kind == "media"]
    assert max(sizes) <= 8 * 160 and all(size % 160 == 0 for size in sizes)
    assert len(sizes) < sum(sizes) / 160 / 4  # at least 4 frames a message on average
    assert any(e.kind == "mark-echo" and e.at > said_at for e in caller.events)
