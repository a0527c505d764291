"""Vendor engines that hold a slot of their account's budget while they work (shared/capacity.py).

- `LeasedSpeechToText`: a call's recognition stream holds one Deepgram stream slot for the whole call
  (the one the webhook reserved under the call SID; renewed while the stream lives, released at its end).
- `LeasedTextToSpeech`: each sentence holds one ElevenLabs request slot while it is synthesised. With
  no slot free within `tts_slot_wait_ms`, or when ElevenLabs answers 429 `too_many_concurrent_requests`,
  the sentence goes to the offline voice (a `VendorCapacityError`: a capacity signal that lowers the
  account's budget for a while, not an outage). 429 `system_busy` is retried with jitter while the
  sentence's first-byte budget lasts: ElevenLabs says a retry usually works.
- Deepgram answering 429 on connect is a `VendorCapacityError` too (raised by deepgram_stt.py): the call
  moves to the offline recogniser at once instead of riding it out as a reconnectable outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from shared.capacity import CapacityLedger, VendorAccount
from streaming_service.agents.side_effect_gate import wait_for_commit
from streaming_service.engines.base import (
    AgentEvent,
    AgentRuntime,
    CallContext,
    Conversation,
    EngineError,
    SpeechToText,
    SpeechToTextStream,
    TextToSpeech,
    TranscriptEvent,
    VendorCapacityError,
)
from streaming_service.telemetry.call_hooks import current_call_hooks

log = logging.getLogger("voice_agent.capacity")

CapacityReport = Callable[[str, str], None]  # (vendor, account label): a capacity refusal happened


def elevenlabs_429(exc: BaseException) -> str:
    """`system_busy`, `too_many_concurrent_requests`, or "" for anything that is not an ElevenLabs 429.
    The SDK's ApiError (status_code, body = parsed JSON `{"detail": {"status": …, "message": …}}`) is the
    cause of the engine's EngineError."""
    cause = exc.__cause__ if isinstance(exc, EngineError) else exc
    if getattr(cause, "status_code", None) != 429:
        return ""
    body = getattr(cause, "body", None)
    detail = body.get("detail") if isinstance(body, dict) else None
    status = detail.get("status") if isinstance(detail, dict) else None
    return str(status or "too_many_concurrent_requests")


class LeasedTextToSpeech(TextToSpeech):
    def __init__(self, primary: TextToSpeech, ledger: CapacityLedger, account: VendorAccount, *,
                 slot_wait_ms: int, first_byte_budget_ms: int, report: CapacityReport | None = None) -> None:
        self.primary = primary
        self.name = primary.name
        self.ledger = ledger
        self.account = account
        self.slot_wait_s = slot_wait_ms / 1000
        self.first_byte_budget_s = first_byte_budget_ms / 1000
        self.report = report
        self.busy_retries = 0

    async def synthesize(self, text: str, voice_id: str | None = None, **stitching: Any) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        lease = f"tts-{uuid.uuid4().hex}"
        while not (grant := await self.ledger.acquire(self.account, lease)).granted:
            if loop.time() - started >= self.slot_wait_s:
                self._refused("no slot free")
                raise VendorCapacityError(self.account.vendor, f"{self.account.label}: all {grant.in_use} "
                                          "request slots busy")
            await asyncio.sleep(random.uniform(0.03, 0.12))
        try:
            while True:
                produced = False
                try:
                    async for chunk in self.primary.synthesize(text, voice_id, **stitching):
                        produced = True
                        yield chunk
                    return
                except EngineError as exc:
                    kind = elevenlabs_429(exc)
                    if kind == "system_busy" and not produced:
                        delay = random.uniform(0.05, 0.25)  # jitter: retries of many calls do not align
                        if loop.time() + delay - started < self.first_byte_budget_s:
                            self.busy_retries += 1
                            log.info("tts system_busy; retrying", extra={"account": self.account.label})
                            await asyncio.sleep(delay)
                            continue
                    if kind == "too_many_concurrent_requests":
                        held = await self.ledger.in_use(self.account)
                        await self.ledger.vendor_refused(self.account, max(0, (held or 1) - 1))
                        self._refused("vendor 429 too_many_concurrent_requests")
                        raise VendorCapacityError(self.account.vendor,
                                                  f"{self.account.label}: {kind}") from exc
                    raise
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.ledger.release(self.account, lease))

    def _refused(self, why: str) -> None:
        log.warning("tts capacity exhausted; offline voice for this sentence",
                    extra={"account": self.account.label, "reason": why})
        if self.report is not None:
            self.report(self.account.vendor, self.account.label)

    async def aclose(self) -> None:
        return None  # the primary is the process's, shared by every call


class LeasedSpeechToText(SpeechToText):
    """One call's recogniser: its stream holds the call's stream slot (lease id = call SID)."""

    def __init__(self, primary: SpeechToText, ledger: CapacityLedger, account: VendorAccount, *,
                 renew_interval_s: float, report: CapacityReport | None = None) -> None:
        self.primary = primary
        self.name = primary.name
        self.ledger = ledger
        self.account = account
        self.renew_interval_s = renew_interval_s
        self.report = report

    async def open_stream(self, call_sid: str) -> SpeechToTextStream:
        grant = await self.ledger.acquire(self.account, call_sid)
        if not grant.granted:  # the webhook's reservation lapsed and others took the slots meanwhile
            if self.report is not None:
                self.report(self.account.vendor, self.account.label)
            raise VendorCapacityError(self.account.vendor, f"{self.account.label}: all {grant.in_use} streams busy")
        return _LeasedStream(await self.primary.open_stream(call_sid), self, call_sid)


class _LeasedStream(SpeechToTextStream):
    def __init__(self, inner: SpeechToTextStream, owner: LeasedSpeechToText, call_sid: str) -> None:
        self.inner = inner
        self.owner = owner
        self.call_sid = call_sid
        self._renewer = asyncio.create_task(self._renew())
        self._released = False

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.owner.renew_interval_s)
            await self.owner.ledger.acquire(self.owner.account, self.call_sid)

    async def send_audio(self, ulaw: bytes) -> None:
        await self.inner.send_audio(ulaw)

    async def finalize(self) -> bool:
        return await self.inner.finalize()

    def words_awaited(self, awaited: bool) -> None:
        self.inner.words_awaited(awaited)

    async def events(self) -> AsyncIterator[TranscriptEvent]:
        try:
            async for event in self.inner.events():
                yield event
        except VendorCapacityError:
            # Deepgram said 429 on connect while we held `in use` slots (this one included): that is the
            # account's real ceiling for now. This call's slot goes back; it carries on offline.
            held = await self.owner.ledger.in_use(self.owner.account)
            await self.owner.ledger.vendor_refused(self.owner.account, max(0, (held or 1) - 1))
            if self.owner.report is not None:
                self.owner.report(self.owner.account.vendor, self.owner.account.label)
            await self._release()
            raise

    async def _release(self) -> None:
        if not self._released:
            self._released = True
            self._renewer.cancel()
            await self.owner.ledger.release(self.owner.account, self.call_sid)

    async def close(self) -> None:
        try:
            await self.inner.close()
        finally:
            await self._release()


class RateBudgetedAgent(AgentRuntime):
    """The agent with the OpenAI account's requests-per-minute budget (shared by every task through Redis):
    each turn counts one request in the minute's window; a turn over the budget is answered by the offline
    policy (a capacity signal, reported as such), and the next turn tries the model again."""

    def __init__(self, agent: AgentRuntime, offline: AgentRuntime, ledger: CapacityLedger,
                 account: VendorAccount) -> None:
        self.agent = agent
        self.offline = offline
        self.name = agent.name
        self.ledger = ledger
        self.account = account
        self.over_budget_turns = 0

    async def run_turn(self, call: CallContext, conversation: Conversation, user_text: str
                       ) -> AsyncIterator[AgentEvent]:
        # A preemptive draft spends nothing of a budgeted minute until its words are the turn's (a discarded
        # one is cancelled here): a request per minute is too scarce to spend on words the caller may change.
        await wait_for_commit()
        grant = await self.ledger.count_request(self.account)
        runtime = self.agent
        if not grant.granted:
            self.over_budget_turns += 1
            log.warning("llm requests-per-minute budget spent; offline policy for this turn",
                        extra={"account": self.account.label, "budget": self.account.budget})
            current_call_hooks().vendor_error(self.account.vendor, VendorCapacityError(
                self.account.vendor, f"{self.account.label}: {self.account.budget} requests per minute"))
            runtime = self.offline
        async for event in runtime.run_turn(call, conversation, user_text):
            yield event

    async def prepare_call(self, call: CallContext) -> None:
        await self.agent.prepare_call(call)

    async def release_call(self, call: CallContext) -> None:
        await self.agent.release_call(call)
