"""The shared tick that runs every live call's periodic check: each in its call's context, none able to stop
the others, and no timer left once the last call is gone."""

from __future__ import annotations

import asyncio
import contextvars
import logging

import pytest

from streaming_service import call_ticker
from streaming_service.call_ticker import CallTicker, running_loop_ticker

CALL = contextvars.ContextVar("call", default="none")


async def test_each_check_runs_every_tick_in_the_context_it_was_added_in() -> None:
    ticker = CallTicker(asyncio.get_running_loop(), interval_s=0.01)
    seen: dict[str, list[str]] = {"a": [], "b": []}
    removals = []
    for name in ("a", "b"):
        token = CALL.set(name)
        removals.append(ticker.add(lambda name=name: seen[name].append(CALL.get())))
        CALL.reset(token)
    await asyncio.sleep(0.1)
    assert len(seen["a"]) >= 3 and len(seen["b"]) >= 3
    assert set(seen["a"]) == {"a"} and set(seen["b"]) == {"b"}
    for remove in removals:
        remove()


async def test_a_check_that_raises_is_logged_and_the_others_go_on(caplog: pytest.LogCaptureFixture) -> None:
    ticker = CallTicker(asyncio.get_running_loop(), interval_s=0.01)
    runs = []

    def broken() -> None:
        raise RuntimeError("boom")

    remove_broken = ticker.add(broken)
    remove_good = ticker.add(lambda: runs.append(1))
    with caplog.at_level(logging.ERROR, logger="voice_agent.ticker"):
        await asyncio.sleep(0.08)
    assert len(runs) >= 3  # every tick after the failures too
    assert sum("periodic call check failed" in r.message for r in caplog.records) >= 3
    remove_broken()
    remove_good()


async def test_a_check_can_remove_itself_and_the_last_removal_stops_the_timer() -> None:
    loop = asyncio.get_running_loop()
    ticker = running_loop_ticker()
    assert running_loop_ticker() is ticker  # one a loop
    runs = []
    remove = ticker.add(lambda: (runs.append(1), remove()))
    await asyncio.sleep(call_ticker.CHECK_INTERVAL_S * 3)
    assert runs == [1]
    assert len(ticker) == 0
    assert loop not in call_ticker._TICKERS  # nothing kept for a loop with no calls
    remove()  # twice is harmless
    assert running_loop_ticker() is not ticker  # the next call gets a fresh one
    running_loop_ticker().add(lambda: None)()  # and removing at once leaves nothing behind
    assert loop not in call_ticker._TICKERS
