from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.tenancy.availability import is_open, nearest_free_slots

MON_9 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
HOURS = {"mon": [["09:00", "12:00"], ["13:00", "17:00"]]}


def test_is_open_respects_intervals_days_and_timezone() -> None:
    half = timedelta(minutes=30)
    assert is_open(MON_9, MON_9 + half, {}, "UTC")
    assert is_open(MON_9, MON_9 + half, HOURS, "UTC")
    assert not is_open(MON_9.replace(hour=11, minute=45), MON_9.replace(hour=12, minute=15), HOURS, "UTC")
    assert not is_open(MON_9 + timedelta(days=1), MON_9 + timedelta(days=1) + half, HOURS, "UTC")  # Tuesday
    assert not is_open(MON_9, MON_9 + half, HOURS, "America/New_York")  # 04:00 there


def test_nearest_free_slots_skips_taken_closed_and_past() -> None:
    taken = [(MON_9, MON_9 + timedelta(hours=1))]
    found = nearest_free_slots(MON_9, timedelta(minutes=30), taken, now=MON_9 - timedelta(hours=1),
                               business_hours=HOURS, timezone="UTC", count=3)
    assert found == [MON_9 + timedelta(hours=1), MON_9 + timedelta(hours=1, minutes=30), MON_9 + timedelta(hours=2)]


def test_no_alternatives_when_nothing_is_free() -> None:
    assert nearest_free_slots(MON_9, timedelta(minutes=30), [], now=MON_9 + timedelta(days=30),
                              business_hours={}, timezone="UTC", horizon=timedelta(hours=2)) == []
