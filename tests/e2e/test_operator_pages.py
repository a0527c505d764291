"""`/websocket-status` and `/websocket-metrics` list live calls and tenants: operators only.

`/`, `/ready` and the Twilio stream stay public. Without `OPERATOR_TOKEN` the pages answer direct
loopback requests only (a tunnel or proxy adds forwarding headers); with it, a bearer token is required.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from shared.settings import Settings
from streaming_service.app import create_app
from streaming_service.engines.factory import build_engines
from tests.e2e.conftest import free_port

OPERATOR_PAGES = ("/websocket-status", "/websocket-metrics")
PUBLIC_PAGES = ("/", "/ready")
TUNNELLED = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}  # what ngrok or the ALB adds


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Any]]:
    runners: list[web.AppRunner] = []

    async def start(**overrides: Any) -> str:
        settings = Settings(_env_file=None, twilio_auth_token=SecretStr("t"),  # type: ignore[call-arg]
                            stream_token_secret=SecretStr("s"), **overrides)
        runner = web.AppRunner(create_app(settings, build_engines(settings)), handle_signals=False)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def _statuses(url: str, paths: tuple[str, ...], headers: dict[str, str]) -> dict[str, int]:
    async with aiohttp.ClientSession() as http:
        out = {}
        for path in paths:
            async with http.get(url + path, headers=headers) as response:
                out[path] = response.status
        return out


async def test_operational_pages_refuse_a_request_through_a_tunnel(serve: Callable[..., Any]) -> None:
    url = await serve()
    assert await _statuses(url, OPERATOR_PAGES, TUNNELLED) == dict.fromkeys(OPERATOR_PAGES, 403)
    assert await _statuses(url, PUBLIC_PAGES, TUNNELLED) == dict.fromkeys(PUBLIC_PAGES, 200)
    assert await _statuses(url, OPERATOR_PAGES, {}) == dict.fromkeys(OPERATOR_PAGES, 200)  # loopback, direct


async def test_operational_pages_need_the_operator_token_when_one_is_set(serve: Callable[..., Any]) -> None:
    url = await serve(operator_token=SecretStr("op-secret"))
    assert await _statuses(url, OPERATOR_PAGES, {}) == dict.fromkeys(OPERATOR_PAGES, 401)
    assert await _statuses(url, OPERATOR_PAGES, {"Authorization": "Bearer wrong"}) == dict.fromkeys(OPERATOR_PAGES, 401)
    bearer = {"Authorization": "Bearer op-secret", **TUNNELLED}
    assert await _statuses(url, OPERATOR_PAGES, bearer) == dict.fromkeys(OPERATOR_PAGES, 200)
    assert await _statuses(url, PUBLIC_PAGES, {}) == dict.fromkeys(PUBLIC_PAGES, 200)
