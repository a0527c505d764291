"""Transcript turns buffered during the call and flushed to Postgres at call end and periodically.

A turn goes to a Redis hash (field = seq, so a re-append replaces rather than duplicates) and the call
is marked pending. `flush` upserts into Postgres by (call_sid, seq) and only then removes the flushed
fields, so a failure at any point leaves the turns waiting for the next flush, and a flush that ran
twice writes nothing twice. Without Redis, turns go straight to Postgres. This process also keeps each
turn in memory until a flush writes it, so a Redis flushed or restarted mid-call loses nothing, and
without both stores the turns wait there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any
from uuid import UUID

from shared.tenancy import calls
from shared.tenancy.cache import JsonCache
from shared.tenancy.database import RETRYABLE_ERRORS, TenantDatabase
from shared.tenancy.models import TranscriptTurn

log = logging.getLogger(__name__)

BUFFER_TTL_S = 7 * 24 * 3600  # long enough to outlive a Postgres outage; the flush deletes sooner


class TranscriptRecorder:
    def __init__(self, db: TenantDatabase, cache: JsonCache) -> None:
        self.db = db
        self.cache = cache
        self._local: dict[tuple[UUID, str], dict[int, TranscriptTurn]] = {}

    def _turns_key(self, tenant_id: UUID, call_sid: str) -> str:
        return self.cache.tenant_key(tenant_id, "call", call_sid, "turns")

    @property
    def _pending_key(self) -> str:
        return self.cache.key("transcripts", "pending")

    async def append(self, tenant_id: UUID, call_sid: str, turn: TranscriptTurn) -> None:
        # Also kept in memory until the call's turns are flushed: a Redis flushed or restarted mid-call
        # (its buffer gone) must not lose what the caller said. Writes are idempotent per seq.
        self._local.setdefault((tenant_id, call_sid), {})[turn.seq] = turn
        key = self._turns_key(tenant_id, call_sid)
        payload = json.dumps(turn.to_json(), separators=(",", ":"))

        async def buffer(r: Any) -> bool:
            async with r.pipeline(transaction=True) as pipe:
                pipe.hset(key, str(turn.seq), payload).expire(key, BUFFER_TTL_S)
                pipe.zadd(self._pending_key, {f"{tenant_id}:{call_sid}": time.time()})
                await pipe.execute()
            return True

        if await self.cache.run(buffer, False):
            return
        # No Redis: write through so the caller's words are durable anyway (else the memory copy waits).
        with contextlib.suppress(*RETRYABLE_ERRORS):
            await calls.append_transcript_turns(self.db, tenant_id, call_sid, [turn])

    async def flush(self, tenant_id: UUID, call_sid: str) -> int:
        """Write the call's buffered turns to Postgres; returns how many were written (0 if Postgres is
        down: they stay buffered for a later flush)."""
        key = self._turns_key(tenant_id, call_sid)
        buffered: dict[str, str] = await self.cache.run(lambda r: r.hgetall(key), {})
        turns = {int(seq): TranscriptTurn.from_json(json.loads(raw)) for seq, raw in buffered.items()}
        turns.update(self._local.get((tenant_id, call_sid), {}))
        if turns:
            try:
                await calls.append_transcript_turns(self.db, tenant_id, call_sid,
                                                    [turns[s] for s in sorted(turns)])
            except RETRYABLE_ERRORS as exc:
                log.warning("transcript flush deferred, Postgres unavailable: %s", type(exc).__name__)
                return 0
        self._local.pop((tenant_id, call_sid), None)

        async def forget(r: Any) -> bool:
            # Remove only what was written: a turn appended meanwhile stays for the next flush.
            async with r.pipeline(transaction=True) as pipe:
                if buffered:
                    pipe.hdel(key, *buffered.keys())
                pipe.exists(key)
                results = await pipe.execute()
            if not results[-1]:
                await r.zrem(self._pending_key, f"{tenant_id}:{call_sid}")
            return True

        await self.cache.run(forget, False)
        return len(turns)

    async def pending_calls(self) -> list[tuple[UUID, str]]:
        members: list[str] = await self.cache.run(lambda r: r.zrange(self._pending_key, 0, -1), [])
        found = {(UUID(m.split(":", 1)[0]), m.split(":", 1)[1]) for m in members}
        return sorted(found | set(self._local), key=str)

    async def flush_pending(self) -> int:
        """Flush every call with waiting turns (after an outage, or from calls that ended elsewhere)."""
        written = 0
        for tenant_id, call_sid in await self.pending_calls():
            written += await self.flush(tenant_id, call_sid)
        return written

    async def run_periodic_flush(self, interval_s: float = 30.0) -> None:
        """Background task for the service: cancel it on shutdown (then flush once more)."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.flush_pending()
            except Exception:  # a bad row must not stop the loop that saves everyone else's
                log.exception("periodic transcript flush failed")
