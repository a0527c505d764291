"""The local web phone observes the engines without changing them: every event passes through unchanged,
and every hook of the wrapped agent runtime still runs."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator

from local.web_phone.live_feed import LiveCalls, TappedAgent
from streaming_service.engines.base import AgentEvent, AgentEventKind, AgentRuntime, CallContext, Conversation


class RecordingRuntime(AgentRuntime):
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def run_turn(self, call: CallContext, conversation: Conversation, user_text: str
                       ) -> AsyncIterator[AgentEvent]:
        yield AgentEvent(AgentEventKind.TOOL_CALL, data={"name": "book_appointment", "arguments": "{}"})
        yield AgentEvent(AgentEventKind.TEXT_DELTA, "Booked.")

    async def prepare_call(self, call: CallContext) -> None:
        self.calls.append("prepare")

    async def release_call(self, call: CallContext) -> None:
        self.calls.append("release")


async def test_events_pass_through_and_are_noted() -> None:
    inner, calls = RecordingRuntime(), LiveCalls()
    tapped = TappedAgent(inner, calls)
    call = CallContext(call_sid="CA1", stream_sid="MZ1", tenant_id="t")
    events = [e async for e in tapped.run_turn(call, Conversation(), "book me in")]
    assert [e.kind for e in events] == [AgentEventKind.TOOL_CALL, AgentEventKind.TEXT_DELTA]
    assert [e["kind"] for e in calls.get("CA1").events] == ["tool_call", "agent_words"]


async def test_every_hook_of_the_runtime_is_forwarded() -> None:
    inner = RecordingRuntime()
    tapped = TappedAgent(inner, LiveCalls())
    call = CallContext(call_sid="CA1", stream_sid="MZ1", tenant_id="t")
    hooks = [name for name, member in inspect.getmembers(AgentRuntime, inspect.iscoroutinefunction)
             if not name.startswith("_")]
    for name in hooks:
        if hasattr(inner, name) and name != "run_turn":
            await getattr(tapped, name)(call)
    assert sorted(inner.calls) == sorted(n.removesuffix("_call") for n in hooks if n != "run_turn")


async def test_each_calls_engines_are_observed_and_the_shared_ones_left_alone() -> None:
    from types import SimpleNamespace

    from local.web_phone.live_feed import tap_calls
    from streaming_service.call_session import Engines

    stt, tts = SimpleNamespace(name="stt"), SimpleNamespace(name="tts")
    shared = Engines(stt=stt, tts=tts, agent=RecordingRuntime())  # type: ignore[arg-type]

    async def per_call(call: CallContext, capacity_mode: str = "") -> Engines:
        return shared  # e.g. the process's engines, or a tenant's own vendor accounts

    state = SimpleNamespace(engines=shared, call_engines=per_call)
    tap_calls(state, LiveCalls())  # type: ignore[arg-type]
    engines = await state.call_engines(CallContext(call_sid="CA1", stream_sid="MZ1", tenant_id="t"))
    assert isinstance(engines.agent, TappedAgent) and engines.agent.inner is shared.agent
    assert isinstance(shared.agent, RecordingRuntime)  # nothing shared was replaced
