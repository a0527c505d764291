"""What the voice webhook decides, as plain async functions over a `CallDirectory`.

Nothing here knows Lambda or HTTP: the handler verifies the signature, decodes the form and hands it
over; these functions answer TwiML text and never raise for a data-layer failure, because Twilio must
never get a 5xx (it would play its own error message to the caller).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

from functions.voice_webhook import twiml
from shared.stream_token import mint_stream_token

log = logging.getLogger(__name__)

STREAM_PATH = "/twilio-stream"
AFTER_STREAM_PATH = "/voice/after-stream"


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    fallback_number: str | None = None
    overflow_policy: Literal["hold", "offline", "forward", "busy"] = "offline"
    overflow_hold_s: int = 60


@dataclass(frozen=True)
class Admission:
    """Whether a call gets the vendors now. `full` names what is full: "vendor" (the tenant's vendor
    budget: the offline engines can still answer) or "fleet" (no streaming task has room: nothing can)."""

    admitted: bool
    full: Literal["", "vendor", "fleet"] = ""
    detail: str = ""


ADMIT = Admission(True)


@dataclass(frozen=True)
class Outcome:
    action: Literal["continue", "hangup", "transfer"] = "continue"
    transfer_to: str | None = None


class CallDirectory(Protocol):
    """The data the webhook needs; `tenancy_directory.py` implements it over shared/tenancy."""

    async def resolve_number(self, dialled: str) -> Tenant | None:
        """The active tenant owning this number, or None. Raises when the data layer is down."""
        ...

    async def start_call(self, tenant_id: str, call_sid: str, caller: str, dialled: str) -> None: ...

    async def update_status(self, tenant_id: str, call_sid: str, status: str,
                            duration_s: int | None) -> bool:
        """True when the record changed; a repeated callback returns False."""
        ...

    async def read_outcome(self, tenant_id: str, call_sid: str) -> Outcome: ...

    async def admit(self, tenant: Tenant, call_sid: str) -> Admission:
        """Room for this call: a streaming task with room, and a slot in the tenant's vendor budget
        (reserved for this call). Admits when it cannot tell (Redis away)."""
        ...

    async def stream_started(self, call_sid: str) -> bool:
        """Whether a streaming task took this call's stream (True when it cannot tell)."""
        ...

    async def release_call(self, tenant_id: str, call_sid: str) -> None:
        """The call will not use what `admit` reserved for it."""
        ...


@dataclass(frozen=True)
class StreamConfig:
    stream_url: str  # wss://host/twilio-stream
    after_stream_url: str  # https://public/.../voice/after-stream
    stream_token_secret: str
    stream_token_ttl_s: int = 300
    trace_header: str = ""
    voice_url: str = ""  # https://public/.../voice: where hold music redirects back to
    stream_retry_attempts: int = 2
    hold_music_url: str = ""
    hold_pause_s: int = 10


def stream_url_for(stream_public_url: str, public_base_url: str) -> str:
    """The `<Stream>` URL: `STREAM_PUBLIC_URL`, else the public host with a ws(s) scheme.

    Only scheme and host are taken from the public URL: a stage path belongs to API Gateway, while the
    stream is served by the streaming service (the ALB in AWS, the same process locally).
    """
    if stream_public_url:
        base = stream_public_url.rstrip("/")
        return base if base.endswith(STREAM_PATH) else base + STREAM_PATH
    parts = urlsplit(public_base_url)
    scheme = "ws" if parts.scheme == "http" else "wss"
    return urlunsplit((scheme, parts.netloc, STREAM_PATH, "", ""))


async def incoming_call(directory: CallDirectory, form: Mapping[str, str],
                        config: StreamConfig, query: Mapping[str, str] | None = None) -> str:
    """POST /voice: route the call to its tenant's agent over a Media Stream, when there is room for it;
    else the tenant's overflow policy. `query` carries `hold_since` when hold music redirected back here."""
    call_sid, caller, dialled = form.get("CallSid", ""), form.get("From", ""), form.get("To", "")
    hold_since = _number((query or {}).get("hold_since"))
    tenant: Tenant | None = None
    try:
        tenant = await directory.resolve_number(dialled)
        if tenant is None:
            log.info("call to unknown number", extra={"call_sid": call_sid, "dialled": dialled})
            return twiml.unknown_number()
        if hold_since is None:  # a redirect back from hold is the same call, recorded once
            await directory.start_call(tenant.tenant_id, call_sid, caller, dialled)
        admission = await directory.admit(tenant, call_sid)
        if not admission.admitted:
            return overflow(tenant, admission, form, config, hold_since)
        return _stream(tenant, form, config, attempt=1)
    except Exception as exc:  # DB, Redis, a missing secret: the caller hears an apology, not an error
        log.error("cannot start call", extra={"call_sid": call_sid, "error": type(exc).__name__,
                                              "tenant_id": tenant.tenant_id if tenant else None})
        return twiml.apology(tenant.fallback_number if tenant else None)


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _stream(tenant: Tenant, form: Mapping[str, str], config: StreamConfig, *, attempt: int,
            capacity_mode: str = "") -> str:
    call_sid, caller, dialled = form.get("CallSid", ""), form.get("From", ""), form.get("To", "")
    token = mint_stream_token(config.stream_token_secret, tenant.tenant_id, call_sid,
                              ttl_s=config.stream_token_ttl_s)
    log.info("call routed", extra={"call_sid": call_sid, "tenant_id": tenant.tenant_id, "attempt": attempt,
                                   "capacity_mode": capacity_mode or "vendors"})
    params = twiml.StreamParameters(tenant_id=tenant.tenant_id, stream_token=token, caller=caller,
                                    dialled=dialled, trace_header=config.trace_header,
                                    capacity_mode=capacity_mode)
    action = config.after_stream_url if attempt <= 1 else f"{config.after_stream_url}?attempt={attempt}"
    return twiml.connect_stream(config.stream_url, action, params)


def overflow(tenant: Tenant, admission: Admission, form: Mapping[str, str], config: StreamConfig,
             hold_since: float | None) -> str:
    """No room for this call as asked: what the tenant chose for that, never silence or an error.

    - hold: hold audio, then back to /voice to try again, for up to `overflow_hold_s`; then as below.
    - offline: the offline engines answer (they say so); only when the vendors are what is full.
    - forward: `<Dial>` the tenant's fallback number.
    - busy, or nothing else possible: an apology, then hang up.
    """
    call_sid = form.get("CallSid", "")
    policy = tenant.overflow_policy
    log.warning("call overflow", extra={"call_sid": call_sid, "tenant_id": tenant.tenant_id, "full": admission.full,
                                        "policy": policy, "detail": admission.detail})
    if policy == "hold":
        now = time.time()
        since = hold_since if hold_since is not None else now
        if now - since < tenant.overflow_hold_s and config.voice_url:
            return twiml.hold(f"{config.voice_url}?hold_since={int(since)}", first=hold_since is None,
                              music_url=config.hold_music_url, pause_s=config.hold_pause_s)
        policy = "offline"  # held long enough: the best we can still do
    if policy == "offline" and admission.full == "vendor":
        return _stream(tenant, form, config, attempt=1, capacity_mode="offline")
    if policy in ("offline", "forward") and tenant.fallback_number:
        return twiml.forward(tenant.fallback_number)
    return twiml.busy()


async def after_stream(directory: CallDirectory, form: Mapping[str, str],
                       config: StreamConfig | None = None, query: Mapping[str, str] | None = None) -> str:
    """POST /voice/after-stream: the stream closed; do what the session recorded.

    A stream no task took (refused before the upgrade: the task was full or draining) never started the
    call: a fresh stream is tried, up to `stream_retry_attempts` times, then the tenant's overflow policy."""
    call_sid, dialled = form.get("CallSid", ""), form.get("To", "")
    tenant: Tenant | None = None
    try:
        tenant = await directory.resolve_number(dialled)
        if tenant is None:
            return twiml.hangup()
        outcome = await directory.read_outcome(tenant.tenant_id, call_sid)
        if (config is not None and outcome.action == "continue"
                and not await directory.stream_started(call_sid)):
            attempt = int(_number((query or {}).get("attempt")) or 1)
            if attempt <= config.stream_retry_attempts:
                log.warning("stream refused; trying a fresh one",
                            extra={"call_sid": call_sid, "tenant_id": tenant.tenant_id, "attempt": attempt + 1})
                return _stream(tenant, form, config, attempt=attempt + 1)
            await directory.release_call(tenant.tenant_id, call_sid)
            return overflow(tenant, Admission(False, "fleet", f"stream refused {attempt} times"), form,
                            config, None)
    except Exception as exc:
        log.error("cannot read call outcome", extra={"call_sid": call_sid, "error": type(exc).__name__})
        # The agent is gone either way; a human is the best we can offer.
        return twiml.apology(tenant.fallback_number if tenant else None)
    log.info("stream ended", extra={"call_sid": call_sid, "tenant_id": tenant.tenant_id,
                                    "action": outcome.action})
    if outcome.action == "transfer" and outcome.transfer_to:
        return twiml.dial(outcome.transfer_to)
    return twiml.hangup()


async def status_callback(directory: CallDirectory, form: Mapping[str, str]) -> bool:
    """POST /status: move the call record forward. Returns whether anything changed."""
    call_sid, dialled, status = form.get("CallSid", ""), form.get("To", ""), form.get("CallStatus", "")
    duration_text = form.get("CallDuration", "")
    duration = int(duration_text) if duration_text.isdigit() else None
    if not call_sid or not status:
        return False
    try:
        tenant = await directory.resolve_number(dialled)
        if tenant is None:
            return False
        changed = await directory.update_status(tenant.tenant_id, call_sid, status, duration)
    except Exception as exc:
        # Twilio does not retry status callbacks on error anyway; log it and answer 200.
        log.error("cannot record call status", extra={"call_sid": call_sid, "error": type(exc).__name__})
        return False
    log.info("call status", extra={"call_sid": call_sid, "tenant_id": tenant.tenant_id,
                                   "status": status, "changed": changed})
    return changed
