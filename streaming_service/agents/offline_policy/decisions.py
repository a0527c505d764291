"""What the rule-based policy does next, given the replayed dialogue and the agent it is acting as.

The agent is known by its tools (book_appointment → booking, business_info → general, else triage),
so the policy plays whichever agent of the SDK graph is current and hands off with the SDK's own
handoff tools. The output is one action: say a line, or call one tool (or handoff).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from streaming_service.agents.offline_policy.caller_language import Intent
from streaming_service.agents.offline_policy.dialogue_state import DialogueState
from streaming_service.agents.speech_format import spoken_day, spoken_list, spoken_when

ROUTE_PROMPT = ("I can help you book, change or cancel an appointment, or answer a question about us. "
                "What would you like to do?")
ANYTHING_ELSE = "Is there anything else I can help with?"


@dataclass(frozen=True)
class Say:
    text: str


@dataclass(frozen=True)
class CallTool:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


Action = Say | CallTool


def decide(state: DialogueState, tools: set[str], handoffs: set[str], today: date, services: list[str]
           ) -> Action:
    role = "booking" if "book_appointment" in tools else "general" if "business_info" in tools else "triage"
    if state.last_tool is not None and "assistant" not in state.last_tool[1]:  # a tool result, not a handoff
        name, output = state.last_tool
        if name == "find_bookings" and output.get("status") == "found" and state.task in (
                Intent.RESCHEDULE, Intent.CANCEL):
            return _change_step(state, today)
        say = str(output.get("say") or output.get("text") or "")
        if name == "business_info":
            say = f"{say} {ANYTHING_ELSE}"
        return Say(say or ANYTHING_ELSE)
    if not state.last_user:
        return Say(ROUTE_PROMPT)
    if state.intent is Intent.HUMAN and "transfer_to_human" in tools:
        return CallTool("transfer_to_human")
    done = state.intent is Intent.GOODBYE or (state.asked_before_user == "anything_else" and state.yes_no is False
                                               and state.task is None)
    if done and "end_call" in tools:
        return CallTool("end_call")
    if state.abandoned:
        return Say(f"No problem, I won't book anything. {ANYTHING_ELSE}")
    if role == "triage":
        return _route(state, handoffs)
    if role == "general":
        if state.task is not None and "transfer_to_booking" in handoffs:
            return CallTool("transfer_to_booking")
        if state.intent is Intent.QUESTION or len(state.last_user.split()) > 2:
            return CallTool("business_info", {"question": state.last_user})
        return _open_answer(state)
    if state.intent is Intent.QUESTION and state.task is None and "transfer_to_general" in handoffs:
        return CallTool("transfer_to_general")
    if state.task is Intent.BOOK:
        return _booking_step(state, today, services)
    if state.task in (Intent.RESCHEDULE, Intent.CANCEL):
        return _change_step(state, today)
    return _open_answer(state)


def _route(state: DialogueState, handoffs: set[str]) -> Action:
    if state.task is not None and "transfer_to_booking" in handoffs:
        return CallTool("transfer_to_booking")
    if state.intent is Intent.QUESTION and "transfer_to_general" in handoffs:
        return CallTool("transfer_to_general")
    return _open_answer(state)


def _open_answer(state: DialogueState) -> Action:
    if state.asked_before_user == "anything_else" and state.yes_no is True:
        return Say("Sure, what else can I help with?")
    return Say(ROUTE_PROMPT if state.intent is Intent.NONE else f"Sorry, I didn't catch that. {ROUTE_PROMPT}")


def _booking_step(state: DialogueState, today: date, services: list[str]) -> Action:
    draft = state.draft
    if state.declined:
        return Say("No problem. What would you like to change?")
    if services and not draft.service:
        return Say(f"Sure. Which service would you like? We offer {spoken_list(services)}.")
    if draft.day is None:
        return Say("What day would you like to come in?" if draft.time else "What day and time would you like?")
    if draft.time is None:
        if state.alternatives:
            options = spoken_list([spoken_when(a, today) for a in state.alternatives])
            return Say(f"I can offer {options}. Would one of those work?")
        return Say(f"What time on {spoken_day(draft.day, today)} works for you?")
    if not draft.name:
        return Say("And what name should I put the booking under?")
    # The tool decides between a read-back and booking: it books only after a yes to its read-back.
    return CallTool("book_appointment", {
        "service": draft.service or "appointment", "date": draft.day.isoformat(),
        "time": draft.time.strftime("%H:%M"), "customer_name": draft.name, "callback_number": draft.phone})


def _change_step(state: DialogueState, today: date) -> Action:
    if not state.found:
        if state.searches == 0 or (state.asked_before_user == "name" and state.draft.name and state.searches < 2):
            return CallTool("find_bookings", {"customer_name": state.draft.name or ""})
        if state.searches >= 2:
            return Say("I'm sorry, I still can't find a booking. I can connect you with a member of our team, "
                       "or help with something else. What would you like?")
        return Say("I couldn't find a booking under this number. What name is it under?")
    target = state.found[0]
    when = spoken_when(datetime.fromisoformat(target["starts_at"]), today)
    if state.task is Intent.CANCEL:
        if state.declined:
            return Say(f"Okay, I'll leave your {target['service']} as it is. {ANYTHING_ELSE}")
        return CallTool("cancel_booking", {"booking_id": target["booking_id"]})
    if state.declined:
        return Say("No problem. What day and time would suit you better?")
    draft = state.draft
    if draft.day is None and draft.time is None:
        if state.alternatives:
            options = spoken_list([spoken_when(a, today) for a in state.alternatives])
            return Say(f"I can offer {options}. Would one of those work?")
        return Say(f"I see your {target['service']} {when}. What day and time would you like instead?")
    day = draft.day or datetime.fromisoformat(target["starts_at"]).date()
    if draft.time is None:
        return Say(f"What time on {spoken_day(day, today)} works for you?")
    return CallTool("reschedule_booking", {"booking_id": target["booking_id"], "date": day.isoformat(),
                                           "time": draft.time.strftime("%H:%M")})
