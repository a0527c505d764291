"""Cache-aside lookups of who a call belongs to: number → tenant + settings, and tenant → settings.

Reads go Redis first, then Postgres (and refill Redis). Admin changes call `invalidate_tenant` /
`invalidate_number` after their transaction commits, so the next read sees the new settings.
The number key is global (the tenant is what we are looking up); everything else is per tenant.
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from shared.tenancy.cache import JsonCache
from shared.tenancy.database import TenantDatabase
from shared.tenancy.models import TenantProfile


class TenantDirectory:
    def __init__(self, db: TenantDatabase, cache: JsonCache) -> None:
        self.db = db
        self.cache = cache

    def _number_key(self, e164: str) -> str:
        return self.cache.key("number", e164)

    def _profile_key(self, tenant_id: UUID) -> str:
        return self.cache.tenant_key(tenant_id, "profile")

    async def resolve_number(self, e164: str) -> TenantProfile | None:
        """The webhook's first question: whose number was dialled? None for an unknown number."""
        cached = await self.cache.get_json(self._number_key(e164))
        if cached is not None:
            return TenantProfile.from_json(cached)
        profile = await self.db.resolve_number(e164)
        if profile is not None:
            await self.cache.set_json(self._number_key(e164), profile.to_json())
        return profile

    async def tenant_profile(self, tenant_id: UUID) -> TenantProfile | None:
        cached = await self.cache.get_json(self._profile_key(tenant_id))
        if cached is not None:
            return TenantProfile.from_json(cached)
        profile = await self.db.tenant_profile(tenant_id)
        if profile is not None:
            await self.cache.set_json(self._profile_key(tenant_id), profile.to_json())
        return profile

    def _vendors_key(self, tenant_id: UUID) -> str:
        return self.cache.tenant_key(tenant_id, "vendor_keys")

    async def vendor_ciphertexts(self, tenant_id: UUID) -> dict[str, str]:
        """The tenant's own vendor keys, encrypted (shared/tenancy/vendor_secrets.py); only ciphertext is
        cached. Dropped with the profile on any change, so a rotated key reaches the next call."""
        cached = await self.cache.get_json(self._vendors_key(tenant_id))
        if cached is not None:
            return dict(cached)
        ciphertexts = await self.db.tenant_vendor_ciphertexts(tenant_id)
        await self.cache.set_json(self._vendors_key(tenant_id), ciphertexts)
        return ciphertexts

    async def own_vendors(self, tenant_id: UUID) -> frozenset[str]:
        """Which vendors the tenant brought its own key for."""
        return frozenset(await self.vendor_ciphertexts(tenant_id))

    def _tool_list_key(self, tenant_id: UUID) -> str:
        # The streaming service's cached MCP tool list (streaming_service/agents/tenant_tools.py): it is
        # built from the toolbox in the profile, so it goes with it.
        return self.cache.tenant_key(tenant_id, "mcp_tools")

    async def invalidate_tenant(self, tenant_id: UUID, numbers: Iterable[str]) -> bool:
        return await self.cache.delete(self._profile_key(tenant_id), self._tool_list_key(tenant_id),
                                       self._vendors_key(tenant_id), *(self._number_key(n) for n in numbers))

    async def invalidate_number(self, e164: str) -> bool:
        return await self.cache.delete(self._number_key(e164))
