"""The SSRF guard's redirect and DNS defences, through the deployed tool proxy.

The Lambda handler runs behind `local/apigw_adapter.py`, driven by the real MCP client, as in
test_tool_proxy.py. Two listeners share one port: 127.0.0.2 stands for a tenant's public host (the
policy allowlists exactly 127.0.0.2/32), 127.0.0.1 for something inside the network that must never be
reached. Test-only host names are answered by a zone resolver: every event loop made while the test runs
(the test's own and the one Mangum makes in the Lambda thread) answers `getaddrinfo` for those names
from the zone, one answer per lookup, and passes every other name to the system resolver. A build that
resolved again at connect time, checked only the first answer, or followed redirects reaches 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import ipaddress
import os
import socket
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx2
import pytest
from aiohttp import web
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, TextContent

from functions.tool_proxy.egress import EgressPolicy, EgressRefused, EgressResponse, send
from functions.tool_proxy.handler import create_handler
from functions.tool_proxy.proxy import ToolProxy
from functions.tool_proxy.sources import BundleToolSecrets, MappingToolboxes
from local.apigw_adapter import lambda_route
from shared.stream_token import mint_stream_token

SECRET = "egress-test-secret"
TENANT = "tenant-egress"
PUBLIC = "127.0.0.2"  # allowlisted: stands for a public host
INSIDE = "127.0.0.1"  # not allowlisted: stands for the inside of the network
METADATA_URL = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
REDIRECTS = (300, 301, 302, 303, 307, 308, 399)
STATUSES = (*REDIRECTS, 200, 299, 400)
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
CAP = 64 * 1024  # EgressPolicy's default response cap, which these tests leave as it is


class Zone:
    """Answers for test-only names: each lookup takes the next answer; the last one repeats."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.lookups: Counter[str] = Counter()

    def answer(self, host: str) -> list[str] | None:
        if host not in self.answers:
            return None
        sequence = self.answers[host]
        answer = sequence[min(self.lookups[host], len(sequence) - 1)]
        self.lookups[host] += 1
        return answer


@contextmanager
def zone_resolver(zone: Zone) -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop (and policy, for the Lambda thread's loop) whose getaddrinfo consults `zone`."""

    class ZoneLoop(asyncio.SelectorEventLoop):
        async def getaddrinfo(self, host: Any, port: Any, *, family: int = 0, type: int = 0,
                              proto: int = 0, flags: int = 0) -> list[Any]:
            name = host.decode() if isinstance(host, bytes) else host
            answer = zone.answer(name) if isinstance(name, str) else None
            if answer is None:
                return await super().getaddrinfo(host, port, family=family, type=type, proto=proto,
                                                 flags=flags)
            if not answer:  # the name does not exist
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, int(port or 0)))
                    for address in answer]

    class ZonePolicy(asyncio.DefaultEventLoopPolicy):
        _loop_factory = ZoneLoop

    previous = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(ZonePolicy())
    loop = ZoneLoop()
    try:
        yield loop
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
        asyncio.set_event_loop_policy(previous)


class Listeners:
    """The public host and the inside host on one port, counting every request by path."""

    def __init__(self) -> None:
        self.hits: dict[str, Counter[str]] = {PUBLIC: Counter(), INSIDE: Counter()}
        self.port = 0
        self._runners: list[web.AppRunner] = []

    def _app(self, address: str) -> web.Application:
        async def any_path(request: web.Request) -> web.StreamResponse:
            self.hits[address][request.path] += 1
            if request.path == "/redirect-to-metadata":
                raise web.HTTPFound(METADATA_URL)
            if request.path == "/redirect-inside":
                raise web.HTTPFound(f"http://{INSIDE}:{self.port}/secret")
            if request.path.startswith("/status/"):
                status = int(request.path.rsplit("/", 1)[1])
                return web.Response(status=status, text=f"status {status}",
                                    headers={"Location": METADATA_URL} if 300 <= status < 400 else {})
            if request.path.startswith("/bytes/"):
                return web.Response(body=b"x" * int(request.path.rsplit("/", 1)[1]), content_type="text/plain")
            return web.json_response({"answered_by": address})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", any_path)
        return app

    async def start(self) -> Listeners:
        for _ in range(20):
            public = web.AppRunner(self._app(PUBLIC), shutdown_timeout=0.1)
            await public.setup()
            site = web.TCPSite(public, PUBLIC, 0)
            await site.start()
            server = site._server
            assert isinstance(server, asyncio.Server)
            self.port = server.sockets[0].getsockname()[1]
            inside = web.AppRunner(self._app(INSIDE), shutdown_timeout=0.1)
            await inside.setup()
            try:
                await web.TCPSite(inside, INSIDE, self.port).start()
            except OSError:  # the port is taken on 127.0.0.1: try another one
                await inside.cleanup()
                await public.cleanup()
                continue
            self._runners = [public, inside]
            return self
        raise RuntimeError(f"no port free on both {PUBLIC} and {INSIDE} after 20 tries")

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()


def _tool(name: str, url: str) -> dict[str, Any]:
    return {"name": name, "description": f"{name} tool",
            "input_schema": {"type": "object", "properties": {}, "additionalProperties": False},
            "target": {"method": "GET", "url": url, "headers": {}}}


@asynccontextmanager
async def proxy_session(listeners: Listeners) -> AsyncIterator[ClientSession]:
    """An MCP session with the tool proxy Lambda, its policy allowlisting only the public host."""
    port = listeners.port
    tools = [_tool("rebinding", f"http://rebind.tools.test:{port}/tool"),
             _tool("mixed_answer", f"http://mixed.tools.test:{port}/tool"),
             _tool("no_such_name", f"http://nothing.tools.test:{port}/tool"),
             _tool("scoped_link_local", f"http://scoped.tools.test:{port}/tool"),
             _tool("unreadable_answer", f"http://garbled.tools.test:{port}/tool"),
             _tool("redirect_to_metadata", f"http://{PUBLIC}:{port}/redirect-to-metadata"),
             _tool("redirect_inside", f"http://{PUBLIC}:{port}/redirect-inside"),
             _tool("public", f"http://{PUBLIC}:{port}/tool"),
             *[_tool(f"status_{code}", f"http://{PUBLIC}:{port}/status/{code}") for code in STATUSES],
             *[_tool(f"bytes_{n}", f"http://{PUBLIC}:{port}/bytes/{n}") for n in (CAP, CAP + 1)]]
    policy = EgressPolicy(timeout_s=2.0, allowed_networks=EgressPolicy.parse_networks(f"{PUBLIC}/32"))
    proxy = ToolProxy(MappingToolboxes({TENANT: {"tools": tools}}), BundleToolSecrets(lambda: {}), policy)
    handler = create_handler(functools.partial(lambda p: (p, SECRET), proxy))
    app = web.Application()
    app.router.add_route("*", "/prod/mcp", lambda_route(handler, shape="rest", strip_prefix="/prod"))
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, INSIDE, 0)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.Server)
    url = f"http://{INSIDE}:{server.sockets[0].getsockname()[1]}/prod/mcp"
    token = mint_stream_token(SECRET, TENANT, "CA" + "0" * 32)
    try:
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, trust_env=False) as http, \
                streamable_http_client(url, http_client=http) as (read, write), \
                ClientSession(read, write) as session:
            await session.initialize()
            yield session
    finally:
        await runner.cleanup()


def _text(result: CallToolResult) -> str:
    content = result.content[0]
    assert isinstance(content, TextContent)
    return content.text


def _call(zone: Zone, tool: str, env_proxy: bool = False) -> tuple[CallToolResult, Listeners]:
    """One tool call through the Lambda; `env_proxy` points HTTP(S)_PROXY at the inside host meanwhile."""
    async def scenario() -> tuple[CallToolResult, Listeners]:
        listeners = await Listeners().start()
        saved = {k: os.environ.pop(k, None) for k in PROXY_VARIABLES}
        if env_proxy:
            os.environ["HTTP_PROXY"] = os.environ["HTTPS_PROXY"] = f"http://{INSIDE}:{listeners.port}"
        try:
            async with proxy_session(listeners) as session:
                return await session.call_tool(tool, {}), listeners
        finally:
            for key, value in saved.items():
                os.environ.pop(key, None)
                if value is not None:
                    os.environ[key] = value
            await listeners.stop()

    with zone_resolver(zone) as loop:
        return loop.run_until_complete(scenario())


def test_the_allowlisted_host_is_reachable() -> None:
    """The control: without a trick, the public host answers (so the refusals below mean something)."""
    result, listeners = _call(Zone({}), "public")
    assert not result.is_error, _text(result)
    assert result.structured_content == {"answered_by": PUBLIC}
    assert listeners.hits[PUBLIC]["/tool"] == 1


def test_dns_answer_changing_between_check_and_connect_still_connects_to_the_checked_address() -> None:
    zone = Zone({"rebind.tools.test": [[PUBLIC], [INSIDE]]})
    result, listeners = _call(zone, "rebinding")
    assert zone.lookups["rebind.tools.test"] == 1  # resolved once, for the check
    assert not result.is_error, _text(result)
    assert result.structured_content == {"answered_by": PUBLIC}
    assert sum(listeners.hits[INSIDE].values()) == 0


def test_mixed_public_and_private_answer_is_refused_with_the_private_reason() -> None:
    zone = Zone({"mixed.tools.test": [[PUBLIC, "10.0.0.7"]]})
    result, listeners = _call(zone, "mixed_answer")
    assert result.is_error
    assert _text(result) == "Target refused: mixed.tools.test resolves to a private address"
    assert sum(listeners.hits[PUBLIC].values()) == 0  # refused before any connection


def test_redirect_to_the_metadata_address_is_refused_not_followed() -> None:
    result, listeners = _call(Zone({}), "redirect_to_metadata")
    assert result.is_error
    assert _text(result) == "Target refused: target answered a redirect (HTTP 302), which is not followed"
    assert listeners.hits[PUBLIC]["/redirect-to-metadata"] == 1


def test_redirect_inside_the_network_is_refused_and_never_reaches_it() -> None:
    result, listeners = _call(Zone({}), "redirect_inside")
    assert result.is_error
    assert _text(result) == "Target refused: target answered a redirect (HTTP 302), which is not followed"
    assert sum(listeners.hits[INSIDE].values()) == 0


@pytest.mark.parametrize("status", REDIRECTS)
def test_every_redirect_status_is_refused(status: int) -> None:
    result, _ = _call(Zone({}), f"status_{status}")
    assert result.is_error
    assert _text(result) == f"Target refused: target answered a redirect (HTTP {status}), which is not followed"


def test_statuses_either_side_of_the_redirect_range_are_answers_not_refusals() -> None:
    ok, _ = _call(Zone({}), "status_200")
    odd, _ = _call(Zone({}), "status_299")
    bad, _ = _call(Zone({}), "status_400")
    assert not ok.is_error and _text(ok) == "status 200"
    assert not odd.is_error and _text(odd) == "status 299"
    assert bad.is_error and _text(bad) == "Target answered HTTP 400: status 400"


def test_a_proxy_in_the_environment_is_not_used() -> None:
    """An HTTP(S)_PROXY would resolve the name itself, after the check: the request goes direct."""
    result, listeners = _call(Zone({}), "public", env_proxy=True)
    assert not result.is_error and result.structured_content == {"answered_by": PUBLIC}
    assert sum(listeners.hits[INSIDE].values()) == 0


@pytest.mark.parametrize("tool, answers, reason", [
    ("no_such_name", [], "cannot resolve nothing.tools.test"),
    ("scoped_link_local", [[PUBLIC, "fe80::1%eth0"]], "scoped.tools.test resolves to a link-local address"),
    ("unreadable_answer", [["not-an-address"]], "garbled.tools.test resolves to an unreadable address"),
])
def test_odd_dns_answers_are_refused_with_their_reason(tool: str, answers: list[list[str]], reason: str) -> None:
    host = reason.split()[-1] if tool == "no_such_name" else reason.split()[0]
    result, listeners = _call(Zone({host: answers or [[]]}), tool)
    assert result.is_error and _text(result) == f"Target refused: {reason}"
    assert sum(listeners.hits[PUBLIC].values()) == 0


@pytest.mark.parametrize("url", ["ftp://127.0.0.2/x", "file:///etc/passwd", "http:///no-host"])
async def test_send_refuses_a_url_that_is_not_http_with_a_host(url: str) -> None:
    """Toolbox validation already insists on http(s); the egress guard does not rely on it."""
    with pytest.raises(EgressRefused, match="target URL must be http"):
        await send("GET", url, {}, None, None, EgressPolicy(allowed_networks=EgressPolicy.parse_networks("0.0.0.0/0")))


def test_policy_defaults_and_immutability() -> None:
    """The defaults the README states (5 s, 64 KiB, nothing allowlisted); a shared policy cannot be changed."""
    policy = EgressPolicy()
    assert (policy.timeout_s, policy.max_response_bytes, policy.allowed_networks) == (5.0, 65536, ())
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.allowed_networks = EgressPolicy.parse_networks("0.0.0.0/0")  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        EgressResponse(200, "text/plain", b"").status = 500  # type: ignore[misc]


def test_a_body_of_exactly_the_cap_is_accepted_and_one_byte_more_is_not() -> None:
    exact, _ = _call(Zone({}), f"bytes_{CAP}")
    over, _ = _call(Zone({}), f"bytes_{CAP + 1}")
    assert not exact.is_error and len(_text(exact)) == CAP
    assert over.is_error and _text(over) == f"Tool call failed: response exceeded {CAP} bytes"


def test_allowlist_entries_may_name_a_host_inside_the_network() -> None:
    """`10.1.2.3/8` means 10.0.0.0/8 (an operator writes what they know), not a startup crash."""
    assert EgressPolicy.parse_networks(" 10.1.2.3/8 , ::1 ,") == (
        ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))
