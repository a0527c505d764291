"""Redis as a cache that can fail: JSON values with a TTL, keys namespaced by tenant.

Every operation is guarded: when Redis is unreachable it returns the caller's default, logs once
(not per call), and skips Redis for `retry_after_s` so a dead host does not add a timeout to every
step of a live call. The first success afterwards logs the recovery; cache-aside readers then refill.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast
from uuid import UUID

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

log = logging.getLogger(__name__)
T = TypeVar("T")


class JsonCache:
    def __init__(self, redis_url: str, *, prefix: str = "va", default_ttl_s: int = 900,
                 retry_after_s: float = 1.0, socket_timeout_s: float = 0.25) -> None:
        self.prefix = prefix
        self.default_ttl_s = default_ttl_s
        self.retry_after_s = retry_after_s
        self._down = False
        self._skip_until = 0.0
        # No client-side retries: a failed call degrades at once instead of stalling the audio path.
        self.client: redis.Redis | None = redis.Redis.from_url(
            redis_url, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s,
            retry=Retry(NoBackoff(), 0), decode_responses=True,
        ) if redis_url else None

    @property
    def available(self) -> bool:
        return self.client is not None and not self._down

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def tenant_key(self, tenant_id: UUID, *parts: str) -> str:
        return self.key("t", str(tenant_id), *parts)

    async def run(self, operation: Callable[[redis.Redis], Awaitable[Any]], default: T) -> T:
        """Run one Redis operation; on any connection or server error return `default`."""
        if self.client is None or (self._down and time.monotonic() < self._skip_until):
            return default
        try:
            result = await operation(self.client)
        except (RedisError, OSError) as exc:
            if not self._down:
                log.warning("redis unavailable, falling back to Postgres: %s", type(exc).__name__)
            self._down = True
            self._skip_until = time.monotonic() + self.retry_after_s
            return default
        if self._down:
            log.info("redis is back")
            self._down = False
        return cast(T, result)  # redis-py's stubs say bytes | str; decode_responses makes it str

    async def get_json(self, key: str) -> Any | None:
        raw: str | None = await self.run(lambda r: r.get(key), "")
        return json.loads(raw) if raw else None

    async def set_json(self, key: str, value: Any, ttl_s: int | None = None) -> bool:
        payload = json.dumps(value, separators=(",", ":"))
        return bool(await self.run(lambda r: r.set(key, payload, ex=ttl_s or self.default_ttl_s), False))

    async def delete(self, *keys: str) -> bool:
        if not keys:
            return True
        return await self.run(lambda r: _deleted(r.delete(*keys)), False)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()


async def _deleted(pending: Awaitable[Any]) -> bool:
    await pending
    return True
