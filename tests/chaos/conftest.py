"""Fixtures for the chaos suite: vendor fakes on loopback and the service built as in production."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.chaos.harness import LONGEST_DEAD_AIR, start_chaos_stack
from tests.e2e.conftest import VoiceStack
from tests.fakes.deepgram_server import FakeDeepgram
from tests.fakes.elevenlabs_server import FakeElevenLabs
from tests.fakes.openai_server import FakeOpenAI


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/chaos/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.chaos)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The longest dead air each test measured at the caller (for the README's figures)."""
    if LONGEST_DEAD_AIR:
        terminalreporter.write_line(f"chaos: longest dead air {max(LONGEST_DEAD_AIR.values()):.2f} s")
        for test, seconds in sorted(LONGEST_DEAD_AIR.items(), key=lambda item: -item[1]):
            terminalreporter.write_line(f"  {seconds:5.2f} s  {test.split('::', 1)[-1]}")


StackFactory = Callable[..., Awaitable[VoiceStack]]


@pytest.fixture
async def chaos_stack_factory(fakes: tuple[FakeDeepgram, FakeElevenLabs, FakeOpenAI]) -> AsyncIterator[StackFactory]:
    started: list[VoiceStack] = []

    async def make(**overrides: Any) -> VoiceStack:
        stack = await start_chaos_stack(fakes, **overrides)
        started.append(stack)
        return stack

    yield make
    for stack in started:
        await stack.close()


@pytest.fixture
async def chaos_stack(chaos_stack_factory: StackFactory) -> VoiceStack:
    return await chaos_stack_factory()
