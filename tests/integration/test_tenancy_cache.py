"""Redis cache-aside: TTL, invalidation on change, and Redis going down mid-call (Postgres fallback, refill)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from shared.tenancy.cache import JsonCache
from shared.tenancy.call_state import CallStateStore
from shared.tenancy.calls import start_call
from shared.tenancy.database import TenantDatabase
from shared.tenancy.directory import TenantDirectory
from shared.tenancy.models import CallOutcome
from tests.conftest import unique_number
from tests.fakes.tcp_proxy import TcpProxy


async def test_number_lookup_is_cached_with_ttl(directory: TenantDirectory, cache: JsonCache, make_tenant) -> None:
    number = unique_number()
    tenant = await make_tenant(numbers=[number], greeting="Hello from A")
    key = cache.key("number", number)
    assert await cache.get_json(key) is None
    profile = await directory.resolve_number(number)
    assert profile == tenant and profile.settings.greeting == "Hello from A"
    assert cache.client is not None
    ttl = await cache.client.ttl(key)
    assert 0 < ttl <= cache.default_ttl_s
    assert await directory.resolve_number(number) == tenant  # served from Redis
    assert await directory.resolve_number("+15550000000") is None  # unknown number


async def test_expired_entry_is_refilled_from_postgres(directory: TenantDirectory, cache: JsonCache,
                                                       make_tenant) -> None:
    number = unique_number()
    tenant = await make_tenant(numbers=[number])
    await directory.resolve_number(number)
    assert cache.client is not None
    key = cache.key("number", number)
    await cache.client.pexpire(key, 1)  # expire now rather than waiting for it
    while await cache.client.exists(key):
        pass
    assert await directory.resolve_number(number) == tenant
    assert await cache.client.exists(key)  # refilled


async def test_settings_change_invalidates_cached_entries(directory: TenantDirectory, cache: JsonCache, admin,
                                                          make_tenant) -> None:
    number = unique_number()
    tenant = await make_tenant(numbers=[number], greeting="Old greeting")
    assert (await directory.resolve_number(number)).settings.greeting == "Old greeting"
    assert (await directory.tenant_profile(tenant.tenant_id)).settings.greeting == "Old greeting"
    await admin.set_settings(tenant.tenant_id, greeting="New greeting", timezone="Europe/Paris")
    by_number = await directory.resolve_number(number)
    assert by_number.settings.greeting == "New greeting" and by_number.settings.timezone == "Europe/Paris"
    assert (await directory.tenant_profile(tenant.tenant_id)).settings.greeting == "New greeting"


async def test_adding_a_number_is_visible_at_once(directory: TenantDirectory, admin, make_tenant) -> None:
    tenant = await make_tenant()
    number = unique_number()
    assert await directory.resolve_number(number) is None
    await admin.add_number(tenant.tenant_id, number)
    assert (await directory.resolve_number(number)).tenant_id == tenant.tenant_id


@pytest.fixture
async def proxied_cache(redis_url: str, redis_prefix: str) -> AsyncIterator[tuple[JsonCache, TcpProxy]]:
    parts = urlsplit(redis_url)
    if parts.scheme == "unix":
        proxy, db_path = TcpProxy(upstream_unix=parts.path), "/0"
    else:
        proxy, db_path = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379), parts.path
    await proxy.start()
    cache = JsonCache(f"redis://{proxy.url_host}{db_path}", prefix=f"{redis_prefix}:proxied", retry_after_s=0)
    yield cache, proxy
    await proxy.stop()
    await cache.close()


async def test_redis_down_mid_call_falls_back_to_postgres_and_refills(
        db: TenantDatabase, proxied_cache: tuple[JsonCache, TcpProxy], make_tenant,
        caplog: pytest.LogCaptureFixture) -> None:
    cache, proxy = proxied_cache
    directory, state = TenantDirectory(db, cache), CallStateStore(db, cache)
    number = unique_number()
    tenant = await make_tenant(numbers=[number], greeting="Hi")
    await directory.resolve_number(number)  # warm
    await start_call(db, tenant.tenant_id, "CA1", from_number="+15550009999", to_number=number)
    await state.append_history(tenant.tenant_id, "CA1", {"role": "user", "content": "hello"})
    assert await state.read_history(tenant.tenant_id, "CA1") == [{"role": "user", "content": "hello"}]

    await proxy.stop()  # Redis goes away mid-call
    assert await directory.resolve_number(number) == tenant  # from Postgres
    assert await state.record_outcome(tenant.tenant_id, "CA1", CallOutcome("transfer", "+15550001234"))
    assert await state.read_outcome(tenant.tenant_id, "CA1") == CallOutcome("transfer", "+15550001234")
    assert await state.append_history(tenant.tenant_id, "CA1", {"role": "assistant", "content": "hi"}) is False
    assert await state.read_history(tenant.tenant_id, "CA1") == []  # degraded, no exception
    assert not cache.available
    warnings = [r for r in caplog.records if "redis unavailable" in r.getMessage()]
    assert len(warnings) == 1  # logged once, not per call

    await proxy.start()  # Redis is back: the next reads refill it
    assert await directory.resolve_number(number) == tenant
    assert cache.available
    assert cache.client is not None and await cache.client.exists(cache.key("number", number))
    assert await state.read_outcome(tenant.tenant_id, "CA1") == CallOutcome("transfer", "+15550001234")


async def test_outcome_read_defaults_to_continue(db: TenantDatabase, cache: JsonCache, make_tenant) -> None:
    tenant = await make_tenant()
    state = CallStateStore(db, cache)
    assert await state.read_outcome(tenant.tenant_id, "CA-none") == CallOutcome()
    await start_call(db, tenant.tenant_id, "CA2", from_number="+1", to_number="+2")
    await state.record_outcome(tenant.tenant_id, "CA2", CallOutcome("hangup"))
    assert cache.client is not None
    await cache.client.delete(cache.tenant_key(tenant.tenant_id, "call", "CA2", "outcome"))  # evicted
    assert await state.read_outcome(tenant.tenant_id, "CA2") == CallOutcome("hangup")  # from the call row
    await state.replace_history(tenant.tenant_id, "CA2", [{"role": "assistant", "content": "cut"}])
    assert await state.read_history(tenant.tenant_id, "CA2") == [{"role": "assistant", "content": "cut"}]


async def test_cache_disabled_without_url(db: TenantDatabase, make_tenant) -> None:
    number = unique_number()
    tenant = await make_tenant(numbers=[number])
    directory = TenantDirectory(db, JsonCache(""))
    assert await directory.resolve_number(number) == tenant
