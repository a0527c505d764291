"""The booking agent's function tools: book, find, reschedule and cancel the caller's appointments.

Shared by both paths (the LLM and the rule-based policy call the very same tools). Every tool answers
in JSON with a `status` and a `say` line fit for speech; changes go through the confirmation gate
(`confirmation_gate.py`), and booking is idempotent per call and slot in the data layer.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import date as date_type
from datetime import datetime, timedelta
from datetime import time as time_type
from typing import Any
from uuid import UUID

from agents import RunContextWrapper, function_tool

from shared.tenancy.models import Booking
from streaming_service.agents.booking_store import BookingNotFoundError, SlotUnavailableError
from streaming_service.agents.confirmation_gate import (
    NEEDS_CONFIRMATION,
    caller_confirmed,
    parse_output,
)
from streaming_service.agents.speech_format import spoken_list, spoken_phone, spoken_when
from streaming_service.agents.turn_context import AgentTurnContext

log = logging.getLogger(__name__)
Ctx = RunContextWrapper[AgentTurnContext]
UNREACHABLE = "I'm sorry, I can't reach the booking system just now."


def _answer(status: str, say: str, **data: Any) -> str:
    return json.dumps({"status": status, "say": say, **data})


def _start(turn: AgentTurnContext, day: str, clock: str) -> datetime | None:
    try:
        parsed_day = date_type.fromisoformat(day.strip())
        parsed_time = time_type.fromisoformat(clock.strip()[:5].rjust(5, "0"))
    except ValueError:
        return None
    return datetime.combine(parsed_day, parsed_time, tzinfo=turn.timezone)


def _digits(number: str) -> str:
    return ("+" if number.strip().startswith("+") else "") + re.sub(r"\D", "", number)


def _booking_key(turn: AgentTurnContext, args: dict[str, Any]) -> str | None:
    start = _start(turn, str(args.get("date", "")), str(args.get("time", "")))
    if start is None:
        return None
    phone = _digits(str(args.get("callback_number") or "")) or _digits(turn.call.caller_number)
    return "|".join((start.isoformat(), str(args.get("customer_name", "")).strip().casefold(),
                     str(args.get("service", "")).strip().casefold(), phone))


def _alternatives(turn: AgentTurnContext, requested: datetime, reason: str, options: list[datetime]) -> str:
    today = turn.local_now.date()
    local = [o.astimezone(turn.timezone) for o in options]
    why = {"taken": "is already taken", "closed": "is outside our opening hours",
           "past": "has already passed"}.get(reason, "isn't available")
    if not local:
        say = f"Sorry, {spoken_when(requested, today)} {why}, and I have nothing free close to it. " \
              "Would another day work?"
    else:
        say = (f"Sorry, {spoken_when(requested, today)} {why}. The nearest free times are "
               f"{spoken_list([spoken_when(o, today) for o in local])}. Would one of those work?")
    return _answer("unavailable", say, reason=reason,
                   alternatives=[o.strftime("%Y-%m-%dT%H:%M") for o in local])


@function_tool
async def book_appointment(ctx: Ctx, service: str, date: str, time: str, customer_name: str,
                           callback_number: str) -> str:
    """Book an appointment. Call it once you know all the details: that first call books nothing, it
    checks the time and returns a read-back to say. Call it again with exactly the same details only
    after the caller has said yes to that read-back.

    Args:
        service: What the appointment is for, e.g. "haircut".
        date: The day in the business's local time, as YYYY-MM-DD.
        time: The start time in the business's local time, as HH:MM (24-hour clock).
        customer_name: The caller's name.
        callback_number: A number to reach the caller, or "" for the number they are calling from.
    """
    turn = ctx.context
    start = _start(turn, date, time)
    if start is None:
        return _answer("invalid", "Sorry, what day and time would you like?")
    if not customer_name.strip():
        return _answer("missing_name", "What name should I put the booking under?")
    phone = _digits(callback_number) or _digits(turn.call.caller_number)
    if len(phone.lstrip("+")) < 7:
        return _answer("missing_phone", "What's the best number to reach you on?")
    if turn.bookings is None:
        return _answer("error", UNREACHABLE)
    end = start + timedelta(minutes=turn.appointment_minutes)
    args = {"service": service, "date": date, "time": time, "customer_name": customer_name,
            "callback_number": callback_number}
    key = _booking_key(turn, args)
    assert key is not None
    today = turn.local_now.date()
    what = service.strip() or "appointment"
    try:
        if not caller_confirmed(turn.history, "book_appointment", lambda a: _booking_key(turn, a), key):
            availability = await turn.bookings.availability(turn.tenant_uuid, start, end, turn.now)
            if not availability.available:
                return _alternatives(turn, start, availability.reason, availability.alternatives)
            return _answer(NEEDS_CONFIRMATION, (
                f"Let me read that back: a {what} for {customer_name.strip()}, {spoken_when(start, today)}, "
                f"and we can reach you on {spoken_phone(phone)}. Shall I book that?"))
        async with turn.writes:
            booking = await turn.bookings.book(
                turn.tenant_uuid, turn.call.call_sid, starts_at=start, ends_at=end,
                customer_name=customer_name.strip(), customer_phone=phone, notes=what, now=turn.now)
    except SlotUnavailableError as exc:
        return _alternatives(turn, start, exc.reason, exc.alternatives)
    except Exception:  # the database is down: the caller hears it, the call goes on
        log.exception("booking failed")
        return _answer("error", UNREACHABLE)
    return _answer("booked", f"You're all booked: a {what} {spoken_when(start, today)}. We look forward to "
                   "seeing you. Is there anything else I can help with?", booking_id=str(booking.id))


@function_tool
async def find_bookings(ctx: Ctx, customer_name: str) -> str:
    """Find the caller's upcoming bookings, by the number they are calling from or by their name.

    Args:
        customer_name: The name the booking is under, or "" to search by the caller's number only.
    """
    turn = ctx.context
    if turn.bookings is None:
        return _answer("error", UNREACHABLE)
    phone = _digits(turn.call.caller_number)
    name = customer_name.strip().casefold()
    try:
        upcoming = await turn.bookings.upcoming(turn.tenant_uuid, turn.now)
    except Exception:
        log.exception("finding bookings failed")
        return _answer("error", UNREACHABLE)
    mine = [b for b in upcoming if (phone and _digits(b.customer_phone or "") == phone)
            or (name and b.customer_name.strip().casefold() == name)]
    if not mine:
        return _answer("none_found", "I couldn't find a booking under this number. What name is it under?")
    today = turn.local_now.date()
    found = [_describe(b, turn) for b in mine[:3]]
    turn.found_this_turn.extend(found)
    say = "I found " + spoken_list([f"your {f['service']} {spoken_when(_local(b, turn), today)}"
                                    for f, b in zip(found, mine, strict=False)]) + "."
    return _answer("found", say, bookings=found)


def _local(booking: Booking, turn: AgentTurnContext) -> datetime:
    return booking.starts_at.astimezone(turn.timezone)


def _describe(booking: Booking, turn: AgentTurnContext) -> dict[str, str]:
    return {"booking_id": str(booking.id), "service": booking.notes or "appointment",
            "customer_name": booking.customer_name, "starts_at": _local(booking, turn).strftime("%Y-%m-%dT%H:%M")}


def _found_earlier(turn: AgentTurnContext, booking_id: str) -> dict[str, str] | None:
    """A booking the caller was shown by find_bookings in this call: the only ones they may change."""
    shown = list(turn.found_this_turn)
    for item in turn.history:
        if item.get("type") == "function_call_output":
            shown += [f for f in parse_output(item.get("output")).get("bookings") or [] if isinstance(f, dict)]
    return next((found for found in shown if found.get("booking_id") == booking_id), None)


@function_tool
async def reschedule_booking(ctx: Ctx, booking_id: str, date: str, time: str) -> str:
    """Move one of the caller's bookings (from find_bookings) to a new day and time. Like
    book_appointment: the first call returns a read-back; call again after the caller says yes.

    Args:
        booking_id: The booking_id returned by find_bookings.
        date: The new day in the business's local time, as YYYY-MM-DD.
        time: The new start time in the business's local time, as HH:MM (24-hour clock).
    """
    turn = ctx.context
    found = _found_earlier(turn, booking_id)
    start = _start(turn, date, time)
    if found is None:
        return _answer("not_found", "I need to look up your booking first.")
    if start is None:
        return _answer("invalid", "What day and time would you like instead?")
    if turn.bookings is None:
        return _answer("error", UNREACHABLE)
    end = start + timedelta(minutes=turn.appointment_minutes)
    today = turn.local_now.date()
    key = f"{booking_id}|{start.isoformat()}"

    def key_of(a: dict[str, Any]) -> str | None:
        s = _start(turn, str(a.get("date", "")), str(a.get("time", "")))
        return f"{a.get('booking_id')}|{s.isoformat()}" if s else None

    try:
        if not caller_confirmed(turn.history, "reschedule_booking", key_of, key):
            availability = await turn.bookings.availability(turn.tenant_uuid, start, end, turn.now)
            if not availability.available:
                return _alternatives(turn, start, availability.reason, availability.alternatives)
            old = datetime.fromisoformat(found["starts_at"]).replace(tzinfo=turn.timezone)
            return _answer(NEEDS_CONFIRMATION, f"So that's your {found['service']} moved from "
                           f"{spoken_when(old, today)} to {spoken_when(start, today)}. Shall I make that change?")
        async with turn.writes:
            await turn.bookings.reschedule(turn.tenant_uuid, UUID(booking_id), starts_at=start, ends_at=end,
                                           now=turn.now)
    except SlotUnavailableError as exc:
        return _alternatives(turn, start, exc.reason, exc.alternatives)
    except BookingNotFoundError:
        return _answer("not_found", "I'm sorry, I can't find that booking any more.")
    except Exception:
        log.exception("rescheduling failed")
        return _answer("error", UNREACHABLE)
    return _answer("rescheduled", f"Done. Your {found['service']} is now {spoken_when(start, today)}. "
                   "Is there anything else I can help with?", booking_id=booking_id)


@function_tool
async def cancel_booking(ctx: Ctx, booking_id: str) -> str:
    """Cancel one of the caller's bookings (from find_bookings). The first call returns a question to
    ask; call again with the same booking_id after the caller says yes.

    Args:
        booking_id: The booking_id returned by find_bookings.
    """
    turn = ctx.context
    found = _found_earlier(turn, booking_id)
    if found is None:
        return _answer("not_found", "I need to look up your booking first.")
    if turn.bookings is None:
        return _answer("error", UNREACHABLE)
    when = spoken_when(datetime.fromisoformat(found["starts_at"]).replace(tzinfo=turn.timezone),
                       turn.local_now.date())
    if not caller_confirmed(turn.history, "cancel_booking", lambda a: str(a.get("booking_id")), booking_id):
        return _answer(NEEDS_CONFIRMATION, f"Just to confirm, you'd like to cancel your {found['service']} "
                       f"{when}?")
    try:
        async with turn.writes:
            await turn.bookings.cancel(turn.tenant_uuid, UUID(booking_id))
    except BookingNotFoundError:
        return _answer("not_found", "I'm sorry, I can't find that booking any more.")
    except Exception:
        log.exception("cancelling failed")
        return _answer("error", UNREACHABLE)
    return _answer("cancelled", f"Your {found['service']} {when} is cancelled. Is there anything else I can "
                   "help with?", booking_id=booking_id)


BOOKING_TOOLS = [book_appointment, find_bookings, reschedule_booking, cancel_booking]
