"""The agent seam on OpenAI: the shared agents graph (streaming_service/agents) played by an OpenAI model
over Chat Completions (any OpenAI-compatible base URL).

Everything but the model (agents, handoffs, tools, history, MCP, event translation) is the shared
`AgentsSdkRuntime`, so the offline policy runs exactly the same conversation machinery.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import httpx2
from agents import Model, OpenAIChatCompletionsModel
from openai import DefaultAioHttpClient

from shared.settings import Settings
from streaming_service.agents.booking_store import BookingStore
from streaming_service.agents.sdk_runtime import AgentsSdkRuntime
from streaming_service.agents.tenant_tools import TenantToolServers
from streaming_service.engines.base import CallContext, EngineError
from streaming_service.engines.openai_client import AgentsOpenAI

VENDOR = "openai"
KEEPALIVE_S = 120.0  # the pool's default (aiohttp's 15 s) can be shorter than a caller's turn: it would reconnect


class OpenAIAgentRuntime(AgentsSdkRuntime):
    name = "openai"
    vendor = VENDOR

    def __init__(self, settings: Settings, *, bookings: BookingStore | None = None,
                 tenant_tools: TenantToolServers | None = None, clock: Callable[[], datetime] | None = None
                 ) -> None:
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else ""
        if not key:
            raise EngineError(VENDOR, "OPENAI_API_KEY is not set")
        super().__init__(bookings=bookings, tenant_tools=tenant_tools, clock=clock,
                         timeout_s=settings.openai_timeout_s)
        # One retry: a blip is survived, an outage surfaces quickly for the offline fallback. The SDK's aiohttp
        # transport (its documented option for concurrency): a streamed request costs 2.3 ms of CPU against
        # 3.1 over httpx2's own (bench/profile-50-calls.md).
        self._client = AgentsOpenAI(base_url=settings.openai_base_url, api_key=key,
                                    timeout=settings.openai_timeout_s, max_retries=1,
                                    http_client=DefaultAioHttpClient(limits=httpx2.Limits(
                                        max_connections=1000, keepalive_expiry=KEEPALIVE_S)))
        self._model = OpenAIChatCompletionsModel(model=settings.openai_model, openai_client=self._client)

    def model_for(self, call: CallContext) -> Model:
        return self._model

    async def aclose(self) -> None:
        await super().aclose()
        await self._client.close()
