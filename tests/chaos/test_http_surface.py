"""The HTTP surface under hostile input, and security regressions.

- The tenant API (shared/tenancy/http_api.py), fuzzed by hypothesis against its OpenAPI description
  (shared/tenancy/tenant_api.openapi.json): any path, query, tenant header and key. Never a 5xx, always
  the documented shapes, and a tenant never sees another tenant's rows, whatever key it holds.
- SQL in every text field a caller or tenant controls is stored and read back as text.
- The streaming service's own routes (health, ready, status, metrics, the stream upgrade), fuzzed.
- SSRF: every private, loopback, link-local, metadata or otherwise non-public target is refused.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import jsonschema
import pytest
from aiohttp import web
from hypothesis import strategies as st
from pydantic import SecretStr
from yarl import URL

from functions.tool_proxy.egress import EgressPolicy, EgressRefused, refusal_reason, resolve_checked
from shared.settings import Settings
from shared.tenancy import bookings, calls
from shared.tenancy.admin import TenantAdmin
from shared.tenancy.database import TenantDatabase
from shared.tenancy.http_api import build_tenant_api
from shared.tenancy.models import TranscriptTurn
from streaming_service.app import create_app
from streaming_service.engines.factory import build_engines
from tests.chaos.harness import run_examples
from tests.e2e.conftest import free_port

OPENAPI = json.loads((Path(__file__).resolve().parents[2] / "shared/tenancy/tenant_api.openapi.json").read_text())
SQL = ["'; DROP TABLE bookings; --", "' OR '1'='1", "\"; SELECT pg_sleep(5); --", "1; DELETE FROM calls",
       "Robert'); DROP TABLE tenants;--", "$1 $2 %s %(x)s", "\\x00' UNION SELECT * FROM public.api_keys --"]
T0 = datetime(2031, 3, 3, 9, 0, tzinfo=UTC)


@dataclass
class TenantApi:
    url: str
    tenants: dict[str, str]  # label -> tenant id
    keys: dict[str, str]  # label -> API key
    call_sids: dict[str, set[str]]  # label -> its calls


async def _serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


@pytest.fixture
async def tenant_api(db: TenantDatabase, admin: TenantAdmin, make_tenant: Any) -> AsyncIterator[TenantApi]:
    a, b = await make_tenant("fuzza"), await make_tenant("fuzzb")
    tenants = {"a": str(a.tenant_id), "b": str(b.tenant_id)}
    keys = {"a": await admin.create_api_key(a.tenant_id), "b": await admin.create_api_key(b.tenant_id)}
    sids: dict[str, set[str]] = {"a": set(), "b": set()}
    for label, profile in (("a", a), ("b", b)):
        for i, text in enumerate(SQL):  # SQL in every text field a call writes
            sid = f"CA{label}{i}{text}"
            await calls.start_call(db, profile.tenant_id, sid, from_number=text, to_number=f"+1555{i}",
                                   started_at=T0 + timedelta(minutes=i))
            await calls.append_transcript_turns(db, profile.tenant_id, sid, [
                TranscriptTurn(0, "caller", text), TranscriptTurn(1, "agent", f"you said {text}", heard_text=text)])
            start = T0 + timedelta(hours=i)
            await bookings.create_booking(db, profile.tenant_id, starts_at=start, ends_at=start + timedelta(minutes=30),
                                          customer_name=f"{label}:{text}", customer_phone=text[:20], notes=text,
                                          now=T0 - timedelta(days=1))
            sids[label].add(sid)
    root = web.Application()
    root.add_subapp("/api", build_tenant_api(db))
    runner, port = await _serve(root)
    yield TenantApi(f"http://127.0.0.1:{port}", tenants, keys, sids)
    await runner.cleanup()


@dataclass(frozen=True)
class ApiRequest:
    path: str
    query: dict[str, str]
    tenant_header: str | None
    key: str | None


# Dates at the edges of what Python and Postgres hold, with UTC offsets that push them over the edge.
EXTREME_DATES = ["0001-01-01T00:00:00+05:00", "0001-01-01T00:00:00-05:00", "0001-01-01T00:00:00+14:00",
                 "0001-01-01", "9999-12-31T23:59:59-05:00", "9999-12-31T23:59:59+05:00",
                 "9999-12-31T23:59:59.999999-14:00", "9999-12-31", "0001-01-01T00:00:00Z"]
# Text no client should send and no handler may choke on: NUL bytes, lone surrogates (sent as the CESU-8
# bytes a broken client would put on the wire), control characters.
hostile_text = st.one_of(
    st.text(alphabet=st.sampled_from(["\x00", "a", "\ud800", "\udfff", "\x7f", "\n", "é"]), max_size=12),
    st.builds(lambda a, b: f"{a}\x00{b}", st.text(max_size=10), st.text(max_size=10)),
    st.text(alphabet=st.characters(categories=["Cs"]), min_size=1, max_size=3),
    st.sampled_from(["\x00", "CA\x00", "\ud800", "CA\udc00x"]))


def _cursor(*values: str) -> str:
    """A cursor as this API encodes one (base64url of a JSON list), around any values."""
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode().rstrip("=")


def _q(text: str, safe: str = "") -> str:
    return quote(text, safe=safe, errors="surrogatepass")


def api_requests(api: TenantApi) -> st.SearchStrategy[ApiRequest]:
    known_sids = sorted(api.call_sids["a"] | api.call_sids["b"])
    segment = st.one_of(st.sampled_from(known_sids), st.sampled_from(SQL), st.text(max_size=60),
                        st.just("%00"), st.just("../../etc/passwd"), hostile_text)
    path = st.one_of(st.just("/api/calls"), st.just("/api/bookings"),
                     segment.map(lambda s: f"/api/calls/{_q(s)}"),
                     segment.map(lambda s: f"/api/calls/{_q(s)}/transcript"),
                     st.text(max_size=30).map(lambda s: "/api/" + _q(s, safe="/")))
    extreme = st.one_of(st.sampled_from(EXTREME_DATES), st.datetimes(
        min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-14))])
    ).map(lambda d: d.isoformat()))
    cursor = st.one_of(st.builds(_cursor, extreme, st.one_of(st.sampled_from(known_sids), hostile_text,
                                                             st.uuids().map(str))),
                       st.builds(_cursor, hostile_text, hostile_text))
    value = st.one_of(st.sampled_from(SQL), st.text(max_size=40), st.integers().map(str), hostile_text,
                      extreme, cursor,
                      st.sampled_from(["0", "1", "200", "201", "-1", "true", "2031-03-03", "2031-03-03T09:00:00",
                                       "WyIyMDMxLTAzLTAzIiwgIngiXQ", "WyJ4IiwgInkiXQ", "null"]))
    query = st.dictionaries(st.sampled_from(["limit", "cursor", "from", "include_cancelled", "x"]), value, max_size=3)
    tenant = st.one_of(st.none(), st.sampled_from([api.tenants["a"], api.tenants["b"], "", " ", "not-a-uuid"]),
                       st.sampled_from(SQL), st.uuids().map(str))
    key = st.one_of(st.none(), st.sampled_from([api.keys["a"], api.keys["b"], "va_wrong", ""]), st.sampled_from(SQL))
    pairs = st.sampled_from([("a", "a"), ("b", "b"), ("a", "b"), ("b", "a")]).map(
        lambda p: (api.tenants[p[0]], api.keys[p[1]]))  # own key and cross-tenant keys, often
    auth = st.one_of(pairs, st.tuples(tenant, key))
    return st.builds(lambda p, q, a: ApiRequest(p, q, a[0], a[1]), path, query, auth)


def _schema_for(path: str) -> dict[str, Any] | None:
    parts = path.split("/")
    if path == "/api/calls":
        name = "CallPage"
    elif path == "/api/bookings":
        name = "BookingPage"
    elif len(parts) == 4 and parts[2] == "calls":
        name = "Call"
    elif len(parts) == 5 and parts[2] == "calls" and parts[4] == "transcript":
        name = "Transcript"
    else:
        return None
    return {"$ref": f"#/components/schemas/{name}", "components": OPENAPI["components"]}


@pytest.mark.parametrize("examples", [pytest.param(400, id="400"),
                                      pytest.param(4000, id="4000", marks=pytest.mark.chaos_long)])
async def test_tenant_api_fuzz_against_its_openapi_description(tenant_api: TenantApi, examples: int) -> None:
    loop = asyncio.get_running_loop()
    statuses: dict[int, int] = {}
    error_schema = {"$ref": "#/components/schemas/Error", "components": OPENAPI["components"]}
    label_of = {tid: label for label, tid in tenant_api.tenants.items()}
    async with aiohttp.ClientSession() as http:

        async def send(request: ApiRequest) -> None:
            headers = {}
            if request.tenant_header is not None:
                headers["X-Tenant-Id"] = request.tenant_header
            if request.key is not None:
                headers["Authorization"] = f"Bearer {request.key}"
            # Built by hand, not by aiohttp: lone surrogates go on the wire as the bytes a broken client sends.
            query = "&".join(f"{_q(k)}={_q(v)}" for k, v in request.query.items())
            url = URL(tenant_api.url + request.path + (f"?{query}" if query else ""), encoded=True)
            async with http.get(url, headers=headers) as response:
                status, body = response.status, await response.read()
            statuses[status] = statuses.get(status, 0) + 1
            assert status < 500, (request, body[:300])
            document = json.loads(body)
            if status != 200:
                jsonschema.validate(document, error_schema)
                return
            # Only a tenant's own key opens its data, and only its own rows come back.
            label = label_of.get((request.tenant_header or "").strip())
            assert label is not None and request.key == tenant_api.keys[label], request
            schema = _schema_for(request.path.split("?")[0])
            assert schema is not None, request
            jsonschema.validate(document, schema)
            if request.path.startswith("/api/calls"):
                seen = {i["call_sid"] for i in document.get("items", []) if "call_sid" in i} | (
                    {document["call_sid"]} if "call_sid" in document else set())
                assert seen <= tenant_api.call_sids[label], request
            else:
                names = {i["customer_name"] for i in document["items"]}
                assert names <= {f"{label}:{text}" for text in SQL}, request

        def check(request: ApiRequest) -> None:
            asyncio.run_coroutine_threadsafe(send(request), loop).result(timeout=30)

        await asyncio.to_thread(run_examples, examples, api_requests(tenant_api), check)
    print(f"\ntenant API fuzz: {examples} requests, statuses {dict(sorted(statuses.items()))}")
    assert statuses.get(200, 0) > 0 and statuses.get(403, 0) > 0 and statuses.get(401, 0) > 0


HOSTILE_REQUESTS = [
    ("/api/calls/CA%00x", "invalid_call_sid"), ("/api/calls/%00/transcript", "invalid_call_sid"),
    # Before year 1 or after 9999 once the offset is applied:
    (f"/api/calls?cursor={_cursor('0001-01-01T00:00:00+05:00', 'CA1')}", "invalid_cursor"),
    (f"/api/calls?cursor={_cursor('0001-01-01T00:00:00+14:00', 'CA1')}", "invalid_cursor"),
    (f"/api/calls?cursor={_cursor('9999-12-31T23:59:59-05:00', 'CA1')}", "invalid_cursor"),
    (f"/api/calls?cursor={_cursor('2031-03-03T09:00:00+00:00', 'CA' + chr(0))}", "invalid_cursor"),
    (f"/api/calls?cursor={_cursor('2031-03-03T09:00:00+00:00', 'CA' + chr(0xD800))}", "invalid_cursor"),
    (f"/api/bookings?cursor={_cursor('0001-01-01T00:00:00+05:00', str(T0.year))}", "invalid_cursor"),
    (f"/api/bookings?cursor={_cursor('9999-12-31T23:59:59-05:00', '6f1c2b9e-0d7a-4a53-9d1e-2b7f1a0c9e11')}",
     "invalid_cursor"),
    ("/api/bookings?from=0001-01-01T00:00:00%2B05:00", "invalid_from"),
    ("/api/bookings?from=9999-12-31T23:59:59-05:00", "invalid_from"),
    ("/api/bookings?from=2031-03-03%00", "invalid_from"), ("/api/bookings?from=%ED%A0%80", "invalid_from"),
]


@pytest.mark.parametrize(("path", "code"), HOSTILE_REQUESTS)
async def test_nul_surrogates_and_extreme_dates_are_clear_400s(tenant_api: TenantApi, path: str, code: str) -> None:
    headers = {"X-Tenant-Id": tenant_api.tenants["a"], "Authorization": f"Bearer {tenant_api.keys['a']}"}
    async with aiohttp.ClientSession() as http, \
            http.get(URL(tenant_api.url + path, encoded=True), headers=headers) as response:
        assert response.status == 400, await response.text()
        assert (await response.json())["error"]["code"] == code


async def test_sql_in_every_text_field_is_stored_as_text(tenant_api: TenantApi) -> None:
    async with aiohttp.ClientSession() as http:
        headers = {"X-Tenant-Id": tenant_api.tenants["a"], "Authorization": f"Bearer {tenant_api.keys['a']}"}
        async with http.get(tenant_api.url + "/api/bookings", params={"limit": "200"}, headers=headers) as response:
            names = {b["customer_name"] for b in (await response.json())["items"]}
        async with http.get(tenant_api.url + "/api/calls", params={"limit": "200"}, headers=headers) as response:
            listed = (await response.json())["items"]
        for sid in sorted(tenant_api.call_sids["a"]):
            async with http.get(f"{tenant_api.url}/api/calls/{quote(sid, safe='')}/transcript",
                                headers=headers) as response:
                assert response.status == 200, sid
                turns = (await response.json())["items"]
            assert turns[0]["text"] == sid[4:] and turns[1]["heard_text"] == sid[4:]
    assert names == {f"a:{text}" for text in SQL}  # every booking, verbatim: nothing was dropped, nothing executed
    assert {c["call_sid"] for c in listed} == tenant_api.call_sids["a"]
    assert {c["from_number"] for c in listed} == set(SQL)


async def test_service_routes_fuzz_never_fail() -> None:
    """Health, ready, status, metrics and the stream upgrade, with any method, path, query and headers."""
    settings = Settings(_env_file=None, twilio_auth_token=SecretStr("t"),  # type: ignore[call-arg]
                        stream_token_secret=SecretStr("s"))
    runner, port = await _serve(create_app(settings, build_engines(settings)))
    loop = asyncio.get_running_loop()
    statuses: dict[int, int] = {}
    requests = st.tuples(
        st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]),
        st.one_of(st.sampled_from(["/", "/ready", "/websocket-metrics", "/websocket-status", "/twilio-stream"]),
                  st.text(max_size=40).map(lambda s: "/" + quote(s, safe="/"))),
        st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=30), max_size=3),
        st.dictionaries(st.sampled_from(["X-Twilio-Signature", "Upgrade", "Connection", "X-Forwarded-Proto",
                                         "X-Forwarded-Host", "Sec-WebSocket-Key", "Sec-WebSocket-Version"]),
                        st.one_of(st.sampled_from(["websocket", "Upgrade", "https", "13", "dGhlIHNhbXBsZQ=="]),
                                  st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)),
                        max_size=5),
        st.binary(max_size=2000))
    try:
        async with aiohttp.ClientSession() as http:

            async def send(drawn: tuple[str, str, dict[str, str], dict[str, str], bytes]) -> None:
                method, path, query, headers, body = drawn
                try:
                    async with http.request(method, f"http://127.0.0.1:{port}{path}", params=query,
                                            headers=headers, data=body or None) as response:
                        status = response.status
                        await response.read()
                except aiohttp.ClientResponseError as exc:  # refused at the protocol level, with a status
                    status = exc.status
                # A dropped connection (ServerDisconnectedError) is a failure: the server must answer.
                statuses[status] = statuses.get(status, 0) + 1
                assert status < 500, drawn

            def check(drawn: tuple[str, str, dict[str, str], dict[str, str], bytes]) -> None:
                asyncio.run_coroutine_threadsafe(send(drawn), loop).result(timeout=30)

            await asyncio.to_thread(run_examples, 400, requests, check)
    finally:
        await runner.cleanup()
    print(f"\nservice routes fuzz: statuses {dict(sorted(statuses.items()))}")


SSRF_TARGETS = ["127.0.0.1", "127.1.2.3", "0.0.0.0", "10.0.0.5", "172.16.3.4", "192.168.1.1", "169.254.169.254",
                "100.64.0.1", "::1", "::", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
                "::ffff:10.0.0.1", "224.0.0.1", "255.255.255.255", "192.0.2.1", "fd00:ec2::254", "localhost",
                "2130706433", "0x7f000001", "017700000001", "127.0.0.1.nip.invalid"]


@pytest.mark.parametrize("host", SSRF_TARGETS)
async def test_ssrf_targets_are_refused(host: str) -> None:
    with pytest.raises(EgressRefused):
        await resolve_checked(host, 80, EgressPolicy())


def test_ssrf_every_non_public_address_is_refused() -> None:
    networks = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16", "100.64.0.0/10",
                "0.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4", "fc00::/7", "fe80::/10", "::ffff:10.0.0.0/104"]

    def check(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        assert refusal_reason(address, EgressPolicy()) is not None, address

    strategy = st.one_of(*(st.ip_addresses(network=n) for n in networks))
    run_examples(2000, strategy, check)
