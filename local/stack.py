"""Everything in one process on one port: the Lambdas (through the API Gateway adapter), the
streaming service, the tenant API, and Postgres/Redis (configured, else embedded).

The same code runs as in AWS; only the wiring differs. Secrets that are not configured are
generated once into `.data/local-secrets.json`, so signatures and tokens are checked locally too.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from aiohttp import web
from pydantic import SecretStr

from local.apigw_adapter import lambda_route
from shared.app_secrets import AppSecrets
from shared.settings import Settings
from shared.tenancy import embedded
from shared.tenancy.admin import TenantAdmin
from shared.tenancy.directory import TenantDirectory
from shared.tenancy.migrate import apply_migrations
from streaming_service.app import create_app
from streaming_service.data_layer import ServiceData
from streaming_service.engines.factory import build_engines, describe

log = logging.getLogger("voice_agent.local")

DEMO_TENANT_SLUG = "demo"
DEMO_NUMBER = "+15550100000"
DEMO_CALLER = "+15557654321"
DEMO_SETTINGS: dict[str, Any] = {
    "greeting": "Thanks for calling Demo Salon. How can I help you today?",
    "timezone": "America/New_York",
    "faq_text": "We offer haircuts, colouring and beard trims. A haircut takes thirty minutes.",
    "services": ["haircut", "colouring", "beard trim"],
    "address": "12 Main Street, Springfield",
    "fallback_transfer_number": "+15550109999",
    "business_hours": {day: [["09:00", "18:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat")},
}
_SECRET_NAMES = ("twilio_auth_token", "stream_token_secret", "tool_proxy_secret")


@dataclass
class LocalStack:
    settings: Settings
    app: web.Application
    data: ServiceData
    admin_dsn: str
    redis_url: str
    demo_tenant_id: str
    engines: dict[str, str]

    @property
    def base_url(self) -> str:
        return self.settings.public_url


def local_secrets(settings: Settings, folder: Path) -> dict[str, str]:
    """Configured secrets win; missing ones are generated once and kept beside the local data."""
    path = folder / "local-secrets.json"
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    values = {name: settings.secret(name) or stored.get(name) or secrets.token_urlsafe(32)  # type: ignore[arg-type]
              for name in _SECRET_NAMES}
    if any(stored.get(name) != value for name, value in values.items()):
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**stored, **values}))
        path.chmod(0o600)
    return values


async def seed_demo_tenant(admin_dsn: str, directory: TenantDirectory | None = None) -> str:
    """The demo tenant and number, created on first start and reused after."""
    async with TenantAdmin.connect(admin_dsn, directory) as admin:
        known = {t["slug"]: t for t in await admin.list_tenants()}
        if DEMO_TENANT_SLUG in known:
            return str(known[DEMO_TENANT_SLUG]["id"])
        tenant_id = await admin.create_tenant(DEMO_TENANT_SLUG, "Demo Salon")
        await admin.add_number(tenant_id, DEMO_NUMBER)
        await admin.set_settings(tenant_id, **DEMO_SETTINGS)
        return str(tenant_id)


async def ensure_demo_api_key(admin_dsn: str, tenant_id: str, folder: Path) -> None:
    """A tenant API key for the demo tenant, kept beside the local secrets, so `voice-agent call` can read
    back a call's transcript the way a tenant would."""
    path = folder / "local-secrets.json"
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    if stored.get("demo_tenant_id") == tenant_id and stored.get("demo_api_key"):
        return
    async with TenantAdmin.connect(admin_dsn) as admin:
        key = await admin.create_api_key(UUID(tenant_id), "local call simulator")
    path.write_text(json.dumps({**stored, "demo_tenant_id": tenant_id, "demo_api_key": key}))
    path.chmod(0o600)


def _mount_lambdas(app: web.Application, settings: Settings, app_dsn: str, redis_url: str,
                   local: dict[str, str]) -> None:
    from functions.tool_proxy.handler import create_handler as tool_proxy_handler
    from functions.tool_proxy.handler import policy_from_settings
    from functions.tool_proxy.proxy import ToolProxy
    from functions.tool_proxy.sources import BundleToolSecrets, TenancyToolboxes
    from functions.voice_webhook.handler import WebhookConfig
    from functions.voice_webhook.handler import create_handler as webhook_handler
    from functions.voice_webhook.tenancy_directory import TenancyCallDirectory

    app_secrets = AppSecrets(twilio_auth_token=local["twilio_auth_token"],
                             stream_token_secret=local["stream_token_secret"],
                             tool_proxy_secret=local["tool_proxy_secret"])

    async def directory() -> Any:
        return await TenancyCallDirectory.connect(app_dsn, redis_url, settings.cache_ttl_s)

    webhook = webhook_handler(lambda: WebhookConfig(
        public_url=settings.public_url, stream_public_url=settings.stream_public_url,
        stream_token_ttl_s=settings.stream_token_ttl_s, load_secrets=lambda: app_secrets,
        connect_directory=directory))
    # API Gateway reports the domain it serves, not the client's Host: the tool proxy's Host check trusts it.
    domain = urlsplit(settings.public_url).hostname or "127.0.0.1"
    route = lambda_route(webhook, shape="rest", stage="local", function_name="voice_webhook", domain_name=domain)
    for path in ("/voice", "/voice/after-stream", "/status"):
        app.router.add_post(path, route)

    def make_proxy() -> tuple[ToolProxy, str]:
        proxy = ToolProxy(TenancyToolboxes(app_dsn, redis_url, settings.cache_ttl_s),
                          BundleToolSecrets(lambda: app_secrets.tool_secrets), policy_from_settings(settings))
        return proxy, local["tool_proxy_secret"]

    app.router.add_route("*", "/mcp", lambda_route(tool_proxy_handler(make_proxy), shape="rest", stage="local",
                                                    function_name="tool_proxy", domain_name=domain))


async def build_local_stack(settings: Settings, port: int, data_folder: Path | None = None) -> LocalStack:
    folder = data_folder or embedded.data_dir()
    local = local_secrets(settings, folder)
    public_url = settings.public_url or f"http://127.0.0.1:{port}"
    admin_dsn = settings.aurora_dsn or embedded.start_embedded_postgres(folder / "postgres")
    redis_url = settings.redis_url or embedded.start_embedded_redis(folder / "redis")
    embedded.record_server_redis(folder, redis_url)  # the admin CLI invalidates this server's cache
    await apply_migrations(admin_dsn)
    app_dsn = embedded.app_dsn(admin_dsn)
    settings = settings.model_copy(update={
        "port": port, "public_url": public_url, "redis_url": redis_url, "aurora_dsn": app_dsn,
        "mcp_base": settings.mcp_base or f"{public_url}/mcp",
        **{name: SecretStr(local[name]) for name in _SECRET_NAMES},
    })
    data = await ServiceData.connect(app_dsn, redis_url, settings.cache_ttl_s)
    demo_tenant_id = await seed_demo_tenant(admin_dsn, data.directory)
    await ensure_demo_api_key(admin_dsn, demo_tenant_id, folder)
    engines = build_engines(settings, data)
    app = create_app(settings, engines, recorder=data.recorder, tenant_settings=data.tenant_settings(),
                     stream_claims=data.stream_claims(), capacity=data.capacity(settings), data=data)
    data.mount_tenant_api(app)
    _mount_lambdas(app, settings, app_dsn, redis_url, local)
    from local.web_phone import mount_web_phone  # /phone and /calls: local operator pages only

    mount_web_phone(app, settings, admin_dsn, folder)

    async def close_data(_: web.Application) -> None:
        await data.close()

    app.on_cleanup.append(close_data)
    return LocalStack(settings, app, data, admin_dsn, redis_url, demo_tenant_id, describe(engines))
