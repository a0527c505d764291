"""Lambda benchmark: cold import time per handler module and warm handler latency (p50/p95).

Cold import: a fresh `python -X importtime -c "import <module>"` per sample (median of 5), reading the
module's cumulative import time; the target is <= 300 ms. Heavy libraries (mcp, Mangum, aiohttp,
jsonschema, asyncpg/redis, the X-Ray SDK) load on the first invocation instead, reported separately.

Warm latency: the handlers invoked in-process with API Gateway REST events, against real Postgres and
Redis (the tests' servers: configured URLs, local ones, or embedded) and a loopback tool target.

Run: .venv/bin/python -m bench.lambda_bench [--iterations 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

MODULES = {"voice_webhook": "functions.voice_webhook.handler", "tool_proxy": "functions.tool_proxy.handler"}


def cold_import_ms(module: str, samples: int = 5) -> float:
    values = []
    for _ in range(samples):
        out = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                             capture_output=True, text=True, check=True).stderr
        line = next(line for line in reversed(out.splitlines()) if line.rstrip().endswith(f"| {module}"))
        values.append(int(line.split("|")[1]) / 1000)
    return statistics.median(values)


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {"p50_ms": round(ordered[len(ordered) // 2], 2),
            "p95_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 2)}


def timed(call: Callable[[], Any], iterations: int) -> tuple[float, dict[str, float]]:
    started = time.perf_counter()
    call()  # the first invocation pays the lazy imports and connections
    first_ms = (time.perf_counter() - started) * 1000
    samples = []
    for _ in range(iterations):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return round(first_ms, 1), percentiles(samples)


async def _setup_tenant(admin_dsn: str, number: str) -> str:
    from shared.tenancy.admin import TenantAdmin

    async with TenantAdmin.connect(admin_dsn) as admin:
        tenant_id = await admin.create_tenant(f"bench_{int(time.time())}", "Bench")
        await admin.add_number(tenant_id, number)
        await admin.set_settings(tenant_id, fallback_transfer_number="+15550009999")
    return str(tenant_id)


def bench_webhook(iterations: int) -> dict[str, Any]:
    from twilio.request_validator import RequestValidator

    from functions.voice_webhook.handler import WebhookConfig, create_handler
    from functions.voice_webhook.tenancy_directory import TenancyCallDirectory
    from local.apigw_adapter import LocalLambdaContext
    from shared.app_secrets import AppSecrets
    from shared.settings import Settings
    from shared.tenancy.embedded import (
        app_dsn,
        create_scratch_database,
        drop_database,
        resolve_database_dsn,
        resolve_redis_url,
    )

    settings = Settings()
    server_dsn = resolve_database_dsn(settings, allow_local=True)
    redis_url = resolve_redis_url(settings, allow_local=True)
    admin_dsn = asyncio.run(create_scratch_database(server_dsn, prefix="va_bench"))
    try:
        number = "+1555" + str(int(time.time()) % 10**7).zfill(7)
        asyncio.run(_setup_tenant(admin_dsn, number))

        async def directory() -> TenancyCallDirectory:
            return await TenancyCallDirectory.connect(app_dsn(admin_dsn), redis_url, cache_prefix="vabench")

        handler = create_handler(lambda: WebhookConfig(
            public_url="", stream_public_url="wss://stream.bench", stream_token_ttl_s=300,
            load_secrets=lambda: AppSecrets(twilio_auth_token="tok", stream_token_secret="s"),
            connect_directory=directory))
        host = "abc.execute-api.eu-west-1.amazonaws.com"
        counter = iter(range(10**9))

        def call() -> None:
            form = {"CallSid": f"CA{next(counter):032d}", "From": "+15557770000", "To": number,
                    "CallStatus": "ringing"}
            signature = RequestValidator("tok").compute_signature(f"https://{host}/prod/voice", form)
            event = {"path": "/voice", "httpMethod": "POST", "resource": "/voice",
                     "headers": {"Host": host, "X-Forwarded-Proto": "https", "X-Twilio-Signature": signature,
                                 "Content-Type": "application/x-www-form-urlencoded"},
                     "requestContext": {"path": "/prod/voice", "stage": "prod", "domainName": host},
                     "body": urlencode(form), "isBase64Encoded": False}
            result = handler(event, LocalLambdaContext(function_name="voice_webhook"))
            assert result["statusCode"] == 200 and "<Stream" in result["body"], result

        first_ms, warm = timed(call, iterations)
        return {"first_invocation_ms": first_ms, **warm}
    finally:
        asyncio.run(drop_database(server_dsn, admin_dsn))


def bench_tool_proxy(iterations: int) -> dict[str, Any]:
    import threading

    from aiohttp import web

    from functions.tool_proxy.egress import EgressPolicy
    from functions.tool_proxy.handler import create_handler
    from functions.tool_proxy.proxy import ToolProxy
    from functions.tool_proxy.sources import BundleToolSecrets, MappingToolboxes
    from local.apigw_adapter import LocalLambdaContext
    from shared.stream_token import mint_stream_token

    ready = threading.Event()
    port_box: list[int] = []
    loop = asyncio.new_event_loop()

    async def serve() -> None:
        async def echo(request: web.Request) -> web.Response:
            return web.json_response({"ok": True})

        app = web.Application()
        app.router.add_get("/echo", echo)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port_box.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        ready.set()

    threading.Thread(target=lambda: (loop.run_until_complete(serve()), loop.run_forever()), daemon=True).start()
    ready.wait()
    toolbox = [{"name": "echo", "description": "Echo", "input_schema": {"type": "object"},
                "target": {"method": "GET", "url": f"http://127.0.0.1:{port_box[0]}/echo"}}]
    proxy = ToolProxy(MappingToolboxes({"t1": toolbox}), BundleToolSecrets(dict),
                      EgressPolicy(allowed_networks=EgressPolicy.parse_networks("127.0.0.0/8")))
    handler = create_handler(lambda: (proxy, "secret"))
    token = mint_stream_token("secret", "t1", "CA1", ttl_s=3600)

    def call() -> None:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {}}}
        event = {"path": "/mcp", "httpMethod": "POST", "resource": "/mcp",
                 "headers": {"Host": "abc.execute-api.eu-west-1.amazonaws.com", "Authorization": f"Bearer {token}",
                             "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                             "MCP-Protocol-Version": "2025-11-25"},
                 "multiValueHeaders": {}, "queryStringParameters": None, "multiValueQueryStringParameters": None,
                 "requestContext": {"path": "/prod/mcp", "stage": "prod",
                                    "domainName": "abc.execute-api.eu-west-1.amazonaws.com"},
                 "body": json.dumps(body), "isBase64Encoded": False}
        result = handler(event, LocalLambdaContext(function_name="tool_proxy"))
        assert result["statusCode"] == 200 and '"isError":false' in result["body"], result

    first_ms, warm = timed(call, iterations)
    loop.call_soon_threadsafe(loop.stop)
    return {"first_invocation_ms": first_ms, **warm}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args()
    import contextlib
    import io

    report: dict[str, Any] = {}
    for name, module in MODULES.items():
        report[name] = {"cold_import_ms": round(cold_import_ms(module), 1)}
    # Powertools Metrics prints an EMF line per invocation: keep the report readable.
    with contextlib.redirect_stdout(io.StringIO()):
        webhook = bench_webhook(args.iterations)
        tools = bench_tool_proxy(args.iterations)
    report["voice_webhook"].update(webhook)
    report["tool_proxy"].update(tools)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
