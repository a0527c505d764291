"""The tool proxy spoken as MCP: a low-level `mcp` Server over streamable HTTP (stateless, JSON).

Imported lazily by the handler: `mcp` alone costs ~0.5 s to import. The low-level server (rather than
`MCPServer`) because the tool list is per caller, decided at request time from the bearer token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from functions.tool_proxy.caller_auth import caller_grant
from functions.tool_proxy.proxy import ToolProxy
from shared.stream_token import InvalidStreamToken

MCP_PATH = "/mcp"
_LOCAL_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
_LOCAL_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]


def _headers_of(ctx: Any) -> Mapping[str, str]:
    request = getattr(ctx, "request", None)
    headers = getattr(request, "headers", None)
    return headers if headers is not None else {}


def build_server(proxy: ToolProxy, secret: str) -> Server[Any]:
    """The MCP registry. Module-level in the handler; only the HTTP wrapper is rebuilt per invocation."""

    def tenant_of(ctx: Any) -> str:
        # The ASGI guard below already refused bad tokens; verifying again here (one HMAC) keeps the
        # tenant tied to this very request instead of trusting state passed between layers.
        return caller_grant(_headers_of(ctx), secret).tenant_id

    async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        specs = await proxy.list_tools(tenant_of(ctx))
        return types.ListToolsResult(tools=[
            types.Tool(name=s.name, description=s.description, input_schema=s.input_schema) for s in specs])

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        result = await proxy.call_tool(tenant_of(ctx), params.name, dict(params.arguments or {}))
        return types.CallToolResult(content=[types.TextContent(type="text", text=result.text)],
                                    structured_content=result.structured, is_error=result.is_error)

    return Server("tenant-tool-proxy", version="1.0.0", on_list_tools=list_tools, on_call_tool=call_tool)


def build_app(server: Server[Any], secret: str, allowed_hosts: Sequence[str]) -> ASGIApp:
    """A fresh Starlette app (its session manager may run only once) behind the bearer-token guard."""
    security = TransportSecuritySettings(enable_dns_rebinding_protection=True,
                                         allowed_hosts=[*allowed_hosts, *_LOCAL_HOSTS],
                                         allowed_origins=list(_LOCAL_ORIGINS))
    app = server.streamable_http_app(streamable_http_path=MCP_PATH, stateless_http=True,
                                     json_response=True, transport_security=security)
    return BearerGuard(app, secret)


class BearerGuard:
    """Answers 401 before MCP sees a request without a valid caller token (lifespan passes through)."""

    def __init__(self, app: ASGIApp, secret: str) -> None:
        self._app = app
        self._secret = secret

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
            try:
                caller_grant(headers, self._secret)
            except InvalidStreamToken as exc:
                await _reply(send, 401, f"unauthorized: {exc}")
                return
        await self._app(scope, receive, send)


async def _reply(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode()),
                            (b"www-authenticate", b"Bearer")]})
    await send({"type": "http.response.body", "body": body})
