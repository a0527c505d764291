"""One timer for every live call's periodic check on this event loop.

Each call looks at its caller's silence ten times a second. As a task per call sleeping 100 ms, that is three
loop callbacks a check (the timer, the sleep's future, the task's step): at 50 calls 1,500 a second, one loop
callback in eight. Here one tick runs every call's check, each in the call's own context (so what it logs and
traces, and any task it starts, stay the call's), and a check that raises is logged without stopping the others.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
from collections.abc import Callable

log = logging.getLogger("voice_agent.ticker")

CHECK_INTERVAL_S = 0.1

Check = Callable[[], None]


class CallTicker:
    def __init__(self, loop: asyncio.AbstractEventLoop, interval_s: float = CHECK_INTERVAL_S) -> None:
        self._loop = loop
        self._interval_s = interval_s
        self._checks: dict[int, tuple[contextvars.Context, Check]] = {}
        self._keys = itertools.count()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, check: Check) -> Callable[[], None]:
        """Run `check` every interval, in the context current now, from the next tick on. Returns its removal
        (safe to call more than once, and from inside the check)."""
        key = next(self._keys)
        self._checks[key] = (contextvars.copy_context(), check)
        if self._timer is None:
            self._schedule()
        return lambda: self._remove(key)

    def __len__(self) -> int:
        return len(self._checks)

    def _remove(self, key: int) -> None:
        self._checks.pop(key, None)
        if self._checks:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if _TICKERS.get(self._loop) is self:
            del _TICKERS[self._loop]

    def _schedule(self) -> None:
        # An empty context: the tick itself belongs to no call.
        self._timer = self._loop.call_later(self._interval_s, self._tick, context=contextvars.Context())

    def _tick(self) -> None:
        self._timer = None
        for context, check in list(self._checks.values()):
            try:
                context.run(check)
            except Exception:
                context.run(log.exception, "periodic call check failed")
        if self._checks and self._timer is None:
            self._schedule()


_TICKERS: dict[asyncio.AbstractEventLoop, CallTicker] = {}  # held only while the loop has live checks


def running_loop_ticker() -> CallTicker:
    """The running loop's ticker (made on first use; forgotten once its last check is removed)."""
    loop = asyncio.get_running_loop()
    ticker = _TICKERS.get(loop)
    if ticker is None:
        ticker = _TICKERS[loop] = CallTicker(loop)
    return ticker
