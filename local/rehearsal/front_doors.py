"""The two front doors, built from the templates: the HTTP API (routes, payload format, the API's host)
and the ALB (listener rules, default action, target group health check, deregistration draining)."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from local.apigw_adapter import http_event, rest_event, to_response
from local.rehearsal.stand_ins import LambdaEnvironment

log = logging.getLogger("voice_agent.rehearsal")
Hop = Callable[[str], None]


def trace_header() -> str:
    """A fresh X-Ray trace header, as the first AWS hop of a request creates one."""
    import secrets

    return f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};Parent={secrets.token_hex(8)};Sampled=1"


@dataclass
class ApiRoute:
    route_key: str  # "POST /voice"
    function: LambdaEnvironment
    payload_format: str  # "1.0" or "2.0"


@dataclass
class HttpApiFrontDoor:
    """API Gateway's HTTP API: answers only for its hosts, routes by route key, invokes the integration."""

    hosts: set[str]
    routes: dict[str, ApiRoute]
    session: aiohttp.ClientSession
    hop: Hop
    calls: list[tuple[str, int, str]] = field(default_factory=list)  # route key, status, trace root

    def app(self) -> web.Application:
        app = web.Application(client_max_size=10 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        host = (request.headers.get("Host") or "").split(":")[0].lower()
        if host not in self.hosts:
            return web.json_response({"message": "Forbidden"}, status=403)
        route = self.routes.get(f"{request.method} {request.path}") or self.routes.get("$default")
        if route is None:
            return web.json_response({"message": "Not Found"}, status=404)
        body = await request.read()
        event = (rest_event(request, body, stage="$default", strip_prefix="") if route.payload_format == "1.0"
                 else http_event(request, body, stage="$default"))
        event["requestContext"]["domainName"] = host  # API Gateway's own record of the called domain
        trace = request.headers.get("X-Amzn-Trace-Id") or trace_header()
        started = time.perf_counter()
        result = await route.function.invoke(self.session, event, trace)
        response = to_response(result)
        elapsed_ms = (time.perf_counter() - started) * 1000
        root = next((p.removeprefix("Root=") for p in trace.split(";") if p.startswith("Root=")), "")
        self.calls.append((route.route_key, response.status, root))
        self.hop(f"API Gateway {host} {route.route_key} -> Lambda {route.function.name} "
                 f"({route.function.handler}): {response.status} in {elapsed_ms:.0f} ms")
        return response


@dataclass
class Target:
    address: tuple[str, int]
    healthy: bool = False
    registered: bool = True
    connections: int = 0
    passes: int = 0
    fails: int = 0


@dataclass
class TargetGroup:
    """Health checks as the target group defines them; traffic only to healthy, registered targets."""

    where: str
    path: str
    interval_s: float
    timeout_s: float
    healthy_threshold: int
    unhealthy_threshold: int
    matcher: str
    deregistration_delay_s: float
    targets: list[Target] = field(default_factory=list)
    _checker: asyncio.Task[None] | None = None

    def start(self, session: aiohttp.ClientSession) -> None:
        self._checker = asyncio.create_task(self._check_forever(session))

    async def _check_forever(self, session: aiohttp.ClientSession) -> None:
        while True:
            for target in list(self.targets):
                ok = False
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    url = f"http://{target.address[0]}:{target.address[1]}{self.path}"
                    async with session.get(url, timeout=aiohttp.ClientTimeout(total=self.timeout_s)) as resp:
                        ok = str(resp.status) in self.matcher.split(",")
                target.passes, target.fails = (target.passes + 1, 0) if ok else (0, target.fails + 1)
                if target.passes >= self.healthy_threshold:
                    target.healthy = True
                if target.fails >= self.unhealthy_threshold:
                    target.healthy = False
            await asyncio.sleep(self.interval_s)

    def pick(self) -> Target | None:
        ready = [t for t in self.targets if t.registered and t.healthy]
        return min(ready, key=lambda t: t.connections) if ready else None

    async def deregister(self, target: Target, hop: Hop) -> float:
        """Stop new traffic at once; wait for open connections up to the deregistration delay."""
        target.registered = False
        started = time.monotonic()
        while target.connections and time.monotonic() - started < self.deregistration_delay_s:  # noqa: ASYNC110
            await asyncio.sleep(0.1)  # a poll is the ALB's own behaviour: it checks connection counts
        waited = time.monotonic() - started
        hop(f"ALB target {target.address[0]}:{target.address[1]} deregistered: drained after {waited:.1f} s "
            f"({target.connections} connections left)")
        self.targets.remove(target)
        return waited

    async def stop(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checker


@dataclass
class ListenerRule:
    priority: int
    paths: list[str]
    group: TargetGroup


@dataclass
class AlbFrontDoor:
    """One ALB listener: rules by priority, the default fixed response, HTTP and WebSocket forwarding."""

    port: int
    rules: list[ListenerRule]
    default_status: int
    default_body: str
    session: aiohttp.ClientSession
    hop: Hop
    redirect_to_https: bool = False
    streams: int = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=10 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    def _rule(self, path: str) -> ListenerRule | None:
        for rule in sorted(self.rules, key=lambda r: r.priority):
            if any(fnmatch.fnmatchcase(path, pattern) for pattern in rule.paths):
                return rule
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.redirect_to_https:
            raise web.HTTPMovedPermanently(f"https://{request.host.split(':')[0]}{request.path_qs}")
        rule = self._rule(request.path)
        if rule is None:
            return web.Response(status=self.default_status, text=self.default_body, content_type="text/plain")
        target = rule.group.pick()
        if target is None:
            return web.Response(status=503, text="503 Service Temporarily Unavailable")
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("host", "connection", "upgrade", "sec-websocket-key",
                                        "sec-websocket-version", "sec-websocket-extensions", "content-length")}
        headers.update({"Host": request.headers.get("Host", ""), "X-Forwarded-For": request.remote or "",
                        "X-Forwarded-Proto": request.scheme, "X-Forwarded-Port": str(self.port),
                        "X-Amzn-Trace-Id": request.headers.get("X-Amzn-Trace-Id") or trace_header()})
        base = f"{target.address[0]}:{target.address[1]}"
        target.connections += 1
        try:
            if request.headers.get("Upgrade", "").lower() == "websocket":
                return await self._websocket(request, f"ws://{base}{request.path_qs}", headers)
            async with self.session.request(request.method, f"http://{base}{request.path_qs}", headers=headers,
                                            data=await request.read(), allow_redirects=False) as upstream:
                body = await upstream.read()
                return web.Response(status=upstream.status, body=body, headers={
                    k: v for k, v in upstream.headers.items()
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding")})
        finally:
            target.connections -= 1

    async def _websocket(self, request: web.Request, url: str, headers: dict[str, str]) -> web.StreamResponse:
        try:
            upstream = await self.session.ws_connect(url, headers=headers, max_msg_size=0, autoclose=False)
        except aiohttp.WSServerHandshakeError as exc:
            return web.Response(status=exc.status, text="upstream refused the upgrade")
        self.streams += 1
        self.hop(f"ALB {request.host} {request.path} -> task {url.split('/')[2]}: WebSocket open")
        downstream = web.WebSocketResponse(max_msg_size=0, autoclose=False)
        await downstream.prepare(request)

        async def pump(source: Any, sink: Any) -> None:
            async for message in source:
                if message.type == WSMsgType.TEXT:
                    await sink.send_str(message.data)
                elif message.type == WSMsgType.BINARY:
                    await sink.send_bytes(message.data)
                elif message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
            if not sink.closed:
                await sink.close(code=source.close_code or 1000)

        await asyncio.gather(pump(upstream, downstream), pump(downstream, upstream), return_exceptions=True)
        self.hop(f"ALB {request.path}: WebSocket closed ({upstream.close_code})")
        return downstream


async def serve(app: web.Application, port: int, context: ssl.SSLContext | None) -> web.AppRunner:
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    return runner
