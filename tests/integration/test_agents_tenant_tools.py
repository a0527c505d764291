"""Tenant tools over MCP: the real tool-proxy MCP app (bearer-token guard included) served by uvicorn on a
socket, with a stand-in tool backend; the fake OpenAI server calls the tenant tool through the agents."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from pydantic import SecretStr

from functions.tool_proxy.mcp_server import build_app, build_server
from shared.settings import Settings
from streaming_service.agents.tenant_tools import TenantToolList, TenantToolServers
from streaming_service.engines.base import AgentEventKind, CallContext, Conversation
from streaming_service.engines.openai_agent import OpenAIAgentRuntime
from tests.fakes.openai_server import FakeOpenAI, ToolCall

SECRET = "tool-proxy-secret"


@dataclass
class Spec:
    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass
class Result:
    text: str
    structured: dict[str, Any] | None = None
    is_error: bool = False


@dataclass
class StandInTools:
    """What the proxy's ToolProxy offers MCP: per-tenant tool specs and calls (recorded)."""

    listed: list[str] = field(default_factory=list)
    called: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    async def list_tools(self, tenant_id: str) -> list[Spec]:
        self.listed.append(tenant_id)
        return [Spec("order_status", "Where a customer's order is.",
                     {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]})]

    async def call_tool(self, tenant_id: str, name: str, arguments: dict[str, Any]) -> Result:
        self.called.append((tenant_id, name, arguments))
        return Result(f"Order {arguments.get('order_id')} ships on Friday.")


@pytest.fixture
async def proxy() -> AsyncIterator[tuple[str, StandInTools]]:
    tools = StandInTools()
    app = build_app(build_server(tools, SECRET), SECRET, allowed_hosts=[])  # type: ignore[arg-type]
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()  # connections wait in the backlog until uvicorn has started: no polling for readiness
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", tools
    server.should_exit = True
    await task


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    server = FakeOpenAI()
    await server.start()
    yield server
    await server.stop()


def runtime_for(fake: FakeOpenAI, tenant_tools: TenantToolServers) -> OpenAIAgentRuntime:
    return OpenAIAgentRuntime(Settings(openai_api_key=SecretStr("sk-test"), openai_base_url=fake.base_url,
                                       openai_model="fake-model"), tenant_tools=tenant_tools)


def new_call(tenant_id: str, sid: str) -> CallContext:
    call = CallContext(call_sid=sid, stream_sid="MZ1", tenant_id=tenant_id)
    call.current_agent = "general"
    return call


async def test_tenant_tool_is_offered_called_and_its_list_cached_per_tenant(
        proxy: tuple[str, StandInTools], fake: FakeOpenAI) -> None:
    base, tools = proxy
    servers = TenantToolServers(base, SECRET, TenantToolList())
    runtime = runtime_for(fake, servers)
    tenant = str(uuid.uuid4())
    try:
        first = new_call(tenant, "CA1")
        fake.script(ToolCall("order_status", {"order_id": "A1"}), "Your order ships on Friday.")
        events = [e async for e in runtime.run_turn(first, Conversation(), "Where is my order A1?")]
        output = next(e.data["output"] for e in events if e.kind is AgentEventKind.TOOL_RESULT)
        assert "ships on Friday" in output
        assert "order_status" in {t["function"]["name"] for t in fake.requests[0]["tools"]}
        assert tools.called == [(tenant, "order_status", {"order_id": "A1"})]
        listed = len(tools.listed)  # the mcp client may list again itself to check a result's schema
        assert listed >= 1 and set(tools.listed) == {tenant}

        second = new_call(tenant, "CA2")  # another call of the same tenant: no tools/list again
        [e async for e in runtime.run_turn(second, Conversation(), "Hello")]
        assert len(tools.listed) == listed
        assert "order_status" in {t["function"]["name"] for t in fake.requests[-1]["tools"]}
        await runtime.release_call(first)
        await runtime.release_call(second)
    finally:
        await runtime.aclose()


async def test_proxy_down_the_call_carries_on_without_tenant_tools(
        fake: FakeOpenAI, caplog: pytest.LogCaptureFixture) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens here
    runtime = runtime_for(fake, TenantToolServers(f"http://127.0.0.1:{port}", SECRET, connect_timeout_s=2.0))
    try:
        with caplog.at_level(logging.WARNING):
            events = [e async for e in runtime.run_turn(new_call(str(uuid.uuid4()), "CA3"), Conversation(), "Hi")]
        assert "".join(e.text for e in events).startswith("You said: Hi")
        assert "order_status" not in {t["function"]["name"] for t in fake.requests[0]["tools"]}
        assert "tenant tools unavailable" in caplog.text
    finally:
        await runtime.aclose()


async def test_a_wrong_secret_is_refused_and_the_call_carries_on(
        proxy: tuple[str, StandInTools], fake: FakeOpenAI) -> None:
    base, tools = proxy
    runtime = runtime_for(fake, TenantToolServers(base, "not-the-proxy-secret"))
    try:
        events = [e async for e in runtime.run_turn(new_call(str(uuid.uuid4()), "CA4"), Conversation(), "Hi")]
        assert "".join(e.text for e in events).startswith("You said: Hi")
        assert tools.listed == []
    finally:
        await runtime.aclose()
