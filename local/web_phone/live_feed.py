"""What a call is doing, live, for the local pages and `voice-agent call`: the caller's words as the
recogniser hears them, the agent's words as it produces them, tool calls as they happen, each turn's
latency split, interruptions, and the end.

The engines the service already chose are wrapped (not replaced) in the local process only: every event
they yield is passed on unchanged and also noted in the call's `LiveCall`. The deployed service has no
such tap. The transcript entries and per-turn figures come from the live `CallSession` itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from shared.settings import Settings
from streaming_service.call_session import CallSession, Engines
from streaming_service.engines.base import (
    AgentEvent,
    AgentEventKind,
    AgentRuntime,
    CallContext,
    Conversation,
    SpeechToText,
    SpeechToTextStream,
    TranscriptEvent,
    TranscriptKind,
)
from streaming_service.operator_access import require_operator
from streaming_service.service_state import STATE, ServiceState

KEEP_ENDED_S = 600.0
MAX_EVENTS = 2000


@dataclass
class LiveCall:
    call_sid: str
    events: list[dict[str, Any]] = field(default_factory=list)
    session: CallSession | None = None
    ended_at: float | None = None
    after_stream_twiml: str = ""
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    relay_open: bool = False  # the web phone's relay still carries this call (its after-stream step to come)

    def note(self, kind: str, **data: Any) -> None:
        if len(self.events) < MAX_EVENTS:
            self.events.append({"kind": kind, "t": time.time(), **data})
        self.changed.set()


class LiveCalls:
    """Calls seen by this process, live and recently ended."""

    def __init__(self) -> None:
        self._calls: dict[str, LiveCall] = {}

    def get(self, call_sid: str) -> LiveCall:
        self._forget_old()
        if call_sid not in self._calls:
            self._calls[call_sid] = LiveCall(call_sid)
        return self._calls[call_sid]

    def known(self, call_sid: str) -> LiveCall | None:
        return self._calls.get(call_sid)

    def _forget_old(self) -> None:
        now = time.monotonic()
        for sid, live in list(self._calls.items()):
            if live.ended_at is not None and now - live.ended_at > KEEP_ENDED_S:
                del self._calls[sid]


class _TappedStream(SpeechToTextStream):
    def __init__(self, inner: SpeechToTextStream, live: LiveCall) -> None:
        self.inner = inner
        self.live = live

    async def send_audio(self, ulaw: bytes) -> None:
        await self.inner.send_audio(ulaw)

    async def events(self) -> AsyncIterator[TranscriptEvent]:
        async for event in self.inner.events():
            if event.kind in (TranscriptKind.INTERIM, TranscriptKind.FINAL) and event.text:
                self.live.note("caller_words", text=event.text, final=event.kind is TranscriptKind.FINAL)
            elif event.kind is TranscriptKind.SPEECH_STARTED:
                self.live.note("caller_speaking")
            yield event

    async def close(self) -> None:
        await self.inner.close()


class TappedSpeechToText(SpeechToText):
    def __init__(self, inner: SpeechToText, calls: LiveCalls) -> None:
        self.inner = inner
        self.calls = calls
        self.name = inner.name

    def __getattr__(self, name: str) -> Any:  # anything else the service reads (e.g. `primary`)
        return getattr(self.inner, name)

    async def open_stream(self, call_sid: str) -> SpeechToTextStream:
        return _TappedStream(await self.inner.open_stream(call_sid), self.calls.get(call_sid))


class TappedAgent(AgentRuntime):
    def __init__(self, inner: AgentRuntime, calls: LiveCalls) -> None:
        self.inner = inner
        self.calls = calls
        self.name = inner.name

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def run_turn(self, call: CallContext, conversation: Conversation,
                       user_text: str) -> AsyncIterator[AgentEvent]:
        live = self.calls.get(call.call_sid)
        async for event in self.inner.run_turn(call, conversation, user_text):
            if event.kind is AgentEventKind.TEXT_DELTA:
                live.note("agent_words", text=event.text)
            else:
                live.note(event.kind.value, **{k: str(v)[:500] for k, v in event.data.items()})
            yield event

    # Every hook the runtime has is forwarded explicitly: a default inherited from AgentRuntime would
    # otherwise hide the wrapped runtime's own (e.g. opening the tenant's MCP session early).
    async def prepare_call(self, call: CallContext) -> None:
        prepare = getattr(self.inner, "prepare_call", None)
        if prepare is not None:
            await prepare(call)

    async def release_call(self, call: CallContext) -> None:
        await self.inner.release_call(call)


def tapped(engines: Engines, calls: LiveCalls) -> Engines:
    """The same engines, observed: a copy whose recognisers and agent note what they produce."""
    def stt(engine: SpeechToText) -> SpeechToText:
        return engine if isinstance(engine, TappedSpeechToText) else TappedSpeechToText(engine, calls)

    agent = engines.agent if isinstance(engines.agent, TappedAgent) else TappedAgent(engines.agent, calls)
    fallback = stt(engines.stt_fallback) if engines.stt_fallback is not None else None
    return dataclasses.replace(engines, stt=stt(engines.stt), stt_fallback=fallback, agent=agent)


def tap_calls(state: ServiceState, calls: LiveCalls) -> None:
    """Every call's engines, however the service picks them (the process's, a tenant's own vendor
    accounts, the offline twins at capacity), are observed; the shared engines themselves are untouched."""
    source = state.call_engines
    if source is None:
        state.engines = tapped(state.engines, calls)
        return

    async def observed(call: CallContext, capacity_mode: str = "") -> Engines:
        return tapped(await source(call, capacity_mode), calls)

    state.call_engines = observed


def call_view(live: LiveCall, since: int = 0) -> dict[str, Any]:
    """The call as the pages draw it: transcript and turn figures from the session, events after `since`."""
    session = live.session
    return {
        "call_sid": live.call_sid,
        "state": session.state if session is not None else ("ended" if live.ended_at else "waiting"),
        "tenant_id": session.call.tenant_id if session is not None else "",
        "transcript": list(session.transcript) if session is not None else [],
        "turns": list(session.turns) if session is not None else [],
        "barge_ins": session.barge_ins if session is not None else 0,
        "outcome": ({"action": session.call.outcome.action, "reason": session.call.outcome.reason}
                    if session is not None else {}),
        "events": live.events[since:],
        "next": len(live.events),
        "ended": live.ended_at is not None,
        "after_stream_twiml": live.after_stream_twiml,
    }


async def follow(app: web.Application, live: LiveCall, poll_s: float = 0.1,
                 no_call_after_s: float = 60.0) -> AsyncIterator[dict[str, Any]]:
    """Yield the call's view whenever it changes (each time with the events not sent yet), until the
    call has ended and its last view was sent."""
    state = app[STATE]
    last, sent, waiting_since = "", 0, time.monotonic()
    while True:
        if live.session is None:
            live.session = state.sessions.get(live.call_sid)
            if live.session is None and time.monotonic() - waiting_since > no_call_after_s:
                live.ended_at = time.monotonic()  # the stream never started
        elif (live.ended_at is None and live.session.state == "ended" and not state.has_call(live.call_sid)
              and not live.relay_open):
            live.ended_at = time.monotonic()
        view = call_view(live, since=sent)
        rest = json.dumps({k: v for k, v in view.items() if k not in ("events", "next")}, default=str)
        if view["events"] or rest != last:
            last, sent = rest, view["next"]
            yield view
        if live.ended_at is not None:
            return
        live.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(live.changed.wait(), timeout=poll_s)


LIVE_CALLS: web.AppKey[LiveCalls] = web.AppKey("live_calls", LiveCalls)
SETTINGS: web.AppKey[Settings] = web.AppKey("web_phone_settings", Settings)


async def call_events(request: web.Request) -> web.StreamResponse:
    """`GET /phone/api/calls/{call_sid}/events`: Server-Sent Events, one JSON view per change."""
    require_operator(request, request.app[SETTINGS])
    live = request.app[LIVE_CALLS].get(request.match_info["call_sid"])
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
    await response.prepare(request)
    async for view in follow(request.app, live):
        await response.write(f"data: {json.dumps(view, default=str)}\n\n".encode())
    await response.write(b"event: end\ndata: {}\n\n")
    return response
