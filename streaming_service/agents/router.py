"""Routing by the caller's words: a turn at triage whose request is plain starts at the agent triage
would hand it to, so routing costs no model round trip (a handoff is a whole model call before the
agent that answers even starts). Unclear words, a goodbye or a request for a person stay with triage,
which decides (and can end or transfer the call) in its own single call.
"""

from __future__ import annotations

from streaming_service.agents.definitions import ENTRY_AGENT
from streaming_service.agents.offline_policy.caller_language import Intent, classify_intent

_AGENT_FOR = {Intent.BOOK: "booking", Intent.RESCHEDULE: "booking", Intent.CANCEL: "booking",
              Intent.QUESTION: "general"}


def starting_agent(current: str, caller_text: str) -> str:
    """The agent this turn starts at: the call's current one, unless triage's routing is evident."""
    if current != ENTRY_AGENT:
        return current  # a specialist already holds the conversation; it hands off when it must
    return _AGENT_FOR.get(classify_intent(caller_text), current)
