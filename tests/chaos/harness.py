"""What the chaos tests share: a caller that notes when each frame played, dead air measured at the
caller, the service stack on loopback with the vendor fakes, and a log watch for tracebacks."""

from __future__ import annotations

import bisect
import itertools
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from local.call_simulator import SimulatedCall
from tests.e2e.conftest import VoiceStack, start_stack
from tests.fakes.deepgram_server import FakeDeepgram
from tests.fakes.elevenlabs_server import FakeElevenLabs
from tests.fakes.openai_server import FakeOpenAI

DEAD_AIR_LIMIT_S = 2.0  # the bound: the caller never hears more than this much silence
ROOT = Path(__file__).resolve().parents[2]
# The caller plays (and speaks) this much faster than real time. Dead air is counted in ticks of the caller's
# clock times their (shortened) length, and faster playback drains buffered audio sooner, so a pass here is
# stricter than at 1x.
CALLER_SPEED = 3.0
LONGEST_DEAD_AIR: dict[str, float] = {}  # test id -> the longest dead air measured in it (for the summary)


class TimedCall(SimulatedCall):
    """A simulated Twilio caller that also notes every tick of its playout clock and which played a frame."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.played_at: list[float] = []
        self.tick_at: list[float] = []  # one tick per 20 ms frame slot (at CALLER_SPEED), played or silent
        self.played_ticks: list[int] = []

    async def __aenter__(self) -> TimedCall:
        await self.connect()
        return self

    def _play_one_frame(self) -> bytes | None:
        frame = super()._play_one_frame()
        now = time.monotonic()
        self.tick_at.append(now)
        if frame is not None:
            self.played_at.append(now)
            self.played_ticks.append(len(self.tick_at) - 1)
        return frame

    def dead_air_s(self, since: float, until: float | None = None) -> float:
        """The longest stretch the caller heard nothing, from `since` (their speech ended) to `until`
        (default: the last frame played), counting the wait for the first frame of the answer.

        Counted on the caller's playout clock (silent ticks times the tick length), not between wall-clock
        timestamps: the clock catches up after this process stalls, and the frames that arrived meanwhile
        play in the catch-up ticks, so load on the test machine is not counted as silence the service left.
        """
        start = bisect.bisect_right(self.tick_at, since) - 1  # the tick on which the caller's speech ended
        if until is not None:
            end = bisect.bisect_right(self.tick_at, until) - 1
        else:
            end = self.played_ticks[-1] if self.played_ticks else len(self.tick_at) - 1
        ticks = [start, *(t for t in self.played_ticks if start < t <= end)]
        gap_ticks = end - start if len(ticks) == 1 else max(b - a for a, b in itertools.pairwise(ticks))
        gap = max(gap_ticks, 0) * self.tick_s
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
        LONGEST_DEAD_AIR[test] = max(gap, LONGEST_DEAD_AIR.get(test, 0.0))
        return gap

    def heard_ms_since(self, since: float) -> float:
        """Audio time heard (20 ms per frame, whatever the playback speed)."""
        return sum(1 for t in self.played_at if t >= since) * 20.0


async def start_chaos_stack(fakes: tuple[FakeDeepgram, FakeElevenLabs, FakeOpenAI], **options: Any) -> VoiceStack:
    """The e2e stack, with a caller that times every played frame and plays CALLER_SPEED times faster."""
    return await start_stack(fakes, call_class=TimedCall, caller_speed=CALLER_SPEED, **options)


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
