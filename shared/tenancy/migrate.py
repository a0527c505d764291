"""Plain SQL migrations: `migrations/NNNN_name.sql`, applied in order, each once, in its own transaction.

Applied versions are recorded with a checksum in `public.schema_migrations`; an applied file that was
edited afterwards is an error (write a new migration instead). Concurrent runs queue on an advisory lock.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

log = logging.getLogger(__name__)

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x766F6963  # "voic": one migrator per database at a time


class MigrationError(RuntimeError):
    pass


# Earlier texts of amended migrations, equivalent on every database that applied them. 0001 once set
# NOSUPERUSER NOBYPASSRLS on voice_app, which only a true superuser may do: it could never run on Aurora
# (the deploy rehearsal found it), so it now checks those attributes instead.
AMENDED: dict[int, tuple[str, ...]] = {
    1: ("11a9b44e8bd3e36654f036af9bd654dc3d54fb01b86adcf63ea7ad0d29dc73e7",),
}


ROLE_RACE_ATTEMPTS = 20


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    folder = resources.files("shared.tenancy") / "migrations"
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions: {versions}")
    return found


def _role_race(exc: asyncpg.PostgresError) -> bool:
    return "tuple concurrently updated" in str(exc) or "pg_authid_rolname_index" in str(exc)


async def apply_migrations(admin_dsn: str) -> list[str]:
    """Apply pending migrations; returns the names applied now (empty when up to date)."""
    conn: asyncpg.Connection = await asyncpg.connect(admin_dsn)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS public.schema_migrations (
                 version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        applied = {r["version"]: r["checksum"] for r in await conn.fetch(
            "SELECT version, checksum FROM public.schema_migrations")}
        for migration in load_migrations():
            if migration.version in applied:
                if applied[migration.version] not in (migration.checksum, *AMENDED.get(migration.version, ())):
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} changed after it was applied")
                continue
            for attempt in range(1, ROLE_RACE_ATTEMPTS + 1):
                try:
                    async with conn.transaction():
                        await conn.execute(migration.sql)  # simple protocol: the whole file, DO blocks included
                        await conn.execute("RESET ROLE")  # a file may SET LOCAL ROLE voice_owner
                        await conn.execute(
                            "INSERT INTO public.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                            migration.version, migration.name, migration.checksum,
                        )
                    break
                except (asyncpg.InternalServerError, asyncpg.UniqueViolationError) as exc:
                    # Roles are cluster-wide and the advisory lock is per database: two databases of one
                    # cluster migrating at once can collide on a role row ("tuple concurrently updated", or
                    # both creating it: a duplicate in pg_authid). The transaction rolled back; the retry
                    # finds the role made by the other.
                    if not _role_race(exc) or attempt == ROLE_RACE_ATTEMPTS:
                        raise
                    await asyncio.sleep(random.uniform(0.01, 0.05 * attempt))  # jitter: colliders part ways
            applied_now.append(f"{migration.version:04d}_{migration.name}")
            log.info("migration applied", extra={"migration": applied_now[-1]})
    finally:
        try:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
        finally:
            await conn.close()
    return applied_now
