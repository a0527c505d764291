"""A tenant's HTTP tool endpoints, really listening on loopback (IPv4 and IPv6).

- `/echo/{item}` (any method): answers JSON describing the request it got (method, path, query, JSON
  body, and whether the expected API key header arrived, never its value).
- `/slow`: never answers until the server stops (for timeouts).
- `/huge`: streams `huge_bytes` of text (for the response cap).
Every request is counted per path, so a test can prove a refused target was never contacted.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

API_KEY_HEADER = "X-Api-Key"


@dataclass
class TenantToolServer:
    api_key: str = "k-test"
    huge_bytes: int = 1024 * 1024
    hits: Counter[str] = field(default_factory=Counter)
    port_v4: int = 0
    port_v6: int | None = None
    _runner: web.AppRunner | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        if host == "::1":
            return f"http://[::1]:{self.port_v6}{path}"
        return f"http://{host}:{self.port_v4}{path}"

    async def _echo(self, request: web.Request) -> web.Response:
        self.hits["/echo"] += 1
        body = await request.json() if request.can_read_body else None
        return web.json_response({
            "method": request.method, "item": request.match_info["item"], "path": request.path,
            "query": dict(request.query), "json": body,
            "api_key_ok": request.headers.get(API_KEY_HEADER) == self.api_key,
        })

    async def _slow(self, request: web.Request) -> web.Response:
        self.hits["/slow"] += 1
        await self._stop.wait()
        return web.Response(text="too late")

    async def _huge(self, request: web.Request) -> web.StreamResponse:
        self.hits["/huge"] += 1
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        chunk = b"x" * 16384
        sent = 0
        try:
            while sent < self.huge_bytes:
                await response.write(chunk)
                sent += len(chunk)
            await response.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass  # the proxy hung up once it hit its cap: that is the point
        return response

    async def start(self) -> TenantToolServer:
        app = web.Application()
        app.router.add_route("*", "/echo/{item}", self._echo)
        app.router.add_get("/slow", self._slow)
        app.router.add_get("/huge", self._huge)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port_v4 = _bound_port(site)
        if socket.has_ipv6:
            try:
                site6 = web.TCPSite(self._runner, "::1", 0)
                await site6.start()
                self.port_v6 = _bound_port(site6)
            except OSError:
                self.port_v6 = None
        return self

    async def stop(self) -> None:
        self._stop.set()
        if self._runner is not None:
            await self._runner.cleanup()


def _bound_port(site: web.TCPSite) -> int:
    # aiohttp exposes the bound port only through the asyncio server behind the site.
    server = site._server
    assert isinstance(server, asyncio.Server) and server.sockets
    port: int = server.sockets[0].getsockname()[1]
    return port
