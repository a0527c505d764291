"""One live phone call: caller audio in, agent replies out, barge-in, silence, ending.

Tasks, each with one owner and one job:
- the socket reader (the WebSocket handler) feeds `on_media`, `on_mark`, `on_dtmf`, `on_stop`;
- `_listen` turns transcript events into caller turns;
- the reply task (at most one) runs the agent and speaks its sentences as they complete;
- `_check_silence` (ten times a second, on the loop's shared `CallTicker`) reprompts a quiet caller and ends the
  call after repeated silence.
`_cancel_reply` is the one place a reply is stopped; `close` is the one place everything is. What the caller
hears (sentences to Twilio, marks, `clear`, holding and resending a reply) is `AgentVoice` (agent_voice.py).

Interruptions: caller sound over the agent (VAD) sends `clear` at once and *holds* the reply: it keeps
being generated and synthesised, but nothing more is sent. Words that are not a backchannel make it a
barge-in (`_barge_in`: the reply is cancelled, the history keeps what was heard). If the caller goes
quiet with no such words (a cough, noise, "mm-hm"), `_resume` sends the reply again from the frame the
caller last heard, so a false interruption never costs the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from shared.settings import Settings
from shared.structured_logging import bind_call, bind_turn
from streaming_service.agent_voice import AgentVoice, Transport
from streaming_service.agents.turn_context import fallback_number
from streaming_service.backchannel import is_backchannel
from streaming_service.call_recorder import CallRecorder
from streaming_service.call_ticker import running_loop_ticker
from streaming_service.engines.base import (
    AgentEventKind,
    AgentRuntime,
    CallContext,
    Conversation,
    EngineError,
    SpeechToText,
    SpeechToTextStream,
    TextToSpeech,
    TranscriptKind,
)
from streaming_service.phrase_cache import PhraseCache
from streaming_service.playback import PlaybackTracker
from streaming_service.preemptive_reply import PreemptiveDraft, same_words
from streaming_service.sentence_chunker import SentenceChunker
from streaming_service.telemetry.call_telemetry import CallTelemetry
from streaming_service.turn_metrics import TurnMetrics
from streaming_service.voice_activity import CallerSpeechDetector

log = logging.getLogger("voice_agent.call")

APOLOGY_AGENT = "Sorry, I'm having a little trouble right now. Could you say that again?"
APOLOGY_HEARING = "Sorry, I'm having trouble hearing you. Please bear with me."
CANNOT_HEAR_TRANSFER = "Sorry, I can't hear you on this line right now, so I'm connecting you to a member of our " \
    "team. Please hold."
CANNOT_HEAR_GOODBYE = "Sorry, I can't hear you on this line right now. Please call back in a few minutes. Goodbye!"
_DTMF_PAUSE_S = 1.5
_END_WAIT_EXTRA_S = 3.0

_REPLY_STOP_TIMEOUT_S = 5.0
_STOP_TOOLS = frozenset({"end_call", "transfer_to_human"})  # they say their own line, at once


@dataclass(frozen=True)
class _Piece:
    """One piece of a reply for the speaker."""

    text: str
    said_index: int | None  # its place in the reply's text (for stitching); None: not the reply's words
    phrase: bool = False  # a fixed line (acknowledgement, filler): cached audio when there is some


@dataclass
class Engines:
    stt: SpeechToText
    tts: TextToSpeech
    agent: AgentRuntime
    stt_fallback: SpeechToText | None = None  # the offline recogniser, when `stt` is a vendor's


class CallSession:
    def __init__(self, call: CallContext, engines: Engines, transport: Transport, settings: Settings,
                 recorder: CallRecorder, phrases: PhraseCache, telemetry: CallTelemetry | None = None) -> None:
        self.call = call
        self.engines = engines
        self.settings = settings
        self.recorder = recorder
        self.telemetry = telemetry or CallTelemetry.disabled(call)
        self.conversation = Conversation()
        self.voice = AgentVoice(call, transport, engines.tts, phrases, self.telemetry, self._voice_id,
                                on_audio=self._speaking)
        self.vad = CallerSpeechDetector(settings.interruption.vad_aggressiveness,
                                        settings.interruption.min_speech_ms)
        self.state = "starting"
        self.started_at = datetime.now(UTC)
        self.turns: list[dict[str, Any]] = []
        self.transcript: list[dict[str, Any]] = []
        self.barge_ins = 0
        self._transport = transport
        self._stt: SpeechToTextStream | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._reply: asyncio.Task[None] | None = None
        self._reply_metrics: TurnMetrics | None = None
        self._reply_committed = False  # the reply's full text is already in the conversation
        self._pending_text: list[str] = []
        self._turn_counter = 0
        self._reprompts = 0
        self._quiet_since = time.monotonic()
        self._digits = ""
        self._digit_task: asyncio.Task[None] | None = None
        self._closed = False
        self._hold_task: asyncio.Task[None] | None = None  # resumes a held reply once the caller is quiet
        self._interrupting = asyncio.Lock()
        self._utterance_over_agent = False  # the caller's current utterance began over agent audio
        self.false_interruptions = 0  # holds that ended in a resume
        self._recording: asyncio.Future[None] | None = None
        self._unrecorded: list[Callable[[], None]] | None = []  # recorder calls waiting for call_started
        self.backchannels = 0
        self._interim = ""  # the recogniser's latest words that are not final yet
        self._draft: PreemptiveDraft | None = None  # the agent started on the words so far (preemptive)
        self._drafts_discarded = 0  # this turn's drafts the caller's words outran
        self._finalize_asked_for: float | None = None  # the pause (its last voiced frame) finalize was asked at
        self._all_final = False  # every word the caller said is in a final (asked with finalize)
        self._finalizing = False  # the recogniser was asked for its final: the draft waits for those words
        self.preemptive_hits = 0  # turns answered by their draft
        self.preemptive_misses = 0  # turns that had a draft, all discarded
        self._stop_silence_checks: Callable[[], None] = lambda: None  # start() puts the silence checks on

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        bind_call(self.call.call_sid, self.call.tenant_id)
        self.telemetry.call_started()  # before any task is spawned: they all inherit the call's trace
        # The greeting waits for nothing: the call's record is written meanwhile (what is said before
        # it exists is handed over once it does), and the agent warms up (e.g. its MCP session).
        self._recording = asyncio.ensure_future(self._start_recording())
        self._spawn(self._open_listener())
        self._stop_silence_checks = running_loop_ticker().add(self._check_silence)
        greeting = str(self.call.tenant_settings.get("greeting") or self.settings.default_greeting)
        self._start_reply(partial(self._greet, greeting), TurnMetrics(turn=0))
        self.state = "speaking"
        self._spawn(self._prepare_agent())

    async def _greet(self, greeting: str) -> None:
        await self._speak_fixed(greeting)
        # In the background, not in the greeting's reply: a caller who answers the greeting at once gets a
        # preemptive draft (which waits for no running reply) and is not held up behind the prewarm.
        self._spawn(self._prewarm_phrases())

    async def _start_recording(self) -> None:
        try:
            await self.recorder.call_started(self.call)
        except Exception as exc:
            log.warning("call start not recorded", extra={"error": type(exc).__name__})
        waiting, self._unrecorded = self._unrecorded or [], None
        for record in waiting:
            record()

    async def _prepare_agent(self) -> None:
        try:
            await self.engines.agent.prepare_call(self.call)
        except Exception as exc:  # the first turn tries again
            log.warning("agent not prepared", extra={"error": type(exc).__name__})

    async def _prewarm_phrases(self) -> None:
        """Once the greeting is out, synthesise the lines a turn may need at once (acknowledgement,
        filler) into the phrase cache, so they never wait on the voice."""
        silence = self.settings.silence
        ack = str(self.call.tenant_settings.get("acknowledgement") or silence.tool_acknowledgement_text)
        await self.voice.prewarm((ack, silence.thinking_filler_text))

    async def close(self, reason: str) -> None:
        """Stop everything; safe to call more than once and from any task."""
        if self._closed:
            return
        self._closed = True
        self.state = "ended"
        self._stop_silence_checks()
        await self._discard_current_draft()
        await self._cancel_reply()
        if self._recording is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._recording), timeout=5.0)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._stt is not None:
            with contextlib.suppress(Exception):
                await self._stt.close()
        with contextlib.suppress(Exception):
            await self.engines.agent.release_call(self.call)
        if self.call.outcome.action == "continue":
            self.call.outcome.reason = reason
        await self.recorder.call_ended(self.call)
        self.telemetry.call_ended(reason=reason, turns=len(self.turns), barge_ins=self.barge_ins)
        log.info("call closed", extra={"reason": reason, "outcome": self.call.outcome.action,
                                       "turns": len(self.turns), "barge_ins": self.barge_ins,
                                       "preemptive_hits": self.preemptive_hits,
                                       "preemptive_misses": self.preemptive_misses})

    async def end_now(self, reason: str) -> None:
        """End the call without waiting (shutdown past the drain time)."""
        await self.close(reason)
        with contextlib.suppress(Exception):
            await self._transport.close(code=1001, message=b"going away")

    # --- inbound events (called by the socket reader) -------------------------------------------

    async def on_media(self, ulaw: bytes) -> None:
        if self._closed:
            return
        update = self.vad.process(ulaw)
        if update.voiced:
            self._quiet_since = time.monotonic()
        if self._stt is not None:
            self._stt.words_awaited(self._agent_audible())
            await self._stt.send_audio(ulaw)
        if update.speech_confirmed:
            self._utterance_over_agent = self._agent_audible()
            if not self.settings.interruption.confirm_with_transcript:
                await self._suspect_interruption()
        if update.voiced:
            self._all_final = False  # the caller is saying more than the recogniser has finalised
        await self._at_caller_pause()

    def on_mark(self, name: str) -> None:
        if self.voice.on_mark(name):
            self._quiet_since = time.monotonic()

    async def on_dtmf(self, digit: str) -> None:
        await self._barge_in("keypad")
        self._quiet_since = time.monotonic()
        if digit == "#":
            await self._submit_digits()
            return
        self._digits += digit
        if self._digit_task is not None:
            self._digit_task.cancel()
        self._digit_task = self._spawn(self._digits_after_pause())

    # --- listening ------------------------------------------------------------------------------

    async def _open_listener(self) -> None:
        recognisers = [r for r in (self.engines.stt, self.engines.stt_fallback) if r is not None]
        for index, recogniser in enumerate(recognisers):
            try:
                self._stt = await recogniser.open_stream(self.call.call_sid)
                await self._listen(self._stt)
                return
            except EngineError as exc:
                log.error("speech recognition failed", extra={"vendor": exc.vendor, "error": str(exc),
                                                             "fallback": index + 1 < len(recognisers)})
                self.telemetry.vendor_error(exc.vendor, exc)
                if index + 1 < len(recognisers):
                    self.telemetry.offline_fallback("stt")
                failed, self._stt = self._stt, None
                if failed is not None:
                    with contextlib.suppress(Exception):
                        await failed.close()
        # Nothing left to listen with: tell the caller rather than leave them talking to no one, once what
        # is being said (the greeting, an answer) has been said.
        if self._reply is not None and not self._reply.done():
            await asyncio.wait({self._reply})
        self._start_reply(self._cannot_listen, TurnMetrics(turn=self._turn_counter))

    async def _cannot_listen(self) -> None:
        """No recogniser left (the vendor's is down and this process's offline ones are all in use): a
        person at the tenant's fallback number when it has one, else an honest goodbye."""
        number = fallback_number(self.call.tenant_settings)
        await self._speak_fixed(CANNOT_HEAR_TRANSFER if number else CANNOT_HEAR_GOODBYE)
        if number:
            self.call.transfer(number, reason="no speech recognition")
        else:
            self.call.end_call("no speech recognition")

    async def _listen(self, stream: SpeechToTextStream) -> None:
        async for event in stream.events():
            if event.kind is TranscriptKind.INTERIM and event.text.strip():
                self._quiet_since = time.monotonic()
                self._interim = event.text.strip()
                if (self.voice.held or self.vad.speaking) and not is_backchannel(event.text):
                    await self._barge_in("caller words")
                await self._discard_outrun_draft()
            elif event.kind is TranscriptKind.FINAL:
                self._interim = ""
                if event.from_finalize:
                    self._all_final, self._finalizing = True, False
                if event.text.strip():
                    self._pending_text.append(event.text.strip())
                await self._discard_outrun_draft()
                if event.speech_final and self._pending_text:  # an empty speech_final ends the turn too
                    await self._close_caller_turn()
                elif event.from_finalize and self._pausing_after_words():
                    self._start_draft_if_due()  # the words asked for: start now, not at the next frame
            elif event.kind is TranscriptKind.UTTERANCE_END and self._pending_text:
                await self._close_caller_turn()
            elif event.kind is TranscriptKind.DELAYED and (self._reply is None or self._reply.done()) \
                    and not self.playback.pending and not self.call.ending:
                # A long recogniser outage: the caller's words are buffered, not lost; say so once.
                self._start_fixed_reply(APOLOGY_HEARING)

    async def _close_caller_turn(self) -> None:
        text = " ".join(self._pending_text).strip()
        self._pending_text.clear()
        self._interim = ""
        self._all_final = self._finalizing = False
        draft, self._draft = self._draft, None
        if not text or self._closed:
            await self._discard_draft(draft)
            return
        now = time.monotonic()
        over_agent, self._utterance_over_agent = self._utterance_over_agent, False
        if is_backchannel(text) and (over_agent or self._agent_audible()):
            await self._discard_draft(draft)
            self.backchannels += 1
            log.info("backchannel ignored", extra={"text": text})
            return  # a hold it caused ends in a resume once the caller is quiet
        await self._barge_in("caller turn")
        self._reprompts = 0
        await self._start_turn(text, speech_end_at=self.vad.last_voiced_at or now, transcript_at=now, draft=draft)

    # --- preemptive generation --------------------------------------------------------------------

    def _words_so_far(self) -> str:
        return " ".join([*self._pending_text, self._interim]).strip()

    async def _at_caller_pause(self) -> None:
        """Per frame while the caller is quiet with words heard: ask the recogniser for the final of
        them, start the agent on them (preemptive), and end the turn once the pause is the endpointing's.
        The pause is counted in audio, as the recogniser counts it."""
        last_voiced = self.vad.last_voiced_at
        if not self._pausing_after_words():
            return
        if self._finalize_asked_for != last_voiced and self._stt is not None:
            self._finalize_asked_for = last_voiced  # once per pause
            self._finalizing = await self._stt.finalize()
        if self._all_final and self.vad.quiet_ms >= self.settings.endpointing.stt_endpointing_ms:
            # The recogniser was asked for its final, so its own endpointing may never speak again; the
            # same pause that ends a turn there ends it here.
            await self._close_caller_turn()
        else:
            self._start_draft_if_due()

    def _pausing_after_words(self) -> bool:
        return self.vad.last_voiced_at is not None and not self._closed \
            and bool(self._pending_text or self._interim) \
            and self.vad.quiet_ms >= self.settings.endpointing.preemptive_after_silence_ms

    def _start_draft_if_due(self) -> None:
        # On the finalized words when the recogniser can give them (a draft on interim words that lag is
        # discarded more often under load, each a wasted model run), else on the words so far.
        if self._draft is None and not self._finalizing and self._preemption_due():
            self._draft = PreemptiveDraft(self.engines.agent, self.call, self.conversation, self._words_so_far(),
                                          after_quiet_ms=self.vad.quiet_ms)

    def _preemption_due(self) -> bool:
        """Words to start on, with the agent silent and not already answering."""
        if not self.settings.endpointing.preemptive_generation or self.call.ending:
            return False
        words = self._words_so_far()
        if (self._reply is not None and not self._reply.done()) or self._agent_audible():
            return False
        return not (self._utterance_over_agent and is_backchannel(words))

    async def _discard_outrun_draft(self) -> None:
        """New words from the recogniser: a draft on other words is answering the wrong thing."""
        if self._draft is not None and not same_words(self._draft.text, self._words_so_far()):
            await self._discard_current_draft()

    async def _discard_current_draft(self) -> None:
        draft, self._draft = self._draft, None
        await self._discard_draft(draft)

    async def _discard_draft(self, draft: PreemptiveDraft | None) -> None:
        if draft is not None:
            self._drafts_discarded += 1
            await draft.discard()

    async def _start_turn(self, text: str, speech_end_at: float, transcript_at: float,
                          draft: PreemptiveDraft | None = None) -> None:
        await self._discard_current_draft()  # a draft not handed in here is for words the turn is not about
        if self.call.ending:
            await self._discard_draft(draft)
            return
        # A reply still thinking is superseded by the newer words; the words it was answering stay in the
        # history (two finals back to back, e.g. buffered audio replayed after an STT reconnect).
        unanswered = self._reply_metrics.user_text if self._reply is not None and not self._reply.done() \
            and not self.voice.audio_started and self._reply_metrics is not None else ""
        await self._cancel_reply()
        users = [item for item in self.conversation.items if item.get("role") == "user"]
        if unanswered and (not users or users[-1].get("content") != unanswered):
            self.conversation.add_user(unanswered)
        if draft is not None and not draft.fits(text, self.conversation):
            await self._discard_draft(draft)
            draft = None
        self._turn_counter += 1
        bind_turn(self._turn_counter)
        metrics = TurnMetrics(turn=self._turn_counter, user_text=text, speech_end_at=speech_end_at,
                              transcript_at=transcript_at, drafts_discarded=self._drafts_discarded)
        if draft is not None:
            metrics.preemptive = "hit"
            metrics.draft_after_quiet_ms = draft.after_quiet_ms
            self.preemptive_hits += 1
            self.conversation = draft.conversation  # the draft's fork: it already holds this turn's words
            draft.commit()
        elif self._drafts_discarded:
            metrics.preemptive = "miss"
            self.preemptive_misses += 1
        self._drafts_discarded = 0
        self._record("caller", text)
        self._start_reply(partial(self._respond, text, metrics, draft), metrics)

    # --- replying -----------------------------------------------------------------------------

    def _start_reply(self, body: Callable[[], Awaitable[None]], metrics: TurnMetrics) -> None:
        # `body` makes its coroutine only once the reply runs: a reply cancelled before its first step
        # (two turns in one batch of recogniser results, a hang-up) leaves no coroutine never awaited.
        self._end_hold()
        self.playback.forget_heard()
        self._reply_metrics = metrics
        self._reply_committed = False
        self.voice.audio_started = False
        self.state = "thinking"
        self._reply = asyncio.ensure_future(self._run_reply(body, metrics))

    def _start_fixed_reply(self, text: str) -> None:
        self._start_reply(partial(self._speak_fixed, text), TurnMetrics(turn=self._turn_counter))

    async def _run_reply(self, body: Callable[[], Awaitable[None]], metrics: TurnMetrics) -> None:
        caller_turn = metrics.speech_end_at is not None
        with self.telemetry.reply(metrics, "caller" if caller_turn else "prompt") as span:
            try:
                await body()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("reply failed")
                metrics.errors.append("reply")
                span.record_exception(exc)
            finally:
                summary = metrics.log()
                if caller_turn:
                    self.turns.append(summary)
                    self._to_recorder(lambda: self.recorder.turn_measured(self.call, summary))
                self.telemetry.reply_finished(span, summary, caller_turn)
                self._save_history()
        if self.call.ending and not self._closed:
            await self._finish_call()
        elif not self._closed:
            self.state = "listening"
            self._quiet_since = time.monotonic()

    async def _respond(self, user_text: str, metrics: TurnMetrics, draft: PreemptiveDraft | None = None) -> None:
        pieces: asyncio.Queue[_Piece | None] = asyncio.Queue()
        said: list[str] = []  # everything queued for speech, in order
        chunker = SentenceChunker()
        silence = self.settings.silence
        acknowledging: list[asyncio.Task[None]] = []

        def say(text: str, phrase: bool = False) -> None:
            said.append(text)
            pieces.put_nowait(_Piece(text, len(said) - 1, phrase))

        async def acknowledge_soon() -> None:
            # A tool or handoff started before any word: a short line at once (cached audio), unless the
            # answer itself is about to arrive (an offline policy answers in milliseconds).
            await asyncio.sleep(silence.tool_acknowledgement_after_ms / 1000)
            if not said:
                say(str(self.call.tenant_settings.get("acknowledgement") or silence.tool_acknowledgement_text),
                    phrase=True)

        def on_tool_started(event_name: str) -> None:
            if not said and not acknowledging and event_name not in _STOP_TOOLS:
                acknowledging.append(group.create_task(acknowledge_soon()))

        async def think() -> None:
            metrics.agent_started_at = draft.started_at if draft is not None else time.monotonic()
            events = draft.events() if draft is not None else \
                self.engines.agent.run_turn(self.call, self.conversation, user_text)
            if draft is not None and draft.first_text_at is not None:
                metrics.mark_first_token(draft.first_text_at)
            try:
                with self.telemetry.span("agent", engine=self.engines.agent.name, preemptive=draft is not None):
                    async for event in events:
                        if event.kind is AgentEventKind.TEXT_DELTA and event.text:
                            metrics.mark_first_token(time.monotonic())
                            for sentence in chunker.push(event.text):
                                say(sentence)
                        elif event.kind is not AgentEventKind.TEXT_DELTA:
                            on_tool_started(str(event.data.get("name") or event.data.get("to") or ""))
                            if event.kind is not AgentEventKind.TOOL_STARTED:
                                log.info("agent event", extra={"kind": event.kind.value, "data": event.data})
                                self.telemetry.tool_event(event)
                for sentence in chunker.flush():
                    say(sentence)
                self._reply_committed = True
            except EngineError as exc:
                # The caller never waits in silence: say what we had, then a short apology.
                log.error("agent failed", extra={"vendor": exc.vendor, "error": str(exc)})
                metrics.errors.append(exc.vendor)
                self.telemetry.vendor_error(exc.vendor, exc)
                for sentence in [*chunker.flush(), APOLOGY_AGENT]:
                    say(sentence)
                self.conversation.add_assistant(" ".join(said))
                self._reply_committed = True
            finally:
                filler.cancel()
                for task in acknowledging:
                    task.cancel()
                pieces.put_nowait(None)
                if draft is not None:
                    await draft.stop()  # interrupted: the model stops here, as a live run would

        async def fill_silence() -> None:
            # A slow first word (a slow model, a slow tool) is covered by a short line: never dead air.
            await asyncio.sleep(silence.thinking_filler_after_s)
            if not said:
                pieces.put_nowait(_Piece(silence.thinking_filler_text, None, phrase=True))
                self._record("agent", silence.thinking_filler_text)

        async def speak() -> None:
            while (piece := await pieces.get()) is not None:
                # Stitching: the reply's text so far and what follows, as far as it is known: the next
                # piece, or the words already streamed past this one (a first piece cut mid-sentence is
                # voiced as going on, not as ending).
                index = piece.said_index
                previous = " ".join(said[:index]) if index is not None else ""
                following = ""
                if index is not None:
                    following = said[index + 1] if index + 1 < len(said) else "" if piece.phrase else chunker.held
                await self.voice.speak(piece.text, metrics, phrase=piece.phrase, previous_text=previous,
                                       next_text=following)

        async with asyncio.TaskGroup() as group:
            filler = group.create_task(fill_silence())
            group.create_task(think())
            group.create_task(speak())
        self._record("agent", " ".join(said))

    async def _speak_fixed(self, text: str) -> None:
        """A phrase that is not the agent's (greeting, reprompt, apology, goodbye)."""
        self.conversation.add_assistant(text)
        self._reply_committed = True
        metrics = self._reply_metrics or TurnMetrics(turn=self._turn_counter)
        await self.voice.speak(text, metrics, phrase=True)
        self._record("agent", text)

    # --- interruption -------------------------------------------------------------------------

    def _agent_audible(self) -> bool:
        return self.voice.held or self.playback.pending or (
            self._reply is not None and not self._reply.done() and self.voice.audio_started)

    async def _suspect_interruption(self) -> None:
        """Caller sound over the agent: clear at once, hold the reply, and wait for words."""
        options = self.settings.interruption
        if not options.enabled or self._closed or self.call.ending or self.voice.held:
            return
        if not self._agent_audible():
            return
        if not options.resume_false_interruptions:
            await self._barge_in("caller speech")
            return
        await self.voice.hold()
        self._hold_task = self._spawn(self._resume_when_quiet())
        log.info("interruption suspected; reply held")

    async def _resume_when_quiet(self) -> None:
        """No words after a suspected interruption once the caller is quiet: resume the reply."""
        quiet_s = self.settings.interruption.false_interruption_quiet_ms / 1000
        while self.voice.held_since is not None and not self._closed:
            await asyncio.sleep(0.02)
            last = max(self.vad.last_voiced_at or 0.0, self.voice.held_since)
            if not self.vad.speaking and time.monotonic() - last >= quiet_s:
                break
        if self.voice.held and not self._closed:
            await self._resume()

    async def _resume(self) -> None:
        """Send the held reply again from the frame the caller last heard, then let it run live."""
        self.false_interruptions += 1
        resumed_from = [(s.text[:40], s.heard_bytes) for s in self.playback.unheard()[:1]]
        try:
            await self.voice.resume()
        finally:
            self._hold_task = None
        self.telemetry.false_interruption()
        log.info("false interruption: reply resumed", extra={"from": resumed_from})

    def _end_hold(self) -> None:
        self._stop_hold_task()
        self.voice.release()

    def _stop_hold_task(self) -> None:
        task, self._hold_task = self._hold_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _barge_in(self, reason: str) -> None:
        # One at a time: the socket reader (VAD) and the listener (words) can both see the caller talk
        # over the agent at once; the second finds the reply already stopped, and sends no second clear.
        async with self._interrupting:
            await self._barge_in_now(reason)

    async def _barge_in_now(self, reason: str) -> None:
        if not self.settings.interruption.enabled or self._closed or self.call.ending:
            return  # a goodbye is never cut short: the call must still end
        held = self.voice.held and not self.voice.resuming  # resumed audio needs a new clear
        if not held and not self._agent_audible():
            return
        metrics = self._reply_metrics
        committed = self._reply_committed
        if metrics is not None:
            metrics.barge_in = True  # before the cancelled reply logs its figures
        self._stop_hold_task()
        await self._cancel_reply()  # producers first, so nothing new is queued behind the clear
        self.voice.release()
        if held:
            spoken, heard = self.playback.give_up()  # the clear went out when the sound began
        else:
            spoken, heard = self.playback.interrupt()
            await self.voice.clear()
        self.voice.idle.set()
        if committed:
            self.conversation.truncate_last_assistant(heard)
        elif heard:
            self.conversation.add_assistant(heard)
        self.barge_ins += 1
        self._save_history()
        self.telemetry.barge_in(reason)
        self._record("agent", spoken, interrupted=True, heard=heard)
        log.info("barge-in", extra={"reason": reason, "heard": heard})

    async def _cancel_reply(self) -> None:
        reply, self._reply = self._reply, None
        if reply is not None and not reply.done() and reply is not asyncio.current_task():
            reply.cancel()
            # Bounded: a reply that will not stop (something under it swallowing the cancellation) must not
            # hold the caller's next turn, or the call's close, with it; say where it is stuck instead.
            # asyncio.wait neither raises the reply's CancelledError nor swallows one aimed at us.
            await asyncio.wait({reply}, timeout=_REPLY_STOP_TIMEOUT_S)
            if not reply.done():
                log.error("reply did not stop when cancelled", extra={"awaiting": _awaiting(reply)})
            elif not reply.cancelled() and reply.exception() is not None:
                log.warning("reply ended with an error as it was cancelled",
                            extra={"error": type(reply.exception()).__name__})

    # --- silence, keypad, ending --------------------------------------------------------------------

    def _check_silence(self) -> None:
        options = self.settings.silence
        busy = (self._reply is not None and not self._reply.done()) or self.playback.pending \
            or self.voice.held or self.vad.speaking or bool(self._pending_text) \
            or self.state == "ending"
        now = time.monotonic()
        if busy:
            self._quiet_since = now
            return
        if now - self._quiet_since < options.reprompt_after_s:
            return
        self._quiet_since = now
        if self._reprompts >= options.max_reprompts:
            self._stop_silence_checks()
            log.info("ending call after repeated silence")
            self._start_fixed_reply(options.goodbye_text)
            self.call.end_call("caller silent")
            return
        self._reprompts += 1
        self._start_fixed_reply(options.reprompt_text)

    async def _digits_after_pause(self) -> None:
        await asyncio.sleep(_DTMF_PAUSE_S)
        await self._submit_digits()

    async def _submit_digits(self) -> None:
        digits, self._digits = self._digits, ""
        if digits:
            now = time.monotonic()
            await self._start_turn(f"(The caller pressed {' '.join(digits)} on the keypad.)",
                                   speech_end_at=now, transcript_at=now)

    async def _finish_call(self) -> None:
        """End after the goodbye has played (its mark returned), or after a bounded wait."""
        self.state = "ending"
        remaining_s = self.playback.unplayed_ms() / 1000
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.voice.idle.wait(), timeout=remaining_s + _END_WAIT_EXTRA_S)
        await self.close("call ended by agent")
        with contextlib.suppress(Exception):
            await self._transport.close(code=1000, message=b"call ended")

    # --- helpers ------------------------------------------------------------------------------

    @property
    def playback(self) -> PlaybackTracker:
        return self.voice.playback

    @property
    def clears_sent(self) -> int:
        return self.voice.clears_sent

    def _speaking(self) -> None:
        self.state = "speaking"

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _save_history(self) -> None:
        self._spawn(self._guarded(self.recorder.history_updated(self.call, list(self.conversation.items))))

    @staticmethod
    async def _guarded(work: Awaitable[None]) -> None:
        try:
            await work
        except Exception as exc:  # history outside the process is a convenience, never a reason to fail
            log.warning("history not saved", extra={"error": type(exc).__name__})

    def _voice_id(self) -> str | None:
        voice = self.call.tenant_settings.get("voice_id")
        return str(voice) if voice else None

    def _record(self, role: str, text: str, interrupted: bool = False, heard: str | None = None) -> None:
        if not text:
            return
        entry = {"role": role, "text": text, "at": datetime.now(UTC).isoformat(),
                 "interrupted": interrupted, "heard": heard if interrupted else text}
        self.transcript.append(entry)
        self._to_recorder(lambda: self.recorder.transcript_turn(self.call, entry))

    def _to_recorder(self, record: Callable[[], None]) -> None:
        if self._unrecorded is not None:
            self._unrecorded.append(record)  # the call's record is still being created
        else:
            record()

    def snapshot(self) -> dict[str, Any]:
        return {
            "call_sid": self.call.call_sid,
            "stream_sid": self.call.stream_sid,
            "tenant_id": self.call.tenant_id,
            "state": self.state,
            "started_at": self.started_at.isoformat(),
            "turns": len(self.turns),
            "barge_ins": self.barge_ins,
            "last_turn": self.turns[-1] if self.turns else None,
            "turn_metrics": list(self.turns),  # the same summaries the call record keeps (tenant API)
        }


def _awaiting(task: asyncio.Task[None]) -> str:
    """The chain of coroutines a task is suspended in, outermost first (for a log line)."""
    chain: list[str] = []
    awaited: Any = task.get_coro()
    while awaited is not None and len(chain) < 30:
        code = getattr(awaited, "cr_code", None) or getattr(awaited, "ag_code", None)
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None)
        chain.append(f"{code.co_name}:{frame.f_lineno}" if code is not None and frame is not None
                     else type(awaited).__name__)
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None)
    return " -> ".join(chain)

