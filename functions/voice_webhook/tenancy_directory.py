"""`CallDirectory` over shared/tenancy: Redis first (cache-aside), Postgres behind it.

The pool is created with `min_size=0`, so building the directory never touches Postgres: when the
database is down, a number already in the Redis cache still resolves, and the caller is transferred to
the tenant's fallback number instead of hearing a bare goodbye.
"""

from __future__ import annotations

from uuid import UUID

from functions.voice_webhook.call_flow import Outcome, Tenant
from shared.tenancy import calls
from shared.tenancy.cache import JsonCache
from shared.tenancy.call_state import CallStateStore
from shared.tenancy.database import TenantDatabase
from shared.tenancy.directory import TenantDirectory
from shared.tenancy.models import TenantProfile


def _tenant(profile: TenantProfile) -> Tenant:
    return Tenant(tenant_id=str(profile.tenant_id),
                  fallback_number=profile.settings.fallback_transfer_number or None)


class TenancyCallDirectory:
    def __init__(self, db: TenantDatabase, cache: JsonCache) -> None:
        self.db = db
        self.cache = cache
        self.directory = TenantDirectory(db, cache)
        self.call_state = CallStateStore(db, cache)

    @classmethod
    async def connect(cls, dsn: str, redis_url: str, cache_ttl_s: int = 900,
                      cache_prefix: str = "va") -> TenancyCallDirectory:
        # One request at a time per Lambda container: a tiny pool, opened lazily.
        db = await TenantDatabase.connect(dsn, min_size=0, max_size=2)
        return cls(db, JsonCache(redis_url, prefix=cache_prefix, default_ttl_s=cache_ttl_s))

    async def close(self) -> None:
        await self.cache.close()
        await self.db.close()

    async def resolve_number(self, dialled: str) -> Tenant | None:
        profile = await self.directory.resolve_number(dialled)
        return _tenant(profile) if profile else None

    async def tenant_profile(self, tenant_id: str) -> TenantProfile | None:
        return await self.directory.tenant_profile(UUID(tenant_id))

    async def start_call(self, tenant_id: str, call_sid: str, caller: str, dialled: str) -> None:
        await calls.start_call(self.db, UUID(tenant_id), call_sid, from_number=caller, to_number=dialled)

    async def update_status(self, tenant_id: str, call_sid: str, status: str,
                            duration_s: int | None) -> bool:
        tenant = UUID(tenant_id)
        changed = await calls.update_call_status(self.db, tenant, call_sid, status)
        if status in calls.TERMINAL_STATUSES:
            # First end time wins inside finish_call, so a repeated callback leaves the row as it was.
            # The duration is computed from our own start/end times (Twilio's CallDuration counts
            # from answer, ours from the webhook; the difference is ring time, which we do not bill).
            await calls.finish_call(self.db, tenant, call_sid, status=status)
        return changed

    async def read_outcome(self, tenant_id: str, call_sid: str) -> Outcome:
        outcome = await self.call_state.read_outcome(UUID(tenant_id), call_sid)
        return Outcome(action=outcome.action, transfer_to=outcome.transfer_to)
