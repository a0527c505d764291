"""The MCP tool proxy, served the way API Gateway serves it, driven by the real MCP client.

The Lambda handler runs behind `local/apigw_adapter.py` on loopback (REST API events with a `/prod`
stage); `mcp.ClientSession` talks to it over streamable HTTP with an httpx2 client carrying the bearer
token; tool targets are real aiohttp endpoints on 127.0.0.1 and ::1.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from aiohttp import web
from mcp import ClientSession, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, TextContent

from functions.tool_proxy.egress import EgressPolicy
from functions.tool_proxy.handler import create_handler
from functions.tool_proxy.proxy import CallRecord, ToolProxy
from functions.tool_proxy.sources import BundleToolSecrets, MappingToolboxes
from local.apigw_adapter import lambda_route
from shared.stream_token import mint_stream_token
from tests.fakes.tenant_tool_server import API_KEY_HEADER, TenantToolServer

SECRET = "tool-proxy-test-secret"
TENANT_A = "tenant-a"
TENANT_B = "tenant-b"
LOOPBACK = EgressPolicy.parse_networks("127.0.0.0/8,::1/128")
# Addresses that must never be reached unless allowlisted; the non-loopback ones need no listener
# because the refusal happens before any connection is attempted.
BLOCKED_HOSTS = ["10.0.0.1", "172.16.0.1", "192.168.0.1", "169.254.169.254"]


def _tool(name: str, url: str, method: str = "GET", props: dict[str, Any] | None = None,
          required: list[str] | None = None, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {"name": name, "description": f"{name} tool",
            "input_schema": {"type": "object", "properties": props or {}, "required": required or [],
                             "additionalProperties": False},
            "target": {"method": method, "url": url, "headers": headers or {}}}


def _toolboxes(server: TenantToolServer) -> dict[str, Any]:
    probes = {"probe_ipv4_loopback": server.url("/echo/probe"),
              "probe_localhost_name": server.url("/echo/probe", host="localhost")}
    if server.port_v6 is not None:
        probes["probe_ipv6_loopback"] = server.url("/echo/probe", host="::1")
    for host in BLOCKED_HOSTS:
        probes[f"probe_{host.replace('.', '_')}"] = f"http://{host}:{server.port_v4}/echo/probe"
    tools_a = [
        _tool("create_note", server.url("/echo/{{item}}"), method="POST",
              props={"item": {"type": "string", "minLength": 1}, "count": {"type": "integer"}},
              required=["item", "count"], headers={API_KEY_HEADER: "{{secret:API_KEY}}"}),
        _tool("slow", server.url("/slow")),
        _tool("huge", server.url("/huge")),
        *[_tool(name, url) for name, url in probes.items()],
    ]
    tools_b = [_tool("weather", server.url("/echo/weather"), props={"city": {"type": "string"}},
                     required=["city"])]
    return {TENANT_A: {"tools": tools_a}, TENANT_B: {"tools": tools_b}}


@pytest.fixture
async def tool_server() -> AsyncIterator[TenantToolServer]:
    server = await TenantToolServer().start()
    yield server
    await server.stop()


@pytest.fixture
async def proxy_url(tool_server: TenantToolServer) -> AsyncIterator[dict[str, Any]]:
    """Two deployments of the proxy: `/prod` allows loopback explicitly, `/strict` allows nothing."""
    records: list[CallRecord] = []
    toolboxes = MappingToolboxes(_toolboxes(tool_server))
    secrets = BundleToolSecrets(lambda: {TENANT_A: {"API_KEY": tool_server.api_key}})

    def proxy(networks: tuple[Any, ...]) -> ToolProxy:
        return ToolProxy(toolboxes, secrets, EgressPolicy(timeout_s=1.0, max_response_bytes=64 * 1024,
                                                          allowed_networks=networks),
                         observer=records.append)

    app = web.Application()
    for stage, networks in (("prod", LOOPBACK), ("strict", ())):
        handler = create_handler(functools.partial(lambda n: (proxy(n), SECRET), networks))
        app.router.add_route("*", f"/{stage}/mcp",
                             lambda_route(handler, shape="rest", stage=stage, strip_prefix=f"/{stage}"))
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield {"base": f"http://127.0.0.1:{port}", "records": records}
    await runner.cleanup()


def _text(result: CallToolResult) -> str:
    content = result.content[0]
    assert isinstance(content, TextContent)
    return content.text


def _token(tenant: str, secret: str = SECRET) -> str:
    return mint_stream_token(secret, tenant, "CA" + "0" * 32)


@asynccontextmanager
async def mcp_session(url: str, token: str) -> AsyncIterator[ClientSession]:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http, \
            streamable_http_client(url, http_client=http) as (read, write), \
            ClientSession(read, write) as session:
        await session.initialize()
        yield session


async def test_each_tenant_sees_only_its_own_tools(proxy_url: dict[str, Any]) -> None:
    url = proxy_url["base"] + "/prod/mcp"
    async with mcp_session(url, _token(TENANT_A)) as session:
        names_a = {tool.name for tool in (await session.list_tools()).tools}
    async with mcp_session(url, _token(TENANT_B)) as session:
        tools_b = (await session.list_tools()).tools
        stolen = await session.call_tool("create_note", {"item": "x", "count": 1})
    assert "create_note" in names_a and "weather" not in names_a
    assert [tool.name for tool in tools_b] == ["weather"]
    assert tools_b[0].input_schema["required"] == ["city"]
    assert stolen.is_error and "Unknown tool" in _text(stolen)


async def test_call_reaches_target_with_secret_header_and_arguments(proxy_url: dict[str, Any]) -> None:
    async with mcp_session(proxy_url["base"] + "/prod/mcp", _token(TENANT_A)) as session:
        result = await session.call_tool("create_note", {"item": "order 42", "count": 3})
    assert not result.is_error
    echoed = json.loads(_text(result))
    assert echoed["method"] == "POST" and echoed["item"] == "order 42"
    assert echoed["json"] == {"count": 3} and echoed["api_key_ok"] is True
    assert result.structured_content == echoed
    record = proxy_url["records"][-1]
    assert (record.tenant_id, record.tool, record.outcome, record.http_status) == \
        (TENANT_A, "create_note", "ok", 200)


async def test_other_tenant_tool_call(proxy_url: dict[str, Any]) -> None:
    async with mcp_session(proxy_url["base"] + "/prod/mcp", _token(TENANT_B)) as session:
        result = await session.call_tool("weather", {"city": "Oslo"})
    echoed = json.loads(_text(result))
    assert not result.is_error and echoed["query"] == {"city": "Oslo"} and echoed["api_key_ok"] is False


@pytest.mark.parametrize("authorization", [None, "Basic dXNlcjpwdw==", "Bearer not-a-token",
                                           f"Bearer {_token(TENANT_A, secret='another-secret')}"])
async def test_bad_token_is_401_before_mcp(proxy_url: dict[str, Any], authorization: str | None) -> None:
    headers = {"Accept": "application/json, text/event-stream"}
    if authorization is not None:
        headers["Authorization"] = authorization
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            proxy_url["base"] + "/prod/mcp", headers=headers,
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert response.status_code == 401
    assert "tools" not in response.text


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


async def test_bad_token_fails_the_real_client(proxy_url: dict[str, Any]) -> None:
    # The SDK surfaces the 401 on `initialize` as an MCPError inside its task groups.
    with pytest.raises(BaseException) as failure:
        async with mcp_session(proxy_url["base"] + "/prod/mcp", "forged.token"):
            pass
    assert any(isinstance(leaf, MCPError) for leaf in _leaves(failure.value)), repr(failure.value)
    assert proxy_url["records"] == []


async def test_bad_arguments_are_a_tool_error(proxy_url: dict[str, Any], tool_server: TenantToolServer) -> None:
    async with mcp_session(proxy_url["base"] + "/prod/mcp", _token(TENANT_A)) as session:
        missing = await session.call_tool("create_note", {"item": "x"})
        wrong_type = await session.call_tool("create_note", {"item": "x", "count": "three"})
        extra = await session.call_tool("create_note", {"item": "x", "count": 1, "admin": True})
    for result in (missing, wrong_type, extra):
        assert result.is_error and _text(result).startswith("Invalid arguments")
    assert "count" in _text(missing) and "count" in _text(wrong_type)
    assert tool_server.hits["/echo"] == 0


async def test_slow_target_times_out_as_tool_error(proxy_url: dict[str, Any],
                                                   tool_server: TenantToolServer) -> None:
    async with mcp_session(proxy_url["base"] + "/prod/mcp", _token(TENANT_A)) as session:
        result = await session.call_tool("slow", {})
    assert result.is_error and "did not answer within 1 s" in _text(result)
    assert tool_server.hits["/slow"] == 1
    assert proxy_url["records"][-1].outcome == "failed"


async def test_huge_response_is_capped(proxy_url: dict[str, Any]) -> None:
    async with mcp_session(proxy_url["base"] + "/prod/mcp", _token(TENANT_A)) as session:
        result = await session.call_tool("huge", {})
    assert result.is_error and "exceeded 65536 bytes" in _text(result)
    assert len(_text(result)) < 1000


async def test_ssrf_matrix_refused_without_allowlist(proxy_url: dict[str, Any],
                                                     tool_server: TenantToolServer) -> None:
    async with mcp_session(proxy_url["base"] + "/strict/mcp", _token(TENANT_A)) as session:
        names = [t.name for t in (await session.list_tools()).tools if t.name.startswith("probe_")]
        results = {name: await session.call_tool(name, {}) for name in names}
    assert len(names) == 2 + len(BLOCKED_HOSTS) + (1 if tool_server.port_v6 else 0)
    for name, result in results.items():
        assert result.is_error, name
        assert _text(result).startswith("Target refused"), (name, _text(result))
    assert "metadata" in _text(results["probe_169_254_169_254"])
    assert "loopback" in _text(results["probe_localhost_name"])
    assert tool_server.hits["/echo"] == 0  # nothing was contacted, although the loopback ones listen


async def test_allowlisted_loopback_is_reachable_but_private_ranges_are_not(
        proxy_url: dict[str, Any], tool_server: TenantToolServer) -> None:
    loopback = ["probe_ipv4_loopback", "probe_localhost_name"]
    if tool_server.port_v6 is not None:
        loopback.append("probe_ipv6_loopback")
    async with mcp_session(proxy_url["base"] + "/prod/mcp", _token(TENANT_A)) as session:
        allowed = {name: await session.call_tool(name, {}) for name in loopback}
        blocked = {h: await session.call_tool(f"probe_{h.replace('.', '_')}", {}) for h in BLOCKED_HOSTS}
    for name, result in allowed.items():
        assert not result.is_error, (name, _text(result))
    assert tool_server.hits["/echo"] == len(loopback)
    for host, result in blocked.items():
        assert result.is_error and _text(result).startswith("Target refused"), host
