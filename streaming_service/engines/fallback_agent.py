"""An AgentRuntime that survives its vendor: the primary runs until it raises EngineError, then the
call switches to the offline policy for this turn and every later turn of the call.

The caller hears one short line, then the offline policy answers the same words. The turn is replayed
from the history as it was before the failed attempt, so the policy sees the caller's request (and any
details given earlier, to the LLM) and a booking in progress still completes: the booking tool is
idempotent, so a write the primary made just before failing is found again, not repeated.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from streaming_service.engines.base import (
    AgentEvent,
    AgentEventKind,
    AgentRuntime,
    CallContext,
    Conversation,
    EngineError,
)
from streaming_service.telemetry.call_hooks import current_call_hooks

log = logging.getLogger(__name__)

SWITCH_NOTICE = "Sorry, I'm having a little trouble on my end, so bear with me. "


class FallbackAgentRuntime(AgentRuntime):
    name = "fallback"

    def __init__(self, primary: AgentRuntime, offline: AgentRuntime, notice: str = SWITCH_NOTICE,
                 first_event_timeout_s: float = 4.0) -> None:
        self.primary = primary
        self.offline = offline
        self.notice = notice
        # A vendor that says nothing for this long is treated as failed: the caller must not wait on a
        # hung request for the full read timeout.
        self.first_event_timeout_s = first_event_timeout_s
        self._offline_calls: set[str] = set()

    def is_offline(self, call: CallContext) -> bool:
        return call.call_sid in self._offline_calls

    async def run_turn(self, call: CallContext, conversation: Conversation, user_text: str
                       ) -> AsyncIterator[AgentEvent]:
        if not self.is_offline(call):
            before = list(conversation.items)
            try:
                async for event in self._primary_events(call, conversation, user_text):
                    yield event
                return
            except EngineError as exc:
                log.error("agent vendor failed; switching the call to the offline policy",
                          extra={"vendor": exc.vendor, "error": str(exc)})
                self._offline_calls.add(call.call_sid)
                conversation.replace(before)
                hooks = current_call_hooks()
                hooks.vendor_error(exc.vendor, exc)
                hooks.offline_fallback("agent")
            yield AgentEvent(AgentEventKind.TEXT_DELTA, self.notice)
        async for event in self.offline.run_turn(call, conversation, user_text):
            yield event

    async def _primary_events(self, call: CallContext, conversation: Conversation, user_text: str
                              ) -> AsyncIterator[AgentEvent]:
        events = aiter(self.primary.run_turn(call, conversation, user_text))
        try:
            async with asyncio.timeout(self.first_event_timeout_s):
                first = await anext(events)
        except StopAsyncIteration:
            return
        except TimeoutError:
            vendor = getattr(self.primary, "vendor", self.primary.name)
            raise EngineError(vendor, f"no answer within {self.first_event_timeout_s:g} s") from None
        yield first
        async for event in events:
            yield event

    async def prepare_call(self, call: CallContext) -> None:
        await self.primary.prepare_call(call)  # both share the call's MCP session

    async def release_call(self, call: CallContext) -> None:
        self._offline_calls.discard(call.call_sid)
        for runtime in (self.primary, self.offline):
            release = getattr(runtime, "release_call", None)
            if release is not None:
                await release(call)

    async def aclose(self) -> None:
        for runtime in (self.primary, self.offline):
            close = getattr(runtime, "aclose", None)
            if close is not None:
                await close()
