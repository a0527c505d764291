"""The tenant's own tools, over MCP through the tool proxy, with a per-tenant cached tool list.

One `MCPServerStreamableHttp` per call (the bearer token names the tenant and the call), connected on
the call's first turn. The tool list is shared by every call of a tenant (in process, and in Redis when
a cache is given), so later calls skip `tools/list`. When the proxy is down the call carries on with the
built-in tools only; the failure is logged and retried after `retry_after_s`, never on every turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from agents import AgentBase, RunContextWrapper
from agents.mcp import MCPServer, MCPServerStreamableHttp
from mcp.types import CallToolResult
from mcp.types import Tool as MCPTool

from shared.stream_token import mint_stream_token
from shared.tenancy.cache import JsonCache
from streaming_service.engines.base import CallContext
from streaming_service.telemetry.call_hooks import current_call_hooks
from streaming_service.telemetry.tracing import xray_headers

log = logging.getLogger(__name__)
MCP_PATH = "/mcp"


class TenantToolList:
    """Tool lists by tenant: memory first, then Redis (optional), refilled on a miss."""

    def __init__(self, cache: JsonCache | None = None, ttl_s: int = 900) -> None:
        self._cache = cache
        self._ttl_s = ttl_s
        self._memory: dict[str, tuple[float, list[MCPTool]]] = {}

    async def get(self, tenant_id: str) -> list[MCPTool] | None:
        # Redis first when there is one: an admin change deletes the key there (shared/tenancy/directory.py),
        # and every task must see that at once. Memory serves only while Redis is away (or absent).
        if self._cache is not None and self._cache.available:
            raw = await self._cache.get_json(self._cache.key("t", tenant_id, "mcp_tools"))
            if isinstance(raw, list):
                tools = [MCPTool.model_validate(t) for t in raw]
                self._memory[tenant_id] = (time.monotonic(), tools)
                return tools
            if self._cache.available:  # Redis answered: nothing cached (never listed, or invalidated)
                self._memory.pop(tenant_id, None)
                return None
        hit = self._memory.get(tenant_id)
        if hit is not None and time.monotonic() - hit[0] < self._ttl_s:
            return hit[1]
        return None

    async def put(self, tenant_id: str, tools: list[MCPTool]) -> None:
        self._memory[tenant_id] = (time.monotonic(), tools)
        if self._cache is not None:
            await self._cache.set_json(self._cache.key("t", tenant_id, "mcp_tools"),
                                       [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools],
                                       ttl_s=self._ttl_s)


class TenantMCPServer(MCPServerStreamableHttp):
    """The SDK's streamable-HTTP MCP client with its tool list served from the tenant cache."""

    def __init__(self, tenant_id: str, tool_list: TenantToolList, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._tenant_id = tenant_id
        self._tool_list = tool_list

    async def list_tools(self, run_context: RunContextWrapper[Any] | None = None,
                         agent: AgentBase | None = None) -> list[MCPTool]:
        cached = await self._tool_list.get(self._tenant_id)
        if cached is not None:
            return cached
        tools = await super().list_tools(run_context, agent)
        await self._tool_list.put(self._tenant_id, tools)
        return tools

    async def call_tool(self, tool_name: str, arguments: dict[str, Any] | None,
                        meta: dict[str, Any] | None = None) -> CallToolResult:
        # Its own span under the agent's (the SDK runs tools in tasks that copy the turn's context).
        with current_call_hooks().span(f"mcp {tool_name}", tool=tool_name, server=self.name):
            return await super().call_tool(tool_name, arguments, meta)


class TenantToolServers:
    def __init__(self, mcp_base: str, token_secret: str, tool_list: TenantToolList | None = None, *,
                 timeout_s: float = 5.0, connect_timeout_s: float = 3.0, retry_after_s: float = 30.0) -> None:
        base = mcp_base.rstrip("/")
        self.url = base if base.endswith(MCP_PATH) else base + MCP_PATH
        self._secret = token_secret
        self._tool_list = tool_list or TenantToolList()
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._retry_after_s = retry_after_s
        self._servers: dict[str, tuple[MCPServer, asyncio.Event, asyncio.Future[None]]] = {}
        self._opening: dict[str, asyncio.Lock] = {}  # one connect per call (call start and a turn may race)
        self._down_until: dict[str, float] = {}  # call SID → monotonic time of the next attempt

    @property
    def enabled(self) -> bool:
        return bool(self.url != MCP_PATH and self._secret)

    async def servers_for(self, call: CallContext) -> list[MCPServer]:
        """This call's connected tenant server, or [] (proxy off, down, or refused)."""
        if not self.enabled:
            return []
        lock = self._opening.setdefault(call.call_sid, asyncio.Lock())
        async with lock:
            return await self._open(call)

    async def _open(self, call: CallContext) -> list[MCPServer]:
        entry = self._servers.get(call.call_sid)
        if entry is not None:
            return [entry[0]]
        if time.monotonic() < self._down_until.get(call.call_sid, 0.0):
            return []
        token = mint_stream_token(self._secret, call.tenant_id, call.call_sid, ttl_s=3600)
        server = TenantMCPServer(
            call.tenant_id, self._tool_list, name="tenant-tools", cache_tools_list=True,
            client_session_timeout_seconds=self._timeout_s, max_retry_attempts=0,
            # The call's trace rides on every MCP request (X-Ray format), so /mcp joins the call's trace.
            params={"url": self.url, "headers": {"Authorization": f"Bearer {token}", **xray_headers()},
                    "timeout": self._timeout_s, "terminate_on_close": True})
        # The MCP client's task groups must be entered and left by one task: a holder task per call owns
        # the connection; turns (other tasks) only send requests over it.
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        stop = asyncio.Event()
        holder = asyncio.ensure_future(_hold(server, ready, stop))
        try:
            await asyncio.wait_for(asyncio.shield(ready), self._connect_timeout_s)
        except Exception as exc:  # down, refused, timed out: the call goes on without tenant tools
            log.warning("tenant tools unavailable", extra={"error": f"{type(exc).__name__}: {exc}"})
            self._down_until[call.call_sid] = time.monotonic() + self._retry_after_s
            stop.set()
            holder.cancel()
            with contextlib.suppress(BaseException):
                await holder
            return []
        self._servers[call.call_sid] = (server, stop, holder)
        return [server]

    async def release(self, call_sid: str) -> None:
        """End the call's MCP session (call at hang-up)."""
        self._down_until.pop(call_sid, None)
        self._opening.pop(call_sid, None)
        entry = self._servers.pop(call_sid, None)
        if entry is not None:
            _, stop, holder = entry
            stop.set()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(holder, self._timeout_s)

    async def aclose(self) -> None:
        for call_sid in list(self._servers):
            await self.release(call_sid)


async def _hold(server: MCPServer, ready: asyncio.Future[None], stop: asyncio.Event) -> None:
    try:
        await server.connect()
        await server.list_tools()  # fills the tenant cache and proves the proxy answers
    except Exception as exc:
        if not ready.done():
            ready.set_exception(exc)
        with contextlib.suppress(Exception):
            await server.cleanup()
        return
    if not ready.done():
        ready.set_result(None)
    try:
        await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            await server.cleanup()
