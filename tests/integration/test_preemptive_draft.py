"""A preemptive draft through the agent seam, offline policy and real Postgres: the booking the caller's
yes would make waits for the draft's commit; a discarded draft has written nothing and put the call's
agent back; a committed one books exactly once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from shared.tenancy import bookings
from shared.tenancy.database import TenantDatabase
from streaming_service.agents.booking_store import PostgresBookingStore
from streaming_service.agents.offline_policy.offline_runtime import OfflinePolicyRuntime
from streaming_service.engines.base import AgentEventKind, CallContext, Conversation
from streaming_service.preemptive_reply import PreemptiveDraft, same_words

NOW = datetime(2030, 1, 7, 15, 0, tzinfo=UTC)
SETTINGS = {"timezone": "America/New_York", "services": ["haircut"],
            "business_hours": {d: [["09:00", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}}


async def _ready_to_book(runtime: OfflinePolicyRuntime, call: CallContext) -> Conversation:
    """A call at the read-back: the next yes books."""
    conversation = Conversation()
    for line in ("I'd like to book a haircut tomorrow at 3", "My name is Ann Lee"):
        [e async for e in runtime.run_turn(call, conversation, line)]
    assert "book" in (conversation.last_assistant_text() or "").lower()
    return conversation


async def _tool_waiting(draft: PreemptiveDraft) -> None:
    """Until the draft has named its tool (and so waits at the gate, or has run a read-only one)."""
    async def named() -> None:
        async for event in draft.events():
            if event.kind in (AgentEventKind.TOOL_STARTED, AgentEventKind.TOOL_CALL):
                return
    await asyncio.wait_for(named(), timeout=5)


async def test_a_discarded_draft_books_nothing_and_a_committed_one_books_once(
        db: TenantDatabase, make_tenant: Any) -> None:
    tenant = await make_tenant(**{k: v for k, v in SETTINGS.items() if k != "services"})
    runtime = OfflinePolicyRuntime(bookings=PostgresBookingStore(db), clock=lambda: NOW)
    call = CallContext(call_sid="CA1", stream_sid="MZ1", tenant_id=str(tenant.tenant_id), caller_number="+15550100200",
                       tenant_settings=tenant.settings.to_json() | {"services": ["haircut"]})
    conversation = await _ready_to_book(runtime, call)
    agent_before = call.current_agent

    draft = PreemptiveDraft(runtime, call, conversation, "Yes please")
    await _tool_waiting(draft)
    await asyncio.sleep(0.3)  # ample time for a write, had the gate let it through
    assert await bookings.list_bookings(db, tenant.tenant_id) == []
    await draft.discard()
    assert await bookings.list_bookings(db, tenant.tenant_id) == []
    assert call.current_agent == agent_before and "Yes please" not in str(conversation.items)

    committed = PreemptiveDraft(runtime, call, conversation, "Yes please")
    assert committed.fits("yes, please.", conversation)
    committed.commit()
    said = "".join([e.text async for e in committed.events() if e.kind is AgentEventKind.TEXT_DELTA])
    assert "booked" in said.lower()
    [row] = await bookings.list_bookings(db, tenant.tenant_id)
    assert row.customer_name == "Ann Lee"


def test_same_words_ignores_case_punctuation_and_spacing() -> None:
    assert same_words("Yes, please.", "yes please")
    assert not same_words("Yes please", "Yes please book it")
