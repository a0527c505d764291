"""`voice-agent db migrate | tenants create|list | numbers add | settings set | keys create |
vendor-keys set|rotate|clear|list`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from shared.settings import Settings
from shared.tenancy.admin import AdminError, TenantAdmin
from shared.tenancy.cache import JsonCache
from shared.tenancy.database import TenantDatabase
from shared.tenancy.directory import TenantDirectory
from shared.tenancy.embedded import app_dsn, data_dir, resolve_database_dsn, server_redis_url
from shared.tenancy.migrate import MigrationError, apply_migrations
from shared.tenancy.models import JSON_SETTINGS_FIELDS
from shared.tenancy.vendor_secrets import VENDOR_NAMES, VendorKeyError, cipher_for_admin

AdminAction = Callable[[TenantAdmin, argparse.Namespace], Awaitable[int]]


def _dsn(args: argparse.Namespace) -> str:
    return str(args.dsn or resolve_database_dsn(Settings()))


def _run(action: AdminAction) -> Callable[[argparse.Namespace], int]:
    """Wrap an admin action: connect, invalidate the cache through a directory, report errors.

    The cache is the running server's own (REDIS_URL, else the Redis a local server recorded in the data
    folder, embedded included), so a change reaches live servers at once, not after the cache TTL."""
    async def with_admin(args: argparse.Namespace) -> int:
        settings = Settings()
        dsn = _dsn(args)
        redis_url = server_redis_url(settings)
        if not redis_url:
            print("note: no Redis configured or running here; a server using another Redis sees this change "
                  f"within {settings.cache_ttl_s} s", file=sys.stderr)
        cache = JsonCache(redis_url, default_ttl_s=settings.cache_ttl_s)
        db = await TenantDatabase.connect(app_dsn(dsn), min_size=1, max_size=1)
        try:
            async with TenantAdmin.connect(dsn, TenantDirectory(db, cache)) as admin:
                return await action(admin, args)
        finally:
            await db.close()
            await cache.close()

    def handler(args: argparse.Namespace) -> int:
        try:
            return asyncio.run(with_admin(args))
        except (AdminError, MigrationError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return handler


def _migrate(args: argparse.Namespace) -> int:
    try:
        applied = asyncio.run(apply_migrations(_dsn(args)))
    except MigrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(f"applied {name}" for name in applied) or "database is up to date")
    return 0


async def _tenants_create(admin: TenantAdmin, args: argparse.Namespace) -> int:
    print(await admin.create_tenant(args.slug, args.name or args.slug))
    return 0


async def _tenants_list(admin: TenantAdmin, args: argparse.Namespace) -> int:
    for t in await admin.list_tenants():
        print(f"{t['id']}  {t['slug']:<20} {'active' if t['active'] else 'inactive':<8} "
              f"{t['name']}  {' '.join(t['numbers'])}")
    return 0


async def _numbers_add(admin: TenantAdmin, args: argparse.Namespace) -> int:
    await admin.add_number(await admin.tenant_id(args.tenant), args.number)
    print(f"{args.number} → {args.tenant}")
    return 0


def _parse_assignment(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep:
        raise AdminError(f"expected name=value, got {text!r}")
    if name in JSON_SETTINGS_FIELDS:
        try:
            return name, json.loads(value)
        except json.JSONDecodeError:
            raise AdminError(f"{name} must be JSON") from None
    return name, value or None


async def _settings_set(admin: TenantAdmin, args: argparse.Namespace) -> int:
    changes = dict(_parse_assignment(a) for a in args.assignments)
    profile = await admin.set_settings(await admin.tenant_id(args.tenant), **changes)
    print(json.dumps(profile.settings.to_json() if profile else {}, indent=2))
    return 0


async def _keys_create(admin: TenantAdmin, args: argparse.Namespace) -> int:
    key = await admin.create_api_key(await admin.tenant_id(args.tenant), args.label)
    print(key)
    print("store this key now: it is not shown again", file=sys.stderr)
    return 0


def _read_vendor_key(args: argparse.Namespace) -> str:
    """From an environment variable or stdin, never from the command line (ps and shell history keep it)."""
    key = os.environ.get(args.from_env, "") if args.from_env else sys.stdin.readline()
    key = key.strip()
    if not key:
        raise AdminError("no key given (pipe it on stdin, or --from-env VAR)")
    return key


async def _vendor_keys_set(admin: TenantAdmin, args: argparse.Namespace) -> int:
    try:
        cipher = cipher_for_admin(Settings(), data_dir() / "local-secrets.json")
    except VendorKeyError as exc:
        raise AdminError(str(exc)) from None
    tenant = await admin.tenant_id(args.tenant)
    await admin.set_vendor_key(tenant, args.vendor, cipher.encrypt(_read_vendor_key(args)))
    print(f"{args.vendor} key stored for {args.tenant} (encrypted); the next call uses it")
    return 0


async def _vendor_keys_clear(admin: TenantAdmin, args: argparse.Namespace) -> int:
    await admin.set_vendor_key(await admin.tenant_id(args.tenant), args.vendor, None)
    print(f"{args.vendor} key cleared for {args.tenant}; its calls use the platform's account")
    return 0


async def _vendor_keys_list(admin: TenantAdmin, args: argparse.Namespace) -> int:
    for row in await admin.vendor_keys_set(await admin.tenant_id(args.tenant)):
        print(f"{row['vendor']:<12} set {row['updated_at']}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def group(name: str, help_text: str) -> argparse._SubParsersAction[argparse.ArgumentParser]:
        parser = subparsers.add_parser(name, help=help_text)
        return parser.add_subparsers(dest=f"{name}_command", required=True, metavar="ACTION")

    def leaf(parent: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str,
             handler: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        parser = parent.add_parser(name, help=help_text)
        parser.add_argument("--dsn", help="admin DSN (default: AURORA_DSN / DB_*, else embedded .data/)")
        parser.set_defaults(handler=handler)
        return parser

    leaf(group("db", "database schema"), "migrate", "apply pending migrations (idempotent)", _migrate)

    tenants = group("tenants", "tenant registry")
    create = leaf(tenants, "create", "create a tenant and its schema", _run(_tenants_create))
    create.add_argument("slug")
    create.add_argument("--name", default="")
    leaf(tenants, "list", "list tenants and their numbers", _run(_tenants_list))

    add = leaf(group("numbers", "phone numbers"), "add", "route a number to a tenant", _run(_numbers_add))
    add.add_argument("tenant", help="slug or id")
    add.add_argument("number", help="E.164, e.g. +15551234567")

    settings_set = leaf(group("settings", "agent settings"), "set", "change settings: name=value ...",
                        _run(_settings_set))
    settings_set.add_argument("tenant", help="slug or id")
    settings_set.add_argument("assignments", nargs="+", metavar="name=value",
                              help="JSON for prompt_overrides, toolbox, business_hours; empty value clears")

    vendor_keys = group("vendor-keys", "a tenant's own Deepgram / ElevenLabs / OpenAI keys (stored encrypted)")
    for action, help_text in (("set", "store the tenant's key for a vendor (read from stdin or --from-env)"),
                              ("rotate", "replace it; the next call uses the new key")):
        parser = leaf(vendor_keys, action, help_text, _run(_vendor_keys_set))
        parser.add_argument("tenant", help="slug or id")
        parser.add_argument("vendor", choices=VENDOR_NAMES)
        parser.add_argument("--from-env", metavar="VAR", help="read the key from this environment variable")
    clear = leaf(vendor_keys, "clear", "remove it: the platform's account again", _run(_vendor_keys_clear))
    clear.add_argument("tenant", help="slug or id")
    clear.add_argument("vendor", choices=VENDOR_NAMES)
    listed = leaf(vendor_keys, "list", "which vendors have a key (never the key)", _run(_vendor_keys_list))
    listed.add_argument("tenant", help="slug or id")

    key = leaf(group("keys", "tenant API keys"), "create", "create an API key (printed once)", _run(_keys_create))
    key.add_argument("tenant", help="slug or id")
    key.add_argument("--label", default="")
