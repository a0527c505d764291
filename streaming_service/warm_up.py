"""Pay the agent stack's first-run costs when the process starts, not in a caller's first turn.

The Agents SDK and the openai client import and build much lazily (the run loop, pydantic schemas of
the streamed chunks and of the SDK's response events): the first turn of a fresh process took about
200 ms longer than the next ones, and after a warm-up on the offline policy alone, the first turn on
OpenAI still took 70 ms more (that client's own lazy schemas). So two turns run at start-up, before the
service reports ready, with no network and no data:
- one on the offline policy;
- one on OpenAI's Chat Completions model, its client answered in-process by httpx's `MockTransport`:
  a handoff (the tool-call path), then a sentence (the text path).

The recognisers warm up too: the offline one (the fallback when Deepgram fails) starts its decoder host and
loads its models there, so the first call that needs it does not wait ~1 s for them.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx2
from agents import Model, OpenAIChatCompletionsModel
from openai import AsyncOpenAI, DefaultAsyncHttpxClient

from streaming_service.agents.offline_policy.offline_runtime import OfflinePolicyRuntime
from streaming_service.agents.sdk_runtime import AgentsSdkRuntime
from streaming_service.engines.base import CallContext, Conversation, SpeechToText
from streaming_service.engines.openai_client import AgentsOpenAI

log = logging.getLogger(__name__)

_HANDOFF = "transfer_to_general"


async def warm_up_agents() -> None:
    started = time.monotonic()
    # The offline turn is a question the policy answers; the OpenAI one stays with triage, which hands off.
    turns: list[tuple[AgentsSdkRuntime, str]] = [(OfflinePolicyRuntime(), "What are your opening hours"),
                                             (InProcessChatCompletions(_answer), "Hello")]
    for runtime, words in turns:
        try:
            await _one_turn(runtime, words)
        except Exception as exc:  # a cold first turn is slower, not broken
            log.warning("agents not warmed up", extra={"runtime": type(runtime).__name__,
                                                       "error": f"{type(exc).__name__}: {exc}"})
        finally:
            await runtime.aclose()
    log.info("agents warmed up", extra={"ms": round((time.monotonic() - started) * 1000)})


async def warm_up_recognisers(*recognisers: SpeechToText | None) -> None:
    for recogniser in recognisers:
        if recogniser is None:
            continue
        started = time.monotonic()
        try:
            await recogniser.warm_up()
        except Exception as exc:  # a cold recogniser is slower to start, not broken
            log.warning("recogniser not warmed up", extra={"engine": recogniser.name, "error": str(exc)})
            continue
        log.info("recogniser warmed up", extra={"engine": recogniser.name,
                                                "ms": round((time.monotonic() - started) * 1000)})


async def _one_turn(runtime: AgentsSdkRuntime, words: str) -> None:
    call = CallContext(call_sid="warm-up", stream_sid="", tenant_id=str(uuid.UUID(int=0)))
    async for _event in runtime.run_turn(call, Conversation(), words):
        pass
    await runtime.release_call(call)


class InProcessChatCompletions(AgentsSdkRuntime):
    """The agents on the Chat Completions model the OpenAI engine uses, each request answered in process by
    `answer` (httpx's `MockTransport`). `client_class`: the OpenAI client (bench/agent_request_bench.py compares
    the stock one)."""

    def __init__(self, answer: Callable[[httpx2.Request], httpx2.Response],
                 client_class: type[AsyncOpenAI] = AgentsOpenAI) -> None:
        super().__init__(timeout_s=5.0)
        self._client = client_class(api_key="in-process", base_url="http://in-process.invalid/v1", max_retries=0,
                                    http_client=DefaultAsyncHttpxClient(transport=httpx2.MockTransport(answer)))
        self._model = OpenAIChatCompletionsModel(model="in-process", openai_client=self._client)

    def model_for(self, call: CallContext) -> Model:
        return self._model

    async def aclose(self) -> None:
        await super().aclose()
        await self._client.close()


def _answer(request: httpx2.Request) -> httpx2.Response:
    """A streamed handoff to the first request of the turn, a streamed sentence once it is made."""
    handed_off = any(m.get("role") == "tool" for m in json.loads(request.content).get("messages", []))
    if handed_off:
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}, {"content": "We open at nine."}]
        finish = "stop"
    else:
        deltas = [{"role": "assistant", "content": None},
                  {"tool_calls": [{"index": 0, "id": "call_warm_up", "type": "function",
                                   "function": {"name": _HANDOFF, "arguments": ""}}]},
                  {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}]
        finish = "tool_calls"
    return streamed_completion(deltas, finish)


def streamed_completion(deltas: list[dict[str, Any]], finish: str) -> httpx2.Response:
    """A Chat Completions stream (server-sent events) of these deltas, then `finish`."""
    chunks: list[dict[str, Any]] = [*({"delta": delta, "finish_reason": None} for delta in deltas),
                                    {"delta": {}, "finish_reason": finish}]
    body = "".join(
        "data: " + json.dumps({"id": "chatcmpl-in-process", "object": "chat.completion.chunk", "created": 0,
                               "model": "in-process", "choices": [{"index": 0, **chunk}]}) + "\n\n"
        for chunk in chunks) + "data: [DONE]\n\n"
    return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body.encode())
