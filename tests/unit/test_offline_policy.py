"""The rule-based policy's language rules: a table of caller utterances → intent and slots.

Dates are relative to a fixed clock in the tenant's timezone: Wednesday 25 November 2026, 10:00 in
New York. Weekdays mean their next occurrence; a bare hour from 1 to 7 is afternoon.
"""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from streaming_service.agents.confirmation_gate import caller_confirmed
from streaming_service.agents.history_budget import trim_history
from streaming_service.agents.offline_policy.caller_language import (
    Intent,
    classify_intent,
    extract_name,
    extract_phone,
    extract_service,
    yes_or_no,
)
from streaming_service.agents.offline_policy.dialogue_state import asked_by, replay
from streaming_service.agents.offline_policy.when_parser import parse_when

TZ = ZoneInfo("America/New_York")
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=TZ)  # a Wednesday
SERVICES = ["haircut", "beard trim", "colour"]
WED, THU, FRI = date(2026, 11, 25), date(2026, 11, 26), date(2026, 11, 27)
SAT, MON, TUE = date(2026, 11, 28), date(2026, 11, 30), date(2026, 12, 1)

# utterance, intent, day, time, service
TABLE: list[tuple[str, Intent, date | None, time | None, str | None]] = [
    ("I'd like to book a haircut tomorrow at 3", Intent.BOOK, THU, time(15, 0), "haircut"),
    ("Can I make an appointment for next Tuesday at half past two?", Intent.BOOK, TUE, time(14, 30), None),
    ("Book me in at 3 pm", Intent.BOOK, None, time(15, 0), None),
    ("do you have anything friday morning at ten", Intent.QUESTION, FRI, time(10, 0), None),
    ("I want a beard trim on Saturday at 11 am", Intent.BOOK, SAT, time(11, 0), "beard trim"),
    ("Could I get an appointment the day after tomorrow at noon", Intent.BOOK, FRI, time(12, 0), None),
    ("tomorrow at quarter past four please", Intent.NONE, THU, time(16, 15), None),
    ("how about quarter to five", Intent.QUESTION, None, time(16, 45), None),
    ("three thirty", Intent.NONE, None, None, None),
    ("at three thirty", Intent.NONE, None, time(15, 30), None),
    ("let's say 9:45 am on Monday", Intent.NONE, MON, time(9, 45), None),
    ("15:00 today", Intent.NONE, WED, time(15, 0), None),
    ("on the 28th at 10 o'clock", Intent.NONE, SAT, time(10, 0), None),
    ("December 3rd at 2 in the afternoon", Intent.NONE, date(2026, 12, 3), time(14, 0), None),
    ("the 3rd of December at 9 in the morning", Intent.NONE, date(2026, 12, 3), time(9, 0), None),
    ("in two days at eleven am", Intent.NONE, FRI, time(11, 0), None),
    ("Monday next week at 4", Intent.NONE, MON, time(16, 0), None),
    ("this Friday at 8 pm", Intent.NONE, FRI, time(20, 0), None),
    ("January 5th", Intent.NONE, date(2027, 1, 5), None, None),
    ("the 10th", Intent.NONE, date(2026, 12, 10), None, None),
    ("ten past three tomorrow", Intent.NONE, THU, time(15, 10), None),
    ("I need to reschedule my appointment", Intent.RESCHEDULE, None, None, None),
    ("Can I move my booking to Friday at 4?", Intent.RESCHEDULE, FRI, time(16, 0), None),
    ("I'd like to change my appointment time", Intent.RESCHEDULE, None, None, None),
    ("I need to cancel my appointment", Intent.CANCEL, None, None, None),
    ("I won't be able to make it tomorrow", Intent.CANCEL, THU, None, None),
    ("please cancel my colour on Thursday", Intent.CANCEL, THU, None, "colour"),
    ("Can I speak to a real person?", Intent.HUMAN, None, None, None),
    ("let me talk to the manager", Intent.HUMAN, None, None, None),
    ("I want to speak with someone", Intent.HUMAN, None, None, None),
    ("What are your opening hours?", Intent.QUESTION, None, None, None),
    ("where are you located", Intent.QUESTION, None, None, None),
    ("how much is a haircut", Intent.QUESTION, None, None, "haircut"),
    ("do you have parking", Intent.QUESTION, None, None, None),
    ("That's all, thanks, bye", Intent.GOODBYE, None, None, None),
    ("no thank you, I'm all set", Intent.GOODBYE, None, None, None),
    ("goodbye", Intent.GOODBYE, None, None, None),
    ("um", Intent.NONE, None, None, None),
    ("yes please", Intent.NONE, None, None, None),
    ("are you open on Sunday", Intent.QUESTION, date(2026, 11, 29), None, None),
    ("midday tomorrow", Intent.NONE, THU, time(12, 0), None),
    ("at 7 tonight", Intent.NONE, WED, time(19, 0), None),
    ("next Wednesday at 9am", Intent.NONE, date(2026, 12, 2), time(9, 0), None),
]


@pytest.mark.parametrize(("text", "intent", "day", "clock", "service"), TABLE, ids=[t[0] for t in TABLE])
def test_utterance_intent_and_slots(text: str, intent: Intent, day: date | None, clock: time | None,
                                    service: str | None) -> None:
    assert classify_intent(text) is intent
    when = parse_when(text, NOW)
    assert (when.day, when.time) == (day, clock)
    assert extract_service(text, SERVICES) == service


def test_table_is_big_enough() -> None:
    assert len(TABLE) >= 40


@pytest.mark.parametrize(("text", "expected"), [
    ("yes", True), ("Yeah, that's right", True), ("uh, yes please", True), ("sounds good", True),
    ("correct", True), ("go ahead", True), ("no", False), ("nope", False), ("actually make it 4", False),
    ("wait", False), ("that's wrong", False), ("hmm", None), ("what time is it", None),
])
def test_yes_or_no(text: str, expected: bool | None) -> None:
    assert yes_or_no(text) is expected


@pytest.mark.parametrize(("text", "expecting", "name"), [
    ("my name is Ann Lee", False, "Ann Lee"),
    ("this is Bob", False, "Bob"),
    ("it's Carla Gomez", True, "Carla Gomez"),
    ("Dev", True, "Dev"),
    ("I'm looking to book", False, None),
    ("tomorrow at 3", True, None),
    ("put it under Smith please", False, "Smith"),
])
def test_names(text: str, expecting: bool, name: str | None) -> None:
    assert extract_name(text, expecting) == name


@pytest.mark.parametrize(("text", "phone"), [
    ("my number is 555 0100 123", "5550100123"),
    ("five five five, oh one nine nine, two two", "555019922"),
    ("+1 (415) 555-0100", "+14155550100"),
    ("at 3 pm", None),
])
def test_phone_numbers(text: str, phone: str | None) -> None:
    assert extract_phone(text) == phone


@pytest.mark.parametrize(("said", "asked"), [
    ("Let me read that back: a haircut for Ann. Shall I book that?", "confirm_booking"),
    ("Let me read that back: a haircut for Ann.", None),  # the question was cut off by a barge-in
    ("What name should I put the booking under?", "name"),
    ("What time on Thursday works for you?", "time"),
    ("What day and time would you like?", "day"),
    ("The nearest free times are 2 pm or 4 pm. Would one of those work?", "alternative"),
    ("Is there anything else I can help with?", "anything_else"),
])
def test_what_the_agent_asked(said: str, asked: str | None) -> None:
    assert asked_by(said) == asked


def test_replay_collects_slots_across_turns_and_corrections() -> None:
    items = [
        {"role": "user", "content": "I'd like a haircut tomorrow at 3"},
        {"role": "assistant", "content": "And what name should I put the booking under?"},
        {"role": "user", "content": "Ann Lee"},
        {"role": "assistant", "content": "Let me read that back: ... Shall I book that?"},
        {"role": "user", "content": "actually make it Friday at 4"},
    ]
    state = replay(items, NOW, SERVICES)
    assert state.task is Intent.BOOK
    assert (state.draft.service, state.draft.day, state.draft.time, state.draft.name) == (
        "haircut", FRI, time(16, 0), "Ann Lee")
    assert not state.declined  # a correction, not a plain no


def _readback_history(answer: str, question: str = "Shall I book that?") -> list[dict[str, object]]:
    return [
        {"type": "function_call", "name": "book_appointment", "call_id": "c1", "arguments": '{"k": 1}'},
        {"type": "function_call_output", "call_id": "c1", "output": '{"status": "needs_confirmation"}'},
        {"role": "assistant", "content": f"A haircut tomorrow at 3 pm. {question}".strip()},
        {"role": "user", "content": answer},
    ]


def test_confirmation_gate_needs_a_heard_read_back_and_a_yes() -> None:
    def key(args: dict[str, object]) -> str:
        return str(args.get("k"))

    assert caller_confirmed(_readback_history("yes"), "book_appointment", key, "1")
    assert not caller_confirmed(_readback_history("no"), "book_appointment", key, "1")
    assert not caller_confirmed(_readback_history("yes"), "book_appointment", key, "2")
    cut = _readback_history("yes", question="")  # barge-in: the question never played
    assert not caller_confirmed(cut, "book_appointment", key, "1")


def test_history_is_trimmed_at_a_caller_turn() -> None:
    items: list[dict[str, object]] = []
    for n in range(50):
        items += [{"role": "user", "content": f"question {n} " + "x" * 200},
                  {"type": "function_call", "name": "business_info", "call_id": f"c{n}", "arguments": "{}"},
                  {"type": "function_call_output", "call_id": f"c{n}", "output": "y" * 200},
                  {"role": "assistant", "content": "answer " + "z" * 200}]
    kept = trim_history(items, budget_tokens=1000)
    assert kept[0]["role"] == "user" and kept[-1] == items[-1]
    assert sum(len(str(i)) for i in kept) < sum(len(str(i)) for i in items) / 5
