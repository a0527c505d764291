"""The agent seam on the OpenAI Agents SDK, over Chat Completions (any OpenAI-compatible base URL).

One turn = one `Runner.run_streamed` over the call's history. Text deltas go out as they arrive so
TTS can start on the first sentence; tool and handoff items are reported for logs and metrics.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, cast

from agents import (
    Agent,
    Model,
    OpenAIChatCompletionsModel,
    RunConfig,
    RunContextWrapper,
    Runner,
    StreamEvent,
    TResponseInputItem,
    function_tool,
)
from agents.items import HandoffOutputItem, ToolCallItem, ToolCallOutputItem
from openai import AsyncOpenAI
from openai.types.responses import ResponseTextDeltaEvent

from shared.settings import Settings
from streaming_service.engines.base import (
    AgentEvent,
    AgentEventKind,
    AgentRuntime,
    CallContext,
    Conversation,
    EngineError,
)

log = logging.getLogger(__name__)

VENDOR = "openai"
MAX_MODEL_CALLS_PER_TURN = 6  # tool -> answer -> ... a caller never waits on a long chain

VOICE_RULES = (
    "You are talking with a caller on the phone, and everything you write is spoken aloud. "
    "Answer in one to three short sentences. Never use markdown, lists, emojis or links. "
    "Write numbers, times, dates and prices the way a person says them, for example "
    "'seven thirty pm' or 'twenty five dollars'. Ask one question at a time. "
    "When the caller is done or says goodbye, say a short goodbye and call end_call. "
    "When the caller asks for a person, call transfer_to_human and tell them what happens next."
)
DEFAULT_ROLE = "You are a friendly, efficient receptionist who helps callers with their questions."


# --- tools every agent has -----------------------------------------------------------------

@function_tool
def end_call(ctx: RunContextWrapper[CallContext]) -> str:
    """End the phone call. Use it once the caller is done or has said goodbye."""
    ctx.context.end_call()
    return "The call ends after your reply. Say a short, warm goodbye now."


@function_tool
def transfer_to_human(ctx: RunContextWrapper[CallContext]) -> str:
    """Transfer the caller to a human member of staff."""
    number = str(ctx.context.tenant_settings.get("fallback_number") or "")
    if not number:
        return ("No one is available to take the call right now. Apologise briefly and offer to "
                "keep helping.")
    ctx.context.transfer(number)
    return "Transferring now. Tell the caller in one short sentence that you are connecting them."


COMMON_TOOLS = [end_call, transfer_to_human]


# --- agents ----------------------------------------------------------------------------------

def instructions_for(call: CallContext) -> str:
    """Tenant prompt (or the default role) plus the voice rules, which a tenant cannot switch off."""
    tenant = call.tenant_settings
    parts = [str(tenant.get("prompt") or DEFAULT_ROLE)]
    if tenant.get("business_name"):
        parts.append(f"You answer the phone for {tenant['business_name']}.")
    if tenant.get("greeting"):
        parts.append(f"The call opened with your greeting: \"{tenant['greeting']}\" Do not greet again.")
    parts.append(VOICE_RULES)
    return "\n\n".join(parts)


def build_agents(call: CallContext, model: Model) -> Agent[CallContext]:
    """The agent that takes this turn (`call.current_agent`), wired to the others.

    Built per turn: cheap, and tenant settings may change between calls. Triage and booking agents
    with handoffs join the `agents` map later; an unknown name falls back to the general agent.
    """
    general = Agent[CallContext](
        name="general",
        handoff_description="General questions about the business.",
        instructions=instructions_for(call),
        tools=list(COMMON_TOOLS),
        model=model,
    )
    agents: dict[str, Agent[CallContext]] = {general.name: general}
    return agents.get(call.current_agent, general)


# --- runtime ---------------------------------------------------------------------------------

class OpenAIAgentRuntime(AgentRuntime):
    name = "openai"

    def __init__(self, settings: Settings) -> None:
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else ""
        if not key:
            raise EngineError(VENDOR, "OPENAI_API_KEY is not set")
        self._timeout_s = settings.openai_timeout_s
        # One retry: a blip is survived, an outage surfaces quickly for the offline fallback.
        self._client = AsyncOpenAI(base_url=settings.openai_base_url, api_key=key,
                                   timeout=settings.openai_timeout_s, max_retries=1)
        self._model = OpenAIChatCompletionsModel(model=settings.openai_model, openai_client=self._client)
        self._run_config = RunConfig(tracing_disabled=True)

    async def run_turn(self, call: CallContext, conversation: Conversation, user_text: str
                       ) -> AsyncIterator[AgentEvent]:
        conversation.add_user(user_text)
        agent = build_agents(call, self._model)
        result = Runner.run_streamed(
            agent, cast(list[TResponseInputItem], list(conversation.items)), context=call,
            max_turns=MAX_MODEL_CALLS_PER_TURN, run_config=self._run_config,
        )
        # An async generator at runtime (typed as an iterator): closed explicitly when we stop early.
        events = cast(AsyncGenerator[StreamEvent, None], result.stream_events())
        tool_names: dict[str, str] = {}
        finished = False
        try:
            while True:
                event = await self._next_event(events)
                if event is None:
                    break
                translated = _translate(event, tool_names)
                if translated is not None:
                    yield translated
            conversation.replace(cast(list[dict[str, Any]], result.to_input_list()))
            call.current_agent = result.last_agent.name
            finished = True
        finally:
            if not finished:
                # Barge-in, consumer gone or failure: stop the model call; the conversation keeps the
                # user item and the session adds what the caller actually heard.
                result.cancel()
                await events.aclose()

    async def _next_event(self, events: AsyncIterator[StreamEvent]) -> StreamEvent | None:
        """The next SDK event, or None at the end. The client timeout applies per read and is
        retried, so a silent server would cost twice the timeout; bound the wait here instead."""
        try:
            async with asyncio.timeout(self._timeout_s):
                return await anext(events)
        except StopAsyncIteration:
            return None
        except TimeoutError as exc:
            raise EngineError(VENDOR, f"no response within {self._timeout_s:g} s") from exc
        except Exception as exc:  # APIError, ModelBehaviorError, a cut stream, MaxTurnsExceeded...
            raise EngineError(VENDOR, f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        await self._client.close()


def _translate(event: StreamEvent, tool_names: dict[str, str]) -> AgentEvent | None:
    if event.type == "raw_response_event":
        if isinstance(event.data, ResponseTextDeltaEvent) and event.data.delta:
            return AgentEvent(AgentEventKind.TEXT_DELTA, event.data.delta)
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
