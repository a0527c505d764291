"""Scripted calls (tests/conversations/*.yaml) through the AgentRuntime seam, offline policy by default,
against real Postgres with a fixed clock.

The harness plays the call session's part the way `CallSession` does: a barge-in cuts the agent's last
message down to the sentences heard (`Conversation.truncate_last_assistant`), and silence adds the
session's reprompt, then its goodbye and a hang-up after `SilenceOptions.max_reprompts`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from shared.settings import SilenceOptions
from shared.tenancy import bookings
from shared.tenancy.database import TenantDatabase
from shared.tenancy.models import TenantProfile
from streaming_service.agents.booking_store import PostgresBookingStore
from streaming_service.agents.offline_policy.offline_runtime import OfflinePolicyRuntime
from streaming_service.engines.base import AgentEventKind, AgentRuntime, CallContext, Conversation

SCENARIOS = {p.stem: yaml.safe_load(p.read_text())
             for p in sorted((Path(__file__).parents[1] / "conversations").glob("*.yaml"))}
TZ = ZoneInfo("America/New_York")
NOW = datetime(2030, 1, 7, 15, 0, tzinfo=UTC)  # Monday 10:00 in New York
CALLER = "+15550100200"
GREETING = "Hello! Thanks for calling. How can I help you today?"
TENANT_DEFAULTS: dict[str, Any] = {
    "timezone": "America/New_York", "address": "12 Main Street, Springfield", "greeting": GREETING,
    "faq_text": "Q: Do you have parking?\nA: Yes, free parking behind the shop.",
    "business_hours": {d: [["09:00", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri")},
    "fallback_transfer_number": "+15550009999",
}
EXTRA_SETTINGS = {"services": ["haircut", "beard trim"]}  # not a column (yet): carried in the call settings


def test_there_are_at_least_ten_scenarios() -> None:
    assert len(SCENARIOS) >= 10


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_conversation(name: str, db: TenantDatabase, make_tenant: Any) -> None:
    script = SCENARIOS[name]
    overrides = script.get("tenant") or {}
    tenant: TenantProfile = await make_tenant(**{k: v for k, v in (TENANT_DEFAULTS | overrides).items()
                                                 if k not in EXTRA_SETTINGS})
    caller = script.get("caller_id", CALLER)
    for existing in script.get("existing_bookings") or []:
        start = _local(existing["start"])
        await bookings.create_booking(
            db, tenant.tenant_id, starts_at=start, ends_at=start + timedelta(minutes=30),
            customer_name=existing.get("name", ""), notes=existing.get("service"),
            customer_phone=caller if existing.get("phone") == "caller" else existing.get("phone"), now=NOW)
    call = CallContext(call_sid=f"CA{tenant.slug}", stream_sid="MZ1", tenant_id=str(tenant.tenant_id),
                       caller_number=caller,
                       tenant_settings=tenant.settings.to_json() | EXTRA_SETTINGS | overrides)
    call.current_agent = "triage"
    runtime = OfflinePolicyRuntime(bookings=PostgresBookingStore(db), clock=lambda: NOW)
    await _play(script, runtime, call, db, tenant)

    expect = script.get("expect") or {}
    assert call.outcome.action == expect.get("outcome", "continue"), name
    if "transfer_to" in expect:
        assert call.outcome.transfer_to == expect["transfer_to"]
    if "bookings" in expect:
        rows = await bookings.list_bookings(db, tenant.tenant_id, include_cancelled=True)
        assert len(rows) == len(expect["bookings"]), [(r.starts_at, r.customer_name) for r in rows]
        for wanted in expect["bookings"]:
            _assert_booking(rows, wanted, caller)


async def _play(script: dict[str, Any], runtime: AgentRuntime, call: CallContext, db: TenantDatabase,
                tenant: TenantProfile) -> None:
    silence = SilenceOptions()
    conversation = Conversation()
    conversation.add_assistant(GREETING)
    reprompts = 0
    for step in script["turns"]:
        assert not call.ending, f"the call ended before: {step}"
        if step.get("silence"):
            if reprompts >= silence.max_reprompts:
                conversation.add_assistant(silence.goodbye_text)
                call.end_call("caller silent")
            else:
                reprompts += 1
                conversation.add_assistant(silence.reprompt_text)
            continue
        reprompts = 0
        reply = "".join([event.text async for event in runtime.run_turn(call, conversation, step["caller"])
                         if event.kind is AgentEventKind.TEXT_DELTA])
        for wanted in step.get("agent_says") or []:
            assert wanted.lower() in reply.lower(), f"{step['caller']!r} → {reply!r}: missing {wanted!r}"
        if "heard_sentences" in step:
            sentences = re.split(r"(?<=[.!?])\s+", reply.strip())
            conversation.truncate_last_assistant(" ".join(sentences[:step["heard_sentences"]]))
        if step.get("expect_no_booking_yet"):
            assert await bookings.list_bookings(db, tenant.tenant_id, include_cancelled=True) == []


def _local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


def _assert_booking(rows: list[bookings.Booking], wanted: dict[str, Any], caller: str) -> None:
    start = _local(wanted["start"])
    matching = [r for r in rows if r.starts_at == start]
    assert matching, f"no booking at {start}: {[r.starts_at for r in rows]}"
    row = matching[0]
    assert row.status == wanted.get("status", "confirmed")
    if "name" in wanted:
        assert row.customer_name == wanted["name"]
    if "service" in wanted:
        assert row.notes == wanted["service"]
    if "phone" in wanted:
        assert row.customer_phone == (caller if wanted["phone"] == "caller" else wanted["phone"])
