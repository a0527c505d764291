"""Who is calling the tool proxy: `Authorization: Bearer <token>` minted by the streaming service.

The token is `mint_stream_token(TOOL_PROXY_SECRET, tenant_id, call_sid)`: the stream token scheme with
its own secret. A separate secret matters: stream tokens travel through Twilio inside TwiML, and one of
those must not open a tenant's tools.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping

from shared.stream_token import InvalidStreamToken, StreamGrant, verify_stream_token


def caller_grant(headers: Mapping[str, str], secret: str) -> StreamGrant:
    """The verified grant for this request, or InvalidStreamToken saying why."""
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidStreamToken("missing bearer token")
    token = token.strip()
    # The proxy serves a tenant, not a call: take the call SID from the payload and let the HMAC check
    # (over the whole payload) vouch for it, tenant and expiry included.
    return verify_stream_token(secret, token, call_sid=_claimed_call_sid(token))


def _claimed_call_sid(token: str) -> str:
    try:
        payload = token.split(".", 1)[0]
        fields = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode("utf-8").split("|")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidStreamToken("malformed token") from exc
    if len(fields) != 3:
        raise InvalidStreamToken("malformed payload")
    return fields[1]
