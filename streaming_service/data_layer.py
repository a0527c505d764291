"""The streaming service's view of the tenant data: one pool, one cache, and what calls write."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from aiohttp import web

from shared.settings import Settings
from shared.tenancy.cache import JsonCache
from shared.tenancy.call_state import CallStateStore
from shared.tenancy.database import TenantDatabase
from shared.tenancy.directory import TenantDirectory
from shared.tenancy.http_api import build_tenant_api
from shared.tenancy.transcript_buffer import TranscriptRecorder
from streaming_service.fleet_capacity import ServiceCapacity
from streaming_service.service_state import TenantSettingsLookup
from streaming_service.stream_guard import StreamClaims
from streaming_service.tenancy_recorder import TenancyCallRecorder, tenant_settings_lookup

TRANSCRIPT_FLUSH_INTERVAL_S = 30.0


@dataclass
class ServiceData:
    db: TenantDatabase
    cache: JsonCache
    directory: TenantDirectory
    recorder: TenancyCallRecorder
    _flusher: asyncio.Task[None] | None = field(default=None, repr=False)

    @classmethod
    async def connect(cls, app_dsn: str, redis_url: str, cache_ttl_s: int) -> ServiceData:
        # min_size=0: the service starts (and serves calls on defaults) even while Postgres is down.
        db = await TenantDatabase.connect(app_dsn, min_size=0, max_size=10)
        cache = JsonCache(redis_url, default_ttl_s=cache_ttl_s)
        transcripts = TranscriptRecorder(db, cache)
        data = cls(db, cache, TenantDirectory(db, cache),
                   TenancyCallRecorder(db, CallStateStore(db, cache), transcripts))
        # Turns that could not be written at a call's end (Postgres away) are retried from here.
        data._flusher = asyncio.create_task(transcripts.run_periodic_flush(TRANSCRIPT_FLUSH_INTERVAL_S))
        return data

    def tenant_settings(self) -> TenantSettingsLookup:
        return tenant_settings_lookup(self.directory)

    def stream_claims(self) -> StreamClaims:
        """Which calls' streams have started, in the Redis every task of the service shares."""
        return StreamClaims(self.cache)

    def capacity(self, settings: Settings) -> ServiceCapacity:
        """Vendor budgets and the fleet's heartbeats, in the Redis every task and the webhook share."""
        return ServiceCapacity(settings, self.cache, self.directory)

    def mount_tenant_api(self, app: web.Application) -> None:
        app.add_subapp("/api", build_tenant_api(self.db))

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._flusher
        await self.cache.close()
        await self.db.close()
