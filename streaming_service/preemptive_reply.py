"""Preemptive generation: the agent starts on the caller's words before the recogniser ends the turn.

When the caller has gone quiet and the transcript so far is stable, a draft runs the agent on it at
once, on a fork of the conversation. Its events are kept, not spoken. When the final transcript
arrives:
- it matches the draft's words: the draft is *committed* and becomes the turn's reply, already some
  way into the model's answer;
- it does not: the draft is discarded (cancelled) and the turn starts afresh.
Nothing with a side effect runs before the commit (`agents.side_effect_gate`): a discarded draft has
booked nothing, ended nothing and transferred no one; the call's current agent is put back too.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator

from streaming_service.agents.side_effect_gate import uncommitted_turn
from streaming_service.engines.base import (
    AgentEvent,
    AgentEventKind,
    AgentRuntime,
    CallContext,
    Conversation,
)

_NOT_WORDS = re.compile(r"[^\w' ]+")


def same_words(a: str, b: str) -> bool:
    """Transcripts that differ only in case, punctuation or spacing ask the agent the same thing."""
    return _words(a) == _words(b)


def _words(text: str) -> list[str]:
    return _NOT_WORDS.sub(" ", text.lower()).split()


class PreemptiveDraft:
    def __init__(self, agent: AgentRuntime, call: CallContext, conversation: Conversation, text: str,
                 after_quiet_ms: int = 0) -> None:
        self.text = text
        self.started_at = time.monotonic()
        self.after_quiet_ms = after_quiet_ms  # how long the caller had been quiet (audio) when it started
        self.first_text_at: float | None = None
        self.conversation = Conversation(list(conversation.items))  # the fork the draft writes to
        self.base_items = list(conversation.items)
        self._call = call
        self._agent_before = call.current_agent
        self._events: list[AgentEvent] = []
        self._error: BaseException | None = None
        self._done = False
        self._changed = asyncio.Event()
        self._commit = asyncio.Event()
        self._task = asyncio.ensure_future(self._run(agent))

    async def _run(self, agent: AgentRuntime) -> None:
        with uncommitted_turn(self._commit):
            try:
                async for event in agent.run_turn(self._call, self.conversation, self.text):
                    if event.kind is AgentEventKind.TEXT_DELTA and self.first_text_at is None:
                        self.first_text_at = time.monotonic()
                    self._events.append(event)
                    self._changed.set()
            except Exception as exc:  # replayed to the reply, which handles it as a live failure would
                self._error = exc
            finally:
                self._done = True
                self._changed.set()

    def fits(self, text: str, conversation: Conversation) -> bool:
        """The final transcript is the draft's, and nothing was added to the history meanwhile."""
        return same_words(text, self.text) and conversation.items == self.base_items

    def commit(self) -> None:
        """The turn is the draft's: tools with side effects may run now."""
        self._commit.set()

    async def events(self) -> AsyncIterator[AgentEvent]:
        """Everything the draft produced so far, then the rest as it comes (once committed)."""
        sent = 0
        while True:
            while sent < len(self._events):
                sent += 1
                yield self._events[sent - 1]
            if self._done:
                if self._error is not None:
                    raise self._error
                return
            self._changed.clear()
            await self._changed.wait()

    async def stop(self) -> None:
        """Stop generating (the reply it became was interrupted or is over)."""
        if not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def discard(self) -> None:
        """The caller said something else: as if the draft had never run."""
        await self.stop()
        self._call.current_agent = self._agent_before  # a handoff made in the draft never happened
