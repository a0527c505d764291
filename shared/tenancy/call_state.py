"""Per-call state shared by the streaming service and the webhook.

- Next action (continue / hang up / transfer): written to Redis for the webhook's fast read and to the
  call row in Postgres, so the `<Connect action>` callback still knows what to do if Redis is down.
- Conversation history during the call: a Redis list of JSON messages with a TTL. It is a cache of
  what the session holds in memory; losing it degrades (no resume), never breaks the call.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from uuid import UUID

from shared.tenancy import calls
from shared.tenancy.cache import JsonCache
from shared.tenancy.database import RETRYABLE_ERRORS, TenantDatabase
from shared.tenancy.models import CallOutcome

log = logging.getLogger(__name__)


class CallStateStore:
    def __init__(self, db: TenantDatabase, cache: JsonCache) -> None:
        self.db = db
        self.cache = cache

    def _outcome_key(self, tenant_id: UUID, call_sid: str) -> str:
        return self.cache.tenant_key(tenant_id, "call", call_sid, "outcome")

    def _history_key(self, tenant_id: UUID, call_sid: str) -> str:
        return self.cache.tenant_key(tenant_id, "call", call_sid, "history")

    async def record_outcome(self, tenant_id: UUID, call_sid: str, outcome: CallOutcome) -> bool:
        """True when at least one store holds it (both, normally)."""
        cached = await self.cache.set_json(self._outcome_key(tenant_id, call_sid), outcome.to_json())
        try:
            durable = await calls.record_next_action(self.db, tenant_id, call_sid, outcome)
        except RETRYABLE_ERRORS as exc:
            log.warning("could not store call outcome in Postgres: %s", type(exc).__name__)
            durable = False
        return cached or durable

    async def read_outcome(self, tenant_id: UUID, call_sid: str) -> CallOutcome:
        """Redis first, then the call row; `continue` when neither knows the call."""
        cached = await self.cache.get_json(self._outcome_key(tenant_id, call_sid))
        if cached is not None:
            return CallOutcome.from_json(cached)
        try:
            stored = await calls.read_next_action(self.db, tenant_id, call_sid)
        except RETRYABLE_ERRORS as exc:
            log.warning("could not read call outcome from Postgres: %s", type(exc).__name__)
            return CallOutcome()
        if stored is not None:
            await self.cache.set_json(self._outcome_key(tenant_id, call_sid), stored.to_json())
            return stored
        return CallOutcome()

    async def append_history(self, tenant_id: UUID, call_sid: str, *messages: dict[str, Any]) -> bool:
        key = self._history_key(tenant_id, call_sid)
        payloads = [json.dumps(m, separators=(",", ":")) for m in messages]

        async def push(r: Any) -> bool:
            async with r.pipeline(transaction=True) as pipe:
                pipe.rpush(key, *payloads).expire(key, self.cache.default_ttl_s)
                await pipe.execute()
            return True
        return await self.cache.run(push, False) if payloads else True

    async def replace_history(self, tenant_id: UUID, call_sid: str, messages: list[dict[str, Any]]) -> bool:
        """For barge-in: the last assistant message is cut down to what the caller heard."""
        key = self._history_key(tenant_id, call_sid)
        payloads = [json.dumps(m, separators=(",", ":")) for m in messages]

        async def swap(r: Any) -> bool:
            async with r.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                if payloads:
                    pipe.rpush(key, *payloads).expire(key, self.cache.default_ttl_s)
                await pipe.execute()
            return True
        return await self.cache.run(swap, False)

    async def read_history(self, tenant_id: UUID, call_sid: str) -> list[dict[str, Any]]:
        raw: list[str] = await self.cache.run(lambda r: r.lrange(self._history_key(tenant_id, call_sid), 0, -1), [])
        return [json.loads(item) for item in raw]
