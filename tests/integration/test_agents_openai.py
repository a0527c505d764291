"""The agents graph on OpenAI: the fake server (over a socket) scripts handoffs and tool calls, the real
Agents SDK runs them, and the booking tools write to real Postgres under the tenant."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretStr

from shared.settings import Settings
from shared.tenancy import bookings
from shared.tenancy.database import TenantDatabase
from shared.tenancy.models import TenantProfile
from streaming_service.agents.booking_store import PostgresBookingStore
from streaming_service.agents.offline_policy.offline_runtime import OfflinePolicyRuntime
from streaming_service.engines.base import AgentEvent, AgentEventKind, AgentRuntime, CallContext, Conversation
from streaming_service.engines.fallback_agent import SWITCH_NOTICE, FallbackAgentRuntime
from streaming_service.engines.openai_agent import OpenAIAgentRuntime
from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall

TZ = ZoneInfo("America/New_York")
NOW = datetime(2030, 1, 7, 15, 0, tzinfo=UTC)  # Monday 10:00 in New York
TOMORROW_3PM = datetime(2030, 1, 8, 15, 0, tzinfo=TZ)
CALLER = "+15550100200"
BOOK_ARGS = {"service": "haircut", "date": "2030-01-08", "time": "15:00", "customer_name": "Ann Lee",
             "callback_number": ""}
TENANT_SETTINGS: dict[str, Any] = {
    "timezone": "America/New_York", "address": "12 Main Street, Springfield",
    "faq_text": "Q: Do you have parking?\nA: Yes, free parking behind the shop.",
    "business_hours": {d: [["09:00", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri")},
    "fallback_transfer_number": "+15550009999",
}


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    server = FakeOpenAI()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def tenant(make_tenant: Any) -> TenantProfile:
    profile: TenantProfile = await make_tenant(**TENANT_SETTINGS)
    return profile


@pytest.fixture
async def runtime(fake: FakeOpenAI, db: TenantDatabase) -> AsyncIterator[OpenAIAgentRuntime]:
    engine = OpenAIAgentRuntime(Settings(openai_api_key=SecretStr("sk-test"), openai_base_url=fake.base_url,
                                         openai_model="fake-model", openai_timeout_s=5.0),
                                bookings=PostgresBookingStore(db), clock=lambda: NOW)
    yield engine
    await engine.aclose()


def new_call(tenant: TenantProfile, agent: str = "triage") -> CallContext:
    call = CallContext(call_sid="CA" + tenant.slug, stream_sid="MZ1", tenant_id=str(tenant.tenant_id),
                       caller_number=CALLER, tenant_settings=tenant.settings.to_json() | {"services": ["haircut"]})
    call.current_agent = agent
    return call


async def turn(runtime: AgentRuntime, call: CallContext, conv: Conversation, text: str) -> list[AgentEvent]:
    return [event async for event in runtime.run_turn(call, conv, text)]


def spoken(events: list[AgentEvent]) -> str:
    return "".join(e.text for e in events if e.kind is AgentEventKind.TEXT_DELTA)


def results(events: list[AgentEvent], name: str) -> list[dict[str, Any]]:
    return [json.loads(e.data["output"]) for e in events
            if e.kind is AgentEventKind.TOOL_RESULT and e.data["name"] == name]


async def rows(db: TenantDatabase, tenant: TenantProfile) -> list[bookings.Booking]:
    return await bookings.list_bookings(db, tenant.tenant_id, include_cancelled=True)


async def test_a_plain_booking_request_starts_at_booking_which_books_after_a_yes(
        fake: FakeOpenAI, runtime: OpenAIAgentRuntime, db: TenantDatabase, tenant: TenantProfile) -> None:
    call, conv = new_call(tenant), Conversation()
    fake.script(ToolCall("book_appointment", BOOK_ARGS),
                "A haircut for Ann Lee tomorrow at three pm. Shall I book that?")
    first = await turn(runtime, call, conv, "I'd like a haircut tomorrow at 3, my name is Ann Lee")

    # Routed by the caller's words: no handoff call to triage first, one round trip less.
    assert not [e for e in first if e.kind is AgentEventKind.HANDOFF] and len(fake.requests) == 2
    assert results(first, "book_appointment")[0]["status"] == "needs_confirmation"
    assert await rows(db, tenant) == []  # nothing is written before the caller's yes
    assert call.current_agent == "booking"
    assert "book_appointment" in fake.system_prompts[0] and "2030-01-07" in fake.system_prompts[0]

    fake.script(ToolCall("book_appointment", BOOK_ARGS), "You're all booked. Anything else?")
    second = await turn(runtime, call, conv, "Yes please")

    assert results(second, "book_appointment")[0]["status"] == "booked"
    [row] = await rows(db, tenant)
    assert (row.starts_at, row.customer_name, row.customer_phone, row.notes, row.call_sid) == (
        TOMORROW_3PM, "Ann Lee", CALLER, "haircut", call.call_sid)
    assert row.ends_at - row.starts_at == timedelta(minutes=30)


async def test_a_yes_to_something_else_books_nothing(
        fake: FakeOpenAI, runtime: OpenAIAgentRuntime, db: TenantDatabase, tenant: TenantProfile) -> None:
    call, conv = new_call(tenant, "booking"), Conversation()
    fake.script(ToolCall("book_appointment", BOOK_ARGS), "Shall I book that?")
    await turn(runtime, call, conv, "Haircut tomorrow at 3 for Ann Lee")
    other = BOOK_ARGS | {"time": "16:00"}  # the model "confirms" different details than were read back
    fake.script(ToolCall("book_appointment", other), "Shall I book four pm instead?")
    events = await turn(runtime, call, conv, "yes")
    assert results(events, "book_appointment")[0]["status"] == "needs_confirmation"
    assert await rows(db, tenant) == []


async def test_retried_tool_call_books_once(
        fake: FakeOpenAI, runtime: OpenAIAgentRuntime, db: TenantDatabase, tenant: TenantProfile) -> None:
    call, conv = new_call(tenant, "booking"), Conversation()
    fake.script(ToolCall("book_appointment", BOOK_ARGS), "Shall I book that?")
    await turn(runtime, call, conv, "Haircut tomorrow at 3 for Ann Lee")
    # The model sends the same call twice in one response, then once more after the results.
    fake.script(Reply(tool_calls=(ToolCall("book_appointment", BOOK_ARGS), ToolCall("book_appointment", BOOK_ARGS))),
                ToolCall("book_appointment", BOOK_ARGS), "Booked.")
    events = await turn(runtime, call, conv, "yes")
    outputs = results(events, "book_appointment")
    assert [o["status"] for o in outputs] == ["booked"] * 3
    assert len({o["booking_id"] for o in outputs}) == 1
    assert len(await rows(db, tenant)) == 1


async def test_taken_slot_offers_the_nearest_free_times(
        fake: FakeOpenAI, runtime: OpenAIAgentRuntime, db: TenantDatabase, tenant: TenantProfile) -> None:
    await bookings.create_booking(db, tenant.tenant_id, starts_at=TOMORROW_3PM,
                                  ends_at=TOMORROW_3PM + timedelta(minutes=30), customer_name="Zed", now=NOW)
    call = new_call(tenant, "booking")
    fake.script(ToolCall("book_appointment", BOOK_ARGS), "Three is taken; two thirty or three thirty?")
    events = await turn(runtime, call, Conversation(), "Haircut tomorrow at 3 for Ann Lee")
    [output] = results(events, "book_appointment")
    assert output["status"] == "unavailable" and output["reason"] == "taken"
    assert "2030-01-08T15:30" in output["alternatives"] and "2030-01-08T14:30" in output["alternatives"]
    assert "already taken" in output["say"] and "3:30 pm" in output["say"]
    assert len(await rows(db, tenant)) == 1


async def _existing_booking(db: TenantDatabase, tenant: TenantProfile) -> bookings.Booking:
    return await bookings.create_booking(db, tenant.tenant_id, starts_at=TOMORROW_3PM,
                                         ends_at=TOMORROW_3PM + timedelta(minutes=30), customer_name="Ann Lee",
                                         customer_phone=CALLER, notes="haircut", now=NOW)


async def test_reschedule_finds_the_callers_booking_and_moves_it_after_a_yes(
        fake: FakeOpenAI, runtime: OpenAIAgentRuntime, db: TenantDatabase, tenant: TenantProfile) -> None:
    booking = await _existing_booking(db, tenant)
    move = {"booking_id": str(booking.id), "date": "2030-01-11", "time": "16:00"}
    call, conv = new_call(tenant), Conversation()
    fake.script(ToolCall("find_bookings", {"customer_name": ""}),
                ToolCall("reschedule_booking", move), "Move it to Friday at four pm?")
    first = await turn(runtime, call, conv, "Can I move my haircut to Friday at 4?")
    assert results(first, "find_bookings")[0]["bookings"][0]["booking_id"] == str(booking.id)
    assert results(first, "reschedule_booking")[0]["status"] == "needs_confirmation"

    fake.script(ToolCall("reschedule_booking", move), "Done.")
    second = await turn(runtime, call, conv, "yes")
    assert results(second, "reschedule_booking")[0]["status"] == "rescheduled"
    [row] = await rows(db, tenant)
    assert row.starts_at == datetime(2030, 1, 11, 16, 0, tzinfo=TZ) and row.status == "confirmed"


async def test_cancel_after_a_yes(
        fake: FakeOpenAI, runtime: OpenAIAgentRuntime, db: TenantDatabase, tenant: TenantProfile) -> None:
    booking = await _existing_booking(db, tenant)
    call, conv = new_call(tenant, "booking"), Conversation()
    fake.script(ToolCall("find_bookings", {"customer_name": ""}),
                ToolCall("cancel_booking", {"booking_id": str(booking.id)}), "Cancel it?")
    await turn(runtime, call, conv, "Please cancel my appointment")
    assert (await rows(db, tenant))[0].status == "confirmed"
    fake.script(ToolCall("cancel_booking", {"booking_id": str(booking.id)}), "Cancelled.")
    events = await turn(runtime, call, conv, "Yes, cancel it")
    assert results(events, "cancel_booking")[0]["status"] == "cancelled"
    assert (await rows(db, tenant))[0].status == "cancelled"


async def test_a_booking_the_caller_was_not_shown_cannot_be_cancelled(
        fake: FakeOpenAI, runtime: OpenAIAgentRuntime, db: TenantDatabase, tenant: TenantProfile) -> None:
    booking = await bookings.create_booking(db, tenant.tenant_id, starts_at=TOMORROW_3PM,
                                            ends_at=TOMORROW_3PM + timedelta(minutes=30), customer_name="Someone",
                                            customer_phone="+15559998888", now=NOW)
    fake.script(ToolCall("cancel_booking", {"booking_id": str(booking.id)}), "Hmm.")
    events = await turn(runtime, new_call(tenant, "booking"), Conversation(), "cancel booking " + str(booking.id))
    assert results(events, "cancel_booking")[0]["status"] == "not_found"


async def test_general_question_answered_from_tenant_settings(
        fake: FakeOpenAI, runtime: OpenAIAgentRuntime, tenant: TenantProfile) -> None:
    call = new_call(tenant)
    fake.script(ToolCall("business_info", {"question": "Do you have parking?"}),
                "Yes, there is free parking behind the shop.")
    events = await turn(runtime, call, Conversation(), "Do you have parking?")
    assert results(events, "business_info")[0]["say"] == "Yes, free parking behind the shop."
    general_prompt = fake.system_prompts[0]  # a plain question starts at general
    assert "12 Main Street" in general_prompt and "Monday to Friday, 9 am to 6 pm" in general_prompt
    assert call.current_agent == "general"


async def test_transfer_is_recorded_with_the_tenant_number(
        fake: FakeOpenAI, runtime: OpenAIAgentRuntime, tenant: TenantProfile) -> None:
    call = new_call(tenant)
    fake.script(ToolCall("transfer_to_human"))
    await turn(runtime, call, Conversation(), "Can I talk to a person?")
    assert (call.outcome.action, call.outcome.transfer_to) == ("transfer", "+15550009999")


async def test_end_call_hangs_up(fake: FakeOpenAI, runtime: OpenAIAgentRuntime, tenant: TenantProfile) -> None:
    call = new_call(tenant, "booking")
    fake.script(ToolCall("end_call"))
    events = await turn(runtime, call, Conversation(), "That's all, bye")
    assert call.outcome.action == "hangup" and spoken(events) == "Thanks for calling. Goodbye!"
    assert len(fake.requests) == 1


async def test_openai_failing_mid_call_falls_back_and_the_booking_completes(
        fake: FakeOpenAI, runtime: OpenAIAgentRuntime, db: TenantDatabase, tenant: TenantProfile) -> None:
    offline = OfflinePolicyRuntime(bookings=PostgresBookingStore(db), clock=lambda: NOW)
    engine = FallbackAgentRuntime(runtime, offline)
    call, conv = new_call(tenant), Conversation()
    fake.script("Sure. What name should I put the booking under?")
    await turn(engine, call, conv, "I'd like a haircut tomorrow at 3")
    assert not engine.is_offline(call)

    fake.fail_next(500)
    fake.fail_next(500)  # the retry fails too: OpenAI is down
    second = await turn(engine, call, conv, "Ann Lee")
    assert engine.is_offline(call)
    assert spoken(second).startswith(SWITCH_NOTICE)
    assert "Ann Lee" in spoken(second) and spoken(second).endswith("Shall I book that?")

    requests_before = len(fake.requests)
    third = await turn(engine, call, conv, "Yes")
    assert len(fake.requests) == requests_before  # the rest of the call stays offline
    assert "all booked" in spoken(third)
    [row] = await rows(db, tenant)
    assert (row.starts_at, row.customer_name, row.notes) == (TOMORROW_3PM, "Ann Lee", "haircut")


async def test_tenant_prompt_overrides_per_agent_keep_the_voice_rules(
        fake: FakeOpenAI, runtime: OpenAIAgentRuntime, make_tenant: Any) -> None:
    tenant = await make_tenant(**TENANT_SETTINGS, prompt_overrides={
        "all": "You are Sam at Clip Joint.", "booking": "Only book haircuts; be quick."})
    fake.script(ToolCall("transfer_to_booking"), "Sure.")
    # Words that do not say what they want: triage decides, and hands off.
    events = await turn(runtime, new_call(tenant), Conversation(), "Hi there, I was wondering something")
    assert [e.data["to"] for e in events if e.kind is AgentEventKind.HANDOFF] == ["booking"]
    triage_prompt, booking_prompt = fake.system_prompts[:2]
    assert triage_prompt.startswith("You are Sam at Clip Joint.") and "hand off" in triage_prompt
    assert booking_prompt.startswith("You are Sam at Clip Joint.\n\nOnly book haircuts; be quick.")
    assert all("Never use markdown" in p for p in (triage_prompt, booking_prompt))


async def test_requests_go_out_as_the_sdk_made_them_and_the_clients_transform_would_change_nothing(
        fake: FakeOpenAI, runtime: OpenAIAgentRuntime, tenant: TenantProfile) -> None:
    """streaming_service/engines/openai_client.py sends the messages and tools past the openai client's
    type-driven transform. Over a conversation with a handoff and tool calls, that transform is an identity on
    every request: skipping it loses nothing (this fails if an openai release starts to rewrite these fields)."""
    from openai._utils._transform import async_maybe_transform
    from openai.types.chat.completion_create_params import CompletionCreateParamsStreaming

    call, conv = new_call(tenant), Conversation()
    fake.script(ToolCall("transfer_to_booking"), ToolCall("find_bookings", {"customer_name": "Ann Lee"}),
                "You have no bookings yet. Shall I make one?")
    await turn(runtime, call, conv, "Hi there, I was wondering something")
    fake.script(ToolCall("book_appointment", BOOK_ARGS), "A haircut for Ann Lee tomorrow at three. Shall I?")
    await turn(runtime, call, conv, "Three is fine, I'm Ann Lee")
    assert len(fake.requests) == 5
    for body in fake.requests:
        assert body["messages"][0]["role"] == "system" and body["stream"] is True and body["tools"]
        assert await async_maybe_transform(body, CompletionCreateParamsStreaming) == body
    last = fake.requests[-1]["messages"]
    assert [m["role"] for m in last].count("tool") >= 2 and any(m.get("tool_calls") for m in last)
    assert last[-1]["role"] == "tool" and json.loads(last[-1]["content"])["status"] == "needs_confirmation"


async def test_openais_chunks_validate_and_a_compatible_servers_looser_chunks_still_make_the_reply(
        fake: FakeOpenAI, runtime: OpenAIAgentRuntime, tenant: TenantProfile) -> None:
    """streaming_service/engines/openai_client.py validates each streamed chunk with pydantic-core and builds one
    that does not validate leniently, as the openai client always did. OpenAI's own shape (the fake's) takes the
    validated path; chunks without `object` and `created` (some OpenAI-compatible servers) still stream a
    handoff and a reply."""
    from openai.types.chat import ChatCompletionChunk

    fake.script(ToolCall("transfer_to_general"), "We are open from nine to six.")
    events = await turn(runtime, new_call(tenant), Conversation(), "Hi there, I was wondering something")
    assert [e.data["to"] for e in events if e.kind is AgentEventKind.HANDOFF] == ["general"]
    assert fake.chunks and all(ChatCompletionChunk.model_validate(c) for c in fake.chunks)

    fake.loose_chunks = True
    fake.script(ToolCall("transfer_to_general"), "We are open from nine to six.")
    events = await turn(runtime, new_call(tenant), Conversation(), "Hi there, I was wondering something")
    assert [e.data["to"] for e in events if e.kind is AgentEventKind.HANDOFF] == ["general"]
    assert spoken(events) == "We are open from nine to six."


async def test_calls_without_tenant_tools_share_one_agent_graph_and_keep_their_own_place_in_it(
        fake: FakeOpenAI, runtime: OpenAIAgentRuntime, make_tenant: Any) -> None:
    """The agents hold no call state: calls with no MCP servers of their own run on their model's one graph,
    and each call still moves through it on its own (one handed off to booking, the other still at triage)."""
    first = new_call(await make_tenant(**TENANT_SETTINGS))
    second = new_call(await make_tenant(**TENANT_SETTINGS))
    fake.script(ToolCall("transfer_to_booking"), "Sure, what day suits you?")
    await turn(runtime, first, Conversation(), "Hi there, I was wondering something")
    fake.script("Hello! How can I help?")
    await turn(runtime, second, Conversation(), "Hi there, I was wondering something")
    assert (first.current_agent, second.current_agent) == ("booking", "triage")
    assert runtime._agents_for(first, []) is runtime._agents_for(second, [])
    assert runtime._agents_for(first, []) is not runtime._agents_for(first, [object()])
