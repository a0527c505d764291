"""Bookings: availability check and write in one tenant transaction, with the exclusion constraint
`bookings_no_overlap` as the last word when two callers race for the same slot.

A booking is committed before these functions return, so the agent may confirm it to the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from shared.tenancy.availability import is_open, nearest_free_slots
from shared.tenancy.database import TenantDatabase
from shared.tenancy.models import Booking, TenantSettings

_COLUMNS = ("id, resource, starts_at, ends_at, customer_name, customer_phone, notes, status, call_sid, "
            "idempotency_key, created_at")


class SlotUnavailableError(Exception):
    """The slot is taken, closed or in the past; `alternatives` are the nearest free start times."""

    def __init__(self, reason: str, alternatives: list[datetime]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.alternatives = alternatives


class BookingNotFoundError(LookupError):
    pass


@dataclass(frozen=True)
class Availability:
    available: bool
    reason: str = ""
    alternatives: list[datetime] = field(default_factory=list)


def _booking(row: asyncpg.Record) -> Booking:
    return Booking(**dict(row))


async def _settings(conn: asyncpg.Connection, tenant_id: UUID) -> TenantSettings:
    data: dict[str, Any] | None = await conn.fetchval("SELECT public.tenant_profile_json($1)", tenant_id)
    return TenantSettings.from_json((data or {}).get("settings") or {})


async def _availability(conn: asyncpg.Connection, tenant_id: UUID, resource: str, starts_at: datetime,
                        ends_at: datetime, *, now: datetime, ignore_id: UUID | None = None) -> Availability:
    if ends_at <= starts_at:
        raise ValueError("a booking must end after it starts")
    settings = await _settings(conn, tenant_id)
    horizon = timedelta(days=7)
    taken = [(r["starts_at"], r["ends_at"]) for r in await conn.fetch(
        """SELECT starts_at, ends_at FROM bookings
           WHERE resource = $1 AND status = 'confirmed' AND id IS DISTINCT FROM $4
             AND tstzrange(starts_at, ends_at) && tstzrange($2, $3)""",
        resource, starts_at - horizon, ends_at + horizon, ignore_id)]
    if starts_at < now:
        reason = "past"
    elif not is_open(starts_at, ends_at, settings.business_hours, settings.timezone):
        reason = "closed"
    elif any(s < ends_at and starts_at < e for s, e in taken):
        reason = "taken"
    else:
        return Availability(True)
    alternatives = nearest_free_slots(starts_at, ends_at - starts_at, taken, now=now, horizon=horizon,
                                      business_hours=settings.business_hours, timezone=settings.timezone)
    return Availability(False, reason, alternatives)


async def check_availability(db: TenantDatabase, tenant_id: UUID, starts_at: datetime, ends_at: datetime,
                             *, resource: str = "default", now: datetime | None = None) -> Availability:
    async with db.tenant_tx(tenant_id) as conn:
        return await _availability(conn, tenant_id, resource, starts_at, ends_at, now=now or datetime.now(UTC))


async def create_booking(
    db: TenantDatabase, tenant_id: UUID, *, starts_at: datetime, ends_at: datetime, resource: str = "default",
    customer_name: str = "", customer_phone: str | None = None, notes: str | None = None,
    call_sid: str | None = None, idempotency_key: str | None = None, now: datetime | None = None,
) -> Booking:
    """Book the slot or raise SlotUnavailableError with alternatives. With an idempotency key, a repeat
    returns the booking made the first time instead of booking again."""
    now = now or datetime.now(UTC)
    try:
        async with db.tenant_tx(tenant_id) as conn:
            if idempotency_key is not None:
                row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM bookings WHERE idempotency_key = $1",
                                          idempotency_key)
                if row:
                    return _booking(row)
            availability = await _availability(conn, tenant_id, resource, starts_at, ends_at, now=now)
            if not availability.available:
                # A concurrent retry with the same key may have committed between our key lookup and the
                # availability check (READ COMMITTED): then the slot is "taken" by this very booking.
                if idempotency_key is not None and (row := await conn.fetchrow(
                        f"SELECT {_COLUMNS} FROM bookings WHERE idempotency_key = $1", idempotency_key)):
                    return _booking(row)
                raise SlotUnavailableError(availability.reason, availability.alternatives)
            row = await conn.fetchrow(
                f"""INSERT INTO bookings (resource, starts_at, ends_at, customer_name, customer_phone, notes,
                                          call_sid, idempotency_key)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                    ON CONFLICT (idempotency_key) DO NOTHING RETURNING {_COLUMNS}""",
                resource, starts_at, ends_at, customer_name, customer_phone, notes, call_sid, idempotency_key)
            if row is None:  # a concurrent retry with the same key committed first
                row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM bookings WHERE idempotency_key = $1",
                                          idempotency_key)
            return _booking(row)
    except asyncpg.ExclusionViolationError:
        # Lost a race for the slot after the check passed: the constraint refused the second booking.
        if idempotency_key is not None:
            async with db.tenant_tx(tenant_id) as conn:
                row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM bookings WHERE idempotency_key = $1",
                                          idempotency_key)
                if row:
                    return _booking(row)
        availability = await check_availability(db, tenant_id, starts_at, ends_at, resource=resource, now=now)
        raise SlotUnavailableError("taken", availability.alternatives) from None


async def book_idempotent(
    db: TenantDatabase, tenant_id: UUID, call_sid: str, *, starts_at: datetime, ends_at: datetime,
    idempotency_key: str | None = None, resource: str = "default", customer_name: str = "",
    customer_phone: str | None = None, notes: str | None = None, now: datetime | None = None,
) -> Booking:
    """The agent's booking tool: safe to retry (a dropped connection is retried here). The key defaults
    to call + resource + start; pass the tool call id to tell apart two bookings of one call."""
    key = idempotency_key or f"{call_sid}:{resource}:{starts_at.astimezone(UTC).isoformat()}"
    return await db.with_retry(lambda: create_booking(
        db, tenant_id, starts_at=starts_at, ends_at=ends_at, resource=resource, customer_name=customer_name,
        customer_phone=customer_phone, notes=notes, call_sid=call_sid, idempotency_key=key, now=now))


async def reschedule_booking(db: TenantDatabase, tenant_id: UUID, booking_id: UUID, *, starts_at: datetime,
                             ends_at: datetime, now: datetime | None = None) -> Booking:
    now = now or datetime.now(UTC)
    try:
        async with db.tenant_tx(tenant_id) as conn:
            current = await conn.fetchrow(f"SELECT {_COLUMNS} FROM bookings WHERE id = $1 FOR UPDATE", booking_id)
            if current is None or current["status"] != "confirmed":
                raise BookingNotFoundError(str(booking_id))
            availability = await _availability(conn, tenant_id, current["resource"], starts_at, ends_at,
                                               now=now, ignore_id=booking_id)
            if not availability.available:
                raise SlotUnavailableError(availability.reason, availability.alternatives)
            row = await conn.fetchrow(
                f"""UPDATE bookings SET starts_at = $2, ends_at = $3, updated_at = now() WHERE id = $1
                    RETURNING {_COLUMNS}""", booking_id, starts_at, ends_at)
            return _booking(row)
    except asyncpg.ExclusionViolationError:
        raise SlotUnavailableError("taken", []) from None


async def cancel_booking(db: TenantDatabase, tenant_id: UUID, booking_id: UUID) -> Booking:
    """Idempotent: cancelling a cancelled booking returns it unchanged."""
    async with db.tenant_tx(tenant_id) as conn:
        row = await conn.fetchrow(
            f"""UPDATE bookings SET status = 'cancelled',
                       updated_at = CASE WHEN status = 'cancelled' THEN updated_at ELSE now() END
                WHERE id = $1 RETURNING {_COLUMNS}""", booking_id)
    if row is None:
        raise BookingNotFoundError(str(booking_id))
    return _booking(row)


async def list_bookings(
    db: TenantDatabase, tenant_id: UUID, *, starts_from: datetime | None = None,
    starts_before: datetime | None = None, include_cancelled: bool = False, limit: int = 50,
    after: tuple[datetime, UUID] | None = None,
) -> list[Booking]:
    """Bookings by start time; `after` is the (starts_at, id) of the last row of the previous page."""
    after_start, after_id = after if after else (None, None)
    async with db.tenant_tx(tenant_id) as conn:
        rows = await conn.fetch(
            f"""SELECT {_COLUMNS} FROM bookings
                WHERE ($1::timestamptz IS NULL OR starts_at >= $1)
                  AND ($2::timestamptz IS NULL OR starts_at < $2)
                  AND ($3 OR status = 'confirmed')
                  AND ($4::timestamptz IS NULL OR (starts_at, id) > ($4, $5::uuid))
                ORDER BY starts_at, id LIMIT $6""",
            starts_from, starts_before, include_cancelled, after_start, after_id, limit)
    return [_booking(r) for r in rows]
