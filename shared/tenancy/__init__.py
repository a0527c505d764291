"""Tenancy and data: Postgres (schema per tenant + forced RLS) behind one tenant-scoped transaction,
Redis as a cache that may fail. See docs in each module; the public surface is re-exported here."""

from shared.tenancy.bookings import (
    Availability,
    BookingNotFoundError,
    SlotUnavailableError,
    book_idempotent,
    cancel_booking,
    check_availability,
    create_booking,
    list_bookings,
    reschedule_booking,
)
from shared.tenancy.cache import JsonCache
from shared.tenancy.call_state import CallStateStore
from shared.tenancy.calls import (
    append_transcript_turns,
    finish_call,
    get_call,
    list_calls,
    list_transcript,
    start_call,
    update_call_status,
)
from shared.tenancy.database import TenantDatabase, UnknownTenantError
from shared.tenancy.directory import TenantDirectory
from shared.tenancy.models import (
    Booking,
    CallOutcome,
    CallRecord,
    TenantProfile,
    TenantSettings,
    TranscriptTurn,
)
from shared.tenancy.transcript_buffer import TranscriptRecorder

__all__ = [
    "Availability", "Booking", "BookingNotFoundError", "CallOutcome", "CallRecord", "CallStateStore",
    "JsonCache", "SlotUnavailableError", "TenantDatabase", "TenantDirectory", "TenantProfile",
    "TenantSettings", "TranscriptRecorder", "TranscriptTurn", "UnknownTenantError", "append_transcript_turns",
    "book_idempotent", "cancel_booking", "check_availability", "create_booking", "finish_call", "get_call",
    "list_bookings", "list_calls", "list_transcript", "reschedule_booking", "start_call", "update_call_status",
]
