"""Lambda entry for the MCP tool proxy: a doorway to `mcp_server` + `proxy`.

Pattern A (see the MCP notes): the MCP registry lives as long as the container; the Starlette app is
rebuilt per invocation because its session manager's `run()` may be entered only once, and Mangum
enters the lifespan on every invocation.

Imports are kept lean (cold import is measured by bench/lambda_bench.py): `mcp`, Mangum, aiohttp,
jsonschema and the X-Ray SDK are loaded on the first invocation, not at import.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from functions.tool_proxy.egress import EgressPolicy
from functions.tool_proxy.proxy import CallRecord, ToolProxy
from functions.tool_proxy.sources import BundleToolSecrets, default_toolbox_source
from shared.app_secrets import AppSecrets, load_app_secrets
from shared.settings import Settings, get_settings

SERVICE = "tool_proxy"
logger = Logger(service=SERVICE)
metrics = Metrics(namespace="VoiceAgent", service=SERVICE)


def policy_from_settings(settings: Settings | None = None) -> EgressPolicy:
    settings = settings or get_settings()
    return EgressPolicy(
        timeout_s=settings.tool_proxy_timeout_s,
        max_response_bytes=settings.tool_proxy_max_response_bytes,
        allowed_networks=EgressPolicy.parse_networks(settings.tool_proxy_allowed_networks))


def _secrets() -> AppSecrets:
    return load_app_secrets(get_settings().app_secret_arn, dict(os.environ))


def _count(record: CallRecord) -> None:
    metrics.add_metric(name=f"ToolCall_{record.outcome}", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="ToolCallDuration", unit=MetricUnit.Milliseconds, value=record.duration_ms)


def default_proxy() -> tuple[ToolProxy, str]:
    """Production wiring: toolboxes from tenant settings, secrets from the app secret, env policy."""
    secrets = _secrets()
    secrets.require("tool_proxy_secret")
    proxy = ToolProxy(default_toolbox_source(), BundleToolSecrets(lambda: _secrets().tool_secrets),
                      policy_from_settings(), observer=_count)
    return proxy, secrets.tool_proxy_secret


LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


def create_handler(make_proxy: Callable[[], tuple[ToolProxy, str]]) -> LambdaHandler:
    """A Lambda handler around the proxy `make_proxy` builds (once, on the first invocation)."""

    @functools.cache
    def registry() -> tuple[Any, str]:
        from functions.tool_proxy.mcp_server import build_server

        proxy, secret = make_proxy()
        return build_server(proxy, secret), secret

    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        from mangum import Mangum

        from functions.tool_proxy.mcp_server import build_app

        server, secret = registry()
        metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
        # API Gateway vouches for the domain it was called on; configured hosts cover custom domains.
        hosts = [h.strip() for h in get_settings().tool_proxy_allowed_hosts.split(",") if h.strip()]
        domain = (event.get("requestContext") or {}).get("domainName")
        if domain:
            hosts.append(domain)
        app: Any = build_app(server, secret, hosts)  # an ASGI app; Mangum's protocol type is narrower
        response: dict[str, Any] = Mangum(app, lifespan="auto")(event, context)
        return response

    @functools.cache
    def entry() -> LambdaHandler:
        # Creating a Tracer imports the X-Ray SDK, which builds botocore clients (~250 ms): paid on the
        # first invocation rather than in every cold import.
        from aws_lambda_powertools import Tracer

        tracer = Tracer(service=SERVICE)
        traced = tracer.capture_lambda_handler(handle, capture_response=False)
        wrapped: LambdaHandler = logger.inject_lambda_context(
            metrics.log_metrics(traced, capture_cold_start_metric=True))
        return wrapped

    def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return entry()(event, context)

    return lambda_handler


lambda_handler = create_handler(default_proxy)
