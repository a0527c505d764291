"""Vendor capacity and fleet room, shared by every task and the webhook through Redis.

- A vendor account (the platform's key, or a tenant's own) has a budget: concurrent STT streams,
  concurrent TTS requests, LLM requests per minute. Concurrent budgets are leases in a sorted set per
  account (`member = lease id`, `score = expiry` on Redis's own clock): a lease is taken atomically
  (Lua) only while fewer than the budget are live, renewed while it is used, released when done, and a
  crashed task's leases lapse by themselves at their expiry.
- When a vendor answers "too many concurrent requests" while we thought we had room, the account's
  budget is lowered to what we hold for a short while (a learned ceiling): the 429 feeds the budget.
- Each streaming task heartbeats its live calls and cap; the webhook asks whether any task has room.

Every read and write goes through `JsonCache.run`, so a Redis outage degrades instead of raising. The
policy when Redis is away is the caller's: admission fails open (see `CapacityLedger.acquire`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from shared.tenancy.cache import JsonCache

Vendor = Literal["deepgram", "elevenlabs", "openai"]
Resource = Literal["streams", "requests", "rpm"]

# KEYS: leases, ceiling. ARGV: lease id, budget, ttl ms. Returns [granted (1/0), in use after].
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ttl * 2)
  return {1, redis.call('ZCARD', KEYS[1])}
end
local budget = tonumber(ARGV[2])
local ceiling = redis.call('GET', KEYS[2])
if ceiling and tonumber(ceiling) < budget then budget = tonumber(ceiling) end
local used = redis.call('ZCARD', KEYS[1])
if budget > 0 and used >= budget then return {0, used} end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return {1, used + 1}
"""

# KEYS: leases. Live leases now (expired ones dropped first).
_IN_USE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""

# KEYS: per-minute counter. ARGV: budget. Returns [granted, count].
_RATE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local budget = tonumber(ARGV[1])
if budget > 0 and used >= budget then return {0, used} end
used = redis.call('INCR', KEYS[1])
if used == 1 then redis.call('EXPIRE', KEYS[1], 60) end
return {1, used}
"""

# KEYS: fleet zset, fleet hash. ARGV: task id, live, cap, ttl ms.
_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. '/' .. ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]) * 4)
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[4]) * 4)
return 1
"""

# KEYS: fleet zset, fleet hash. Returns [live tasks, tasks with room].
_ROOM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, id in ipairs(gone) do redis.call('HDEL', KEYS[2], id) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local live = redis.call('ZRANGE', KEYS[1], 0, -1)
local room = 0
for _, id in ipairs(live) do
  local v = redis.call('HGET', KEYS[2], id)
  if v then
    local slash = string.find(v, '/')
    local calls = tonumber(string.sub(v, 1, slash - 1))
    local cap = tonumber(string.sub(v, slash + 1))
    if cap == 0 or calls < cap then room = room + 1 end
  end
end
return {#live, room}
"""


@dataclass(frozen=True)
class VendorAccount:
    """One vendor account and its budget. `account` is "platform" or the tenant id of a tenant's own key.
    `budget` 0 means no limit we know of."""

    vendor: Vendor
    account: str
    resource: Resource
    budget: int

    @property
    def label(self) -> str:
        return f"{self.vendor}:{self.account}"


@dataclass(frozen=True)
class Grant:
    granted: bool
    in_use: int
    shared: bool = True  # False: Redis was unreachable and the grant was given without counting


@dataclass(frozen=True)
class FleetRoom:
    tasks: int  # tasks that heartbeated within their TTL
    with_room: int

    @property
    def known(self) -> bool:
        return self.tasks > 0

    @property
    def full(self) -> bool:
        return self.known and self.with_room == 0


class CapacityLedger:
    def __init__(self, cache: JsonCache, lease_ttl_s: float = 60.0, ceiling_ttl_s: float = 20.0) -> None:
        self.cache = cache
        self.lease_ttl_s = lease_ttl_s
        self.ceiling_ttl_s = ceiling_ttl_s

    def _key(self, account: VendorAccount, *parts: str) -> str:
        return self.cache.key("cap", account.vendor, account.account, account.resource, *parts)

    async def acquire(self, account: VendorAccount, lease_id: str, ttl_s: float | None = None) -> Grant:
        """Take (or renew) one slot. With Redis unreachable the slot is granted unshared: failing open,
        because the alternative refuses every caller while the cache blinks; the vendor's own 429 remains
        the backstop, and it is handled as a capacity signal, never as a dead call."""
        if account.resource == "rpm":
            return await self.count_request(account)
        ttl_ms = int((ttl_s or self.lease_ttl_s) * 1000)
        result: list[int] | None = await self.cache.run(
            lambda r: r.eval(_ACQUIRE, 2, self._key(account), self._key(account, "ceiling"), lease_id,
                             account.budget, ttl_ms), None)
        if result is None:
            return Grant(True, 0, shared=False)
        return Grant(bool(int(result[0])), int(result[1]))

    async def release(self, account: VendorAccount, lease_id: str) -> None:
        if account.resource != "rpm":
            await self.cache.run(lambda r: r.zrem(self._key(account), lease_id), 0)

    async def in_use(self, account: VendorAccount) -> int | None:
        if account.resource == "rpm":
            raw: str | None = await self.cache.run(lambda r: r.get(self._key(account)), None)
            return int(raw or 0)
        used: int | None = await self.cache.run(lambda r: r.eval(_IN_USE, 1, self._key(account)), None)
        return None if used is None else int(used)

    async def has_room(self, account: VendorAccount) -> bool | None:
        """Whether one more slot would be granted now (None: Redis away)."""
        used = await self.in_use(account)
        if used is None:
            return None
        if account.budget <= 0:
            return True
        budget = account.budget
        ceiling: str | None = await self.cache.run(lambda r: r.get(self._key(account, "ceiling")), None)
        if ceiling is not None:
            budget = min(budget, int(ceiling))
        return used < budget

    async def vendor_refused(self, account: VendorAccount, holding: int) -> None:
        """The vendor said 429 while we held `holding` slots of this account (not counting the refused
        request): that is the account's real ceiling for now, whatever the configured budget says."""
        ttl = max(1, int(self.ceiling_ttl_s))
        await self.cache.run(lambda r: r.set(self._key(account, "ceiling"), max(0, holding), ex=ttl), None)

    async def count_request(self, account: VendorAccount) -> Grant:
        """One request in this minute's window (a fixed window per account)."""
        result: list[int] | None = await self.cache.run(
            lambda r: r.eval(_RATE, 1, self._key(account), account.budget), None)
        if result is None:
            return Grant(True, 0, shared=False)
        return Grant(bool(int(result[0])), int(result[1]))


class FleetRegistry:
    """Live calls and cap of every streaming task, as each task last reported them."""

    def __init__(self, cache: JsonCache) -> None:
        self.cache = cache

    def _keys(self) -> tuple[str, str]:
        return self.cache.key("fleet", "tasks"), self.cache.key("fleet", "calls")

    async def heartbeat(self, task_id: str, live_calls: int, cap: int, ttl_s: float) -> bool:
        tasks, calls = self._keys()
        done: Any = await self.cache.run(
            lambda r: r.eval(_HEARTBEAT, 2, tasks, calls, task_id, live_calls, cap, int(ttl_s * 1000)), None)
        return done is not None

    async def leave(self, task_id: str) -> None:
        tasks, calls = self._keys()
        await self.cache.run(lambda r: r.zrem(tasks, task_id), 0)
        await self.cache.run(lambda r: r.hdel(calls, task_id), 0)

    async def room(self) -> FleetRoom | None:
        tasks, calls = self._keys()
        result: list[int] | None = await self.cache.run(lambda r: r.eval(_ROOM, 2, tasks, calls), None)
        if result is None:
            return None
        return FleetRoom(int(result[0]), int(result[1]))


def tenant_accounts(tenant_id: str, settings: Any, own_vendors: frozenset[str], options: Any
                    ) -> dict[Vendor, VendorAccount]:
    """The accounts one tenant's calls use: its own (with its plan's budgets) where it brought a key,
    the platform's otherwise. `settings` is a TenantSettings, `options` the CapacityOptions."""
    def pick(vendor: Vendor, resource: Resource, own_budget: int | None, platform_budget: int) -> VendorAccount:
        if vendor in own_vendors:
            return VendorAccount(vendor, tenant_id, resource, own_budget if own_budget is not None else platform_budget)
        return VendorAccount(vendor, "platform", resource, platform_budget)

    return {"deepgram": pick("deepgram", "streams", settings.deepgram_max_streams, options.deepgram_max_streams),
            "elevenlabs": pick("elevenlabs", "requests", settings.elevenlabs_max_concurrent_requests,
                               options.elevenlabs_max_concurrent_requests),
            "openai": pick("openai", "rpm", settings.openai_max_requests_per_minute,
                           options.openai_max_requests_per_minute)}
