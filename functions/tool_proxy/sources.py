"""Where the proxy's toolboxes and tool secrets come from."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any
from uuid import UUID

from functions.tool_proxy.proxy import ToolboxSource
from shared.toolbox import Toolbox, ToolboxError, validate_toolbox

log = logging.getLogger(__name__)


class BundleToolSecrets:
    """`{{secret:NAME}}` values from the app secret's `TOOL_SECRETS` map, one namespace per tenant."""

    def __init__(self, load: Callable[[], Mapping[str, Mapping[str, str]]]) -> None:
        self._load = load  # re-read per call: Powertools caches it, and rotation shows up within max_age

    async def secrets_for(self, tenant_id: str, names: set[str]) -> dict[str, str]:
        mine = self._load().get(tenant_id, {})
        return {name: mine[name] for name in names if name in mine}


class MappingToolboxes:
    """Toolboxes held in memory, validated on the way in (local config, demos)."""

    def __init__(self, raw: Mapping[str, object]) -> None:
        self._toolboxes = {tenant: validate_toolbox(obj) for tenant, obj in raw.items()}

    async def toolbox_for(self, tenant_id: str) -> Toolbox | None:
        return self._toolboxes.get(tenant_id)


def parse_stored_toolbox(tenant_id: str, raw: object) -> Toolbox | None:
    """A toolbox read back from tenant settings; a broken one means no tools, not a failed call."""
    if raw in (None, {}, ""):
        return None
    try:
        return validate_toolbox(raw)
    except ToolboxError as exc:
        log.warning("stored toolbox is invalid", extra={"tenant_id": tenant_id, "reason": str(exc)})
        return None


class TenancyToolboxes:
    """Toolboxes from tenant settings through shared/tenancy (Redis first, then Postgres).

    Pools belong to an event loop; Mangum keeps one loop per thread, so one directory per thread.
    """

    def __init__(self, dsn: str, redis_url: str, cache_ttl_s: int = 900) -> None:
        self._dsn, self._redis_url, self._ttl = dsn, redis_url, cache_ttl_s
        self._local = threading.local()

    async def _directory(self) -> Any:
        loop = asyncio.get_running_loop()
        if getattr(self._local, "loop", None) is not loop:
            from shared.tenancy.cache import JsonCache
            from shared.tenancy.database import TenantDatabase
            from shared.tenancy.directory import TenantDirectory

            db = await TenantDatabase.connect(self._dsn, min_size=0, max_size=2)
            self._local.directory = TenantDirectory(db, JsonCache(self._redis_url, default_ttl_s=self._ttl))
            self._local.loop = loop
        return self._local.directory

    async def toolbox_for(self, tenant_id: str) -> Toolbox | None:
        try:
            tenant = UUID(tenant_id)
        except ValueError:
            return None
        profile = await (await self._directory()).tenant_profile(tenant)
        return parse_stored_toolbox(tenant_id, profile.settings.toolbox) if profile else None


def default_toolbox_source() -> ToolboxSource:
    from shared.app_secrets import with_data_secrets
    from shared.settings import get_settings

    settings = with_data_secrets(get_settings())  # in AWS: credentials from their secrets
    return TenancyToolboxes(settings.database_dsn(), settings.redis_url, settings.cache_ttl_s)
