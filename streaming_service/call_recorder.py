"""Where a call's lifecycle, transcript and outcome go.

The session calls these hooks; the data layer implements them durably (Redis during the call,
Postgres at the end). `LoggingCallRecorder` keeps nothing and is what runs without a database.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from streaming_service.engines.base import CallContext

log = logging.getLogger("voice_agent.recorder")


class CallRecorder(Protocol):
    async def call_started(self, call: CallContext) -> None: ...

    def transcript_turn(self, call: CallContext, entry: dict[str, Any]) -> None:
        """Must not block: buffer and write in the background."""

    def turn_measured(self, call: CallContext, summary: dict[str, Any]) -> None:
        """A caller turn's latency summary (TurnMetrics.summary()); kept with the call at its end."""

    async def history_updated(self, call: CallContext, items: list[dict[str, Any]]) -> None:
        """The conversation changed (a turn ended, or a barge-in cut it): keep it outside this process."""

    async def call_ended(self, call: CallContext) -> None:
        """Persist the outcome the `<Connect action>` callback reads, and flush the transcript."""


class LoggingCallRecorder:
    def __init__(self) -> None:
        self.outcomes: dict[str, dict[str, str]] = {}

    async def call_started(self, call: CallContext) -> None:
        log.info("call started", extra={"caller": call.caller_number[-4:] if call.caller_number else ""})

    def transcript_turn(self, call: CallContext, entry: dict[str, Any]) -> None:
        log.info("transcript", extra={"role": entry["role"], "interrupted": entry["interrupted"]})

    def turn_measured(self, call: CallContext, summary: dict[str, Any]) -> None:
        return None  # already logged as "turn complete"

    async def history_updated(self, call: CallContext, items: list[dict[str, Any]]) -> None:
        return None

    async def call_ended(self, call: CallContext) -> None:
        self.outcomes[call.call_sid] = {"action": call.outcome.action, "transfer_to": call.outcome.transfer_to,
                                        "reason": call.outcome.reason}
