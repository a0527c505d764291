"""Pure slot logic: opening hours and the nearest free alternatives. No I/O, so it is unit-testable."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

_DAY_KEYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def overlaps(a_start: datetime, a_end: datetime, b_start: datetime, b_end: datetime) -> bool:
    return a_start < b_end and b_start < a_end  # half-open ranges, like tstzrange '[)'


def is_open(starts_at: datetime, ends_at: datetime, business_hours: dict[str, Any], timezone: str) -> bool:
    """True when [starts_at, ends_at) fits in one opening interval of its local day.

    `business_hours` maps "mon".."sun" to [["09:00", "17:00"], ...]; an empty mapping means always open,
    a missing day means closed that day.
    """
    if not business_hours:
        return True
    zone = ZoneInfo(timezone)
    local_start, local_end = starts_at.astimezone(zone), ends_at.astimezone(zone)
    if local_end.date() != local_start.date():
        return False  # a booking never spans two opening days
    for opens, closes in business_hours.get(_DAY_KEYS[local_start.weekday()], []):
        if time.fromisoformat(opens) <= local_start.time() and local_end.time() <= time.fromisoformat(closes):
            return True
    return False


def nearest_free_slots(
    starts_at: datetime,
    duration: timedelta,
    taken: Sequence[tuple[datetime, datetime]],
    *,
    now: datetime,
    business_hours: dict[str, Any],
    timezone: str,
    step: timedelta = timedelta(minutes=30),
    count: int = 3,
    horizon: timedelta = timedelta(days=7),
) -> list[datetime]:
    """Free start times nearest to `starts_at` (later first on a tie), stepping by `step`."""
    found: list[datetime] = []
    steps = int(horizon / step)
    for k in range(1, steps + 1):
        for candidate in (starts_at + k * step, starts_at - k * step):
            end = candidate + duration
            if candidate < now or not is_open(candidate, end, business_hours, timezone):
                continue
            if any(overlaps(candidate, end, s, e) for s, e in taken):
                continue
            found.append(candidate)
            if len(found) == count:
                return sorted(found)
    return sorted(found)
