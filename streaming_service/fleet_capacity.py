"""This task's part in vendor capacity and fleet room (shared/capacity.py).

- Heartbeat: every `fleet_heartbeat_interval_s` the task writes its live calls and cap to Redis (a task
  that stops heartbeating drops out after `fleet_heartbeat_ttl_s`); a draining task reports itself full.
  The webhook admits a call only when some task has room.
- Lease gauges: with each heartbeat, the slots in use of the vendor accounts this task's calls use, as
  EMF (VendorLeasesInUse, VendorLeaseUsePercent), for the dashboard and the near-budget alarm.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable
from typing import Any
from uuid import UUID

from shared.capacity import CapacityLedger, FleetRegistry, Vendor, VendorAccount, tenant_accounts
from shared.settings import Settings
from shared.tenancy.cache import JsonCache
from shared.tenancy.directory import TenantDirectory
from shared.tenancy.models import TenantSettings
from streaming_service.telemetry.service_metrics import ServiceMetrics

log = logging.getLogger("voice_agent.capacity")


class ServiceCapacity:
    def __init__(self, settings: Settings, cache: JsonCache, directory: TenantDirectory | None = None,
                 task_id: str | None = None) -> None:
        self.options = settings.capacity
        self.ledger = CapacityLedger(cache, self.options.lease_ttl_s, self.options.vendor_ceiling_ttl_s)
        self.fleet = FleetRegistry(cache)
        self.directory = directory
        self.task_id = task_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.accounts_seen: dict[str, VendorAccount] = {}

    async def accounts(self, tenant_id: str, tenant_settings: dict[str, Any],
                       own: frozenset[str] | None = None) -> dict[Vendor, VendorAccount]:
        """`own`: the vendors the call uses the tenant's own key for (None: ask the directory)."""
        if own is None and self.directory is not None:
            try:
                own = await self.directory.own_vendors(UUID(tenant_id))
            except Exception as exc:  # a tenant we cannot read: the platform's accounts
                log.warning("own vendor accounts unknown", extra={"error": type(exc).__name__})
        accounts = tenant_accounts(tenant_id, TenantSettings.from_json(tenant_settings), own or frozenset(),
                                   self.options)
        for account in accounts.values():
            self.accounts_seen[f"{account.label}:{account.resource}"] = account
        return accounts

    async def beat(self, live_calls: int, cap: int, draining: bool, metrics: ServiceMetrics | None) -> None:
        # Draining: full, whatever the cap says, so no new call is sent this way.
        await self.fleet.heartbeat(self.task_id, live_calls, max(1, live_calls) if draining else cap,
                                   self.options.fleet_heartbeat_ttl_s)
        if metrics is None:
            return
        for account in list(self.accounts_seen.values()):
            in_use = await self.ledger.in_use(account)
            if in_use is not None and account.resource != "rpm":
                metrics.vendor_leases(account.vendor, account.account, in_use, account.budget)

    async def run(self, live_calls: Callable[[], int], cap: int, draining: Callable[[], bool],
                  metrics: ServiceMetrics | None) -> None:
        while True:
            try:
                await self.beat(live_calls(), cap, draining(), metrics)
            except Exception as exc:  # never let a heartbeat failure end the loop
                log.warning("fleet heartbeat failed", extra={"error": type(exc).__name__})
            await asyncio.sleep(self.options.fleet_heartbeat_interval_s)

    async def leave(self) -> None:
        with contextlib.suppress(Exception):
            await self.fleet.leave(self.task_id)
