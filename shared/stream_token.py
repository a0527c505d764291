"""Signed stream tokens: bind a Media Stream socket to one tenant and one call.

The webhook mints a token when it answers `/voice`; the streaming service verifies it from
`start.customParameters`. Format: `base64url(tenant_id|call_sid|expires_at).base64url(HMAC-SHA256)`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass


class InvalidStreamToken(ValueError):
    """The token is malformed, forged, expired, or minted for another call."""


@dataclass(frozen=True)
class StreamGrant:
    tenant_id: str
    call_sid: str
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, payload: bytes) -> bytes:
    return hmac.new(secret.encode("utf-8"), payload, hashlib.sha256).digest()


def mint_stream_token(secret: str, tenant_id: str, call_sid: str, ttl_s: int = 300,
                      now: float | None = None) -> str:
    if not secret:
        raise ValueError("a stream token secret is required")
    if "|" in tenant_id or "|" in call_sid:
        raise ValueError("tenant id and call SID must not contain '|'")
    expires_at = int((now if now is not None else time.time()) + ttl_s)
    payload = f"{tenant_id}|{call_sid}|{expires_at}".encode()
    return f"{_b64(payload)}.{_b64(_sign(secret, payload))}"


def verify_stream_token(secret: str, token: str, call_sid: str, tenant_id: str | None = None,
                        now: float | None = None) -> StreamGrant:
    """Return the grant, or raise InvalidStreamToken saying why (never which secret)."""
    if not secret:
        raise InvalidStreamToken("no stream token secret configured")
    try:
        payload_part, signature_part = token.split(".", 1)
        payload = _unb64(payload_part)
        signature = _unb64(signature_part)
    except (ValueError, AttributeError) as exc:
        raise InvalidStreamToken("malformed token") from exc
    if not hmac.compare_digest(signature, _sign(secret, payload)):
        raise InvalidStreamToken("bad signature")
    try:
        token_tenant, token_call, expires_text = payload.decode("utf-8").split("|")
        expires_at = int(expires_text)
    except ValueError as exc:
        raise InvalidStreamToken("malformed payload") from exc
    if expires_at < (now if now is not None else time.time()):
        raise InvalidStreamToken("expired")
    # Bytes, not str: compare_digest raises TypeError on non-ASCII text (a hostile callSid or tenant).
    if not hmac.compare_digest(token_call.encode(), call_sid.encode()):
        raise InvalidStreamToken("token was minted for another call")
    if tenant_id is not None and not hmac.compare_digest(token_tenant.encode(), tenant_id.encode()):
        raise InvalidStreamToken("token was minted for another tenant")
    return StreamGrant(tenant_id=token_tenant, call_sid=token_call, expires_at=expires_at)
