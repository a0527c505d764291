"""Migrations (idempotent, tamper-evident), the role model they set up, and the admin CLI."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from local.cli import main
from shared.tenancy.calls import start_call
from shared.tenancy.database import TenantDatabase
from shared.tenancy.embedded import create_scratch_database, dsn_with, start_embedded_postgres
from shared.tenancy.migrate import MigrationError, apply_migrations, load_migrations


async def test_migrations_are_idempotent_and_recorded(admin_dsn: str) -> None:
    assert await apply_migrations(admin_dsn) == []
    results = await asyncio.gather(apply_migrations(admin_dsn), apply_migrations(admin_dsn))
    assert results == [[], []]
    conn = await asyncpg.connect(admin_dsn)
    try:
        rows = await conn.fetch("SELECT version, checksum FROM public.schema_migrations ORDER BY version")
    finally:
        await conn.close()
    assert [(r["version"], r["checksum"]) for r in rows] == [(m.version, m.checksum) for m in load_migrations()]


async def test_a_fresh_database_migrates_from_zero(postgres_server_dsn: str) -> None:
    from shared.tenancy.embedded import scratch_database

    async with scratch_database(postgres_server_dsn, prefix="va_test_fresh") as dsn:
        assert await apply_migrations(dsn) == []


async def test_databases_of_a_fresh_cluster_migrate_at_the_same_time(tmp_path: Path) -> None:
    """Roles are cluster-wide and none exist yet on a fresh cluster: databases migrating at once (CI's test
    workers on a fresh machine) collide creating them, and every one must still migrate."""
    server_dsn = await asyncio.to_thread(start_embedded_postgres, tmp_path / "postgres")
    dsns = [await create_scratch_database(server_dsn, prefix="va_race", migrate=False) for _ in range(6)]
    applied = await asyncio.gather(*(apply_migrations(dsn) for dsn in dsns))
    assert applied == [[f"{m.version:04d}_{m.name}" for m in load_migrations()]] * len(dsns)


async def test_edited_migration_is_refused(admin_dsn: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        original = await conn.fetchval("SELECT checksum FROM public.schema_migrations WHERE version = 2")
        await conn.execute("UPDATE public.schema_migrations SET checksum = 'x' WHERE version = 2")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await apply_migrations(admin_dsn)
        await conn.execute("UPDATE public.schema_migrations SET checksum = $1 WHERE version = 2", original)
    finally:
        await conn.close()


async def test_app_role_owns_nothing_and_cannot_bypass_rls(admin_dsn: str, db: TenantDatabase,
                                                            make_tenant) -> None:
    tenant = await make_tenant()
    conn = await asyncpg.connect(admin_dsn)
    try:
        role = await conn.fetchrow(
            "SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = 'voice_app'")
        assert dict(role) == {"rolsuper": False, "rolbypassrls": False, "rolcanlogin": True}
        owner = await conn.fetchrow("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = 'voice_owner'")
        assert dict(owner) == {"rolsuper": False, "rolbypassrls": False}
        owned = await conn.fetchval(
            "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE r.rolname = 'voice_app'")
        assert owned == 0
        tables = await conn.fetch(
            """SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, pg_get_userbyid(c.relowner) AS owner
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = $1 AND c.relkind = 'r' ORDER BY c.relname""", tenant.schema_name)
        assert [(t["relname"], t["relrowsecurity"], t["relforcerowsecurity"], t["owner"]) for t in tables] == [
            (name, True, True, "voice_owner") for name in ("bookings", "calls", "transcript_turns")]
        policy = await conn.fetchval(
            "SELECT qual FROM pg_policies WHERE schemaname = $1 AND tablename = 'calls'", tenant.schema_name)
        assert "nullif(current_setting('app.tenant_id'::text, true), ''::text)" in policy.lower()
        await start_call(db, tenant.tenant_id, "CA1", from_number="+1", to_number="+2")
        async with conn.transaction():  # FORCE: the owner too sees no tenant rows without app.tenant_id
            await conn.execute("SET LOCAL ROLE voice_owner")
            assert await conn.fetchval(f'SELECT count(*) FROM "{tenant.schema_name}".calls') == 0
    finally:
        await conn.close()


def test_cli_admin_commands(admin_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tenants", "create", "cli_shop", "--name", "CLI Shop", "--dsn", admin_dsn]) == 0
    tenant_id = capsys.readouterr().out.strip()
    assert main(["numbers", "add", "cli_shop", "+15557654321", "--dsn", admin_dsn]) == 0
    assert main(["numbers", "add", "cli_shop", "not-a-number", "--dsn", admin_dsn]) == 2
    assert main(["settings", "set", "cli_shop", "greeting=Welcome!", "timezone=Europe/Berlin",
                 'business_hours={"mon": [["09:00", "17:00"]]}', "--dsn", admin_dsn]) == 0
    assert main(["settings", "set", "cli_shop", "timezone=Mars/Olympus", "--dsn", admin_dsn]) == 2
    assert main(["keys", "create", "cli_shop", "--label", "ci", "--dsn", admin_dsn]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert key.startswith("va_")
    assert main(["tenants", "list", "--dsn", admin_dsn]) == 0
    listed = capsys.readouterr().out
    assert "cli_shop" in listed and "+15557654321" in listed
    assert main(["db", "migrate", "--dsn", admin_dsn]) == 0
    assert "up to date" in capsys.readouterr().out

    async def check() -> None:
        from shared.tenancy.admin import hash_api_key
        from shared.tenancy.embedded import app_dsn

        db = await TenantDatabase.connect(app_dsn(admin_dsn), min_size=1, max_size=1)
        try:
            profile = await db.resolve_number("+15557654321")
            assert profile is not None and str(profile.tenant_id) == tenant_id
            assert profile.settings.greeting == "Welcome!" and profile.settings.timezone == "Europe/Berlin"
            assert profile.settings.business_hours == {"mon": [["09:00", "17:00"]]}
            assert str(await db.tenant_for_api_key_hash(hash_api_key(key))) == tenant_id
        finally:
            await db.close()
    asyncio.run(check())


def test_dsn_with_keeps_socket_host() -> None:
    socket_dsn = "postgresql://postgres:@/postgres?host=/tmp/pg"
    assert dsn_with(socket_dsn, user="voice_app", database="x") == "postgresql://voice_app@/x?host=/tmp/pg"
    tcp = "postgresql://admin:s3cr%40t@db.example:5432/voice?sslmode=require"
    assert dsn_with(tcp, database="other") == "postgresql://admin:s3cr%40t@db.example:5432/other?sslmode=require"
    assert dsn_with(tcp, user="voice_app", password="p") == "postgresql://voice_app:p@db.example:5432/voice?sslmode=require"
