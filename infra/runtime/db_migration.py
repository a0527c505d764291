"""Custom-resource handler that applies the SQL migrations on every deploy that changes them.

Runs in the VPC next to Aurora, behind the CDK Provider framework (which answers CloudFormation). It reads
the cluster's admin secret, calls `shared.tenancy.migrate.apply_migrations(admin_dsn)` (idempotent; it
creates the roles `voice_owner` and `voice_app`), then sets the login password of the app user from the
app-user secret (non-owner, no BYPASSRLS: row-level security must hold for it).
Deleting the stack never drops data, so Delete is a no-op.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any
from urllib.parse import quote

import boto3


def _secret(arn: str) -> dict[str, Any]:
    value = boto3.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
    return dict(json.loads(value))


def _dsn(secret: dict[str, Any]) -> str:
    return (
        f"postgresql://{quote(secret['username'])}:{quote(secret['password'])}@{secret['host']}:"
        f"{secret.get('port', 5432)}/{secret.get('dbname', os.environ.get('DB_NAME', 'voiceagent'))}?sslmode=require"
    )


async def _ensure_app_role(admin_dsn: str, username: str, password: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", username)
        verb = "ALTER" if exists else "CREATE"
        # Identifiers and passwords cannot be bind parameters in DDL; quote them with the server's functions.
        ident = await conn.fetchval("SELECT quote_ident($1)", username)
        literal = await conn.fetchval("SELECT quote_literal($1)", password)
        # SUPERUSER/BYPASSRLS may only be changed by a true superuser, which Aurora's master user is not:
        # migration 0001 refuses an app role that has either.
        await conn.execute(f"{verb} ROLE {ident} WITH LOGIN PASSWORD {literal}")
    finally:
        await conn.close()


async def _migrate(admin_dsn: str) -> list[str]:
    from shared.tenancy.migrate import apply_migrations

    return await apply_migrations(admin_dsn)


def on_event(event: dict[str, Any], _context: object) -> dict[str, Any]:
    physical_id = event.get("PhysicalResourceId") or "voice-agent-db-migrations"
    if event["RequestType"] == "Delete":
        return {"PhysicalResourceId": physical_id}
    admin = _secret(os.environ["DB_ADMIN_SECRET_ARN"])
    app = _secret(os.environ["DB_SECRET_ARN"])
    admin_dsn = _dsn(admin)

    async def run() -> list[str]:
        applied = await _migrate(admin_dsn)
        await _ensure_app_role(admin_dsn, app["username"], app["password"])
        return applied

    applied = asyncio.run(run())
    print(json.dumps({"migrations_applied": applied}))  # no secrets: names of SQL files only
    return {"PhysicalResourceId": physical_id, "Data": {"Applied": len(applied)}}
