"""The tool proxy's allowed-Host check holds on the local server as it does behind API Gateway: the
adapter reports the server's configured public host as `requestContext.domainName`, never the Host
header a client made up, so a request naming a foreign host (DNS rebinding) is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from local.stack import LocalStack, build_local_stack
from shared.settings import Settings
from shared.stream_token import mint_stream_token
from tests.e2e.conftest import free_port

INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                         "clientInfo": {"name": "host-check", "version": "1"}}}


@pytest.fixture
async def local_server(admin_dsn: str, redis_url: str, tmp_path: Path) -> AsyncIterator[LocalStack]:
    settings = Settings(_env_file=None, aurora_dsn=admin_dsn, redis_url=redis_url,  # type: ignore[call-arg]
                        stt_engine="offline", tts_engine="offline", agent_engine="offline")
    port = free_port()
    stack = await build_local_stack(settings, port, tmp_path / "data")
    runner = web.AppRunner(stack.app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield stack
    await runner.cleanup()


async def _initialize(stack: LocalStack, host: str) -> int:
    token = mint_stream_token(stack.settings.secret("tool_proxy_secret"), stack.demo_tenant_id, "CAhostcheck")
    headers = {"Host": host, "Authorization": f"Bearer {token}", "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream"}
    async with aiohttp.ClientSession() as http, \
            http.post(f"{stack.base_url}/mcp", json=INITIALIZE, headers=headers) as response:
        await response.read()
        return response.status


async def test_local_mcp_refuses_a_foreign_host_header(local_server: LocalStack) -> None:
    port = local_server.settings.port
    assert await _initialize(local_server, f"127.0.0.1:{port}") == 200  # the server's own host
    for foreign in ("evil.example", f"evil.example:{port}", "attacker.test"):
        assert await _initialize(local_server, foreign) == 421, foreign
