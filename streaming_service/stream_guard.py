"""Who may open a Media Stream, before any call exists: one stream per call, ever, and a bounded number
of sockets per address waiting for their `start`.

- `StreamClaims`: the first `start` of a call claims it, in Redis (`SET NX` with the token's remaining
  life as expiry) so every task sees it, and in this process. A later `start` for the same call (a replayed
  token, after or during the call) is refused.
- `PendingSockets`: sockets upgraded but not yet started, counted per remote address and capped.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web

from shared.tenancy.cache import JsonCache
from streaming_service.operator_access import is_direct_local

log = logging.getLogger("voice_agent.stream")


class StreamClaims:
    """Calls whose stream has started, until their token would have expired anyway."""

    def __init__(self, cache: JsonCache | None = None) -> None:
        self._cache = cache
        self._local: dict[str, float] = {}  # call SID → wall-clock expiry

    def _key(self, call_sid: str) -> str:
        assert self._cache is not None
        return self._cache.key("stream", "started", call_sid)

    async def claim(self, call_sid: str, expires_at: float, owner: str) -> bool:
        """True for the first claim of this call; False when a stream for it already started (anywhere)."""
        now = time.time()
        self._local = {sid: until for sid, until in self._local.items() if until > now}
        if call_sid in self._local:
            return False
        ttl_s = max(1, int(expires_at - now) + 1)
        self._local[call_sid] = now + ttl_s
        if self._cache is None:
            return True
        # Redis away: fail open, deliberately. The claim still holds in this process, but another task would
        # accept a replay for the outage's length. The other way round, every caller would be refused while
        # the cache blinked: a refused `start` is a dead call. A replay let through is a session on a token
        # that was valid minutes ago, and it cannot touch the call's record: the recorder refuses a session
        # for a call that already ended (streaming_service/tenancy_recorder.py, in Postgres).
        claimed: bool | None = await self._cache.run(
            lambda r: _set_nx(r, self._key(call_sid), owner, ttl_s), None)
        if claimed is None:
            log.warning("stream claim not shared: redis unavailable", extra={"call_sid": call_sid})
            return True
        return claimed


async def _set_nx(r: Any, key: str, value: str, ttl_s: int) -> bool:
    return bool(await r.set(key, value, nx=True, ex=ttl_s))


def client_address(request: web.Request) -> str | None:
    """The caller's address: the peer, or when the peer is a proxy on a private or loopback address (the
    ALB in the VPC, a local tunnel), the last X-Forwarded-For hop, the one that proxy appended. None for a
    process on this machine talking to us directly (the simulator, the benchmarks): it is not capped."""
    if is_direct_local(request):
        return None
    peer = request.remote or ""
    try:
        trusted_proxy = ipaddress.ip_address(peer).is_private
    except ValueError:
        trusted_proxy = False
    forwarded = request.headers.get("X-Forwarded-For", "")
    if trusted_proxy and forwarded:
        return forwarded.rsplit(",", 1)[-1].strip()[:64] or peer
    return peer


class PendingSockets:
    """Sockets that have not sent `start` yet, per address."""

    def __init__(self, max_per_address: int) -> None:
        self.max_per_address = max_per_address
        self._counts: dict[str, int] = {}

    def full(self, address: str | None) -> bool:
        return address is not None and 0 < self.max_per_address <= self._counts.get(address, 0)

    def waiting(self, address: str) -> int:
        return self._counts.get(address, 0)

    @contextmanager
    def holding(self, address: str | None) -> Iterator[None]:
        if address is None:
            yield
            return
        self._counts[address] = self._counts.get(address, 0) + 1
        try:
            yield
        finally:
            left = self._counts[address] - 1
            if left:
                self._counts[address] = left
            else:
                del self._counts[address]


CLAIMS: web.AppKey[StreamClaims] = web.AppKey("stream_claims", StreamClaims)
PENDING: web.AppKey[PendingSockets] = web.AppKey("pending_sockets", PendingSockets)
