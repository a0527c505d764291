"""Dates, times and numbers written the way they should be spoken (TTS reads text literally)."""

from __future__ import annotations

import re
from datetime import date, datetime

from streaming_service.agents.offline_policy.spoken_numbers import ordinal, spoken_time


def spoken_day(day: date, today: date) -> str:
    """"today", "tomorrow, Thursday the 26th", "Tuesday, December 1st"."""
    weekday_month = f"{day:%A}, {day:%B} {ordinal(day.day)}"
    if day == today:
        return f"today, {weekday_month}"
    if (day - today).days == 1:
        return f"tomorrow, {weekday_month}"
    return weekday_month


def spoken_when(moment: datetime, today: date) -> str:
    return f"{spoken_day(moment.date(), today)} at {spoken_time(moment.hour, moment.minute)}"


def spoken_phone(number: str) -> str:
    """Digits one by one in groups, so TTS does not say "five hundred fifty-five million"."""
    digits = re.sub(r"\D", "", number)
    if len(digits) <= 4:
        return " ".join(digits)
    return "the number ending in " + " ".join(digits[-4:])


def spoken_list(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " or " + items[-1]
