"""Dates and times as callers say them, relative to "now" in the tenant's timezone.

"tomorrow at 3", "next Tuesday at half past two", "3 pm", "the 28th", "November 28th at noon",
"in two days", "quarter to five". Each part is found independently, so "at 3 tomorrow" works too.

Conventions (documented because they are choices, not facts):
- a weekday means its next occurrence after today; "next Tuesday" is the same day ("this coming");
  "<weekday> next week" is the one in the following calendar week;
- a bare hour from 1 to 7 without am/pm is afternoon ("at 3" → 15:00): appointments are in the day;
- a day of the month already past this month means next month; a month already past means next year.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from streaming_service.agents.offline_policy.spoken_numbers import words_to_digits

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
          "october", "november", "december")
_MONTH_ALIASES = {m[:3]: i + 1 for i, m in enumerate(MONTHS)} | {m: i + 1 for i, m in enumerate(MONTHS)}
_MONTH_ALIASES["sept"] = 9
_MONTH_WORD = r"(" + "|".join(sorted(_MONTH_ALIASES, key=len, reverse=True)) + r")\b\.?"
_WEEKDAY_WORD = r"(mon|tues?|wed(?:nes)?|thu(?:rs)?|fri|sat(?:ur)?|sun)day"
_DAY_NUMBER = r"(\d{1,2})(?:st|nd|rd|th)?"


@dataclass(frozen=True)
class When:
    day: date | None = None
    time: time | None = None

    @property
    def empty(self) -> bool:
        return self.day is None and self.time is None


def parse_when(text: str, now: datetime) -> When:
    """The date and the time mentioned in `text` (either may be None). `now` is local to the tenant."""
    norm = words_to_digits(text)
    return When(_parse_day(norm, now.date()), _parse_time(norm))


# --- days ------------------------------------------------------------------------------------

def _parse_day(text: str, today: date) -> date | None:
    if re.search(r"\bday after tomorrow\b", text):
        return today + timedelta(days=2)
    if re.search(r"\b(tomorrow|tmrw)\b", text):
        return today + timedelta(days=1)
    if re.search(r"\b(today|tonight|this (morning|afternoon|evening))\b", text):
        return today
    match = re.search(r"\bin (\d{1,2}|a|an) (day|week)s?\b", text)
    if match:
        count = 1 if match.group(1) in ("a", "an") else int(match.group(1))
        return today + timedelta(days=count * (7 if match.group(2) == "week" else 1))
    match = re.search(_WEEKDAY_WORD, text)
    if match:
        weekday = next(i for i, name in enumerate(WEEKDAYS) if name.startswith(match.group(1)[:3]))
        ahead = (weekday - today.weekday()) % 7 or 7
        if re.search(r"\bnext week\b", text) or re.search(r"\b(week after next)\b", text):
            monday_next_week = today + timedelta(days=7 - today.weekday())
            return monday_next_week + timedelta(days=weekday)
        return today + timedelta(days=ahead)
    if re.search(r"\bnext week\b", text):
        return today + timedelta(days=7 - today.weekday())  # Monday of next week
    return _parse_calendar_day(text, today)


def _parse_calendar_day(text: str, today: date) -> date | None:
    month: int | None = None
    day: int | None = None
    match = re.search(_MONTH_WORD + r"\s+(?:the\s+)?" + _DAY_NUMBER + r"\b", text)
    if match:
        month, day = _MONTH_ALIASES[match.group(1)], int(match.group(2))
    else:
        match = re.search(r"\b(?:the\s+)?" + _DAY_NUMBER + r"\s+(?:of\s+)?" + _MONTH_WORD, text)
        if match:
            day, month = int(match.group(1)), _MONTH_ALIASES[match.group(2)]
        else:
            match = re.search(r"\bthe (\d{1,2})(?:st|nd|rd|th)\b", text)
            if match:
                day = int(match.group(1))
    if day is None:
        return None
    if month is None:
        candidate = _safe_date(today.year, today.month, day)
        if candidate is None or candidate < today:
            year, next_month = (today.year + 1, 1) if today.month == 12 else (today.year, today.month + 1)
            candidate = _safe_date(year, next_month, day)
        return candidate
    candidate = _safe_date(today.year, month, day)
    if candidate is not None and candidate < today:
        candidate = _safe_date(today.year + 1, month, day)
    return candidate


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


# --- times -----------------------------------------------------------------------------------

_MERIDIEM = r"\s*(a\.?\s?m\.?|p\.?\s?m\.?|in the morning|in the afternoon|in the evening|at night|tonight)?"


def _parse_time(text: str) -> time | None:
    if re.search(r"\b(noon|midday)\b", text):
        return time(12, 0)
    if re.search(r"\bmidnight\b", text):
        return time(0, 0)
    patterns: list[tuple[str, int]] = [
        (r"\bhalf past (\d{1,2})\b" + _MERIDIEM, 30),
        (r"\bquarter past (\d{1,2})\b" + _MERIDIEM, 15),
        (r"\bquarter to (\d{1,2})\b" + _MERIDIEM, -15),
        (r"\b(\d{1,2}) past (\d{1,2})\b" + _MERIDIEM, -1),  # "10 past 3"
    ]
    for pattern, minute in patterns:
        match = re.search(pattern, text)
        if not match:
            continue
        if minute == -1:
            return _clock(int(match.group(2)), int(match.group(1)), match.group(3))
        if minute == -15:
            return _clock(int(match.group(1)) - 1 or 12, 45, match.group(2))
        return _clock(int(match.group(1)), minute, match.group(2))
    # "3:30 pm", "15:00", "3.30", "3 30 pm" (spoken "three thirty"), "3 o'clock", "at 3", "3pm".
    match = re.search(r"\b(\d{1,2})[:.](\d{2})\b" + _MERIDIEM, text)
    if match:
        return _clock(int(match.group(1)), int(match.group(2)), match.group(3))
    match = re.search(r"\b(\d{1,2}) (\d{2})\b" + _MERIDIEM, text)
    if match and int(match.group(2)) < 60 and (match.group(3) or re.search(r"\bat " + match.group(0), text)):
        return _clock(int(match.group(1)), int(match.group(2)), match.group(3))
    match = re.search(r"\b(\d{1,2})\s*(?:o'?\s?clock)?" + r"\s*(a\.?\s?m\.?|p\.?\s?m\.?)(?![a-z])", text)
    if match:
        return _clock(int(match.group(1)), 0, match.group(2))
    match = re.search(r"\b(\d{1,2}) ?o'?\s?clock\b" + _MERIDIEM, text)
    if match:
        return _clock(int(match.group(1)), 0, match.group(2))
    match = re.search(r"\b(?:at|around|for|about|by) (\d{1,2})(?: (\d{2}))?\b"
                      r"(?!\s*(?:st|nd|rd|th|people|person|guests|of))" + _MERIDIEM, text)
    if match:
        minute = int(match.group(2)) if match.group(2) and int(match.group(2)) < 60 else 0
        return _clock(int(match.group(1)), minute, match.group(3))
    return None


def _clock(hour: int, minute: int, meridiem: str | None) -> time | None:
    if not 0 <= hour <= 23 or not 0 <= minute <= 59:
        return None
    marker = (meridiem or "").replace(".", "").replace(" ", "")
    if marker in ("pm", "intheafternoon", "intheevening", "atnight", "tonight") and hour < 12:
        hour += 12
    elif marker in ("am", "inthemorning") and hour == 12:
        hour = 0
    elif not marker and 1 <= hour <= 7:
        hour += 12  # "at 3" on a business line is 3 pm
    return time(hour, minute)
