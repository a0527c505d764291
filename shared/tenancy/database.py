"""The application's only way into tenant data: `async with db.tenant_tx(tenant_id) as conn:`.

The pool connects as `voice_app` (owns nothing, no BYPASSRLS). Each tenant transaction sets the search
path and `app.tenant_id` with `set_config(..., is_local => true)`, i.e. SET LOCAL: both vanish at
commit or rollback, so a pooled connection never carries one tenant's context into the next request.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from uuid import UUID

import asyncpg

from shared.tenancy.models import TenantProfile

T = TypeVar("T")

# Errors after which the same idempotent write may safely be tried again on a fresh connection.
RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (
    # Postgres rolled the transaction back to break a deadlock (e.g. racing inserts of one booking's
    # unique key and exclusion constraint): the idempotent operation simply runs again.
    asyncpg.DeadlockDetectedError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.AdminShutdownError,
    ConnectionError,
    OSError,
)


class UnknownTenantError(LookupError):
    pass


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class TenantDatabase:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._schemas: dict[UUID, str] = {}  # tenant → schema name; immutable once created

    @classmethod
    async def connect(cls, app_dsn: str, *, min_size: int = 1, max_size: int = 10,
                      statement_cache_size: int = 100) -> TenantDatabase:
        """`statement_cache_size=0` behind RDS Proxy or PgBouncer, where prepared statements pin sessions."""
        pool = await asyncpg.create_pool(
            app_dsn, min_size=min_size, max_size=max_size, init=_init_connection,
            statement_cache_size=statement_cache_size,
            server_settings={"application_name": "voice-agent"},
        )
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def tenant_tx(self, tenant_id: UUID) -> AsyncIterator[asyncpg.Connection]:
        if not isinstance(tenant_id, UUID):  # never let a string reach app.tenant_id unparsed
            raise TypeError("tenant_id must be a UUID")
        schema = await self._schema_for(tenant_id)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT set_config('search_path', $1, true), set_config('app.tenant_id', $2, true)",
                quote_ident(schema), str(tenant_id),
            )
            yield conn

    async def with_retry(self, operation: Callable[[], Awaitable[T]], *, attempts: int = 3) -> T:
        """Run an idempotent operation again if its connection died mid-way (failover, killed backend)."""
        for attempt in range(1, attempts + 1):
            try:
                return await operation()
            except RETRYABLE_ERRORS:
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    async def _schema_for(self, tenant_id: UUID) -> str:
        schema = self._schemas.get(tenant_id)
        if schema is None:
            profile = await self.tenant_profile(tenant_id)
            if profile is None:
                raise UnknownTenantError(str(tenant_id))
            schema = profile.schema_name
        return schema

    # Registry reads go through SECURITY DEFINER functions: the app role has no grant on the tables.
    async def resolve_number(self, e164: str) -> TenantProfile | None:
        return self._remember(await self.pool.fetchval("SELECT public.resolve_phone_number($1)", e164))

    async def tenant_profile(self, tenant_id: UUID) -> TenantProfile | None:
        return self._remember(await self.pool.fetchval("SELECT public.tenant_profile_json($1)", tenant_id))

    async def tenant_vendor_ciphertexts(self, tenant_id: UUID) -> dict[str, str]:
        """The tenant's own vendor keys, still encrypted (shared/tenancy/vendor_secrets.py decrypts)."""
        value: dict[str, str] | None = await self.pool.fetchval(
            "SELECT public.tenant_vendor_ciphertexts($1)", tenant_id)
        return dict(value or {})

    async def tenant_for_api_key_hash(self, key_hash: str) -> UUID | None:
        value: UUID | None = await self.pool.fetchval("SELECT public.api_key_tenant($1)", key_hash)
        return value

    def _remember(self, data: dict[str, Any] | None) -> TenantProfile | None:
        if data is None:
            return None
        profile = TenantProfile.from_json(data)
        self._schemas[profile.tenant_id] = profile.schema_name
        return profile
