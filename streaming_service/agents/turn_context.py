"""What the agents' tools see of a turn: the call, the bookings, the clock and the history so far.

Passed as the Agents SDK run context (`Runner.run_streamed(..., context=...)`), so a tool reaches it
as `ctx.context`. Tenant settings are read through the small accessors here, in one place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from streaming_service.agents.booking_store import BookingStore
from streaming_service.engines.base import CallContext

DEFAULT_APPOINTMENT_MINUTES = 30


@dataclass
class AgentTurnContext:
    call: CallContext
    now: datetime  # aware; the turn's single clock reading, so every tool agrees on "today"
    bookings: BookingStore | None = None
    history: list[dict[str, Any]] = field(default_factory=list)  # ends with this turn's user item
    found_this_turn: list[dict[str, str]] = field(default_factory=list)  # find_bookings results, this turn
    # A model may send the same booking call twice in one response; the SDK runs them concurrently.
    # One at a time, so the repeat finds the first booking by its idempotency key instead of racing it.
    writes: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def settings(self) -> dict[str, Any]:
        return self.call.tenant_settings

    @property
    def timezone(self) -> ZoneInfo:
        return tenant_timezone(self.settings)

    @property
    def local_now(self) -> datetime:
        return self.now.astimezone(self.timezone)

    @property
    def tenant_uuid(self) -> UUID:
        return UUID(str(self.call.tenant_id))

    @property
    def appointment_minutes(self) -> int:
        return int(self.settings.get("appointment_minutes") or DEFAULT_APPOINTMENT_MINUTES)


def tenant_timezone(settings: dict[str, Any]) -> ZoneInfo:
    try:
        return ZoneInfo(str(settings.get("timezone") or "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def tenant_services(settings: dict[str, Any]) -> list[str]:
    services = settings.get("services") or []
    return [str(s) for s in services] if isinstance(services, Sequence) and not isinstance(services, str) else []


def fallback_number(settings: dict[str, Any]) -> str:
    return str(settings.get("fallback_transfer_number") or settings.get("fallback_number") or "")
