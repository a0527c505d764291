"""Keep a long call's history within a token budget, cutting only at the start of a caller turn.

Tokens are estimated at four characters each (no tokenizer on the hot path); the newest turns are kept
whole, so a tool call is never separated from its result and the model always sees the latest request.
"""

from __future__ import annotations

import json
from typing import Any

CHARS_PER_TOKEN = 4


def estimate_tokens(item: dict[str, Any]) -> int:
    return len(json.dumps(item, ensure_ascii=False, default=str)) // CHARS_PER_TOKEN + 1


def trim_history(items: list[dict[str, Any]], budget_tokens: int) -> list[dict[str, Any]]:
    total = sum(estimate_tokens(i) for i in items)
    if total <= budget_tokens:
        return list(items)
    starts = [i for i, item in enumerate(items) if item.get("role") == "user"
              and item.get("type", "message") == "message"]
    for start in starts:  # earliest cut that fits
        if sum(estimate_tokens(i) for i in items[start:]) <= budget_tokens:
            return list(items[start:])
    return list(items[starts[-1]:]) if starts else list(items[-1:])
