"""Data-layer benchmark: number → tenant lookup (warm cache, cold cache) and booking writes, p50/p95.

Runs against the tests' servers (configured URLs, else the local 127.0.0.1 ones, else embedded) in a
scratch database that is dropped afterwards. Targets on this machine: warm p95 ≤ 2 ms, cold p95 ≤ 10 ms.

Run: .venv/bin/python -m bench.data_bench [--iterations 500]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.settings import Settings
from shared.tenancy.admin import TenantAdmin
from shared.tenancy.bookings import create_booking
from shared.tenancy.cache import JsonCache
from shared.tenancy.database import TenantDatabase
from shared.tenancy.directory import TenantDirectory
from shared.tenancy.embedded import app_dsn, resolve_database_dsn, resolve_redis_url, scratch_database

TARGETS_MS = {"lookup_warm": 2.0, "lookup_cold": 10.0}


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {"p50": statistics.median(ordered), "p95": ordered[max(0, int(len(ordered) * 0.95) - 1)],
            "n": float(len(ordered))}


async def timed(iterations: int, step: Callable[[int], Awaitable[Any]],
                before: Callable[[int], Awaitable[Any]] | None = None) -> list[float]:
    samples = []
    for i in range(iterations):
        if before is not None:
            await before(i)
        start = time.perf_counter()
        await step(i)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


async def run(iterations: int) -> dict[str, dict[str, float]]:
    settings = Settings()
    server_dsn = resolve_database_dsn(settings, allow_local=True)
    redis_url = resolve_redis_url(settings, allow_local=True)
    async with scratch_database(server_dsn, prefix="va_bench") as admin_dsn:
        db = await TenantDatabase.connect(app_dsn(admin_dsn), min_size=2, max_size=4)
        cache = JsonCache(redis_url, prefix=f"vabench{secrets.token_hex(3)}")
        directory = TenantDirectory(db, cache)
        try:
            number = "+15550123456"
            async with TenantAdmin.connect(admin_dsn, directory) as admin:
                tenant_id = await admin.create_tenant("bench", "Bench")
                await admin.add_number(tenant_id, number)
                await admin.set_settings(tenant_id, greeting="Hello", business_hours={})
            for _ in range(20):  # warm up the pool's prepared statements and the Redis connection
                await directory.resolve_number(number)
            warm = await timed(iterations, lambda _: directory.resolve_number(number))
            cold = await timed(iterations, lambda _: directory.resolve_number(number),
                               before=lambda _: directory.invalidate_number(number))
            start = datetime(2031, 1, 6, tzinfo=UTC)
            writes = await timed(iterations, lambda i: create_booking(
                db, tenant_id, starts_at=start + timedelta(minutes=30 * i),
                ends_at=start + timedelta(minutes=30 * i + 30), customer_name="bench", now=start))
            if cache.client is not None:
                keys = [k async for k in cache.client.scan_iter(match=f"{cache.prefix}:*")]
                if keys:
                    await cache.client.delete(*keys)
        finally:
            await cache.close()
            await db.close()
    return {"lookup_warm": percentiles(warm), "lookup_cold": percentiles(cold), "booking_write": percentiles(writes)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=500)
    args = parser.parse_args(argv)
    results = asyncio.run(run(args.iterations))
    print(f"{'data layer':<16}{'p50 ms':>10}{'p95 ms':>10}{'target p95':>12}")
    for name, figures in results.items():
        target = TARGETS_MS.get(name)
        verdict = "" if target is None else (f"≤ {target:g}" + (" ok" if figures["p95"] <= target else " MISSED"))
        print(f"{name:<16}{figures['p50']:>10.3f}{figures['p95']:>10.3f}{verdict:>12}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
