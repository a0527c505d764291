"""Serve a Lambda handler over aiohttp, the way API Gateway would invoke it.

The local server mounts each Lambda through `lambda_route`: the HTTP request becomes an API Gateway
proxy event (REST API v1 with a stage in `requestContext`, or HTTP API v2), the handler runs in a worker
thread (Lambda handlers are synchronous and may run their own event loop, as Mangum does), and the
proxy result becomes the aiohttp response.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

LambdaHandler = Callable[[dict[str, Any], Any], Any]
EventShape = Literal["rest", "http"]

_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-www-form-urlencoded")
# Hop-by-hop and framing headers: aiohttp computes its own.
_SKIP_RESPONSE_HEADERS = {"content-length", "transfer-encoding", "connection"}


@dataclass
class LocalLambdaContext:
    """The attributes of the Lambda runtime's context object that Powertools reads."""

    function_name: str = "local"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"
    timeout_s: float = 30.0
    started_at: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:local:000000000000:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_s - (time.monotonic() - self.started_at)) * 1000))


def _body_fields(request: web.Request, body: bytes) -> tuple[str | None, bool]:
    if not body:
        return None, False
    if request.content_type.startswith(_TEXT_TYPES):
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


def _host_parts(request: web.Request, domain_name: str = "") -> tuple[str, str]:
    """The Host header as sent, and the domain API Gateway would vouch for. API Gateway sets
    `requestContext.domainName` to the domain it serves, never to what the client wrote in Host, and the
    tool proxy's allowed-Host check trusts it; so a configured domain wins over the request's Host."""
    host = request.host or "localhost"
    if domain_name:
        return host, domain_name
    domain = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return host, domain


def rest_event(request: web.Request, body: bytes, *, stage: str, strip_prefix: str,
               domain_name: str = "") -> dict[str, Any]:
    """REST API (v1) proxy event. `path` is the resource path; `requestContext.path` is what was called."""
    full_path = request.path
    path = full_path[len(strip_prefix):] if strip_prefix and full_path.startswith(strip_prefix) else full_path
    host, domain = _host_parts(request, domain_name)
    headers = {k: v for k, v in request.headers.items()}
    headers.setdefault("Host", host)
    # API Gateway always sets these; a webhook rebuilding its public URL relies on them.
    headers["X-Forwarded-Proto"] = request.scheme
    headers["X-Forwarded-Port"] = str(request.url.port or (443 if request.scheme == "https" else 80))
    multi_headers: dict[str, list[str]] = {}
    for key, value in request.headers.items():
        multi_headers.setdefault(key, []).append(value)
    query = dict(request.query) or None
    multi_query = {k: request.query.getall(k) for k in request.query} or None
    text, is_b64 = _body_fields(request, body)
    now = time.time()
    return {
        "resource": path, "path": path or "/", "httpMethod": request.method,
        "headers": headers, "multiValueHeaders": multi_headers,
        "queryStringParameters": query, "multiValueQueryStringParameters": multi_query,
        "pathParameters": None, "stageVariables": None,
        "requestContext": {
            "accountId": "000000000000", "apiId": "local", "domainName": domain,
            "domainPrefix": domain.split(".")[0], "httpMethod": request.method, "path": full_path,
            "protocol": f"HTTP/{request.version.major}.{request.version.minor}",
            "requestId": str(uuid.uuid4()), "requestTimeEpoch": int(now * 1000),
            "resourcePath": path, "stage": stage,
            "identity": {"sourceIp": request.remote or "127.0.0.1",
                         "userAgent": request.headers.get("User-Agent", "")},
        },
        "body": text, "isBase64Encoded": is_b64,
    }


def http_event(request: web.Request, body: bytes, *, stage: str, domain_name: str = "") -> dict[str, Any]:
    """HTTP API (v2) proxy event. `rawPath` is the path as called (a named stage stays in it)."""
    host, domain = _host_parts(request, domain_name)
    headers: dict[str, str] = {}
    for key, value in request.headers.items():
        name = key.lower()
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    headers.setdefault("host", host)
    headers["x-forwarded-proto"] = request.scheme
    headers["x-forwarded-port"] = str(request.url.port or (443 if request.scheme == "https" else 80))
    text, is_b64 = _body_fields(request, body)
    now = time.time()
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": request.path,
        "rawQueryString": request.query_string, "headers": headers,
        "cookies": [f"{k}={v}" for k, v in request.cookies.items()] or None,
        "queryStringParameters": {k: ",".join(request.query.getall(k)) for k in request.query} or None,
        "requestContext": {
            "accountId": "000000000000", "apiId": "local", "domainName": domain,
            "domainPrefix": domain.split(".")[0], "requestId": str(uuid.uuid4()), "routeKey": "$default",
            "stage": stage, "timeEpoch": int(now * 1000),
            "http": {"method": request.method, "path": request.path,
                     "protocol": f"HTTP/{request.version.major}.{request.version.minor}",
                     "sourceIp": request.remote or "127.0.0.1",
                     "userAgent": request.headers.get("User-Agent", "")},
        },
        "body": text, "isBase64Encoded": is_b64,
    }


def to_response(result: Any) -> web.Response:
    """A proxy integration result (v1 or v2 format) as an aiohttp response."""
    if not isinstance(result, dict) or "statusCode" not in result:
        # HTTP API v2 accepts a bare value: 200 with it as the JSON body.
        import json

        return web.Response(status=200, text=json.dumps(result), content_type="application/json")
    raw = result.get("body") or ""
    body = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode("utf-8")
    response = web.Response(status=int(result["statusCode"]), body=body)
    for key, value in (result.get("headers") or {}).items():
        if key.lower() not in _SKIP_RESPONSE_HEADERS:
            response.headers[key] = str(value)
    for key, values in (result.get("multiValueHeaders") or {}).items():
        if key.lower() in _SKIP_RESPONSE_HEADERS:
            continue
        response.headers.popall(key, None)
        for value in values:
            response.headers.add(key, str(value))
    for cookie in result.get("cookies") or []:
        response.headers.add("Set-Cookie", cookie)
    return response


def lambda_route(handler: LambdaHandler, *, shape: EventShape = "rest", stage: str = "prod",
                 strip_prefix: str = "", function_name: str = "local", domain_name: str = ""
                 ) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp handler invoking `handler` with the event API Gateway would send.

    `strip_prefix` is the part of the URL path that is not the resource path: `/prod` when the local
    URL mimics the execute-api form `https://{api}.execute-api.{region}.amazonaws.com/prod/voice`.
    `domain_name` is the server's own public host, as API Gateway reports its domain (the local server
    passes it; without it the request's Host header stands in, which only a test harness should rely on).
    """

    async def route(request: web.Request) -> web.Response:
        body = await request.read()
        event = (rest_event(request, body, stage=stage, strip_prefix=strip_prefix, domain_name=domain_name)
                 if shape == "rest" else http_event(request, body, stage=stage, domain_name=domain_name))
        context = LocalLambdaContext(function_name=function_name)
        try:
            result = await asyncio.to_thread(handler, event, context)
        except Exception:
            # API Gateway's answer to a crashed integration.
            return web.json_response({"message": "Internal server error"}, status=502)
        return to_response(result)

    return route
