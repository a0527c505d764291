"""Tenant administration (the CLI, provisioning scripts): runs on the migrator's connection as
`voice_owner`, never on the app pool, which has no write access to the registry at all.
Changes that alter what a call sees invalidate the cache after the transaction commits."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg

from shared.tenancy.directory import TenantDirectory
from shared.tenancy.models import JSON_SETTINGS_FIELDS, SETTINGS_FIELDS, TenantProfile
from shared.tenancy.vendor_secrets import VENDOR_NAMES

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
SLUG = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
API_KEY_PREFIX = "va_"


class AdminError(ValueError):
    pass


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def schema_for_slug(slug: str) -> str:
    return f"tenant_{slug}"


class TenantAdmin:
    def __init__(self, conn: asyncpg.Connection, directory: TenantDirectory | None = None) -> None:
        self.conn = conn
        self.directory = directory

    @classmethod
    @asynccontextmanager
    async def connect(cls, admin_dsn: str, directory: TenantDirectory | None = None
                      ) -> AsyncIterator[TenantAdmin]:
        conn: asyncpg.Connection = await asyncpg.connect(admin_dsn)
        try:
            await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
            yield cls(conn, directory)
        finally:
            await conn.close()

    @asynccontextmanager
    async def _owner_tx(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.conn.transaction():
            await self.conn.execute("SET LOCAL ROLE voice_owner")
            yield self.conn

    async def create_tenant(self, slug: str, name: str) -> UUID:
        """Registry row, default settings and the tenant's own schema, all in one transaction."""
        if not SLUG.match(slug):
            raise AdminError("slug: lowercase letters, digits and _, starting with a letter, 2-40 chars")
        async with self._owner_tx() as conn:
            try:
                tenant_id: UUID = await conn.fetchval(
                    "INSERT INTO public.tenants (slug, name, schema_name) VALUES ($1, $2, $3) RETURNING id",
                    slug, name, schema_for_slug(slug))
            except asyncpg.UniqueViolationError:
                raise AdminError(f"tenant {slug!r} already exists") from None
            await conn.execute("INSERT INTO public.tenant_settings (tenant_id) VALUES ($1)", tenant_id)
            await conn.execute("SELECT public.provision_tenant_schema($1)", tenant_id)
        return tenant_id

    async def list_tenants(self) -> list[dict[str, Any]]:
        async with self._owner_tx() as conn:
            rows = await conn.fetch(
                """SELECT t.id, t.slug, t.name, t.active,
                          coalesce(array_agg(n.e164 ORDER BY n.e164) FILTER (WHERE n.e164 IS NOT NULL), '{}')
                            AS numbers
                   FROM public.tenants t LEFT JOIN public.phone_numbers n ON n.tenant_id = t.id
                   GROUP BY t.id ORDER BY t.slug""")
        return [dict(r) for r in rows]

    async def tenant_id(self, slug_or_id: str) -> UUID:
        """Accept a slug or a UUID, as the CLI does."""
        async with self._owner_tx() as conn:
            found: UUID | None = await conn.fetchval(
                "SELECT id FROM public.tenants WHERE slug = $1 OR id::text = $1", slug_or_id)
        if found is None:
            raise AdminError(f"no tenant {slug_or_id!r}")
        return found

    async def add_number(self, tenant_id: UUID, e164: str) -> None:
        if not E164.match(e164):
            raise AdminError(f"{e164!r} is not an E.164 number (+ and 7-15 digits)")
        async with self._owner_tx() as conn:
            try:
                await conn.execute("INSERT INTO public.phone_numbers (e164, tenant_id) VALUES ($1, $2)",
                                   e164, tenant_id)
            except asyncpg.UniqueViolationError:
                raise AdminError(f"{e164} already belongs to a tenant") from None
        if self.directory:
            await self.directory.invalidate_number(e164)

    async def set_settings(self, tenant_id: UUID, **changes: Any) -> TenantProfile | None:
        unknown = set(changes) - set(SETTINGS_FIELDS)
        if unknown:
            raise AdminError(f"unknown settings: {sorted(unknown)}; known: {list(SETTINGS_FIELDS)}")
        _validate_settings(changes)
        if changes:
            columns = list(changes)  # names checked against SETTINGS_FIELDS above: safe to interpolate
            assignments = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(columns))
            async with self._owner_tx() as conn:
                updated = await conn.execute(
                    f"UPDATE public.tenant_settings SET {assignments}, updated_at = now() WHERE tenant_id = $1",
                    tenant_id, *changes.values())
                if updated != "UPDATE 1":
                    raise AdminError(f"no tenant {tenant_id}")
                numbers = [r["e164"] for r in await conn.fetch(
                    "SELECT e164 FROM public.phone_numbers WHERE tenant_id = $1", tenant_id)]
            if self.directory:
                await self.directory.invalidate_tenant(tenant_id, numbers)
        profile = await self.conn.fetchval("SELECT public.tenant_profile_json($1)", tenant_id)
        return TenantProfile.from_json(profile) if profile else None

    async def set_vendor_key(self, tenant_id: UUID, vendor: str, ciphertext: str | None) -> None:
        """Store (or, with None, remove) a tenant's own key for one vendor, already encrypted
        (shared/tenancy/vendor_secrets.py); the next call uses it: the cached copy is dropped."""
        if vendor not in VENDOR_NAMES:
            raise AdminError(f"vendor must be one of {', '.join(VENDOR_NAMES)}")
        async with self._owner_tx() as conn:
            if ciphertext is None:
                await conn.execute("DELETE FROM public.tenant_vendor_secrets WHERE tenant_id = $1 AND vendor = $2",
                                   tenant_id, vendor)
            else:
                updated = await conn.execute(
                    """INSERT INTO public.tenant_vendor_secrets (tenant_id, vendor, ciphertext)
                       SELECT id, $2, $3 FROM public.tenants WHERE id = $1
                       ON CONFLICT (tenant_id, vendor) DO UPDATE SET ciphertext = EXCLUDED.ciphertext,
                                                                    updated_at = now()""",
                    tenant_id, vendor, ciphertext)
                if updated == "INSERT 0 0":
                    raise AdminError(f"no tenant {tenant_id}")
            numbers = [r["e164"] for r in await conn.fetch(
                "SELECT e164 FROM public.phone_numbers WHERE tenant_id = $1", tenant_id)]
        if self.directory:
            await self.directory.invalidate_tenant(tenant_id, numbers)

    async def vendor_keys_set(self, tenant_id: UUID) -> list[dict[str, Any]]:
        """Which vendors have a key and since when: never the key."""
        rows = await self.conn.fetch(
            "SELECT vendor, updated_at FROM public.tenant_vendor_secrets WHERE tenant_id = $1 ORDER BY vendor",
            tenant_id)
        return [{"vendor": r["vendor"], "updated_at": r["updated_at"].isoformat()} for r in rows]

    async def create_api_key(self, tenant_id: UUID, label: str = "") -> str:
        """Returns the key itself, once; only its hash is stored."""
        key = API_KEY_PREFIX + secrets.token_urlsafe(32)
        async with self._owner_tx() as conn:
            await conn.execute(
                "INSERT INTO public.tenant_api_keys (tenant_id, key_prefix, key_hash, label) VALUES ($1, $2, $3, $4)",
                tenant_id, key[:10], hash_api_key(key), label)
        return key


INT_SETTINGS_FIELDS = frozenset({"appointment_minutes", "overflow_hold_s", "deepgram_max_streams",
                                 "elevenlabs_max_concurrent_requests", "openai_max_requests_per_minute"})


def _validate_settings(changes: dict[str, Any]) -> None:
    for name in INT_SETTINGS_FIELDS & set(changes):
        if isinstance(changes[name], str):  # from the CLI's name=value
            try:
                changes[name] = int(changes[name])
            except ValueError:
                raise AdminError(f"{name} must be a whole number") from None
    policy = changes.get("overflow_policy")
    if policy is not None and policy not in ("hold", "offline", "forward", "busy"):
        raise AdminError("overflow_policy must be one of hold, offline, forward, busy")
    for name in JSON_SETTINGS_FIELDS & set(changes):
        expected = list if name in ("toolbox", "services") else dict
        if not isinstance(changes[name], expected):
            raise AdminError(f"{name} must be a JSON {expected.__name__}")
    if "timezone" in changes:
        try:
            ZoneInfo(changes["timezone"])
        except (KeyError, ValueError):
            raise AdminError(f"unknown timezone {changes['timezone']!r}") from None
    number = changes.get("fallback_transfer_number")
    if number is not None and not E164.match(number):
        raise AdminError("fallback_transfer_number must be E.164")
