"""Which agent runtime a call gets, from Settings and the data layer: OpenAI with the offline policy as
its fallback when a key is configured (or AGENT_ENGINE=vendor), the offline policy alone otherwise."""

from __future__ import annotations

from shared.settings import Settings
from shared.tenancy.cache import JsonCache
from streaming_service.agents.booking_store import BookingStore
from streaming_service.agents.offline_policy.offline_runtime import OfflinePolicyRuntime
from streaming_service.agents.tenant_tools import TenantToolList, TenantToolServers
from streaming_service.engines.base import AgentRuntime


def build_agent_runtime(settings: Settings, bookings: BookingStore | None, *, tool_proxy_secret: str = "",
                        cache: JsonCache | None = None) -> AgentRuntime:
    if not settings.uses_vendor(settings.agent_engine, settings.openai_api_key):
        return OfflinePolicyRuntime(bookings=bookings)  # the policy never calls tenant tools: no MCP session
    from streaming_service.engines.fallback_agent import FallbackAgentRuntime
    from streaming_service.engines.openai_agent import OpenAIAgentRuntime

    tenant_tools = (TenantToolServers(settings.mcp_base, tool_proxy_secret, TenantToolList(cache, settings.cache_ttl_s))
                    if settings.mcp_base and tool_proxy_secret else None)
    # Both share the call's MCP session, so a call that falls back keeps one connection, released once.
    return FallbackAgentRuntime(OpenAIAgentRuntime(settings, bookings=bookings, tenant_tools=tenant_tools),
                                OfflinePolicyRuntime(bookings=bookings, tenant_tools=tenant_tools),
                                first_event_timeout_s=settings.agent_first_event_timeout_s)
