"""`CallDirectory` over shared/tenancy: Redis first (cache-aside), Postgres behind it.

The pool is created with `min_size=0`, so building the directory never touches Postgres: when the
database is down, a number already in the Redis cache still resolves, and the caller is transferred to
the tenant's fallback number instead of hearing a bare goodbye.
"""

from __future__ import annotations

from uuid import UUID

from functions.voice_webhook.call_flow import ADMIT, Admission, Outcome, Tenant
from shared.capacity import CapacityLedger, FleetRegistry, Vendor, VendorAccount, tenant_accounts
from shared.settings import CapacityOptions
from shared.tenancy import calls
from shared.tenancy.cache import JsonCache
from shared.tenancy.call_state import CallStateStore
from shared.tenancy.database import TenantDatabase
from shared.tenancy.directory import TenantDirectory
from shared.tenancy.models import TenantProfile


def _tenant(profile: TenantProfile) -> Tenant:
    return Tenant(tenant_id=str(profile.tenant_id),
                  fallback_number=profile.settings.fallback_transfer_number or None,
                  overflow_policy=profile.settings.overflow_policy,
                  overflow_hold_s=profile.settings.overflow_hold_s)


class TenancyCallDirectory:
    def __init__(self, db: TenantDatabase, cache: JsonCache, capacity: CapacityOptions | None = None) -> None:
        self.db = db
        self.cache = cache
        self.directory = TenantDirectory(db, cache)
        self.call_state = CallStateStore(db, cache)
        self.capacity = capacity or CapacityOptions()
        self.ledger = CapacityLedger(cache, self.capacity.lease_ttl_s, self.capacity.vendor_ceiling_ttl_s)
        self.fleet = FleetRegistry(cache)

    @classmethod
    async def connect(cls, dsn: str, redis_url: str, cache_ttl_s: int = 900, cache_prefix: str = "va",
                      capacity: CapacityOptions | None = None) -> TenancyCallDirectory:
        # One request at a time per Lambda container: a tiny pool, opened lazily.
        db = await TenantDatabase.connect(dsn, min_size=0, max_size=2)
        return cls(db, JsonCache(redis_url, prefix=cache_prefix, default_ttl_s=cache_ttl_s), capacity)

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
            await self.release_call(tenant_id, call_sid)  # a reservation never taken up, if any
        return changed

    async def read_outcome(self, tenant_id: str, call_sid: str) -> Outcome:
        outcome = await self.call_state.read_outcome(UUID(tenant_id), call_sid)
        return Outcome(action=outcome.action, transfer_to=outcome.transfer_to)

    async def _accounts(self, tenant_id: str) -> dict[Vendor, VendorAccount] | None:
        profile = await self.directory.tenant_profile(UUID(tenant_id))
        if profile is None:
            return None
        own = await self.directory.own_vendors(UUID(tenant_id))
        return tenant_accounts(tenant_id, profile.settings, own, self.capacity)

    async def admit(self, tenant: Tenant, call_sid: str) -> Admission:
        """A task with room (from the fleet's heartbeats), then one Deepgram stream slot reserved for this
        call (lease id = call SID; the task that takes the stream renews it) and the LLM's rate window.

        Fails open: with Redis unreachable (`room()` None, an unshared grant) the call is admitted. Refusing
        would turn a cache outage into a phone line that answers nobody; admitted, the worst case is the
        vendor's own 429, which the service handles as a capacity signal (offline engines, said honestly)."""
        room = await self.fleet.room()
        if room is not None and room.full:
            return Admission(False, "fleet", f"{room.tasks} tasks, none with room")
        accounts = await self._accounts(tenant.tenant_id)
        if accounts is None:
            return ADMIT
        stt = accounts["deepgram"]
        grant = await self.ledger.acquire(stt, call_sid)
        if not grant.granted:
            return Admission(False, "vendor", f"{stt.label} streams {grant.in_use}/{stt.budget}")
        llm = accounts["openai"]  # counted per turn by the tasks; here only looked at
        if llm.budget > 0 and await self.ledger.has_room(llm) is False:
            await self.ledger.release(stt, call_sid)
            return Admission(False, "vendor", f"{llm.label} requests per minute at {llm.budget}")
        return ADMIT

    async def stream_started(self, call_sid: str) -> bool:
        # The key the streaming service's StreamClaims sets on `start` (streaming_service/stream_guard.py).
        started: int | None = await self.cache.run(
            lambda r: r.exists(self.cache.key("stream", "started", call_sid)), None)
        return True if started is None else bool(started)

    async def release_call(self, tenant_id: str, call_sid: str) -> None:
        accounts = await self._accounts(tenant_id)
        if accounts is not None:
            await self.ledger.release(accounts["deepgram"], call_sid)
