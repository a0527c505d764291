"""Outbound HTTP to tenant tool targets, guarded against SSRF.

The host is resolved once, every address is checked, and the connection goes to exactly those checked
addresses (a pinned resolver), so a DNS answer that changes between check and connect (rebinding) cannot
redirect the request. Redirects are not followed: a 302 to 169.254.169.254 would bypass the check.
TLS still verifies the certificate against the hostname, because only the resolution is pinned.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import aiohttp

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Metadata endpoints named explicitly: they are link-local/ULA (already refused) but worth a clear reason.
_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}

# IANA's IPv4 and IPv6 Special-Purpose Address Registries (and multicast), listed here rather than left to
# `ipaddress`, whose flags vary between Python versions and miss 6to4, site-local and several others. Every
# entry is refused, including those IANA marks "globally reachable" (AS112, AMT): no tool target lives there.
# Prefixes that embed an IPv4 host (6to4, Teredo, NAT64) are refused outright, whatever they embed.
SPECIAL_PURPOSE_NETWORKS: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(cidr), name) for cidr, name in (
        ("0.0.0.0/8", "this network"), ("10.0.0.0/8", "private"), ("100.64.0.0/10", "shared address space"),
        ("127.0.0.0/8", "loopback"), ("169.254.0.0/16", "link-local"), ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignments"), ("192.0.2.0/24", "documentation"),
        ("192.31.196.0/24", "AS112"), ("192.52.193.0/24", "AMT"), ("192.88.99.0/24", "6to4 relay anycast"),
        ("192.168.0.0/16", "private"), ("192.175.48.0/24", "AS112 direct delegation"),
        ("198.18.0.0/15", "benchmarking"), ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"), ("224.0.0.0/4", "multicast"), ("240.0.0.0/4", "reserved"),
        ("255.255.255.255/32", "limited broadcast"),
        ("::/128", "unspecified"), ("::1/128", "loopback"), ("::/96", "IPv4-compatible (deprecated)"),
        ("64:ff9b::/96", "NAT64"), ("64:ff9b:1::/48", "local-use NAT64"), ("100::/64", "discard-only"),
        ("100:0:0:1::/64", "dummy prefix"), ("2001::/32", "Teredo"), ("2001::/23", "IETF protocol assignments"),
        ("2001:db8::/32", "documentation"), ("2002::/16", "6to4"), ("2620:4f:8000::/48", "AS112 direct delegation"),
        ("3fff::/20", "documentation"), ("5f00::/16", "segment routing SIDs"), ("fc00::/7", "unique-local"),
        ("fe80::/10", "link-local"), ("fec0::/10", "site-local (deprecated)"), ("ff00::/8", "multicast"),
    ))


class EgressRefused(Exception):
    """The target is not allowed (private, loopback, link-local, metadata, unresolvable, bad URL)."""


class EgressFailed(Exception):
    """The target was allowed but the exchange failed (timeout, connection, response too large)."""


@dataclass(frozen=True)
class EgressPolicy:
    timeout_s: float = 5.0
    max_response_bytes: int = 64 * 1024
    # Networks a deployment (or a test) trusts explicitly, e.g. 127.0.0.0/8 for a local echo target.
    allowed_networks: tuple[IPNetwork, ...] = field(default_factory=tuple)

    @staticmethod
    def parse_networks(text: str) -> tuple[IPNetwork, ...]:
        return tuple(ipaddress.ip_network(part.strip(), strict=False)
                     for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class EgressResponse:
    status: int
    content_type: str
    body: bytes


def refusal_reason(address: IPAddress, policy: EgressPolicy) -> str | None:
    """Why this address may not be contacted, or None when it may."""
    if any(address in network for network in policy.allowed_networks):
        return None
    # An IPv4-mapped IPv6 address (::ffff:10.0.0.1) is the IPv4 host; judge it as such.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return refusal_reason(address.ipv4_mapped, policy)
    if address in _METADATA:
        return "cloud metadata address"
    for network, name in SPECIAL_PURPOSE_NETWORKS:
        if address.version == network.version and address in network:
            return f"{name} address"
    if address.is_loopback:
        return "loopback address"
    if address.is_link_local:
        return "link-local address"
    if address.is_private:
        return "private address"
    # is_global is False for shared (100.64/10), reserved, multicast, unspecified, documentation ranges.
    if address.is_multicast or address.is_unspecified or address.is_reserved or not address.is_global:
        return "non-public address"
    return None


async def system_lookup(host: str, port: int) -> list[str]:
    """Every address the system resolver answers for `host` (A and AAAA)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise EgressRefused(f"cannot resolve {host}") from exc
    return [str(info[4][0]) for info in infos]


async def resolve_checked(host: str, port: int, policy: EgressPolicy,
                          lookup: Callable[[str, int], Awaitable[list[str]]] = system_lookup) -> list[IPAddress]:
    """Resolve `host` and return its addresses, refusing if any of them is not allowed."""
    try:
        literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            addresses = list(dict.fromkeys(ipaddress.ip_address(a.split("%", 1)[0]) for a in await lookup(host, port)))
        except ValueError as exc:
            raise EgressRefused(f"{host} resolves to an unreadable address") from exc
    if not addresses:
        raise EgressRefused(f"cannot resolve {host}")
    # All or nothing: a name answering with one public and one private address is refused outright.
    for address in addresses:
        reason = refusal_reason(address, policy)
        if reason is not None:
            raise EgressRefused(f"{host} resolves to a {reason}")
    return addresses


def _pinned_resolver(addresses: Iterable[IPAddress]) -> aiohttp.abc.AbstractResolver:
    import aiohttp.abc

    pinned = list(addresses)

    class PinnedResolver(aiohttp.abc.AbstractResolver):
        """Answers every lookup with the addresses that were already checked."""

        async def resolve(self, host: str, port: int = 0,
                          family: socket.AddressFamily = socket.AF_INET) -> list[aiohttp.abc.ResolveResult]:
            return [{"hostname": host, "host": str(ip), "port": port,
                     "family": socket.AF_INET6 if ip.version == 6 else socket.AF_INET,
                     "proto": 0, "flags": socket.AI_NUMERICHOST} for ip in pinned]

        async def close(self) -> None:
            return None

    return PinnedResolver()


async def send(method: str, url: str, headers: dict[str, str], json_body: Any | None,
               params: dict[str, str] | None, policy: EgressPolicy) -> EgressResponse:
    """One request to a tool target under the policy's address rules, timeout and size cap."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EgressRefused("target URL must be http(s) with a host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        async with asyncio.timeout(policy.timeout_s):
            addresses = await resolve_checked(parts.hostname, port, policy)
            return await _exchange(method, url, headers, json_body, params, addresses, policy)
    except TimeoutError as exc:
        raise EgressFailed(f"target did not answer within {policy.timeout_s:g} s") from exc


async def _exchange(method: str, url: str, headers: dict[str, str], json_body: Any | None,
                    params: dict[str, str] | None, addresses: list[IPAddress],
                    policy: EgressPolicy) -> EgressResponse:
    import aiohttp

    connector = aiohttp.TCPConnector(resolver=_pinned_resolver(addresses), use_dns_cache=False,
                                     force_close=True)
    try:
        async with aiohttp.ClientSession(connector=connector, trust_env=False) as session, \
                session.request(method, url, headers=headers, json=json_body, params=params,
                                allow_redirects=False) as response:
            if 300 <= response.status < 400:  # not followed: the Location was never checked
                raise EgressRefused(f"target answered a redirect (HTTP {response.status}), which is not followed")
            declared = response.content_length
            if declared is not None and declared > policy.max_response_bytes:
                raise EgressFailed(f"response exceeded {policy.max_response_bytes} bytes")
            body = bytearray()
            async for chunk in response.content.iter_chunked(16 * 1024):
                body.extend(chunk)
                # Stop reading as soon as the cap is passed: a huge body must not be buffered whole.
                if len(body) > policy.max_response_bytes:
                    raise EgressFailed(f"response exceeded {policy.max_response_bytes} bytes")
            return EgressResponse(status=response.status,
                                  content_type=response.headers.get("Content-Type", ""), body=bytes(body))
    except aiohttp.ClientError as exc:
        raise EgressFailed(f"connection to target failed: {type(exc).__name__}") from exc
    except ValueError as exc:  # e.g. a header value with CR/LF built from arguments
        raise EgressFailed(f"request could not be built: {exc}") from exc
