"""What the voice webhook decides, as plain async functions over a `CallDirectory`.

Nothing here knows Lambda or HTTP: the handler verifies the signature, decodes the form and hands it
over; these functions answer TwiML text and never raise for a data-layer failure, because Twilio must
never get a 5xx (it would play its own error message to the caller).
"""

from __future__ import annotations

import logging
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


@dataclass(frozen=True)
class StreamConfig:
    stream_url: str  # wss://host/twilio-stream
    after_stream_url: str  # https://public/.../voice/after-stream
    stream_token_secret: str
    stream_token_ttl_s: int = 300
    trace_header: str = ""


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
                        config: StreamConfig) -> str:
    """POST /voice: route the call to its tenant's agent over a Media Stream."""
    call_sid, caller, dialled = form.get("CallSid", ""), form.get("From", ""), form.get("To", "")
    tenant: Tenant | None = None
    try:
        tenant = await directory.resolve_number(dialled)
        if tenant is None:
            log.info("call to unknown number", extra={"call_sid": call_sid, "dialled": dialled})
            return twiml.unknown_number()
        await directory.start_call(tenant.tenant_id, call_sid, caller, dialled)
        token = mint_stream_token(config.stream_token_secret, tenant.tenant_id, call_sid,
                                  ttl_s=config.stream_token_ttl_s)
    except Exception as exc:  # DB, Redis, a missing secret: the caller hears an apology, not an error
        log.error("cannot start call", extra={"call_sid": call_sid, "error": type(exc).__name__,
                                              "tenant_id": tenant.tenant_id if tenant else None})
        return twiml.apology(tenant.fallback_number if tenant else None)
    log.info("call routed", extra={"call_sid": call_sid, "tenant_id": tenant.tenant_id})
    params = twiml.StreamParameters(tenant_id=tenant.tenant_id, stream_token=token, caller=caller,
                                    dialled=dialled, trace_header=config.trace_header)
    return twiml.connect_stream(config.stream_url, config.after_stream_url, params)


async def after_stream(directory: CallDirectory, form: Mapping[str, str]) -> str:
    """POST /voice/after-stream: the stream closed; do what the session recorded."""
    call_sid, dialled = form.get("CallSid", ""), form.get("To", "")
    tenant: Tenant | None = None
    try:
        tenant = await directory.resolve_number(dialled)
        if tenant is None:
            return twiml.hangup()
        outcome = await directory.read_outcome(tenant.tenant_id, call_sid)
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
