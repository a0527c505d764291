"""The rule that a change to a caller's bookings needs their explicit yes to a read-back they heard.

Enforced inside the tools, not left to the prompt, so it holds whichever model drives them:
1. the first call of a tool with some details changes nothing and returns `needs_confirmation` with the
   read-back to say;
2. a later call with the same details acts only when, in the history, that read-back call is followed by
   the agent's words ending in a question (heard in full: a barge-in cuts the history down to what
   played), and then directly by the caller's yes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from streaming_service.agents.offline_policy.caller_language import yes_or_no

NEEDS_CONFIRMATION = "needs_confirmation"


def item_role(item: dict[str, Any]) -> str:
    return str(item.get("role") or "") if item.get("type", "message") == "message" else ""


def message_text(item: dict[str, Any]) -> str:
    content = item.get("content")
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content or "")


def parse_output(raw: Any) -> dict[str, Any]:
    """A tool output as a dict (our tools return JSON; anything else becomes {"text": ...})."""
    if isinstance(raw, list):  # content-list form (MCP tools, some SDK paths)
        raw = "".join(str(part.get("text", "")) for part in raw if isinstance(part, dict))
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(str(raw))
    except (TypeError, ValueError):
        return {"text": str(raw)}
    return value if isinstance(value, dict) else {"text": str(raw)}


def parse_arguments(raw: Any) -> dict[str, Any]:
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def caller_confirmed(history: list[dict[str, Any]], tool_name: str,
                     key_of: Callable[[dict[str, Any]], str | None], key: str) -> bool:
    """Did the caller just say yes to the read-back of exactly these details (`key`)?"""
    last_user = next((i for i in range(len(history) - 1, -1, -1) if item_role(history[i]) == "user"), None)
    if last_user is None or yes_or_no(message_text(history[last_user])) is not True:
        return False
    outputs = {str(item.get("call_id")): parse_output(item.get("output")) for item in history[:last_user]
               if item.get("type") == "function_call_output"}
    question_heard: bool | None = None  # decided by the agent's last words before the yes
    for item in reversed(history[:last_user]):
        role = item_role(item)
        if role == "user":
            return False  # the yes answers something said after the read-back
        if role == "assistant" and question_heard is None:
            question_heard = message_text(item).rstrip().endswith("?")
        if item.get("type") == "function_call" and item.get("name") == tool_name:
            status = outputs.get(str(item.get("call_id")), {}).get("status")
            if status != NEEDS_CONFIRMATION:
                continue
            return bool(question_heard) and key_of(parse_arguments(item.get("arguments"))) == key
    return False
