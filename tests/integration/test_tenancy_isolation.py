"""Adversarial isolation matrix: as tenant A, every attempt on tenant B's rows returns no rows or an error."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
import pytest

from shared.tenancy import bookings, calls
from shared.tenancy.database import TenantDatabase, _init_connection
from shared.tenancy.embedded import app_dsn
from shared.tenancy.models import TenantProfile, TranscriptTurn

TABLES = ("bookings", "calls", "transcript_turns")
FORGED_TENANT_IDS = (
    "' OR '1'='1",
    "{b}' OR tenant_id IS NOT NULL --",
    "'; SET ROLE voice_owner; --",
    "{b}'::uuid OR true --",
    "00000000-0000-0000-0000-000000000000' UNION SELECT '{b}",
)


@dataclass
class Pair:
    a: TenantProfile
    b: TenantProfile


async def _seed(db: TenantDatabase, tenant: TenantProfile) -> None:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    await bookings.create_booking(db, tenant.tenant_id, starts_at=start, ends_at=start + timedelta(minutes=30),
                                  customer_name="secret customer")
    sid = f"CA{tenant.slug}"
    await calls.start_call(db, tenant.tenant_id, sid, from_number="+15550000001", to_number="+15550000002")
    await calls.append_transcript_turns(db, tenant.tenant_id, sid, [TranscriptTurn(0, "caller", "my secret")])


@pytest.fixture
async def pair(make_tenant, db: TenantDatabase) -> Pair:
    a, b = await make_tenant("a"), await make_tenant("b")
    await _seed(db, a)
    await _seed(db, b)
    return Pair(a, b)


async def _count(conn: asyncpg.Connection, schema: str, table: str) -> int:
    value: int = await conn.fetchval(f'SELECT count(*) FROM "{schema}".{table}')
    return value


async def test_control_each_tenant_sees_its_own_rows(db: TenantDatabase, pair: Pair) -> None:
    for tenant in (pair.a, pair.b):
        async with db.tenant_tx(tenant.tenant_id) as conn:
            for table in TABLES:
                assert await _count(conn, tenant.schema_name, table) == 1
                assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 1  # via search_path


@pytest.mark.parametrize("table", TABLES)
async def test_schema_qualified_read_update_delete_of_other_tenant_touch_nothing(
        db: TenantDatabase, pair: Pair, table: str) -> None:
    b = pair.b.schema_name
    async with db.tenant_tx(pair.a.tenant_id) as conn:
        assert await _count(conn, b, table) == 0
        assert await conn.execute(f'UPDATE "{b}".{table} SET tenant_id = tenant_id') == "UPDATE 0"
        assert await conn.execute(f'DELETE FROM "{b}".{table}') == "DELETE 0"
    async with db.tenant_tx(pair.b.tenant_id) as conn:
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 1  # still there


@pytest.mark.parametrize("as_tenant", ["a", "b"], ids=["tenant_id_a", "tenant_id_b"])
async def test_insert_into_other_tenant_schema_is_refused(db: TenantDatabase, pair: Pair, as_tenant: str) -> None:
    """With B's tenant_id RLS's WITH CHECK refuses; with A's own id the schema's CHECK refuses."""
    tenant_id = pair.a.tenant_id if as_tenant == "a" else pair.b.tenant_id
    with pytest.raises(asyncpg.PostgresError):
        async with db.tenant_tx(pair.a.tenant_id) as conn:
            await conn.execute(
                f'INSERT INTO "{pair.b.schema_name}".calls (tenant_id, call_sid) VALUES ($1, $2)',
                tenant_id, "CAforged")


async def test_changed_search_path_does_not_leak(db: TenantDatabase, pair: Pair) -> None:
    async with db.tenant_tx(pair.a.tenant_id) as conn:
        await conn.execute(f'SET LOCAL search_path = "{pair.b.schema_name}"')
        for table in TABLES:
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0
            assert await conn.execute(f"DELETE FROM {table}") == "DELETE 0"
        await conn.execute("SELECT set_config('search_path', $1, true)", f'"{pair.b.schema_name}", public')
        assert await conn.fetch("SELECT customer_name FROM bookings") == []


@pytest.mark.parametrize("forged", FORGED_TENANT_IDS)
async def test_forged_app_tenant_id_errors(db: TenantDatabase, pair: Pair, forged: str) -> None:
    value = forged.format(b=pair.b.tenant_id)
    with pytest.raises(asyncpg.PostgresError):
        async with db.tenant_tx(pair.a.tenant_id) as conn:
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", value)
            await _count(conn, pair.b.schema_name, "bookings")
    with pytest.raises(TypeError):  # the API never takes a string as a tenant id
        async with db.tenant_tx(value):  # type: ignore[arg-type]
            pass


async def test_unknown_tenant_is_refused(db: TenantDatabase) -> None:
    from shared.tenancy.database import UnknownTenantError

    with pytest.raises(UnknownTenantError):
        async with db.tenant_tx(UUID(int=7)):
            pass


@pytest.mark.parametrize("table", TABLES)
async def test_no_tenant_set_sees_nothing_and_writes_nothing(db: TenantDatabase, pair: Pair, table: str) -> None:
    async with db.pool.acquire() as conn:
        for tenant in (pair.a, pair.b):
            assert await _count(conn, tenant.schema_name, table) == 0
            assert await conn.execute(f'DELETE FROM "{tenant.schema_name}".{table}') == "DELETE 0"
        with pytest.raises(asyncpg.PostgresError):
            await conn.execute(f'INSERT INTO "{pair.b.schema_name}".calls (tenant_id, call_sid) VALUES ($1, $2)',
                               pair.b.tenant_id, "CAnone")


async def test_pooled_connection_reused_after_tenant_b_carries_nothing(admin_dsn: str, pair: Pair) -> None:
    single = await TenantDatabase.connect(app_dsn(admin_dsn), min_size=1, max_size=1)
    try:
        async with single.tenant_tx(pair.b.tenant_id) as conn:
            backend = await conn.fetchval("SELECT pg_backend_pid()")
            assert await conn.fetchval("SELECT count(*) FROM bookings") == 1
        with pytest.raises(RuntimeError):  # a failed tenant transaction must not leave its context either
            async with single.tenant_tx(pair.b.tenant_id) as conn:
                raise RuntimeError("boom")
        async with single.pool.acquire() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") == backend  # the very same connection
            assert await conn.fetchval("SELECT nullif(current_setting('app.tenant_id', true), '')") is None
            assert await _count(conn, pair.b.schema_name, "bookings") == 0
        async with single.tenant_tx(pair.a.tenant_id) as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") == backend
            assert await _count(conn, pair.b.schema_name, "bookings") == 0
            assert await conn.fetchval("SELECT count(*) FROM bookings") == 1  # A's own
    finally:
        await single.close()


async def test_session_level_set_does_not_survive_pool_release(admin_dsn: str, pair: Pair) -> None:
    """A buggy session-level SET (not SET LOCAL) is wiped by the pool's RESET ALL on release."""
    single = await TenantDatabase.connect(app_dsn(admin_dsn), min_size=1, max_size=1)
    try:
        async with single.pool.acquire() as conn:
            await conn.execute(f"SET app.tenant_id = '{pair.b.tenant_id}'")
        async with single.pool.acquire() as conn:
            assert await _count(conn, pair.b.schema_name, "bookings") == 0
    finally:
        await single.close()


ESCALATIONS = (
    "SET ROLE voice_owner",
    "ALTER TABLE \"{b}\".bookings DISABLE ROW LEVEL SECURITY",
    "ALTER TABLE \"{b}\".bookings NO FORCE ROW LEVEL SECURITY",
    "DROP POLICY tenant_isolation ON \"{b}\".bookings",
    "SET LOCAL row_security = off; SELECT count(*) FROM \"{b}\".bookings",
    "SELECT count(*) FROM public.tenants",
    "SELECT count(*) FROM public.phone_numbers",
    "SELECT count(*) FROM public.tenant_api_keys",
    "SELECT count(*) FROM public.tenant_settings",
    "SELECT public.provision_tenant_schema('{b_id}')",
    "CREATE TABLE \"{b}\".stolen (x int)",
)


@pytest.mark.parametrize("statement", ESCALATIONS)
async def test_app_role_cannot_escalate(db: TenantDatabase, pair: Pair, statement: str) -> None:
    sql = statement.format(b=pair.b.schema_name, b_id=pair.b.tenant_id)
    with pytest.raises(asyncpg.PostgresError):
        async with db.tenant_tx(pair.a.tenant_id) as conn:
            await conn.execute(sql)


async def _no_reset(conn: asyncpg.Connection) -> None:
    """What a transaction pooler (RDS Proxy, PgBouncer in transaction mode) does between clients: nothing."""


async def test_tenant_setting_ends_with_its_transaction_without_a_pool_reset(admin_dsn: str, pair: Pair) -> None:
    """Behind a transaction pooler nothing resets the connection: only SET LOCAL keeps tenants apart."""
    pool = await asyncpg.create_pool(app_dsn(admin_dsn), min_size=1, max_size=1, init=_init_connection,
                                     reset=_no_reset)
    pooled = TenantDatabase(pool)
    try:
        async with pooled.tenant_tx(pair.b.tenant_id) as conn:
            backend = await conn.fetchval("SELECT pg_backend_pid()")
            assert await conn.fetchval("SELECT count(*) FROM bookings") == 1
        async with pool.acquire() as conn, conn.transaction():  # the next client's transaction
            assert await conn.fetchval("SELECT pg_backend_pid()") == backend  # the very same connection
            assert await conn.fetchval("SELECT nullif(current_setting('app.tenant_id', true), '')") is None
            assert await conn.fetchval("SELECT current_setting('search_path')") == '"$user", public'
            assert await _count(conn, pair.b.schema_name, "bookings") == 0
    finally:
        await pool.close()
