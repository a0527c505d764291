"""Bookings against real Postgres: no double booking, alternatives, reschedule, cancel, idempotent retry."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from shared.tenancy import bookings
from shared.tenancy.bookings import BookingNotFoundError, SlotUnavailableError
from shared.tenancy.database import TenantDatabase

NOW = datetime(2030, 1, 7, 8, 0, tzinfo=UTC)  # a Monday
NINE = NOW.replace(hour=9)
HALF_HOUR = timedelta(minutes=30)


async def test_double_booking_refused_with_nearest_alternatives(db: TenantDatabase, make_tenant) -> None:
    tenant = await make_tenant()
    first = await bookings.create_booking(db, tenant.tenant_id, starts_at=NINE, ends_at=NINE + HALF_HOUR,
                                          customer_name="Ada", now=NOW)
    assert first.status == "confirmed"
    with pytest.raises(SlotUnavailableError) as refused:
        await bookings.create_booking(db, tenant.tenant_id, starts_at=NINE + timedelta(minutes=15),
                                      ends_at=NINE + timedelta(minutes=45), now=NOW)
    assert refused.value.reason == "taken"
    # Nearest free starts around 09:15 that avoid 09:00-09:30: 08:15 (earlier), 09:45 and 08:45... sorted.
    alternatives = refused.value.alternatives
    assert len(alternatives) == 3
    for alt in alternatives:
        assert not (alt < NINE + HALF_HOUR and alt + HALF_HOUR > NINE)
    assert NINE + timedelta(minutes=45) in alternatives
    # Another resource at the same time is fine.
    other = await bookings.create_booking(db, tenant.tenant_id, resource="room-2", starts_at=NINE,
                                          ends_at=NINE + HALF_HOUR, now=NOW)
    assert other.resource == "room-2"
    # Back-to-back (half-open ranges) is fine.
    await bookings.create_booking(db, tenant.tenant_id, starts_at=NINE + HALF_HOUR,
                                  ends_at=NINE + 2 * HALF_HOUR, now=NOW)


async def test_concurrent_bookings_of_one_slot_yield_exactly_one(db: TenantDatabase, make_tenant) -> None:
    tenant = await make_tenant()
    results = await asyncio.gather(*(
        bookings.create_booking(db, tenant.tenant_id, starts_at=NINE, ends_at=NINE + HALF_HOUR,
                                customer_name=f"caller {i}", now=NOW)
        for i in range(4)), return_exceptions=True)
    booked = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, SlotUnavailableError)]
    assert len(booked) == 1 and len(refused) == 3
    listed = await bookings.list_bookings(db, tenant.tenant_id)
    assert [b.id for b in listed] == [booked[0].id]


async def test_business_hours_and_past_are_refused(db: TenantDatabase, make_tenant) -> None:
    tenant = await make_tenant(timezone="Europe/Paris", business_hours={"mon": [["09:00", "12:00"]]})
    # 09:00 UTC is 10:00 in Paris in January: open. 11:30 UTC is 12:30 Paris: closed.
    await bookings.create_booking(db, tenant.tenant_id, starts_at=NINE, ends_at=NINE + HALF_HOUR, now=NOW)
    with pytest.raises(SlotUnavailableError) as closed:
        await bookings.create_booking(db, tenant.tenant_id, starts_at=NOW.replace(hour=11, minute=30),
                                      ends_at=NOW.replace(hour=12), now=NOW)
    assert closed.value.reason == "closed"
    assert closed.value.alternatives and all(8 <= a.hour < 11 for a in closed.value.alternatives)
    with pytest.raises(SlotUnavailableError) as past:
        await bookings.create_booking(db, tenant.tenant_id, starts_at=NOW - timedelta(hours=1),
                                      ends_at=NOW - HALF_HOUR, now=NOW)
    assert past.value.reason == "past"


async def test_check_availability(db: TenantDatabase, make_tenant) -> None:
    tenant = await make_tenant()
    assert (await bookings.check_availability(db, tenant.tenant_id, NINE, NINE + HALF_HOUR, now=NOW)).available
    await bookings.create_booking(db, tenant.tenant_id, starts_at=NINE, ends_at=NINE + HALF_HOUR, now=NOW)
    busy = await bookings.check_availability(db, tenant.tenant_id, NINE, NINE + HALF_HOUR, now=NOW)
    assert not busy.available and busy.alternatives == [NINE - 2 * HALF_HOUR + HALF_HOUR, NINE + HALF_HOUR,
                                                         NINE + 2 * HALF_HOUR]


async def test_reschedule_and_cancel(db: TenantDatabase, make_tenant) -> None:
    tenant = await make_tenant()
    a = await bookings.create_booking(db, tenant.tenant_id, starts_at=NINE, ends_at=NINE + HALF_HOUR, now=NOW)
    b = await bookings.create_booking(db, tenant.tenant_id, starts_at=NINE + 2 * HALF_HOUR,
                                      ends_at=NINE + 3 * HALF_HOUR, now=NOW)
    with pytest.raises(SlotUnavailableError):  # onto b's slot
        await bookings.reschedule_booking(db, tenant.tenant_id, a.id, starts_at=b.starts_at, ends_at=b.ends_at,
                                          now=NOW)
    # Overlapping its own old slot is fine (it does not conflict with itself).
    moved = await bookings.reschedule_booking(db, tenant.tenant_id, a.id, starts_at=NINE + timedelta(minutes=15),
                                              ends_at=NINE + timedelta(minutes=45), now=NOW)
    assert moved.id == a.id and moved.starts_at == NINE + timedelta(minutes=15)
    cancelled = await bookings.cancel_booking(db, tenant.tenant_id, b.id)
    assert cancelled.status == "cancelled"
    assert (await bookings.cancel_booking(db, tenant.tenant_id, b.id)).status == "cancelled"  # idempotent
    # b's slot is free again; a cancelled booking cannot be rescheduled.
    await bookings.create_booking(db, tenant.tenant_id, starts_at=b.starts_at, ends_at=b.ends_at, now=NOW)
    with pytest.raises(BookingNotFoundError):
        await bookings.reschedule_booking(db, tenant.tenant_id, b.id, starts_at=NINE.replace(hour=15),
                                          ends_at=NINE.replace(hour=16), now=NOW)
    listed = await bookings.list_bookings(db, tenant.tenant_id, include_cancelled=True)
    assert len(listed) == 3 and [x.starts_at for x in listed] == sorted(x.starts_at for x in listed)


async def test_book_idempotent_retry_returns_the_same_booking(db: TenantDatabase, make_tenant) -> None:
    tenant = await make_tenant()
    kwargs: dict[str, Any] = dict(starts_at=NINE, ends_at=NINE + HALF_HOUR, customer_name="Ada", now=NOW)
    first = await bookings.book_idempotent(db, tenant.tenant_id, "CA1", **kwargs)
    again = await bookings.book_idempotent(db, tenant.tenant_id, "CA1", **kwargs)
    concurrent = await asyncio.gather(*(bookings.book_idempotent(db, tenant.tenant_id, "CA1", **kwargs)
                                        for _ in range(3)))
    assert {first.id, again.id, *(b.id for b in concurrent)} == {first.id}
    assert len(await bookings.list_bookings(db, tenant.tenant_id)) == 1
    # Another call asking for the same slot is refused, not handed CA1's booking.
    with pytest.raises(SlotUnavailableError):
        await bookings.book_idempotent(db, tenant.tenant_id, "CA2", **kwargs)


async def test_list_bookings_pages_by_cursor(db: TenantDatabase, make_tenant) -> None:
    tenant = await make_tenant()
    for i in range(5):
        start = NINE + i * HALF_HOUR
        await bookings.create_booking(db, tenant.tenant_id, starts_at=start, ends_at=start + HALF_HOUR, now=NOW)
    page1 = await bookings.list_bookings(db, tenant.tenant_id, limit=2)
    page2 = await bookings.list_bookings(db, tenant.tenant_id, limit=2, after=(page1[-1].starts_at, page1[-1].id))
    page3 = await bookings.list_bookings(db, tenant.tenant_id, limit=2, after=(page2[-1].starts_at, page2[-1].id))
    assert [len(p) for p in (page1, page2, page3)] == [2, 2, 1]
    assert len({b.id for b in page1 + page2 + page3}) == 5




async def test_racing_first_attempts_with_one_key_all_get_the_booking(db: TenantDatabase, make_tenant) -> None:
    """No booking exists yet and retries race: the losers must get the winner's booking back, never a
    'slot taken' for their own booking (the key is re-read after the availability check fails)."""
    tenant = await make_tenant()
    for round_ in range(6):
        start = NINE + timedelta(hours=round_)
        results = await asyncio.gather(*(bookings.book_idempotent(
            db, tenant.tenant_id, f"CArace{round_}", starts_at=start, ends_at=start + HALF_HOUR,
            customer_name="Race", now=NOW) for _ in range(8)))
        assert len({b.id for b in results}) == 1


async def test_alternatives_look_exactly_a_week_ahead(db: TenantDatabase, make_tenant) -> None:
    """Open one half hour on Mondays and Tuesdays: when Monday's is taken, tomorrow's and next Monday's
    are offered (seven days on), and not next Tuesday's (eight)."""
    tenant = await make_tenant(business_hours={"mon": [["09:00", "09:30"]], "tue": [["09:00", "09:30"]]})
    await bookings.create_booking(db, tenant.tenant_id, starts_at=NINE, ends_at=NINE + HALF_HOUR, now=NOW)
    with pytest.raises(SlotUnavailableError) as refused:
        await bookings.create_booking(db, tenant.tenant_id, starts_at=NINE, ends_at=NINE + HALF_HOUR, now=NOW)
    assert refused.value.alternatives == [NINE + timedelta(days=1), NINE + timedelta(days=7)]


async def test_a_booking_may_start_right_now(db: TenantDatabase, make_tenant) -> None:
    tenant = await make_tenant(business_hours={"mon": [["08:00", "12:00"]]})
    booked = await bookings.create_booking(db, tenant.tenant_id, starts_at=NOW, ends_at=NOW + HALF_HOUR, now=NOW)
    assert booked.starts_at == NOW


async def test_reschedule_without_a_clock_uses_the_real_one(db: TenantDatabase, make_tenant) -> None:
    tenant = await make_tenant()
    booked = await bookings.create_booking(db, tenant.tenant_id, starts_at=NINE, ends_at=NINE + HALF_HOUR, now=NOW)
    later = NINE + 2 * HALF_HOUR  # 2030: in the future by the real clock too
    moved = await bookings.reschedule_booking(db, tenant.tenant_id, booked.id, starts_at=later,
                                              ends_at=later + HALF_HOUR)
    assert moved.starts_at == later


async def test_cancelled_bookings_are_left_out_of_lists_unless_asked_for(db: TenantDatabase, make_tenant) -> None:
    tenant = await make_tenant()
    kept = await bookings.create_booking(db, tenant.tenant_id, starts_at=NINE, ends_at=NINE + HALF_HOUR, now=NOW)
    gone = await bookings.create_booking(db, tenant.tenant_id, starts_at=NINE + HALF_HOUR,
                                         ends_at=NINE + 2 * HALF_HOUR, now=NOW)
    await bookings.cancel_booking(db, tenant.tenant_id, gone.id)
    assert [b.id for b in await bookings.list_bookings(db, tenant.tenant_id)] == [kept.id]
    assert [b.id for b in await bookings.list_bookings(db, tenant.tenant_id, include_cancelled=True)] == [
        kept.id, gone.id]


async def test_a_zero_length_booking_is_refused(db: TenantDatabase, make_tenant) -> None:
    tenant = await make_tenant()
    with pytest.raises(ValueError, match="must end after it starts"):
        await bookings.create_booking(db, tenant.tenant_id, starts_at=NINE, ends_at=NINE, now=NOW)


async def test_losing_the_slot_between_check_and_insert_is_a_clean_refusal(
        db: TenantDatabase, make_tenant, admin_dsn: str) -> None:
    """Another call's booking is written but not committed when ours checks availability: our insert waits
    on the exclusion constraint, then loses. The caller hears "taken" with alternatives, not an error."""
    tenant = await make_tenant()
    admin = await asyncpg.connect(admin_dsn)
    try:
        async with db.tenant_tx(tenant.tenant_id) as other:
            await other.execute("INSERT INTO bookings (resource, starts_at, ends_at, customer_name, idempotency_key) "
                                "VALUES ('default', $1, $2, 'Other caller', 'CAother:key')", NINE, NINE + HALF_HOUR)
            ours = asyncio.create_task(bookings.create_booking(
                db, tenant.tenant_id, starts_at=NINE, ends_at=NINE + HALF_HOUR, idempotency_key="CAours:key",
                now=NOW))
            for _ in range(5000):  # until our insert waits on the other transaction (pg_stat_activity, no timing)
                if await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                                        "'voice-agent' AND wait_event_type = 'Lock'") or ours.done():
                    break
                await asyncio.sleep(0.002)
            assert not ours.done()
        with pytest.raises(SlotUnavailableError) as refused:
            await ours
    finally:
        await admin.close()
    assert refused.value.reason == "taken" and NINE + HALF_HOUR in refused.value.alternatives
    assert [b.customer_name for b in await bookings.list_bookings(db, tenant.tenant_id)] == ["Other caller"]


async def test_a_booking_may_end_where_the_next_one_starts(db: TenantDatabase, make_tenant) -> None:
    tenant = await make_tenant()
    await bookings.create_booking(db, tenant.tenant_id, starts_at=NINE + HALF_HOUR, ends_at=NINE + 2 * HALF_HOUR,
                                  now=NOW)
    assert (await bookings.check_availability(db, tenant.tenant_id, NINE, NINE + HALF_HOUR, now=NOW)).available
    await bookings.create_booking(db, tenant.tenant_id, starts_at=NINE, ends_at=NINE + HALF_HOUR, now=NOW)


async def test_check_availability_without_a_clock_uses_the_real_one(db: TenantDatabase, make_tenant) -> None:
    tenant = await make_tenant()
    assert (await bookings.check_availability(db, tenant.tenant_id, NINE, NINE + HALF_HOUR)).available  # 2030


async def test_a_list_is_fifty_bookings_unless_asked_otherwise(db: TenantDatabase, make_tenant) -> None:
    tenant = await make_tenant(business_hours={day: [["09:00", "17:00"]] for day in
                                               ("mon", "tue", "wed", "thu", "fri", "sat", "sun")})
    for i in range(51):
        start = NINE + timedelta(days=i // 10) + (i % 10) * HALF_HOUR
        await bookings.create_booking(db, tenant.tenant_id, starts_at=start, ends_at=start + HALF_HOUR, now=NOW)
    assert len(await bookings.list_bookings(db, tenant.tenant_id)) == 50
    assert len(await bookings.list_bookings(db, tenant.tenant_id, limit=51)) == 51
