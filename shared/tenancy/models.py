"""Typed records the data layer hands out. Plain dataclasses: cheap to build on the hot path,
with explicit JSON shapes for Redis and the HTTP API."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

OutcomeAction = Literal["continue", "hangup", "transfer"]
OverflowPolicy = Literal["hold", "offline", "forward", "busy"]
TurnRole = Literal["caller", "agent", "system", "tool"]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse_dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class TenantSettings:
    greeting: str | None = None
    voice_id: str | None = None
    language: str = "en"
    timezone: str = "UTC"
    prompt_overrides: dict[str, Any] = field(default_factory=dict)
    faq_text: str | None = None
    address: str | None = None
    tool_endpoint: str | None = None
    toolbox: list[Any] = field(default_factory=list)
    fallback_transfer_number: str | None = None
    # {"mon": [["09:00", "17:00"]], ...} in the tenant's timezone; empty = always open
    business_hours: dict[str, Any] = field(default_factory=dict)
    services: list[str] = field(default_factory=list)  # e.g. ["haircut", "colouring"]
    appointment_minutes: int = 30
    # When its vendor budget or the task fleet is full: hold (music, retried for overflow_hold_s), offline
    # (the offline engines, said honestly), forward (dial fallback_transfer_number), busy (apologise, hang up).
    overflow_policy: OverflowPolicy = "offline"
    overflow_hold_s: int = 60
    # The tenant's own vendor accounts (keys live encrypted elsewhere, shared/tenancy/vendor_secrets.py):
    # models, and the budgets of those accounts' plans. None: the platform's.
    stt_model: str | None = None  # e.g. "nova-3", or "flux-general-en" (Deepgram Flux, /v2/listen)
    tts_model: str | None = None
    llm_model: str | None = None
    deepgram_max_streams: int | None = None
    elevenlabs_max_concurrent_requests: int | None = None
    openai_max_requests_per_minute: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TenantSettings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known and v is not None})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


SETTINGS_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(TenantSettings))
JSON_SETTINGS_FIELDS = frozenset({"prompt_overrides", "toolbox", "business_hours", "services"})


@dataclass(frozen=True)
class TenantProfile:
    """A tenant as a call needs it: who, where its rows live, and how its agent behaves."""

    tenant_id: UUID
    slug: str
    name: str
    schema_name: str
    settings: TenantSettings

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TenantProfile:
        return cls(UUID(str(data["tenant_id"])), data["slug"], data["name"], data["schema_name"],
                   TenantSettings.from_json(data.get("settings") or {}))

    def to_json(self) -> dict[str, Any]:
        return {"tenant_id": str(self.tenant_id), "slug": self.slug, "name": self.name,
                "schema_name": self.schema_name, "settings": self.settings.to_json()}


@dataclass(frozen=True)
class Booking:
    id: UUID
    resource: str
    starts_at: datetime
    ends_at: datetime
    customer_name: str
    customer_phone: str | None
    notes: str | None
    status: str
    call_sid: str | None
    idempotency_key: str | None
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(id=str(self.id), starts_at=_iso(self.starts_at), ends_at=_iso(self.ends_at),
                    created_at=_iso(self.created_at))
        return data


@dataclass(frozen=True)
class CallRecord:
    call_sid: str
    from_number: str
    to_number: str
    status: str
    started_at: datetime
    ended_at: datetime | None
    duration_s: int | None
    outcome: str | None
    transfer_to: str | None
    # Per caller turn: stt_ms, llm_ttft_ms, tts_ttfb_ms, voice_to_voice_ms, barge_in, errors (as live).
    turn_metrics: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(started_at=_iso(self.started_at), ended_at=_iso(self.ended_at))
        return data


@dataclass(frozen=True)
class TranscriptTurn:
    """One turn of the conversation; `seq` orders turns within a call and makes writes idempotent."""

    seq: int
    role: TurnRole
    text: str
    started_at: datetime | None = None
    ended_at: datetime | None = None
    interrupted: bool = False
    heard_text: str | None = None  # what the caller actually heard before a barge-in

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(started_at=_iso(self.started_at), ended_at=_iso(self.ended_at))
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TranscriptTurn:
        return cls(seq=int(data["seq"]), role=data["role"], text=data["text"],
                   started_at=_parse_dt(data.get("started_at")), ended_at=_parse_dt(data.get("ended_at")),
                   interrupted=bool(data.get("interrupted", False)), heard_text=data.get("heard_text"))


@dataclass(frozen=True)
class CallOutcome:
    """What the webhook does when the media stream closes: keep going, hang up, or dial a number."""

    action: OutcomeAction = "continue"
    transfer_to: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "transfer_to": self.transfer_to}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CallOutcome:
        return cls(action=data.get("action", "continue"), transfer_to=data.get("transfer_to"))
