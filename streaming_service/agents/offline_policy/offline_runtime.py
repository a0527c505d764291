"""The offline AgentRuntime: the shared agents graph played by the rule-based policy (no vendor, no key).

What `make demo` runs without OPENAI_API_KEY, and what a call falls back to when OpenAI fails.
"""

from __future__ import annotations

from agents import Model

from streaming_service.agents.offline_policy.policy_model import OfflinePolicyModel
from streaming_service.agents.sdk_runtime import AgentsSdkRuntime
from streaming_service.agents.turn_context import tenant_services, tenant_timezone
from streaming_service.engines.base import CallContext


class OfflinePolicyRuntime(AgentsSdkRuntime):
    name = "offline"
    vendor = "offline"

    def model_for(self, call: CallContext) -> Model:
        settings = call.tenant_settings
        return OfflinePolicyModel(tenant_timezone(settings), tenant_services(settings),
                                  clock=self._clock)
