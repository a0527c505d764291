"""What the chaos tests share: a caller that notes when each frame played, dead air measured at the
caller, the service stack on loopback with the vendor fakes, and a log watch for tracebacks."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from shared.call_simulator import SimulatedCall
from shared.settings import Settings
from shared.stream_token import mint_stream_token
from streaming_service.app import create_app
from streaming_service.call_recorder import CallRecorder
from streaming_service.call_session import CallSession
from streaming_service.engines.factory import build_engines
from streaming_service.service_state import STATE, ServiceState, TenantSettingsLookup
from tests.e2e.conftest import STREAM_SECRET, TWILIO_TOKEN, free_port, vendor_settings
from tests.fakes.deepgram_server import FakeDeepgram
from tests.fakes.elevenlabs_server import FakeElevenLabs
from tests.fakes.openai_server import FakeOpenAI

DEAD_AIR_LIMIT_S = 2.0  # the bound: the caller never hears more than this much silence
ROOT = Path(__file__).resolve().parents[2]
# The caller plays (and speaks) this much faster than real time. Dead air is still wall-clock time at the
# caller, and faster playback drains buffered audio sooner, so a pass here is stricter than at 1x.
CALLER_SPEED = 3.0
LONGEST_DEAD_AIR: dict[str, float] = {}  # test id -> the longest dead air measured in it (for the summary)


class TimedCall(SimulatedCall):
    """A simulated Twilio caller that also notes the time each agent frame played."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.played_at: list[float] = []

    async def __aenter__(self) -> TimedCall:
        await self.connect()
        return self

    def _play_one_frame(self) -> bytes | None:
        frame = super()._play_one_frame()
        if frame is not None:
            self.played_at.append(time.monotonic())
        return frame

    def dead_air_s(self, since: float, until: float | None = None) -> float:
        """The longest stretch the caller heard nothing, from `since` (their speech ended) to `until`
        (default: the last frame played), counting the wait for the first frame of the answer."""
        end = until if until is not None else (self.played_at[-1] if self.played_at else time.monotonic())
        times = [since, *(t for t in self.played_at if since < t <= end)]
        gap = end - since if len(times) == 1 else max(b - a for a, b in itertools.pairwise(times))
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
        LONGEST_DEAD_AIR[test] = max(gap, LONGEST_DEAD_AIR.get(test, 0.0))
        return gap

    def heard_ms_since(self, since: float) -> float:
        """Audio time heard (20 ms per frame, whatever the playback speed)."""
        return sum(1 for t in self.played_at if t >= since) * 20.0


@dataclass
class ChaosStack:
    deepgram: FakeDeepgram
    elevenlabs: FakeElevenLabs
    openai: FakeOpenAI
    settings: Settings
    port: int
    app: web.Application
    runner: web.AppRunner
    calls: list[TimedCall] = field(default_factory=list)

    @property
    def state(self) -> ServiceState:
        return self.app[STATE]

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/twilio-stream"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, tenant_id: str = "acme", *, call_sid: str | None = None, token: str | None = None,
             auth_token: str = TWILIO_TOKEN, speed: float = CALLER_SPEED) -> TimedCall:
        sim = TimedCall(self.ws_url, custom_parameters={}, call_sid=call_sid, auth_token=auth_token, speed=speed)
        sim.custom_parameters = {
            "tenant_id": tenant_id, "caller": "+15550001111", "dialled": "+15550002222",
            "stream_token": token if token is not None else mint_stream_token(STREAM_SECRET, tenant_id, sim.call_sid)}
        self.calls.append(sim)
        return sim

    def session(self, sim: SimulatedCall) -> CallSession | None:
        return self.state.sessions.get(sim.call_sid)

    async def close(self) -> None:
        for sim in self.calls:
            await sim.hang_up()
        await self.state.drain(0)
        await self.runner.cleanup()
        aclose = getattr(self.state.engines.agent, "aclose", None)
        if aclose is not None:
            await aclose()


async def start_chaos_stack(dg: FakeDeepgram, el: FakeElevenLabs, oa: FakeOpenAI, *,
                            recorder: CallRecorder | None = None, tenant_settings: TenantSettingsLookup | None = None,
                            engines_data: Any = None, **overrides: Any) -> ChaosStack:
    """The service as `python -m streaming_service` builds it (engines from Settings, so the OpenAI agent
    falls back to the offline policy and ElevenLabs to the offline voice), on a loopback port."""
    settings = vendor_settings(dg, el, oa, **overrides)
    app = create_app(settings, build_engines(settings, engines_data), recorder=recorder,
                     tenant_settings=tenant_settings)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return ChaosStack(dg, el, oa, settings, port, app, runner)


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0, step_s: float = 0.02) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(step_s)


def user_messages(openai: FakeOpenAI) -> list[str]:
    out: list[str] = []
    for body in openai.requests:
        users = [m for m in body.get("messages", []) if m.get("role") == "user"]
        if users:
            out.append(str(users[-1]["content"]))
    return out


class TracebackWatch(logging.Handler):
    """Counts log records that carry an exception (a traceback) anywhere in the process."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info is not None or record.levelno >= logging.CRITICAL:
            self.records.append(record)

    def __enter__(self) -> TracebackWatch:
        logging.getLogger().addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().removeHandler(self)

    def summary(self) -> list[str]:
        return [f"{r.name}: {r.getMessage()}" for r in self.records]


def run_examples(examples: int, strategy: Any, check: Callable[[Any], None]) -> None:
    """Run `check` on `examples` values drawn by hypothesis (deterministically), in the calling thread.

    The chaos fuzzers call this from a worker thread (`asyncio.to_thread`) and hop back onto the test's
    event loop inside `check`, so hypothesis drives a live server without an event loop of its own."""
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(value=strategy)
    def one(value: Any) -> None:
        check(value)

    one()
