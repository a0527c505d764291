"""Calls and transcripts: idempotent writes, and a connection killed mid-write loses and duplicates nothing."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from shared.tenancy import bookings, calls
from shared.tenancy.cache import JsonCache
from shared.tenancy.database import TenantDatabase
from shared.tenancy.models import TranscriptTurn
from shared.tenancy.transcript_buffer import TranscriptRecorder

T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


def turn(seq: int, text: str = "", **extra: Any) -> TranscriptTurn:
    return TranscriptTurn(seq, "caller" if seq % 2 == 0 else "agent", text or f"turn {seq}",
                          started_at=T0 + timedelta(seconds=seq), ended_at=T0 + timedelta(seconds=seq + 1), **extra)


async def test_call_lifecycle_is_idempotent(db: TenantDatabase, make_tenant) -> None:
    tenant = await make_tenant()
    tid = tenant.tenant_id
    first = await calls.start_call(db, tid, "CA1", from_number="+15550001", to_number="+15550002", started_at=T0)
    again = await calls.start_call(db, tid, "CA1", from_number="+1999", to_number="+1999")
    assert again == first and first.status == "in-progress"
    assert await calls.update_call_status(db, tid, "CA1", "ringing") is False  # never backwards
    assert await calls.update_call_status(db, tid, "CA1", "in-progress") is False  # repeat: no change
    assert await calls.update_call_status(db, tid, "CA1", "completed") is True
    assert await calls.update_call_status(db, tid, "CA1", "completed") is False
    done = await calls.finish_call(db, tid, "CA1", ended_at=T0 + timedelta(seconds=95), outcome="booked")
    assert done is not None and done.duration_s == 95 and done.outcome == "booked" and done.status == "completed"
    later = await calls.finish_call(db, tid, "CA1", status="failed", ended_at=T0 + timedelta(hours=1))
    assert later is not None and later.ended_at == done.ended_at and later.duration_s == 95
    assert later.status == "completed" and later.outcome == "booked"  # first end wins
    assert await calls.finish_call(db, tid, "CA-unknown") is None


async def test_list_calls_newest_first_with_cursor(db: TenantDatabase, make_tenant) -> None:
    tenant = await make_tenant()
    for i in range(5):
        await calls.start_call(db, tenant.tenant_id, f"CA{i}", from_number="+1", to_number="+2",
                               started_at=T0 + timedelta(minutes=i))
    page1 = await calls.list_calls(db, tenant.tenant_id, limit=3)
    page2 = await calls.list_calls(db, tenant.tenant_id, limit=3, before=(page1[-1].started_at, page1[-1].call_sid))
    assert [c.call_sid for c in page1 + page2] == ["CA4", "CA3", "CA2", "CA1", "CA0"]


async def test_transcript_turns_append_idempotently(db: TenantDatabase, make_tenant) -> None:
    tenant = await make_tenant()
    await calls.append_transcript_turns(db, tenant.tenant_id, "CA1", [turn(0), turn(1)])
    await calls.append_transcript_turns(db, tenant.tenant_id, "CA1", [turn(0), turn(1), turn(2)])
    # A corrected turn (barge-in: what was heard) replaces the earlier version, it is not added.
    await calls.append_transcript_turns(db, tenant.tenant_id, "CA1",
                                        [turn(1, interrupted=True, heard_text="turn")])
    stored = await calls.list_transcript(db, tenant.tenant_id, "CA1")
    assert [t.seq for t in stored] == [0, 1, 2]
    assert stored[1].interrupted and stored[1].heard_text == "turn"
    assert stored[0] == turn(0)


async def _wait_for_blocked_writer(admin: asyncpg.Connection, table: str) -> int:
    """The pid of our app backend waiting to write `table` (polls pg_locks; no timing involved).
    The write is blocked while asyncpg prepares it, so pg_locks, not the query text, tells."""
    for _ in range(5000):
        pid = await admin.fetchval(
            """SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
               WHERE a.application_name = 'voice-agent' AND NOT l.granted
                 AND l.relation = $1::regclass AND l.mode = 'RowExclusiveLock'""", table)
        if pid:
            return int(pid)
        await asyncio.sleep(0.002)
    raise AssertionError(f"no backend blocked writing {table}")


async def test_booking_survives_connection_killed_mid_write(db: TenantDatabase, make_tenant, admin_dsn: str) -> None:
    tenant = await make_tenant()
    admin: asyncpg.Connection = await asyncpg.connect(admin_dsn)
    try:
        lock = admin.transaction()
        await lock.start()
        # SHARE lets the booking's reads through and blocks its INSERT: we kill it right there.
        await admin.execute(f'LOCK TABLE "{tenant.schema_name}".bookings IN SHARE MODE')
        task = asyncio.create_task(bookings.book_idempotent(
            db, tenant.tenant_id, "CAkill", starts_at=T0, ends_at=T0 + timedelta(minutes=30), now=T0 - timedelta(1)))
        pid = await _wait_for_blocked_writer(admin, f'"{tenant.schema_name}".bookings')
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        await lock.rollback()
        booking = await task  # retried on a fresh connection
    finally:
        await admin.close()
    again = await bookings.book_idempotent(db, tenant.tenant_id, "CAkill", starts_at=T0,
                                           ends_at=T0 + timedelta(minutes=30), now=T0 - timedelta(1))
    stored = await bookings.list_bookings(db, tenant.tenant_id, include_cancelled=True)
    assert [b.id for b in stored] == [booking.id] == [again.id]


async def test_transcript_flush_survives_connection_killed_mid_write(
        db: TenantDatabase, cache: JsonCache, make_tenant, admin_dsn: str) -> None:
    tenant = await make_tenant()
    recorder = TranscriptRecorder(db, cache)
    for seq in range(3):
        await recorder.append(tenant.tenant_id, "CA1", turn(seq))
    assert await recorder.flush(tenant.tenant_id, "CA1") == 3  # a periodic flush mid-call
    for seq in range(3, 6):
        await recorder.append(tenant.tenant_id, "CA1", turn(seq))
    await recorder.append(tenant.tenant_id, "CA1", turn(1, interrupted=True, heard_text="tu"))  # re-sent
    admin: asyncpg.Connection = await asyncpg.connect(admin_dsn)
    try:
        lock = admin.transaction()
        await lock.start()
        await admin.execute(f'LOCK TABLE "{tenant.schema_name}".transcript_turns IN SHARE MODE')
        task = asyncio.create_task(recorder.flush(tenant.tenant_id, "CA1"))
        pid = await _wait_for_blocked_writer(admin, f'"{tenant.schema_name}".transcript_turns')
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        await lock.rollback()
        assert await task == 4
    finally:
        await admin.close()
    stored = await calls.list_transcript(db, tenant.tenant_id, "CA1")
    assert [t.seq for t in stored] == [0, 1, 2, 3, 4, 5]
    assert stored[1].heard_text == "tu"
    assert (tenant.tenant_id, "CA1") not in await recorder.pending_calls()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_turns_wait_in_redis_while_postgres_is_down(db: TenantDatabase, cache: JsonCache, make_tenant) -> None:
    tenant = await make_tenant()
    await db.tenant_profile(tenant.tenant_id)  # a process that was serving this tenant before the outage
    down_pool = await asyncpg.create_pool(f"postgresql://voice_app@127.0.0.1:{_closed_port()}/x", min_size=0)
    down_db = TenantDatabase(down_pool)
    down_db._schemas.update(db._schemas)
    try:
        during_outage = TranscriptRecorder(down_db, cache)
        for seq in range(4):
            await during_outage.append(tenant.tenant_id, "CA1", turn(seq))
        assert await during_outage.flush(tenant.tenant_id, "CA1") == 0  # deferred, not lost
        assert (tenant.tenant_id, "CA1") in await during_outage.pending_calls()
        assert await calls.list_transcript(db, tenant.tenant_id, "CA1") == []
    finally:
        await down_pool.close()
    recovered = TranscriptRecorder(db, cache)  # e.g. another task or process, after Postgres is back
    assert await recovered.flush_pending() == 4
    assert await recovered.flush_pending() == 0
    assert [t.seq for t in await calls.list_transcript(db, tenant.tenant_id, "CA1")] == [0, 1, 2, 3]


async def test_turns_kept_in_memory_when_both_stores_are_down(db: TenantDatabase, make_tenant) -> None:
    tenant = await make_tenant()
    await db.tenant_profile(tenant.tenant_id)
    dead_cache = JsonCache(f"redis://127.0.0.1:{_closed_port()}/0", retry_after_s=0)
    down_pool = await asyncpg.create_pool(f"postgresql://voice_app@127.0.0.1:{_closed_port()}/x", min_size=0)
    down_db = TenantDatabase(down_pool)
    down_db._schemas.update(db._schemas)
    recorder = TranscriptRecorder(down_db, dead_cache)
    try:
        await recorder.append(tenant.tenant_id, "CA1", turn(0))
        assert await recorder.flush(tenant.tenant_id, "CA1") == 0
        recorder.db = db  # Postgres is back
        assert await recorder.flush_pending() == 1
    finally:
        await down_pool.close()
        await dead_cache.close()
    assert [t.seq for t in await calls.list_transcript(db, tenant.tenant_id, "CA1")] == [0]
