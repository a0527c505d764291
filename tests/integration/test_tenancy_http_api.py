"""The tenant API's auth matrix (400/401/403/200), error shape and pagination, over real HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web

from shared.tenancy import bookings, calls
from shared.tenancy.admin import TenantAdmin
from shared.tenancy.database import TenantDatabase
from shared.tenancy.http_api import build_tenant_api
from shared.tenancy.models import TranscriptTurn

T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


@pytest.fixture
async def api(aiohttp_client, db: TenantDatabase, admin: TenantAdmin, make_tenant):
    a, b = await make_tenant("a"), await make_tenant("b")
    keys = {"a": await admin.create_api_key(a.tenant_id), "b": await admin.create_api_key(b.tenant_id)}
    for i in range(5):
        await calls.start_call(db, a.tenant_id, f"CA{i}", from_number="+1", to_number="+2",
                               started_at=T0 + timedelta(minutes=i))
        start = T0 + timedelta(hours=i)
        await bookings.create_booking(db, a.tenant_id, starts_at=start, ends_at=start + timedelta(minutes=30),
                                      now=T0 - timedelta(days=1))
    await calls.append_transcript_turns(db, a.tenant_id, "CA1", [TranscriptTurn(0, "caller", "hi"),
                                                                 TranscriptTurn(1, "agent", "hello")])
    root = web.Application()
    root.add_subapp("/api", build_tenant_api(db))
    client = await aiohttp_client(root)
    return client, a, b, keys


def headers(tenant_id: object | None = None, key: str | None = None) -> dict[str, str]:
    found = {}
    if tenant_id is not None:
        found["X-Tenant-Id"] = str(tenant_id)
    if key is not None:
        found["Authorization"] = f"Bearer {key}"
    return found


@pytest.mark.parametrize("path", ["/api/calls", "/api/calls/CA1", "/api/calls/CA1/transcript", "/api/bookings"])
async def test_auth_matrix(api, path: str) -> None:
    client, a, b, keys = api
    cases = [
        (headers(None, keys["a"]), 400, "missing_tenant"),
        (headers("", keys["a"]), 400, "missing_tenant"),
        (headers("   ", keys["a"]), 400, "missing_tenant"),
        (headers("not-a-uuid", keys["a"]), 400, "invalid_tenant"),
        (headers(a.tenant_id), 401, "unauthorized"),
        (headers(a.tenant_id, "va_wrong"), 401, "unauthorized"),
        (headers(a.tenant_id, keys["b"]), 403, "forbidden"),
        (headers(b.tenant_id, keys["a"]), 403, "forbidden"),
    ]
    for sent, status, code in cases:
        response = await client.get(path, headers=sent)
        assert response.status == status, (sent, await response.text())
        body = await response.json()
        assert set(body) == {"error"} and body["error"]["code"] == code and body["error"]["message"]
    ok = await client.get(path, headers=headers(a.tenant_id, keys["a"]))
    assert ok.status == 200


async def test_other_tenant_sees_only_its_own(api) -> None:
    client, _, b, keys = api
    own = await (await client.get("/api/calls", headers=headers(b.tenant_id, keys["b"]))).json()
    assert own == {"items": [], "next_cursor": None}
    missing = await client.get("/api/calls/CA1/transcript", headers=headers(b.tenant_id, keys["b"]))
    assert missing.status == 404 and (await missing.json())["error"]["code"] == "not_found"


async def test_calls_pagination(api) -> None:
    client, a, _, keys = api
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        body = await (await client.get("/api/calls", params=params, headers=headers(a.tenant_id, keys["a"]))).json()
        seen += [c["call_sid"] for c in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == ["CA4", "CA3", "CA2", "CA1", "CA0"] and pages == 3


async def test_bookings_pagination_and_transcript(api) -> None:
    client, a, _, keys = api
    auth = headers(a.tenant_id, keys["a"])
    first = await (await client.get("/api/bookings", params={"limit": "3"}, headers=auth)).json()
    second = await (await client.get("/api/bookings", params={"limit": "3", "cursor": first["next_cursor"]},
                                     headers=auth)).json()
    starts = [b["starts_at"] for b in first["items"] + second["items"]]
    assert len(starts) == 5 and starts == sorted(starts) and second["next_cursor"] is None
    transcript = await (await client.get("/api/calls/CA1/transcript", headers=auth)).json()
    assert [t["text"] for t in transcript["items"]] == ["hi", "hello"]


@pytest.mark.parametrize("params,code", [({"limit": "0"}, "invalid_limit"), ({"limit": "x"}, "invalid_limit"),
                                         ({"cursor": "!!!"}, "invalid_cursor"),
                                         ({"cursor": "WyJ4Il0"}, "invalid_cursor")])
async def test_bad_query_parameters(api, params: dict[str, str], code: str) -> None:
    client, a, _, keys = api
    response = await client.get("/api/calls", params=params, headers=headers(a.tenant_id, keys["a"]))
    assert response.status == 400 and (await response.json())["error"]["code"] == code
