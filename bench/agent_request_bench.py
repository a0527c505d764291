"""The agents' own cost per model request, by how long the call's history is: the Agents SDK on the Chat
Completions model, answered in process by httpx's `MockTransport` (no network, no vendor delay), so what is
left is this process's work on the way to the request and back.

For each history length it reports, per turn (median of the turns at that length): the time to the request
leaving, to the first text, and the turn's whole run, for the client the service uses
(`streaming_service/engines/openai_client.py`, messages and tools sent as the SDK made them) and for the
stock `AsyncOpenAI` (its type-driven transform of every message).

    .venv/bin/python -m bench.agent_request_bench --turns 40
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid

import httpx2
from openai import AsyncOpenAI

from streaming_service.engines.base import AgentEventKind, CallContext, Conversation
from streaming_service.engines.openai_client import AgentsOpenAI
from streaming_service.warm_up import InProcessChatCompletions, streamed_completion

ANSWER = "We are open from nine in the morning to five in the evening on weekdays."


class _Timed:
    """Answers every request with the same sentence, noting when each request left."""

    def __init__(self) -> None:
        self.sent_at: list[float] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.sent_at.append(time.perf_counter())
        return streamed_completion([{"role": "assistant", "content": ""},
                                    *({"content": w + " "} for w in ANSWER.split())], "stop")


async def _run(client_class: type[AsyncOpenAI], turns: int, report_every: int) -> dict[int, list[float]]:
    answer = _Timed()
    runtime = InProcessChatCompletions(answer, client_class)
    call = CallContext(call_sid="bench", stream_sid="", tenant_id=str(uuid.UUID(int=0)))
    conversation = Conversation()
    rows: dict[int, list[float]] = {}
    window: list[tuple[float, float, float]] = []
    for turn in range(turns + 1):
        started, first = time.perf_counter(), None
        async for event in runtime.run_turn(call, conversation, "What are your opening hours please"):
            if event.kind is AgentEventKind.TEXT_DELTA and first is None:
                first = time.perf_counter()
        if turn == 0:
            continue  # the process's first turn builds schemas lazily (streaming_service/warm_up.py)
        window.append((answer.sent_at[-1] - started, (first or started) - started, time.perf_counter() - started))
        if turn % report_every == 0:
            rows[len(conversation.items)] = [round(statistics.median(x[i] for x in window) * 1000, 1) for i in range(3)]
            window.clear()
    await runtime.aclose()
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=40)
    parser.add_argument("--every", type=int, default=10, help="report the median of each run of this many turns")
    args = parser.parse_args(argv)
    for name, client_class in (("service client", AgentsOpenAI), ("stock AsyncOpenAI", AsyncOpenAI)):
        rows = asyncio.run(_run(client_class, args.turns, args.every))
        for items, (to_request, to_text, whole) in rows.items():
            print(json.dumps({"client": name, "history_items": items, "to_request_ms": to_request,
                              "to_first_text_ms": to_text, "turn_ms": whole}), flush=True)


if __name__ == "__main__":
    main()
