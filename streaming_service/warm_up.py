"""Pay the Agents SDK's first-run costs when the process starts, not in a caller's first turn.

The SDK imports and builds much lazily (streaming, schemas, the run loop): the first turn of a fresh
process took about 200 ms longer than the next ones. One offline-policy turn at start-up (no network,
no data) does that work before the service reports ready.
"""

from __future__ import annotations

import logging
import time
import uuid

from streaming_service.agents.offline_policy.offline_runtime import OfflinePolicyRuntime
from streaming_service.engines.base import CallContext, Conversation

log = logging.getLogger(__name__)


async def warm_up_agents() -> None:
    started = time.monotonic()
    call = CallContext(call_sid="warm-up", stream_sid="", tenant_id=str(uuid.UUID(int=0)))
    try:
        async for _event in OfflinePolicyRuntime().run_turn(call, Conversation(), "What are your opening hours"):
            pass
    except Exception as exc:  # a cold first turn is slower, not broken
        log.warning("agents not warmed up", extra={"error": type(exc).__name__})
        return
    log.info("agents warmed up", extra={"ms": round((time.monotonic() - started) * 1000)})
