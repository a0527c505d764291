"""Instructions for each agent: code defaults, tenant overrides, and voice rules no tenant can drop.

Tenant overrides live in settings `prompt_overrides` ({"all": ..., "triage": ..., "booking": ...,
"general": ...}); a plain `prompt` setting is the older single override and counts as "all".
"""

from __future__ import annotations

from typing import Any

from agents import Agent, RunContextWrapper

from streaming_service.agents.call_tools import spoken_hours
from streaming_service.agents.turn_context import AgentTurnContext, tenant_services

VOICE_RULES = (
    "You are talking with a caller on the phone, and everything you write is spoken aloud. "
    "Answer in one to three short sentences. Never use markdown, lists, emojis or links. "
    "Write numbers, times, dates and prices the way a person says them, for example "
    "'seven thirty pm' or 'twenty five dollars'. Ask one question at a time. "
    "When the caller is done or says goodbye, say a short goodbye and call end_call. "
    "When the caller asks for a person, call transfer_to_human and tell them what happens next."
)
DEFAULT_ROLE = "You are a friendly, efficient receptionist who helps callers with their questions."

DEFAULT_PROMPTS = {
    "triage": (
        "Find out what the caller needs. For booking, changing or cancelling an appointment, hand off to "
        "the booking agent. For questions about the business (hours, address, prices, services), hand off "
        "to the general agent. Do not answer those yourself."),
    "booking": (
        "You book, reschedule and cancel appointments. To book, collect the service, the day and time, "
        "and the caller's name; the callback number defaults to the number they are calling from. "
        "Then call book_appointment: its first call only checks the time and gives you a read-back. Say "
        "that read-back and wait for the caller's yes before calling book_appointment again with the same "
        "details. Never say a booking is made until the tool says 'booked'. If the time is taken, offer the "
        "alternatives the tool gives. To change or cancel, call find_bookings first, then reschedule_booking "
        "or cancel_booking, which also need the caller's yes. Hand back to triage or general for anything "
        "else."),
    "general": (
        "You answer questions about the business, briefly, from the facts below or the business_info tool. "
        "If you do not know, say so and offer to connect the caller with a person. For appointments, hand "
        "off to the booking agent."),
}


def prompt_for(agent_name: str, settings: dict[str, Any]) -> str:
    overrides = settings.get("prompt_overrides") or {}
    if not isinstance(overrides, dict):
        overrides = {}
    role = str(overrides.get("all") or settings.get("prompt") or DEFAULT_ROLE)
    task = str(overrides.get(agent_name) or DEFAULT_PROMPTS.get(agent_name, ""))
    return f"{role}\n\n{task}"


def instructions(ctx: RunContextWrapper[AgentTurnContext], agent: Agent[AgentTurnContext]) -> str:
    """The SDK calls this per model call with the turn's context (per-tenant, per-day prompts)."""
    turn = ctx.context
    settings = turn.settings
    parts = [prompt_for(agent.name, settings)]
    if settings.get("business_name"):
        parts.append(f"You answer the phone for {settings['business_name']}.")
    if settings.get("greeting"):
        parts.append(f"The call opened with your greeting: \"{settings['greeting']}\" Do not greet again.")
    if agent.name == "booking":
        now = turn.local_now
        parts.append(f"It is now {now:%A %Y-%m-%d %H:%M} in the business's timezone ({turn.timezone.key}); "
                     "tool dates and times are in that timezone.")
        services = tenant_services(settings)
        if services:
            parts.append("Services offered: " + ", ".join(services) + ".")
    if agent.name == "general":
        facts = [spoken_hours(settings.get("business_hours") or {})]
        if settings.get("address"):
            facts.append(f"Address: {settings['address']}.")
        if settings.get("faq_text"):
            facts.append(f"FAQ:\n{settings['faq_text']}")
        parts.append("Facts about the business:\n" + "\n".join(facts))
    parts.append(VOICE_RULES)
    return "\n\n".join(parts)
