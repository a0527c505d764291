"""Is this request really from Twilio? Rebuild the URL Twilio called and check X-Twilio-Signature.

Twilio signs the public URL it requested (scheme, host, path with any API Gateway stage or base path,
query string) plus the sorted form fields. Behind API Gateway the handler sees neither the scheme nor
the stage in its route path, so the URL is rebuilt: from `PUBLIC_URL` (base URL including any stage or
base path) when configured, else from the `Host` header, `X-Forwarded-Proto` and the path API Gateway
reports as called (`requestContext.path` for REST APIs, `rawPath` for HTTP APIs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from twilio.request_validator import RequestValidator

SIGNATURE_HEADER = "x-twilio-signature"


@dataclass(frozen=True)
class CalledUrl:
    """The pieces of a request's public URL that a proxy event carries."""

    host: str  # Host header (or requestContext.domainName); may carry a port locally
    scheme: str  # X-Forwarded-Proto; API Gateway always sets https
    called_path: str  # the path as called, stage or base path included
    route_path: str  # the path the router matched (no stage), e.g. /voice
    query_string: str = ""


def public_url(called: CalledUrl, configured_base: str = "") -> str:
    """The URL Twilio requested. A configured base wins: it is what was given to Twilio."""
    if configured_base:
        url = configured_base.rstrip("/") + called.route_path
    else:
        url = f"{called.scheme or 'https'}://{called.host}{called.called_path}"
    return f"{url}?{called.query_string}" if called.query_string else url


def public_base(called: CalledUrl, configured_base: str = "") -> str:
    """The base URL for sibling routes (`/voice/after-stream`): the public URL minus the route path."""
    if configured_base:
        return configured_base.rstrip("/")
    path = called.called_path
    prefix = path[: len(path) - len(called.route_path)] if path.endswith(called.route_path) else ""
    return f"{called.scheme or 'https'}://{called.host}{prefix}"


def form_fields(body: str) -> dict[str, str]:
    # Twilio sends each field once; keep_blank_values because empty fields are signed too.
    return dict(parse_qsl(body, keep_blank_values=True))


def signature_valid(auth_token: str, url: str, fields: Mapping[str, str],
                    headers: Mapping[str, str]) -> bool:
    signature = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER), "")
    if not signature or not auth_token:
        return False
    return bool(RequestValidator(auth_token).validate(url, dict(fields), signature))
