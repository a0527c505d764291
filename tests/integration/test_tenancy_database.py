"""TenantDatabase beyond isolation: the retry of idempotent writes, and one tenant's vendor ciphertexts."""

from __future__ import annotations

import asyncpg
import pytest

from shared.tenancy.database import TenantDatabase
from tests.conftest import MakeTenant


class Flaky:
    """An operation whose connection dies `failures` times, then succeeds; counts its attempts."""

    def __init__(self, failures: int, error: BaseException | None = None) -> None:
        self.failures = failures
        self.error = error or ConnectionResetError("connection reset by peer")
        self.attempts = 0

    async def __call__(self) -> str:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise self.error
        return "written"


async def test_a_write_is_tried_three_times_in_all(db: TenantDatabase) -> None:
    twice = Flaky(failures=2)
    assert await db.with_retry(twice) == "written" and twice.attempts == 3
    always = Flaky(failures=99)
    with pytest.raises(ConnectionResetError):
        await db.with_retry(always)
    assert always.attempts == 3
    first_time = Flaky(failures=0)
    assert await db.with_retry(first_time) == "written" and first_time.attempts == 1


async def test_attempts_can_be_set(db: TenantDatabase) -> None:
    once = Flaky(failures=99)
    with pytest.raises(ConnectionResetError):
        await db.with_retry(once, attempts=1)
    assert once.attempts == 1


@pytest.mark.parametrize("error", [asyncpg.UniqueViolationError("duplicate key"), ValueError("bad input")])
async def test_errors_that_are_not_a_lost_connection_are_not_retried(db: TenantDatabase,
                                                                     error: BaseException) -> None:
    flaky = Flaky(failures=1, error=error)
    with pytest.raises(type(error)):
        await db.with_retry(flaky)
    assert flaky.attempts == 1


async def test_vendor_ciphertexts_are_read_one_tenant_at_a_time(make_tenant: MakeTenant, db: TenantDatabase,
                                                                admin_dsn: str) -> None:
    a, b, c = await make_tenant("va"), await make_tenant("vb"), await make_tenant("vc")
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.executemany(
            "INSERT INTO public.tenant_vendor_secrets (tenant_id, vendor, ciphertext) VALUES ($1, $2, $3)",
            [(a.tenant_id, "deepgram", "ct-a-dg"), (a.tenant_id, "openai", "ct-a-oa"),
             (b.tenant_id, "elevenlabs", "ct-b-el")])
    finally:
        await admin.close()
    assert await db.tenant_vendor_ciphertexts(a.tenant_id) == {"deepgram": "ct-a-dg", "openai": "ct-a-oa"}
    assert await db.tenant_vendor_ciphertexts(b.tenant_id) == {"elevenlabs": "ct-b-el"}
    assert await db.tenant_vendor_ciphertexts(c.tenant_id) == {}
