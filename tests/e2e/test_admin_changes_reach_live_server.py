"""An admin change made with the CLI, as the README shows it (no REDIS_URL), reaches a running local
server at once: the CLI invalidates through the very Redis the server caches in (here its embedded one,
found through the data folder), so the next call hears the new greeting and its agent is offered the new
tenant tool, instead of the cached values for up to the cache TTL."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from local.call_simulator import dial
from local.stack import DEMO_NUMBER, LocalStack, build_local_stack
from streaming_service.service_state import STATE
from tests.e2e.conftest import TWILIO_TOKEN, free_port, vendor_settings, wait_until
from tests.fakes.deepgram_server import FakeDeepgram
from tests.fakes.elevenlabs_server import FakeElevenLabs
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.speech_marker import marked_speech

ROOT = Path(__file__).resolve().parents[2]
NEW_GREETING = "Welcome to the renamed salon, what can we do for you?"
TOOLBOX = {"tools": [{"name": "check_stock", "description": "Is a product in stock?",
                      "input_schema": {"type": "object", "properties": {"sku": {"type": "string"}}},
                      "target": {"method": "GET", "url": "https://stock.example.com/{{sku}}"}}]}


@pytest.fixture
async def live_server(fakes: tuple[FakeDeepgram, FakeElevenLabs, FakeOpenAI], admin_dsn: str,
                      tmp_path: Path) -> AsyncIterator[tuple[LocalStack, Path]]:
    """`voice-agent serve` as the README runs it: no REDIS_URL, so an embedded Redis in the data folder."""
    dg, el, oa = fakes
    settings = vendor_settings(dg, el, oa, aurora_dsn=admin_dsn, redis_url="")
    port, folder = free_port(), tmp_path / "data"
    stack = await build_local_stack(settings, port, folder)
    assert stack.redis_url.startswith("unix://") and str(folder) in stack.redis_url
    runner = web.AppRunner(stack.app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield stack, folder
    await stack.app[STATE].drain(0)
    await runner.cleanup()


async def _call(stack: LocalStack, openai: FakeOpenAI) -> tuple[str, set[str]]:
    """One call to the demo number: the greeting the service spoke, and the tools its agent was offered."""
    async with aiohttp.ClientSession() as http:
        dialled = await dial(stack.base_url, to=DEMO_NUMBER, from_="+15557654321", auth_token=TWILIO_TOKEN,
                             http=http)
        async with dialled.call as caller:
            await caller.wait_for_agent(since=0)
            session = stack.app[STATE].sessions[caller.call_sid]
            greeting = str(session.conversation.items[0]["content"])
            asked = len(openai.requests)
            spoken_at = await caller.say(marked_speech("Do you have any shampoo"))
            await wait_until(lambda: len(openai.requests) > asked, timeout_s=15)
            await caller.wait_for_agent(since=spoken_at)
    tools = {t["function"]["name"] for t in openai.requests[asked].get("tools", [])}
    return greeting, tools


async def _cli(folder: Path, admin_dsn: str, *args: str) -> str:
    """`voice-agent ...` in its own process, with the server's data folder and database but no REDIS_URL."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "AURORA_DSN")}
    env.update(VOICE_AGENT_DATA_DIR=str(folder), AURORA_DSN=admin_dsn, PYTHONPATH=str(ROOT))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "local.cli", *args, cwd=folder.parent, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_cli_changes_to_greeting_and_toolbox_reach_the_running_server(
        live_server: tuple[LocalStack, Path], fakes: Any, admin_dsn: str) -> None:
    stack, folder = live_server
    openai: FakeOpenAI = fakes[2]
    greeting, tools = await _call(stack, openai)  # the server now holds the tenant's profile in its cache
    assert greeting != NEW_GREETING and "check_stock" not in tools

    await _cli(folder, admin_dsn, "settings", "set", "demo", f"greeting={NEW_GREETING}",
               f"toolbox={json.dumps(TOOLBOX['tools'])}")

    greeting, tools = await _call(stack, openai)
    assert greeting == NEW_GREETING
    assert "check_stock" in tools
