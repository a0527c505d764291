"""One AgentRuntime for the Agents SDK, whatever the model: the same agents, handoffs and tools run on
OpenAI (engines/openai_agent.py) or on the rule-based offline policy (offline_policy/offline_runtime.py).

One turn = one `Runner.run_streamed` over the call's history (trimmed to a token budget), starting at
the call's current agent. Text deltas go out as they arrive so TTS can start on the first sentence;
tool and handoff items are reported for logs and metrics. Any failure of the run is an EngineError
naming the vendor, which is what the offline fallback switches on.
"""

from __future__ import annotations

import abc
import asyncio
import json
import logging
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, cast

from agents import Agent, Model, RunConfig, Runner, StreamEvent, TResponseInputItem
from agents.items import HandoffOutputItem, ToolCallItem, ToolCallOutputItem
from openai.types.responses import ResponseOutputItemAddedEvent, ResponseTextDeltaEvent

from streaming_service.agents.booking_store import BookingStore
from streaming_service.agents.definitions import ENTRY_AGENT, STOP_TOOLS, build_agents
from streaming_service.agents.history_budget import trim_history
from streaming_service.agents.router import starting_agent
from streaming_service.agents.side_effect_gate import SideEffectGate
from streaming_service.agents.tenant_tools import TenantToolServers
from streaming_service.agents.turn_context import AgentTurnContext
from streaming_service.engines.base import (
    AgentEvent,
    AgentEventKind,
    AgentRuntime,
    CallContext,
    Conversation,
    EngineError,
)

log = logging.getLogger(__name__)

MAX_MODEL_CALLS_PER_TURN = 8  # handoff → tool → answer...: a caller never waits on a long chain
DEFAULT_HISTORY_BUDGET_TOKENS = 6000


class AgentsSdkRuntime(AgentRuntime):
    vendor = "agents"

    def __init__(self, *, bookings: BookingStore | None = None, tenant_tools: TenantToolServers | None = None,
                 clock: Callable[[], datetime] | None = None, timeout_s: float | None = None,
                 history_budget_tokens: int = DEFAULT_HISTORY_BUDGET_TOKENS) -> None:
        self.bookings = bookings
        self.tenant_tools = tenant_tools
        self._clock = clock or (lambda: datetime.now(UTC))
        self._timeout_s = timeout_s
        self._history_budget_tokens = history_budget_tokens
        self._run_config = RunConfig(tracing_disabled=True)
        self._hooks = SideEffectGate()  # a preemptive draft's tools with side effects wait for its commit
        # The call's agent graph, built once per call (and again only if its model or MCP servers change):
        # building it per turn was ~7% of the service's CPU at 50 calls.
        self._call_agents: dict[str, tuple[tuple[int, ...], dict[str, Agent[Any]]]] = {}
        # A call with no MCP servers of its own (no tenant tools) takes its model's one shared graph: the agents
        # hold no call state (the turn's context carries it), and building them was 1.4 % of the CPU at 50 calls.
        self._shared_agents: weakref.WeakKeyDictionary[Model, dict[str, Agent[Any]]] = weakref.WeakKeyDictionary()

    @abc.abstractmethod
    def model_for(self, call: CallContext) -> Model:
        """The model that plays the agents for this call."""

    async def run_turn(self, call: CallContext, conversation: Conversation, user_text: str
                       ) -> AsyncIterator[AgentEvent]:
        conversation.add_user(user_text)
        history = trim_history(conversation.items, self._history_budget_tokens)
        turn = AgentTurnContext(call=call, now=self._clock(), bookings=self.bookings, history=history)
        servers = await self.tenant_tools.servers_for(call) if self.tenant_tools else []
        agents = self._agents_for(call, servers)
        current = call.current_agent if call.current_agent in agents else ENTRY_AGENT
        routed = starting_agent(current, user_text)
        if routed != current:
            log.info("routed by the caller's words", extra={"from": current, "to": routed})
        agent = agents[routed]
        result = Runner.run_streamed(agent, cast(list[TResponseInputItem], list(history)), context=turn,
                                     max_turns=MAX_MODEL_CALLS_PER_TURN, run_config=self._run_config,
                                     hooks=self._hooks)
        # An async generator at runtime (typed as an iterator): closed explicitly when we stop early.
        events = cast(AsyncGenerator[StreamEvent, None], result.stream_events())
        tool_names: dict[str, str] = {}
        finished = False
        last_line = ""  # a stop tool's own last line: the run ended on it, with no model call after
        try:
            while True:
                event = await self._next_event(events)
                if event is None:
                    break
                translated = _translate(event, tool_names)
                if translated is None:
                    continue
                if translated.kind is AgentEventKind.TOOL_RESULT and translated.data["name"] in STOP_TOOLS:
                    last_line = _say_of(translated.data["output"])
                elif translated.kind is AgentEventKind.TEXT_DELTA:
                    last_line = ""
                yield translated
            if last_line:
                yield AgentEvent(AgentEventKind.TEXT_DELTA, last_line)
            conversation.replace(cast(list[dict[str, Any]], result.to_input_list()))
            if last_line:
                conversation.add_assistant(last_line)
            call.current_agent = result.last_agent.name
            finished = True
        finally:
            if not finished:
                # Barge-in, consumer gone or failure: stop the model call; the conversation keeps the
                # user item and the session adds what the caller actually heard.
                result.cancel()
                await events.aclose()

    def _agents_for(self, call: CallContext, servers: list[Any]) -> dict[str, Agent[Any]]:
        model = self.model_for(call)
        if not servers:
            shared = self._shared_agents.get(model)
            if shared is None:
                shared = self._shared_agents[model] = build_agents(model)
            return shared
        key = (id(model), *(id(server) for server in servers))
        cached = self._call_agents.get(call.call_sid)
        if cached is None or cached[0] != key:
            cached = self._call_agents[call.call_sid] = (key, build_agents(model, servers))
        return cached[1]

    async def _next_event(self, events: AsyncIterator[StreamEvent]) -> StreamEvent | None:
        """The next SDK event, or None at the end. A vendor client's timeout applies per read and is
        retried, so a silent server would cost twice the timeout; bound the wait here instead."""
        try:
            async with asyncio.timeout(self._timeout_s):
                return await anext(events)
        except StopAsyncIteration:
            return None
        except TimeoutError as exc:
            raise EngineError(self.vendor, f"no response within {self._timeout_s:g} s") from exc
        except Exception as exc:  # APIError, ModelBehaviorError, a cut stream, MaxTurnsExceeded...
            raise EngineError(self.vendor, f"{type(exc).__name__}: {exc}") from exc

    async def prepare_call(self, call: CallContext) -> None:
        """Open the call's MCP session while the greeting plays (outside any turn's deadline)."""
        if self.tenant_tools is not None:
            await self.tenant_tools.servers_for(call)

    async def release_call(self, call: CallContext) -> None:
        """Free what this call holds (its agents, its MCP session). Call once when the call ends."""
        self._call_agents.pop(call.call_sid, None)
        if self.tenant_tools is not None:
            await self.tenant_tools.release(call.call_sid)

    async def aclose(self) -> None:
        if self.tenant_tools is not None:
            await self.tenant_tools.aclose()


def _say_of(output: str) -> str:
    try:
        said = json.loads(output).get("say")
    except (ValueError, AttributeError):
        return ""
    return str(said or "")


def _translate(event: StreamEvent, tool_names: dict[str, str]) -> AgentEvent | None:
    if event.type == "raw_response_event":
        if isinstance(event.data, ResponseTextDeltaEvent) and event.data.delta:
            return AgentEvent(AgentEventKind.TEXT_DELTA, event.data.delta)
        if isinstance(event.data, ResponseOutputItemAddedEvent) and event.data.item.type == "function_call":
            # The model has named a tool (or handoff) and is still writing its arguments: the earliest
            # moment to acknowledge the caller.
            return AgentEvent(AgentEventKind.TOOL_STARTED, data={"name": event.data.item.name})
        return None
    if event.type != "run_item_stream_event":
        return None
    item = event.item
    if isinstance(item, ToolCallItem):
        raw = item.raw_item
        name = str(getattr(raw, "name", "") or "")
        call_id = str(getattr(raw, "call_id", "") or "")
        tool_names[call_id] = name
        return AgentEvent(AgentEventKind.TOOL_CALL, data={
            "name": name, "call_id": call_id, "arguments": str(getattr(raw, "arguments", "") or "")})
    if isinstance(item, ToolCallOutputItem):
        raw_out: Any = item.raw_item
        call_id = str(raw_out.get("call_id", "") if isinstance(raw_out, dict) else "")
        return AgentEvent(AgentEventKind.TOOL_RESULT, data={
            "name": tool_names.get(call_id, ""), "call_id": call_id, "output": str(item.output)})
    if isinstance(item, HandoffOutputItem):
        return AgentEvent(AgentEventKind.HANDOFF, data={
            "from": item.source_agent.name, "to": item.target_agent.name})
    return None
