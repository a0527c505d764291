"""The policy's memory is the conversation itself: the state is re-derived from the history each time.

Replaying the items (caller words, the agent's words as heard, tool calls and their results) makes the
policy a pure function of the history: nothing to lose on a barge-in (the history holds only what was
heard), and a call that switches from the LLM mid-way keeps the details the caller already gave.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from streaming_service.agents.confirmation_gate import item_role, message_text, parse_arguments, parse_output
from streaming_service.agents.offline_policy.caller_language import (
    Intent,
    classify_intent,
    extract_name,
    extract_phone,
    extract_service,
    mentions_caller_id,
    normalise,
    yes_or_no,
)
from streaming_service.agents.offline_policy.when_parser import parse_when

TASKS = (Intent.BOOK, Intent.RESCHEDULE, Intent.CANCEL)
_ABANDON = re.compile(r"\b(never ?mind|forget (?:it|that|about it)|cancel that|don'?t book|scratch that)\b")
_PICK = {"first": 0, "earlier": 0, "earliest": 0, "1st": 0, "second": 1, "2nd": 1, "middle": 1,
         "third": 2, "3rd": 2, "last": -1, "later": -1, "latest": -1}


@dataclass
class Draft:
    service: str | None = None
    day: date | None = None
    time: time | None = None
    name: str | None = None
    phone: str = ""  # "" = the number the caller is calling from


@dataclass
class DialogueState:
    task: Intent | None = None
    draft: Draft = field(default_factory=Draft)
    asked: str | None = None  # what the agent's last heard words asked for
    alternatives: list[datetime] = field(default_factory=list)
    found: list[dict[str, Any]] = field(default_factory=list)
    searches: int = 0
    last_user: str = ""
    intent: Intent = Intent.NONE
    yes_no: bool | None = None
    asked_before_user: str | None = None
    declined: bool = False  # the caller said no to a read-back and changed nothing
    abandoned: bool = False  # the caller dropped the booking in progress
    last_tool: tuple[str, dict[str, Any]] | None = None  # (name, output) when the last item is a tool result


def asked_by(text: str) -> str | None:
    """What the agent's words (as heard) leave open, from its final question; None if no question."""
    words = normalise(text)
    if not words.endswith("?"):
        return None
    question = re.split(r"(?<=[.!])\s+", words)[-1]
    rules = (("confirm_booking", r"shall i book|book (?:that|it)\?"), ("confirm_change", r"make that change"),
             ("confirm_cancel", r"like to cancel"), ("alternative", r"one of those|would .* work instead"),
             ("phone", r"number"), ("name", r"\bname\b"), ("service", r"which service|what service"),
             ("anything_else", r"anything else"), ("day", r"what day|which day|when would"),
             ("time", r"what time|which time"))
    for asked, pattern in rules:
        if re.search(pattern, question):
            return asked
    return "open"


def replay(items: list[dict[str, Any]], now: datetime, services: list[str]) -> DialogueState:
    state = DialogueState()
    calls: dict[str, tuple[str, dict[str, Any]]] = {}
    for item in items:
        role = item_role(item)
        kind = item.get("type")
        state.last_tool = None
        if role == "user":
            _hear_caller(state, message_text(item), now, services)
        elif role == "assistant":
            state.asked = asked_by(message_text(item))
        elif kind == "function_call":
            calls[str(item.get("call_id"))] = (str(item.get("name")), parse_arguments(item.get("arguments")))
        elif kind == "function_call_output":
            name, args = calls.get(str(item.get("call_id")), ("", {}))
            output = parse_output(item.get("output"))
            _tool_result(state, name, args, output)
            state.last_tool = (name, output)
    return state


def _hear_caller(state: DialogueState, text: str, now: datetime, services: list[str]) -> None:
    asked = state.asked
    state.last_user, state.asked_before_user = text, asked
    state.intent, state.yes_no = classify_intent(text), yes_or_no(text)
    state.declined = state.abandoned = False
    if asked == "anything_else" and state.intent not in TASKS:
        state.task = None  # the previous job is done; only a new request starts another
    if state.task is Intent.BOOK and _ABANDON.search(normalise(text)):
        state.task, state.draft = None, Draft(name=state.draft.name, phone=state.draft.phone)
        state.abandoned = True
        return
    if state.intent in TASKS and state.intent is not state.task and not (
            state.intent is Intent.BOOK and state.task is not None):
        state.task = state.intent
        state.draft = Draft(name=state.draft.name, phone=state.draft.phone)
        state.found, state.searches, state.alternatives = [], 0, []
    got = _fill_slots(state, text, now, services, asked)
    if state.task is None and got and _asks_for_a_slot(state, text):
        state.task = Intent.BOOK  # "a beard trim on Saturday at 11", "anything Friday at ten?"
    if asked in ("confirm_booking", "confirm_change", "confirm_cancel") and state.yes_no is False and not got:
        state.declined = True


def _asks_for_a_slot(state: DialogueState, text: str) -> bool:
    draft = state.draft
    if state.intent is Intent.NONE:
        return bool(draft.service or draft.day or draft.time)
    # A question naming a time is a booking request, unless it is about hours or prices.
    return state.intent is Intent.QUESTION and draft.time is not None and not re.search(
        r"\b(open|close[sd]?|hours|how much|price|cost)\b", normalise(text))


def _fill_slots(state: DialogueState, text: str, now: datetime, services: list[str], asked: str | None) -> bool:
    draft, got = state.draft, False
    when = parse_when(text, now)
    if asked == "alternative" and state.alternatives:
        picked = _pick_alternative(state.alternatives, text, when.time, state.yes_no)
        if picked is not None:
            draft.day, draft.time, got = picked.date(), picked.time(), True
            when = parse_when("", now)
    if when.day is not None:
        draft.day, got = when.day, True
    if when.time is not None:
        draft.time, got = when.time, True
    service = extract_service(text, services)
    if service:
        draft.service, got = service, True
    if state.intent not in (Intent.HUMAN, Intent.QUESTION):
        name = extract_name(text, expecting=asked == "name", not_names=services)
        if name:
            draft.name, got = name, True
    phone = extract_phone(text)
    if phone or (asked == "phone" and mentions_caller_id(text)):
        draft.phone, got = phone or "", True
    return got


def _pick_alternative(options: list[datetime], text: str, said_time: time | None, yes: bool | None
                      ) -> datetime | None:
    if said_time is not None:  # "the 3:30 one": am/pm is implied by the options offered
        return next((o for o in options if (o.hour % 12, o.minute) == (said_time.hour % 12, said_time.minute)),
                    None)
    for word in normalise(text).replace(",", " ").split():
        index = _PICK.get(word)
        if index is not None and -len(options) <= index < len(options):
            return options[index]
    return options[0] if yes is True and len(options) == 1 else None


def _tool_result(state: DialogueState, name: str, args: dict[str, Any], output: dict[str, Any]) -> None:
    status = output.get("status")
    keep = Draft(name=state.draft.name, phone=state.draft.phone)
    if status == "unavailable":
        state.alternatives = [datetime.fromisoformat(a) for a in output.get("alternatives") or []]
        state.draft.time = None
    elif status in ("booked", "rescheduled", "cancelled"):
        state.task, state.draft, state.alternatives = None, keep, []
        if status == "cancelled":
            state.found = []
    elif name == "find_bookings":
        state.searches += 1
        state.found = [b for b in output.get("bookings") or [] if isinstance(b, dict)]
    elif status == "missing_phone":
        state.draft.phone = ""
    elif name == "book_appointment" and status == "needs_confirmation":
        state.draft.phone = str(args.get("callback_number") or state.draft.phone)
