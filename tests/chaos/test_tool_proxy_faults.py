"""Tenant tools failing under a live call: the tool proxy (the real Lambda handler behind the API Gateway
adapter, spoken to over MCP by the service) times out on a slow target, or gets garbage back. The agent
is handed an error it can relay, the caller hears an answer without dead air, and the call goes on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from functions.tool_proxy.egress import EgressPolicy
from functions.tool_proxy.handler import create_handler
from functions.tool_proxy.proxy import ToolProxy
from functions.tool_proxy.sources import BundleToolSecrets, MappingToolboxes
from local.apigw_adapter import lambda_route
from tests.chaos.conftest import StackFactory
from tests.chaos.harness import DEAD_AIR_LIMIT_S
from tests.e2e.conftest import wait_until
from tests.fakes.openai_server import ToolCall
from tests.fakes.speech_marker import marked_speech
from tests.fakes.tenant_tool_server import TenantToolServer

SECRET = "tool-proxy-chaos-secret"
TENANT = "acme"
EGRESS_TIMEOUT_S = 1.0
SORRY = "Sorry, I couldn't check that just now. Is there anything else I can help with?"


def _tool(name: str, url: str) -> dict[str, Any]:
    return {"name": name, "description": f"{name} for the caller",
            "input_schema": {"type": "object", "properties": {}, "required": [], "additionalProperties": False},
            "target": {"method": "GET", "url": url, "headers": {}}}


async def _garbage(request: web.Request) -> web.Response:
    return web.Response(body=b"\xff\xfe{not json\x00\x9f" * 50, content_type="application/json")


@pytest.fixture
async def tool_proxy_url() -> AsyncIterator[str]:
    targets = await TenantToolServer().start()
    garbage_app = web.Application()
    garbage_app.router.add_get("/garbage", _garbage)
    garbage_runner = web.AppRunner(garbage_app, shutdown_timeout=0.1)
    await garbage_runner.setup()
    garbage_site = web.TCPSite(garbage_runner, "127.0.0.1", 0)
    await garbage_site.start()
    garbage_port = garbage_site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    toolboxes = MappingToolboxes({TENANT: {"tools": [
        _tool("order_status", targets.url("/slow")),
        _tool("loyalty_points", f"http://127.0.0.1:{garbage_port}/garbage")]}})
    policy = EgressPolicy(timeout_s=EGRESS_TIMEOUT_S, max_response_bytes=4096,
                          allowed_networks=EgressPolicy.parse_networks("127.0.0.0/8"))
    proxy = ToolProxy(toolboxes, BundleToolSecrets(lambda: {}), policy)
    app = web.Application()
    handler = create_handler(lambda: (proxy, SECRET))
    app.router.add_route("*", "/prod/mcp", lambda_route(handler, shape="rest", stage="prod", strip_prefix="/prod"))
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/prod"  # type: ignore[union-attr]
    await runner.cleanup()
    await garbage_runner.cleanup()
    await targets.stop()


@pytest.mark.parametrize(("tool", "fault"), [("order_status", "did not answer"), ("loyalty_points", "not json")])
async def test_tool_proxy_timeout_or_garbage_agent_says_so_and_the_call_goes_on(
        chaos_stack_factory: StackFactory, tool_proxy_url: str, tool: str, fault: str) -> None:
    stack = await chaos_stack_factory(mcp_base=tool_proxy_url, tool_proxy_secret=SECRET)
    stack.openai.script(ToolCall(tool), SORRY)
    async with stack.call(tenant_id=TENANT) as caller:
        await caller.wait_for_agent(since=0)
        spoken_at = await caller.say(marked_speech("Can you check my order"))
        session = stack.session(caller)
        assert session is not None
        # A short acknowledgement plays as the tool starts ("Sure, one moment."), then the agent's own answer
        # once the tool has failed: no vendor switch.
        await wait_until(lambda: any(e["role"] == "agent" and e["text"].endswith(SORRY) for e in session.transcript),
                         timeout_s=15)
        await caller.wait_for_agent(since=spoken_at, timeout_s=15)
        dead_air = caller.dead_air_s(spoken_at)
        # What the model was handed for the tool: an error it can relay (timeout), or the garbage, capped.
        tool_says = [str(m.get("content")) for m in stack.openai.requests[-1]["messages"] if m.get("role") == "tool"]
        assert tool_says and fault in tool_says[-1]
        assert len(tool_says[-1]) < 8192
        # The call goes on: the next turn is answered by the same (vendor) agent.
        spoken_at = await caller.say(marked_speech("What time do you close"))
        await caller.wait_for_agent(since=spoken_at, timeout_s=15)
        assert session.transcript[-1]["text"].startswith("You said: What time do you close")
    # Garbage comes back at once. A slow target is waited out for the proxy's egress timeout: after the
    # acknowledgement, that wait comes on top of the usual bound.
    assert dead_air <= DEAD_AIR_LIMIT_S + (EGRESS_TIMEOUT_S if tool == "order_status" else 0.0)
