"""Tools about the call itself (every agent has them) and the general agent's business facts."""

from __future__ import annotations

import json
import re
from typing import Any

from agents import RunContextWrapper, function_tool

from streaming_service.agents.turn_context import AgentTurnContext, fallback_number

Ctx = RunContextWrapper[AgentTurnContext]
_DAY_NAMES = {"mon": "Monday", "tue": "Tuesday", "wed": "Wednesday", "thu": "Thursday", "fri": "Friday",
              "sat": "Saturday", "sun": "Sunday"}


@function_tool
def end_call(ctx: Ctx) -> str:
    """End the phone call. Use it once the caller is done or has said goodbye."""
    ctx.context.call.end_call()
    return json.dumps({"status": "ending", "say": "Thanks for calling. Goodbye!"})


@function_tool
def transfer_to_human(ctx: Ctx) -> str:
    """Transfer the caller to a human member of staff."""
    number = fallback_number(ctx.context.settings)
    if not number:
        return json.dumps({"status": "unavailable", "say": "No one is available to take the call right now, "
                           "but I'm happy to keep helping. What can I do for you?"})
    ctx.context.call.transfer(number)
    return json.dumps({"status": "transferring", "say": "Of course. I'm connecting you to a member of our "
                       "team now. Please hold."})


@function_tool
def business_info(ctx: Ctx, question: str) -> str:
    """Look up the business's own facts (opening hours, address, FAQ) to answer the caller's question.

    Args:
        question: The caller's question, in their words.
    """
    return json.dumps({"status": "ok", "say": answer_from_settings(ctx.context.settings, question)})


def spoken_hours(hours: dict[str, Any]) -> str:
    """Opening hours as a person says them: consecutive days with the same hours share one phrase
    ("Monday to Friday, 9 am to 6 pm, and Saturday, 10 am to 2 pm")."""
    if not hours:
        return "We're open every day."
    runs: list[tuple[list[str], str]] = []  # (day names, their hours), in week order
    previous_open = False
    for key, name in _DAY_NAMES.items():
        spans = hours.get(key) or []
        if not spans:
            previous_open = False
            continue
        said = " and ".join(f"{_clock(a)} to {_clock(b)}" for a, b in spans)
        if previous_open and runs[-1][1] == said:
            runs[-1][0].append(name)
        else:
            runs.append(([name], said))
        previous_open = True
    if not runs:
        return "We're closed at the moment."
    parts = [f"{days[0]} to {days[-1]}, {said}" if len(days) > 2 else f"{' and '.join(days)}, {said}"
             for days, said in runs]
    return "We're open " + (", and ".join([", ".join(parts[:-1]), parts[-1]]) if len(parts) > 1 else parts[0]) + "."


def _clock(value: str) -> str:
    hour, minute = (int(x) for x in value.split(":")[:2])
    suffix = "am" if hour < 12 else "pm"
    h12 = hour % 12 or 12
    return f"{h12} {suffix}" if minute == 0 else f"{h12}:{minute:02d} {suffix}"


def answer_from_settings(settings: dict[str, Any], question: str) -> str:
    """The best sentence the tenant's settings hold for `question`: hours, address, or an FAQ entry
    sharing the most words with it. Says so plainly when nothing matches."""
    words = set(re.findall(r"[a-z']+", question.lower()))
    if words & {"open", "opening", "hours", "close", "closing", "closed", "when"}:
        return spoken_hours(settings.get("business_hours") or {})
    address = str(settings.get("address") or "")
    if address and words & {"where", "address", "located", "location", "find", "directions"}:
        return f"We're at {address}."
    best, best_score = "", 0
    for entry in _faq_entries(str(settings.get("faq_text") or settings.get("faq") or "")):
        score = len(words & set(re.findall(r"[a-z']+", entry.lower())) - _STOPWORDS)
        if score > best_score:
            best, best_score = entry, score
    if best:
        return _answer_part(best)
    return "I'm sorry, I don't have that information. I can connect you with a member of our team if you like."


_STOPWORDS = frozenset({"the", "a", "an", "do", "you", "is", "are", "i", "can", "what", "how", "to", "of", "and",
                        "in", "on", "for", "my", "your", "it", "we", "q", "a:"})


def _faq_entries(faq: str) -> list[str]:
    """Q:/A: pairs when the FAQ is written that way, else paragraphs, else lines."""
    if re.search(r"^\s*Q:", faq, re.M):
        return [b.strip() for b in re.split(r"\n(?=\s*Q:)", faq) if b.strip()]
    blocks = [b.strip() for b in re.split(r"\n\s*\n", faq) if b.strip()]
    return blocks if len(blocks) > 1 else [line.strip() for line in faq.splitlines() if line.strip()]


def _answer_part(entry: str) -> str:
    match = re.search(r"\bA:\s*(.+)", entry, re.S)
    return " ".join((match.group(1) if match else entry).split())


CALL_TOOLS = [end_call, transfer_to_human]
