"""The three agents of a call and their handoffs: triage ⇄ booking, triage ⇄ general, booking ⇄ general.

Built per turn (cheap: plain dataclasses) because the tenant's MCP servers belong to the call. The
same graph runs on any `Model`: the OpenAI chat-completions model or the rule-based offline policy.
"""

from __future__ import annotations

from collections.abc import Sequence

from agents import Agent, Model, StopAtTools, handoff
from agents.mcp import MCPServer

from streaming_service.agents.booking_tools import BOOKING_TOOLS
from streaming_service.agents.call_tools import CALL_TOOLS, business_info
from streaming_service.agents.prompts import instructions
from streaming_service.agents.turn_context import AgentTurnContext

AGENT_NAMES = ("triage", "booking", "general")
STOP_TOOLS = ("end_call", "transfer_to_human")
ENTRY_AGENT = "triage"


def build_agents(model: Model, mcp_servers: Sequence[MCPServer] = ()) -> dict[str, Agent[AgentTurnContext]]:
    # end_call and transfer_to_human end the run: their result says the last line, with no model round
    # trip after them (the runtime speaks the tool's `say`).
    common = {"model": model, "instructions": instructions, "mcp_servers": list(mcp_servers),
              "mcp_config": {"convert_schemas_to_strict": False},
              "tool_use_behavior": StopAtTools(stop_at_tool_names=list(STOP_TOOLS))}
    triage = Agent[AgentTurnContext](
        name="triage", handoff_description="Works out what the caller needs and routes them.",
        tools=list(CALL_TOOLS), **common)  # type: ignore[arg-type]
    booking = Agent[AgentTurnContext](
        name="booking", handoff_description="Books, reschedules and cancels appointments.",
        tools=[*BOOKING_TOOLS, *CALL_TOOLS], **common)  # type: ignore[arg-type]
    general = Agent[AgentTurnContext](
        name="general", handoff_description="Answers questions about the business: hours, address, FAQ.",
        tools=[business_info, *CALL_TOOLS], **common)  # type: ignore[arg-type]
    triage.handoffs = [handoff(booking), handoff(general)]
    booking.handoffs = [handoff(triage), handoff(general)]
    general.handoffs = [handoff(triage), handoff(booking)]
    return {agent.name: agent for agent in (triage, booking, general)}
