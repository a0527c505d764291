"""The bookings the agents' tools act on, as a Protocol with the Postgres implementation beside it.

The protocol keeps the tools testable and says exactly what the agents need from the data layer;
`PostgresBookingStore` is a thin adapter over `shared.tenancy.bookings` (availability check, write
under the tenant's RLS in one transaction, idempotency key), so both agent paths write the same rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol
from uuid import UUID

from shared.tenancy import bookings
from shared.tenancy.bookings import Availability, BookingNotFoundError, SlotUnavailableError
from shared.tenancy.database import TenantDatabase
from shared.tenancy.models import Booking

__all__ = ["Availability", "BookingNotFoundError", "BookingStore", "PostgresBookingStore", "SlotUnavailableError"]


class BookingStore(Protocol):
    async def availability(self, tenant_id: UUID, starts_at: datetime, ends_at: datetime,
                           now: datetime) -> Availability: ...

    async def book(self, tenant_id: UUID, call_sid: str, *, starts_at: datetime, ends_at: datetime,
                   customer_name: str, customer_phone: str | None, notes: str | None, now: datetime) -> Booking:
        """Idempotent per call and slot; raises SlotUnavailableError (with alternatives)."""
        ...

    async def upcoming(self, tenant_id: UUID, now: datetime) -> list[Booking]: ...

    async def reschedule(self, tenant_id: UUID, booking_id: UUID, *, starts_at: datetime, ends_at: datetime,
                         now: datetime) -> Booking: ...

    async def cancel(self, tenant_id: UUID, booking_id: UUID) -> Booking: ...


class PostgresBookingStore:
    def __init__(self, db: TenantDatabase) -> None:
        self.db = db

    async def availability(self, tenant_id: UUID, starts_at: datetime, ends_at: datetime,
                           now: datetime) -> Availability:
        return await bookings.check_availability(self.db, tenant_id, starts_at, ends_at, now=now)

    async def book(self, tenant_id: UUID, call_sid: str, *, starts_at: datetime, ends_at: datetime,
                   customer_name: str, customer_phone: str | None, notes: str | None, now: datetime) -> Booking:
        return await bookings.book_idempotent(
            self.db, tenant_id, call_sid, starts_at=starts_at, ends_at=ends_at, customer_name=customer_name,
            customer_phone=customer_phone, notes=notes, now=now)

    async def upcoming(self, tenant_id: UUID, now: datetime) -> list[Booking]:
        return await bookings.list_bookings(self.db, tenant_id, starts_from=now, limit=200)

    async def reschedule(self, tenant_id: UUID, booking_id: UUID, *, starts_at: datetime, ends_at: datetime,
                         now: datetime) -> Booking:
        return await bookings.reschedule_booking(self.db, tenant_id, booking_id, starts_at=starts_at,
                                                 ends_at=ends_at, now=now)

    async def cancel(self, tenant_id: UUID, booking_id: UUID) -> Booking:
        return await bookings.cancel_booking(self.db, tenant_id, booking_id)
