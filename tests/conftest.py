"""Shared fixtures for tests that need real Postgres and Redis.

Servers: AURORA_DSN / REDIS_URL when set, else the machine's 127.0.0.1:5432 / :6379 when reachable,
else embedded servers in .data/ (shared/tenancy/embedded.py). Each run gets its own freshly migrated
database (dropped at the end) and its own Redis key prefix (deleted at the end). Nothing here starts
unless a test asks for it, so unit tests stay server-free.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence

import pytest
import redis

from shared.settings import Settings
from shared.tenancy.admin import TenantAdmin
from shared.tenancy.cache import JsonCache
from shared.tenancy.database import TenantDatabase
from shared.tenancy.directory import TenantDirectory
from shared.tenancy.embedded import (
    app_dsn,
    create_scratch_database,
    drop_database,
    resolve_database_dsn,
    resolve_redis_url,
)
from shared.tenancy.models import TenantProfile
from tests.fakes.deepgram_server import FakeDeepgram
from tests.fakes.elevenlabs_server import FakeElevenLabs
from tests.fakes.openai_server import FakeOpenAI

_counter = itertools.count()


@pytest.fixture(scope="session")
def postgres_server_dsn() -> str:
    return resolve_database_dsn(Settings(), allow_local=True)


@pytest.fixture(scope="session")
def admin_dsn(postgres_server_dsn: str) -> Iterator[str]:
    """Admin (migrator) DSN of this run's own database."""
    dsn = asyncio.run(create_scratch_database(postgres_server_dsn, prefix="va_test"))
    yield dsn
    asyncio.run(drop_database(postgres_server_dsn, dsn))


@pytest.fixture(scope="session")
def redis_url() -> str:
    return resolve_redis_url(Settings(), allow_local=True)


@pytest.fixture(scope="session")
def redis_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"vatest{secrets.token_hex(4)}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
async def db(admin_dsn: str) -> AsyncIterator[TenantDatabase]:
    database = await TenantDatabase.connect(app_dsn(admin_dsn), min_size=1, max_size=4)
    yield database
    await database.close()


@pytest.fixture
async def cache(redis_url: str, redis_prefix: str) -> AsyncIterator[JsonCache]:
    # A prefix per test keeps tests independent; retry_after_s=0 so a recovered Redis is used at once.
    json_cache = JsonCache(redis_url, prefix=f"{redis_prefix}:{next(_counter)}", retry_after_s=0)
    yield json_cache
    await json_cache.close()


@pytest.fixture
def directory(db: TenantDatabase, cache: JsonCache) -> TenantDirectory:
    return TenantDirectory(db, cache)


@pytest.fixture
async def admin(admin_dsn: str, directory: TenantDirectory) -> AsyncIterator[TenantAdmin]:
    async with TenantAdmin.connect(admin_dsn, directory) as tenant_admin:
        yield tenant_admin


MakeTenant = Callable[..., Awaitable[TenantProfile]]


@pytest.fixture
def make_tenant(admin: TenantAdmin, db: TenantDatabase) -> MakeTenant:
    """`await make_tenant(numbers=["+15550001111"], greeting="Hi")` → a new tenant's profile."""
    async def create(name: str = "t", numbers: Sequence[str] = (), **settings: object) -> TenantProfile:
        slug = f"{name}_{secrets.token_hex(4)}"
        tenant_id = await admin.create_tenant(slug, f"Tenant {slug}")
        for number in numbers:
            await admin.add_number(tenant_id, number)
        if settings:
            await admin.set_settings(tenant_id, **settings)
        profile = await db.tenant_profile(tenant_id)
        assert profile is not None
        return profile
    return create


def unique_number() -> str:
    """A valid, unused-per-run E.164 number."""
    return "+1555" + str(secrets.randbelow(10**7)).zfill(7)


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeDeepgram, FakeElevenLabs, FakeOpenAI]]:
    dg, el, oa = FakeDeepgram(), FakeElevenLabs(), FakeOpenAI()
    for fake in (dg, el, oa):
        await fake.start()
    yield dg, el, oa
    for fake in (dg, el, oa):
        await fake.stop()
