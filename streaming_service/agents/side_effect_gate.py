"""Nothing with a side effect runs on words the caller may not have finished.

Preemptive generation starts a turn on a transcript the recogniser has not confirmed yet. The model may
think, write and even hand off meanwhile, but a tool that changes something (a booking, end_call, a
transfer, any tenant tool: we cannot know what it does) waits here until the turn is committed: the
final transcript matched. A draft that is discarded is cancelled while it waits, so the tool never runs.

The gate is a context variable, set by whoever starts the uncommitted run; the Agents SDK copies the
context into the tasks that run tools, and awaits `on_tool_start` before it invokes one.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from agents import Agent, RunContextWrapper, RunHooks, Tool

# Tools that only read: they may run before the turn is committed, which is what lets a draft get past
# its first tool call early.
READ_ONLY_TOOLS = frozenset({"business_info", "find_bookings"})

_commit: contextvars.ContextVar[asyncio.Event | None] = contextvars.ContextVar("turn_commit", default=None)


@contextmanager
def uncommitted_turn(commit: asyncio.Event) -> Iterator[None]:
    """Runs started inside wait for `commit` before any tool with a side effect."""
    token = _commit.set(commit)
    try:
        yield
    finally:
        _commit.reset(token)


async def wait_for_commit() -> None:
    commit = _commit.get()
    if commit is not None:
        await commit.wait()


class SideEffectGate(RunHooks[Any]):
    async def on_tool_start(self, context: RunContextWrapper[Any], agent: Agent[Any], tool: Tool) -> None:
        if tool.name not in READ_ONLY_TOOLS:
            await wait_for_commit()
