"""The call's record in the tenant's data: the call row, a durable transcript, the outcome the
`<Connect action>` callback reads, and the in-call history.

Nothing here may break a call: every write is guarded and logged. Transcript turns are buffered in
Redis as the call goes (written through to Postgres when Redis is away) and flushed at the end;
`TranscriptRecorder` keeps what it could not write and the periodic flush retries it.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from shared.tenancy import calls
from shared.tenancy.call_state import CallStateStore
from shared.tenancy.database import TenantDatabase
from shared.tenancy.directory import TenantDirectory
from shared.tenancy.models import CallOutcome, TranscriptTurn
from shared.tenancy.transcript_buffer import TranscriptRecorder
from streaming_service.engines.base import CallContext
from streaming_service.service_state import TenantSettingsLookup

log = logging.getLogger("voice_agent.recorder")


def tenant_uuid(call: CallContext) -> UUID | None:
    try:
        return UUID(call.tenant_id)
    except ValueError:
        return None


class TenancyCallRecorder:
    def __init__(self, db: TenantDatabase, state: CallStateStore, transcripts: TranscriptRecorder) -> None:
        self.db = db
        self.state = state
        self.transcripts = transcripts
        self._writers: dict[str, asyncio.Queue[TranscriptTurn | None]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._seq: dict[str, int] = {}
        self._turn_metrics: dict[str, list[dict[str, Any]]] = {}

    async def call_started(self, call: CallContext) -> None:
        tenant_id = tenant_uuid(call)
        if tenant_id is None:
            log.warning("call without a tenant id: not recorded")
            return
        try:  # the webhook normally created the row already; this is idempotent
            record = await calls.start_call(self.db, tenant_id, call.call_sid, from_number=call.caller_number,
                                            to_number=call.dialled_number)
        except Exception as exc:
            log.warning("could not record call start", extra={"error": type(exc).__name__})
        else:
            if record.ended_at is not None:
                # Only the session that owns the call writes its record: a stream started for a call that
                # already ended (a replayed token) must never overwrite the turns of the real call.
                log.warning("call already ended: this session does not own its record; not recorded",
                            extra={"call_sid": call.call_sid})
                return
        queue: asyncio.Queue[TranscriptTurn | None] = asyncio.Queue()
        self._writers[call.call_sid] = queue
        self._tasks[call.call_sid] = asyncio.create_task(self._write_turns(tenant_id, call.call_sid, queue))

    def transcript_turn(self, call: CallContext, entry: dict[str, Any]) -> None:
        queue = self._writers.get(call.call_sid)
        if queue is None:
            return
        seq = self._seq.get(call.call_sid, 0) + 1
        self._seq[call.call_sid] = seq
        at = datetime.fromisoformat(entry["at"]) if entry.get("at") else datetime.now(UTC)
        queue.put_nowait(TranscriptTurn(seq=seq, role="caller" if entry["role"] == "caller" else "agent",
                                        text=entry["text"], started_at=at, ended_at=at,
                                        interrupted=bool(entry.get("interrupted")), heard_text=entry.get("heard")))

    def turn_measured(self, call: CallContext, summary: dict[str, Any]) -> None:
        if call.call_sid in self._writers:
            self._turn_metrics.setdefault(call.call_sid, []).append(dict(summary))

    async def history_updated(self, call: CallContext, items: list[dict[str, Any]]) -> None:
        tenant_id = tenant_uuid(call)
        if tenant_id is not None:
            await self.state.replace_history(tenant_id, call.call_sid, items)

    async def call_ended(self, call: CallContext) -> None:
        tenant_id = tenant_uuid(call)
        if tenant_id is None or call.call_sid not in self._writers:
            return  # not recorded, or not this session's call to record (see call_started)
        queue, task = self._writers.pop(call.call_sid, None), self._tasks.pop(call.call_sid, None)
        self._seq.pop(call.call_sid, None)
        turn_metrics = self._turn_metrics.pop(call.call_sid, [])
        if queue is not None and task is not None:
            queue.put_nowait(None)
            await task
        outcome = CallOutcome(action=call.outcome.action, transfer_to=call.outcome.transfer_to or None)  # type: ignore[arg-type]
        try:
            await self.state.record_outcome(tenant_id, call.call_sid, outcome)
            await self.transcripts.flush(tenant_id, call.call_sid)
            await calls.finish_call(self.db, tenant_id, call.call_sid, outcome=outcome.action,
                                    turn_metrics=turn_metrics)
        except Exception as exc:  # the turns wait in Redis (or memory) for the periodic flush
            log.warning("could not finish the call record", extra={"error": type(exc).__name__})

    async def _write_turns(self, tenant_id: UUID, call_sid: str,
                           queue: asyncio.Queue[TranscriptTurn | None]) -> None:
        while (turn := await queue.get()) is not None:
            try:
                await self.transcripts.append(tenant_id, call_sid, turn)
            except Exception as exc:
                log.warning("transcript turn not buffered", extra={"error": type(exc).__name__, "seq": turn.seq})


def tenant_settings_lookup(directory: TenantDirectory) -> TenantSettingsLookup:
    """The service's tenant settings source: profile from Redis, else Postgres; defaults on failure."""

    async def lookup(tenant_id: str) -> dict[str, Any]:
        try:
            profile = await directory.tenant_profile(UUID(tenant_id))
        except ValueError:
            return {}
        except Exception as exc:
            log.warning("tenant settings unavailable; using defaults", extra={"error": type(exc).__name__})
            return {}
        if profile is None:
            return {}
        return {**profile.settings.to_json(), "business_name": profile.name, "tenant_slug": profile.slug}

    return lookup
