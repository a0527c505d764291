"""ECS task scale-in protection while the task has live calls.

A scale-in or a deploy picks tasks to stop; a protected task is never picked, so a live call is never cut
by autoscaling. The ECS agent serves `$ECS_AGENT_URI/task-protection/v1/state` inside the task and acts
with the task role's credentials (`ecs:UpdateTaskProtection`). Protection expires on its own
(`ExpiresInMinutes`), so a hung process cannot pin a task forever: it is renewed while calls last and
cleared as soon as the task is idle or draining.

Outside ECS (`ECS_AGENT_URI` unset) nothing is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

log = logging.getLogger("voice_agent.task_protection")

STATE_PATH = "/task-protection/v1/state"
# What the agent does with the task role's credentials on our behalf: the task role must allow these
# (infra/components/streaming_task.py; checked against the synthesized template in tests/infra).
TASK_ROLE_ACTIONS = ("ecs:UpdateTaskProtection", "ecs:GetTaskProtection")


@dataclass(frozen=True)
class ProtectionOptions:
    expires_in_minutes: int = 60  # ECS accepts 1..2880
    renew_before_expiry_s: float = 20 * 60  # renew when less than this is left
    request_timeout_s: float = 5.0
    retry_after_s: float = 10.0  # after a failed request


@dataclass(frozen=True)
class Wanted:
    live_calls: int
    draining: bool

    @property
    def protected(self) -> bool:
        return self.live_calls > 0 and not self.draining


class TaskProtection:
    def __init__(self, agent_uri: str, options: ProtectionOptions | None = None) -> None:
        self.url = agent_uri.rstrip("/") + STATE_PATH
        self.options = options or ProtectionOptions()
        self.enabled: bool | None = None  # what ECS last confirmed; None = unknown
        self.expires_at = 0.0  # monotonic
        self.failures = 0
        self._changed = asyncio.Event()

    def changed(self) -> None:
        """Live calls or draining changed: reconcile now."""
        self._changed.set()

    async def set(self, session: aiohttp.ClientSession, enabled: bool) -> bool:
        body: dict[str, object] = {"ProtectionEnabled": enabled}
        if enabled:
            body["ExpiresInMinutes"] = self.options.expires_in_minutes
        try:
            async with session.put(self.url, json=body,
                                   timeout=aiohttp.ClientTimeout(total=self.options.request_timeout_s)) as resp:
                answer = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self.failures += 1
            log.warning("task protection request failed", extra={"error": type(exc).__name__, "enabled": enabled})
            return False
        # The agent answers {"protection": {...}} on success, {"failure": ...} or {"error": ...} otherwise.
        protection = answer.get("protection") if isinstance(answer, dict) else None
        if resp.status != 200 or not isinstance(protection, dict):
            self.failures += 1
            log.warning("task protection refused", extra={"status": resp.status, "answer": str(answer)[:300]})
            return False
        self.enabled = bool(protection.get("ProtectionEnabled"))
        self.expires_at = time.monotonic() + self.options.expires_in_minutes * 60 if self.enabled else 0.0
        log.info("task protection set", extra={"enabled": self.enabled,
                                               "expiration": protection.get("ExpirationDate")})
        return True

    def _due(self, wanted: Wanted) -> bool:
        if wanted.protected != self.enabled:
            return True
        return wanted.protected and self.expires_at - time.monotonic() < self.options.renew_before_expiry_s

    async def run(self, wanted: Callable[[], Wanted]) -> None:
        """Reconcile protection with `wanted()` on every change, and renew it before it expires."""
        async with aiohttp.ClientSession() as session:
            while True:
                self._changed.clear()
                state = wanted()
                ok = True
                if self._due(state):
                    ok = await self.set(session, state.protected)
                if ok and self.enabled:
                    wait = max(1.0, self.expires_at - time.monotonic() - self.options.renew_before_expiry_s)
                else:
                    wait = self.options.retry_after_s if not ok else 3600.0
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that arrives as
                # the event is set, and this loop would then outlive the server's shutdown.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._changed.wait()
