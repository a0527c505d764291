"""Calls and transcript turns in the tenant's schema. Every write here is idempotent, so a retried
webhook, status callback or transcript flush never duplicates or regresses a row."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

from shared.tenancy.database import TenantDatabase
from shared.tenancy.models import CallOutcome, CallRecord, TranscriptTurn

_CALL_COLUMNS = ("call_sid, from_number, to_number, status, started_at, ended_at, duration_s, outcome, "
                 "transfer_to, turn_metrics")
_TURN_COLUMNS = "seq, role, text, started_at, ended_at, interrupted, heard_text"
TERMINAL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
# Twilio status callbacks may arrive late or twice: a status only ever moves forward.
_STATUS_RANK_SQL = """CASE {col} WHEN 'queued' THEN 0 WHEN 'ringing' THEN 1 WHEN 'in-progress' THEN 2
                      WHEN 'completed' THEN 3 WHEN 'busy' THEN 3 WHEN 'failed' THEN 3
                      WHEN 'no-answer' THEN 3 WHEN 'canceled' THEN 3 ELSE 0 END"""


def _call(row: asyncpg.Record) -> CallRecord:
    return CallRecord(**dict(row))


def _turn(row: asyncpg.Record) -> TranscriptTurn:
    return TranscriptTurn(**dict(row))


async def start_call(db: TenantDatabase, tenant_id: UUID, call_sid: str, *, from_number: str,
                     to_number: str, started_at: datetime | None = None,
                     status: str = "in-progress") -> CallRecord:
    """Record a new call; a repeat for the same SID returns the existing row."""
    async def attempt() -> CallRecord:
        async with db.tenant_tx(tenant_id) as conn:
            await conn.execute(
                """INSERT INTO calls (call_sid, from_number, to_number, status, started_at)
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT (call_sid) DO NOTHING""",
                call_sid, from_number, to_number, status, started_at or datetime.now(UTC))
            row = await conn.fetchrow(f"SELECT {_CALL_COLUMNS} FROM calls WHERE call_sid = $1", call_sid)
            return _call(row)
    return await db.with_retry(attempt)


async def update_call_status(db: TenantDatabase, tenant_id: UUID, call_sid: str, status: str) -> bool:
    """Move the status forward; a repeated or out-of-order callback changes nothing (returns False)."""
    rank_new = _STATUS_RANK_SQL.format(col="$2::text")
    rank_old = _STATUS_RANK_SQL.format(col="status")

    async def attempt() -> bool:
        async with db.tenant_tx(tenant_id) as conn:
            result = await conn.execute(
                f"""UPDATE calls SET status = $2, updated_at = now()
                    WHERE call_sid = $1 AND ({rank_new}) > ({rank_old})""", call_sid, status)
        return bool(result == "UPDATE 1")
    return await db.with_retry(attempt)


async def finish_call(db: TenantDatabase, tenant_id: UUID, call_sid: str, *, status: str = "completed",
                      ended_at: datetime | None = None, outcome: str | None = None,
                      turn_metrics: list[dict[str, Any]] | None = None) -> CallRecord | None:
    """Close the call: the first end time wins, the duration follows from it; safe to call twice.
    `turn_metrics` (the per-turn latency summaries) replaces the stored list when given."""
    async def attempt() -> CallRecord | None:
        async with db.tenant_tx(tenant_id) as conn:
            row = await conn.fetchrow(
                f"""UPDATE calls SET
                      ended_at = coalesce(ended_at, $2),
                      duration_s = greatest(0, extract(epoch FROM coalesce(ended_at, $2) - started_at))::int,
                      status = CASE WHEN status = ANY($5::text[]) THEN status ELSE $3 END,
                      outcome = coalesce($4, outcome), turn_metrics = coalesce($6::jsonb, turn_metrics),
                      updated_at = now()
                    WHERE call_sid = $1 RETURNING {_CALL_COLUMNS}""",
                call_sid, ended_at or datetime.now(UTC), status, outcome, sorted(TERMINAL_STATUSES), turn_metrics)
            return _call(row) if row else None
    return await db.with_retry(attempt)


async def record_next_action(db: TenantDatabase, tenant_id: UUID, call_sid: str, outcome: CallOutcome) -> bool:
    """Durable copy of what the webhook should do when the stream closes (Redis holds the fast copy)."""
    async def attempt() -> bool:
        async with db.tenant_tx(tenant_id) as conn:
            result = await conn.execute(
                "UPDATE calls SET next_action = $2, transfer_to = $3, updated_at = now() WHERE call_sid = $1",
                call_sid, outcome.action, outcome.transfer_to)
        return bool(result == "UPDATE 1")
    return await db.with_retry(attempt)


async def read_next_action(db: TenantDatabase, tenant_id: UUID, call_sid: str) -> CallOutcome | None:
    async with db.tenant_tx(tenant_id) as conn:
        row = await conn.fetchrow("SELECT next_action, transfer_to FROM calls WHERE call_sid = $1", call_sid)
    return CallOutcome(row["next_action"], row["transfer_to"]) if row else None


async def get_call(db: TenantDatabase, tenant_id: UUID, call_sid: str) -> CallRecord | None:
    async with db.tenant_tx(tenant_id) as conn:
        row = await conn.fetchrow(f"SELECT {_CALL_COLUMNS} FROM calls WHERE call_sid = $1", call_sid)
    return _call(row) if row else None


async def list_calls(db: TenantDatabase, tenant_id: UUID, *, limit: int = 50,
                     before: tuple[datetime, str] | None = None) -> list[CallRecord]:
    """Newest first; `before` is the (started_at, call_sid) of the last row of the previous page."""
    before_start, before_sid = before if before else (None, None)
    async with db.tenant_tx(tenant_id) as conn:
        rows = await conn.fetch(
            f"""SELECT {_CALL_COLUMNS} FROM calls
                WHERE $1::timestamptz IS NULL OR (started_at, call_sid) < ($1, $2::text)
                ORDER BY started_at DESC, call_sid DESC LIMIT $3""", before_start, before_sid, limit)
    return [_call(r) for r in rows]


async def append_transcript_turns(db: TenantDatabase, tenant_id: UUID, call_sid: str,
                                  turns: Sequence[TranscriptTurn]) -> int:
    """Upsert by (call_sid, seq): a re-flush writes nothing new, a corrected turn (heard text after a
    barge-in) replaces the earlier version. Retried on a dropped connection."""
    if not turns:
        return 0
    rows = [(call_sid, t.seq, t.role, t.text, t.started_at, t.ended_at, t.interrupted, t.heard_text)
            for t in turns]

    async def attempt() -> int:
        async with db.tenant_tx(tenant_id) as conn:
            await conn.executemany(
                """INSERT INTO transcript_turns (call_sid, seq, role, text, started_at, ended_at, interrupted,
                                                 heard_text)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                   ON CONFLICT (call_sid, seq) DO UPDATE SET role = EXCLUDED.role, text = EXCLUDED.text,
                     started_at = EXCLUDED.started_at, ended_at = EXCLUDED.ended_at,
                     interrupted = EXCLUDED.interrupted, heard_text = EXCLUDED.heard_text
                   WHERE (transcript_turns.role, transcript_turns.text, transcript_turns.started_at,
                          transcript_turns.ended_at, transcript_turns.interrupted, transcript_turns.heard_text)
                         IS DISTINCT FROM (EXCLUDED.role, EXCLUDED.text, EXCLUDED.started_at,
                          EXCLUDED.ended_at, EXCLUDED.interrupted, EXCLUDED.heard_text)""", rows)
        return len(rows)
    return await db.with_retry(attempt)


async def list_transcript(db: TenantDatabase, tenant_id: UUID, call_sid: str, *, limit: int = 1000,
                          after_seq: int = -1) -> list[TranscriptTurn]:
    async with db.tenant_tx(tenant_id) as conn:
        rows = await conn.fetch(
            f"""SELECT {_TURN_COLUMNS} FROM transcript_turns WHERE call_sid = $1 AND seq > $2
                ORDER BY seq LIMIT $3""", call_sid, after_seq, limit)
    return [_turn(r) for r in rows]
