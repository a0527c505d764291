"""The tool proxy's SSRF guard against IANA's special-purpose address registries (IPv4 and IPv6), as
literals and as DNS answers: one special-purpose answer among public ones refuses the whole name."""

from __future__ import annotations

import ipaddress

import pytest

from functions.tool_proxy.egress import EgressPolicy, EgressRefused, refusal_reason, resolve_checked

# One address inside each range, with the range it stands for.
REFUSED = [
    ("0.1.2.3", "0.0.0.0/8 this network"), ("10.9.8.7", "10.0.0.0/8 private"),
    ("100.64.0.1", "100.64.0.0/10 shared"), ("127.0.0.2", "127.0.0.0/8 loopback"),
    ("169.254.169.254", "metadata"), ("169.254.1.1", "169.254.0.0/16 link-local"),
    ("172.16.0.1", "172.16.0.0/12 private"), ("192.0.0.9", "192.0.0.0/24 IETF (PCP anycast)"),
    ("192.0.0.170", "192.0.0.0/24 IETF (NAT64 discovery)"), ("192.0.2.1", "192.0.2.0/24 TEST-NET-1"),
    ("192.31.196.1", "192.31.196.0/24 AS112"), ("192.52.193.1", "192.52.193.0/24 AMT"),
    ("192.88.99.1", "192.88.99.0/24 6to4 relay"), ("192.168.1.1", "192.168.0.0/16 private"),
    ("192.175.48.1", "192.175.48.0/24 AS112 direct delegation"), ("198.18.0.1", "198.18.0.0/15 benchmarking"),
    ("198.51.100.1", "198.51.100.0/24 TEST-NET-2"), ("203.0.113.1", "203.0.113.0/24 TEST-NET-3"),
    ("224.0.0.251", "224.0.0.0/4 multicast"), ("240.0.0.1", "240.0.0.0/4 reserved"),
    ("255.255.255.255", "limited broadcast"),
    ("::", "::/128 unspecified"), ("::1", "::1/128 loopback"), ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
    ("::ffff:10.0.0.1", "IPv4-mapped private"), ("::8.8.8.8", "IPv4-compatible (deprecated)"),
    ("64:ff9b::7f00:1", "64:ff9b::/96 NAT64 (to loopback)"), ("64:ff9b::808:808", "64:ff9b::/96 NAT64 (to public)"),
    ("64:ff9b:1::1", "64:ff9b:1::/48 local-use NAT64"), ("100::1", "100::/64 discard-only"),
    ("100:0:0:1::1", "100:0:0:1::/64 dummy prefix"), ("2001::1", "2001::/32 Teredo"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001::/32 Teredo (real-looking)"),
    ("2001:2::1", "2001:2::/48 benchmarking"), ("2001:20::1", "2001:20::/28 ORCHIDv2"),
    ("2001:1ff::1", "2001::/23 IETF protocol assignments"), ("2001:db8::1", "2001:db8::/32 documentation"),
    ("2002::1", "2002::/16 6to4"), ("2002:c000:204::1", "2002::/16 6to4 (192.0.2.4)"),
    ("2002:808:808::1", "2002::/16 6to4 (a public IPv4)"), ("2620:4f:8000::1", "2620:4f:8000::/48 AS112"),
    ("3fff::1", "3fff::/20 documentation"), ("5f00::1", "5f00::/16 SRv6 SIDs"),
    ("fc00::1", "fc00::/7 unique-local"), ("fd12:3456::1", "fc00::/7 unique-local"),
    ("fd00:ec2::254", "metadata (IPv6)"), ("fe80::1", "fe80::/10 link-local"),
    ("fec0::1", "fec0::/10 site-local"), ("feff::1", "fec0::/10 site-local (top)"),
    ("ff02::1", "ff00::/8 multicast"),
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "::ffff:8.8.8.8", "2606:4700:4700::1111",
          "2001:4860:4860::8888", "2a00:1450:4001::1"]


@pytest.mark.parametrize(("address", "range_name"), REFUSED, ids=[a for a, _ in REFUSED])
def test_special_purpose_address_is_refused(address: str, range_name: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address), EgressPolicy()) is not None, range_name


@pytest.mark.parametrize("address", PUBLIC)
def test_public_address_is_allowed(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address), EgressPolicy()) is None


@pytest.mark.parametrize(("address", "range_name"), REFUSED, ids=[a for a, _ in REFUSED])
async def test_special_purpose_literal_in_the_url_host_is_refused(address: str, range_name: str) -> None:
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(EgressRefused):
        await resolve_checked(host, 443, EgressPolicy())


@pytest.mark.parametrize(("address", "range_name"), REFUSED, ids=[a for a, _ in REFUSED])
async def test_every_dns_answer_is_checked(address: str, range_name: str) -> None:
    """A name answering one public and one special-purpose address is refused outright."""
    async def answers(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "2606:4700:4700::1111", address]

    with pytest.raises(EgressRefused, match=r"tools\.example resolves to"):
        await resolve_checked("tools.example", 443, EgressPolicy(), lookup=answers)


async def test_a_name_with_only_public_answers_is_allowed() -> None:
    async def answers(host: str, port: int) -> list[str]:
        return PUBLIC

    assert len(await resolve_checked("tools.example", 443, EgressPolicy(), lookup=answers)) == len(PUBLIC)


async def test_the_system_resolver_answer_for_localhost_is_refused() -> None:
    with pytest.raises(EgressRefused):
        await resolve_checked("localhost", 80, EgressPolicy())
