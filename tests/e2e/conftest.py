"""The whole streaming service on loopback, with vendor fakes speaking their real wire protocols.

The service is built exactly as in production (`build_engines` from Settings) and the vendors'
SDKs talk to the fakes over real sockets; the caller is the Twilio simulator.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from local.call_simulator import SimulatedCall
from shared.settings import Settings
from shared.stream_token import mint_stream_token
from streaming_service.app import create_app
from streaming_service.call_recorder import CallRecorder
from streaming_service.engines.factory import build_engines
from streaming_service.service_state import STATE, ServiceState, TenantSettingsLookup
from streaming_service.workers import WorkerSlot
from tests.fakes.deepgram_server import FakeDeepgram
from tests.fakes.elevenlabs_server import FakeElevenLabs
from tests.fakes.openai_server import FakeOpenAI

TWILIO_TOKEN = "twilio-test-token"
STREAM_SECRET = "stream-secret-for-tests"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def vendor_settings(dg: FakeDeepgram, el: FakeElevenLabs, oa: FakeOpenAI, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "deepgram_api_key": dg.api_key, "deepgram_base_url": dg.ws_url,
        "elevenlabs_api_key": el.api_key, "elevenlabs_base_url": el.base_url,
        "openai_api_key": oa.api_key, "openai_base_url": oa.base_url, "openai_model": "fake-model",
        "openai_timeout_s": 3.0,
        "twilio_auth_token": TWILIO_TOKEN, "stream_token_secret": STREAM_SECRET,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class VoiceStack:
    deepgram: FakeDeepgram
    elevenlabs: FakeElevenLabs
    openai: FakeOpenAI
    settings: Settings
    port: int
    app: web.Application
    runner: web.AppRunner
    call_class: type[SimulatedCall] = SimulatedCall  # the chaos suite's caller also times each played frame
    caller_speed: float = 1.0
    calls: list[SimulatedCall] = field(default_factory=list)

    @property
    def state(self) -> ServiceState:
        return self.app[STATE]

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/twilio-stream"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, tenant_id: str = "acme", *, token_tenant: str | None = None, call_sid: str | None = None,
             token: str | None = None, auth_token: str = TWILIO_TOKEN, speed: float | None = None) -> Any:
        sim = self.call_class(self.ws_url, custom_parameters={}, call_sid=call_sid, auth_token=auth_token,
                              speed=speed or self.caller_speed)
        minted = mint_stream_token(STREAM_SECRET, token_tenant or tenant_id, sim.call_sid)
        sim.custom_parameters = {"tenant_id": tenant_id, "stream_token": token if token is not None else minted,
                                 "caller": "+15550001111", "dialled": "+15550002222"}
        self.calls.append(sim)
        return sim

    def session(self, sim: SimulatedCall) -> Any:
        return self.state.sessions.get(sim.call_sid)

    async def close(self) -> None:
        for sim in self.calls:
            await sim.hang_up()
        await self.state.drain(0)
        await self.runner.cleanup()
        aclose = getattr(self.state.engines.agent, "aclose", None)
        if aclose is not None:
            await aclose()


async def start_stack(fakes: tuple[FakeDeepgram, FakeElevenLabs, FakeOpenAI], *,
                      recorder: CallRecorder | None = None, tenant_settings: TenantSettingsLookup | None = None,
                      engines_data: Any = None, call_class: type[SimulatedCall] = SimulatedCall,
                      caller_speed: float = 1.0, worker: WorkerSlot | None = None, **overrides: Any) -> VoiceStack:
    """The service as `python -m streaming_service` builds it (engines from Settings, so the OpenAI agent
    falls back to the offline policy and ElevenLabs to the offline voice), on a loopback port."""
    dg, el, oa = fakes
    settings = vendor_settings(dg, el, oa, **overrides)
    app = create_app(settings, build_engines(settings, engines_data), recorder=recorder,
                     tenant_settings=tenant_settings, worker=worker)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return VoiceStack(dg, el, oa, settings, port, app, runner, call_class, caller_speed)


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0, step_s: float = 0.02) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(step_s)


def user_messages(openai: FakeOpenAI) -> list[str]:
    """The caller's words as the model received them, one per request."""
    out: list[str] = []
    for body in openai.requests:
        users = [m for m in body.get("messages", []) if m.get("role") == "user"]
        if users:
            out.append(str(users[-1]["content"]))
    return out


@pytest.fixture
async def stack_factory(fakes):
    """Build a stack with setting overrides (e.g. short silence timers)."""
    started: list[VoiceStack] = []

    async def make(**overrides: Any) -> VoiceStack:
        stack = await start_stack(fakes, **overrides)
        started.append(stack)
        return stack

    yield make
    for stack in started:
        await stack.close()


@pytest.fixture
async def stack(stack_factory) -> VoiceStack:
    return await stack_factory()
