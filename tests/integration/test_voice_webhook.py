"""The voice webhook Lambda against real Postgres and Redis (shared/tenancy), invoked two ways:
with API Gateway proxy events as deployed (REST API, `/prod` stage, execute-api host; HTTP API v2), and
over HTTP on loopback through `local/apigw_adapter.py`, signed like Twilio signs.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from twilio.request_validator import RequestValidator

from functions.voice_webhook.handler import LambdaHandler, WebhookConfig, create_handler
from functions.voice_webhook.tenancy_directory import TenancyCallDirectory
from functions.voice_webhook.twilio_request import signature_valid
from local.apigw_adapter import LocalLambdaContext, lambda_route
from shared.app_secrets import AppSecrets
from shared.stream_token import verify_stream_token
from shared.tenancy import calls
from shared.tenancy.cache import JsonCache
from shared.tenancy.call_state import CallStateStore
from shared.tenancy.database import TenantDatabase
from shared.tenancy.embedded import app_dsn
from shared.tenancy.models import CallOutcome, TenantProfile
from tests.conftest import MakeTenant, unique_number

TWILIO_TOKEN = "twilio-auth-token-test"
STREAM_SECRET = "stream-secret-test"
FALLBACK = "+15550009999"
API_HOST = "abc123.execute-api.eu-west-1.amazonaws.com"
DEAD_DSN = "postgresql://voice_app:x@127.0.0.1:1/nowhere"  # nothing listens on port 1: "database down"


def _config(dsn: str, redis_url: str, prefix: str, public_url: str = "") -> Callable[[], WebhookConfig]:
    async def directory() -> TenancyCallDirectory:
        return await TenancyCallDirectory.connect(dsn, redis_url, cache_prefix=prefix)

    return lambda: WebhookConfig(
        public_url=public_url, stream_public_url="wss://stream.example.test", stream_token_ttl_s=300,
        load_secrets=lambda: AppSecrets(twilio_auth_token=TWILIO_TOKEN, stream_token_secret=STREAM_SECRET),
        connect_directory=directory)


def _call_form(to: str, sid: str, **extra: str) -> dict[str, str]:
    return {"CallSid": sid, "AccountSid": "AC" + "1" * 32, "From": "+15557770000", "To": to,
            "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01", **extra}


def _sign(url: str, form: dict[str, str]) -> str:
    return str(RequestValidator(TWILIO_TOKEN).compute_signature(url, form))


def rest_event(route: str, form: dict[str, str], signature: str | None) -> dict[str, Any]:
    """What API Gateway (REST API, stage `prod`, default execute-api domain) hands the Lambda."""
    headers = {"Host": API_HOST, "X-Forwarded-Proto": "https", "X-Forwarded-Port": "443",
               "Content-Type": "application/x-www-form-urlencoded", "User-Agent": "TwilioProxy/1.1"}
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    return {"resource": route, "path": route, "httpMethod": "POST", "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": None, "multiValueQueryStringParameters": None,
            "pathParameters": None, "stageVariables": None,
            "requestContext": {"accountId": "123456789012", "apiId": "abc123", "domainName": API_HOST,
                               "path": f"/prod{route}", "stage": "prod", "httpMethod": "POST",
                               "resourcePath": route, "requestId": "r-1", "identity": {"sourceIp": "54.1.2.3"}},
            "body": urlencode(form), "isBase64Encoded": False}


def http_api_event(route: str, form: dict[str, str], signature: str) -> dict[str, Any]:
    """HTTP API (v2) with a named stage `prod`: the stage stays in rawPath."""
    headers = {"host": API_HOST, "x-forwarded-proto": "https", "x-twilio-signature": signature,
               "content-type": "application/x-www-form-urlencoded"}
    return {"version": "2.0", "routeKey": "$default", "rawPath": f"/prod{route}", "rawQueryString": "",
            "headers": headers,
            "requestContext": {"domainName": API_HOST, "stage": "prod", "requestId": "r-2", "apiId": "abc123",
                               "http": {"method": "POST", "path": f"/prod{route}", "protocol": "HTTP/1.1",
                                        "sourceIp": "54.1.2.3", "userAgent": "TwilioProxy/1.1"}},
            "body": urlencode(form), "isBase64Encoded": False}


async def invoke(handler: LambdaHandler, event: dict[str, Any]) -> dict[str, Any]:
    # Lambda handlers are synchronous and this one runs its own loop: call it off the test's loop.
    return await asyncio.to_thread(handler, event, LocalLambdaContext(function_name="voice_webhook"))


def _content_type(result: dict[str, Any]) -> str:
    # REST API results carry multiValueHeaders, HTTP API results plain headers.
    multi = result.get("multiValueHeaders") or {}
    return str((multi.get("Content-Type") or [None])[0] or (result.get("headers") or {}).get("Content-Type"))


def twiml(body: str) -> ET.Element:
    return ET.fromstring(body)


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    import secrets

    return f"{redis_prefix}:wh{secrets.token_hex(3)}"


@pytest.fixture
def number() -> str:
    return unique_number()


@pytest.fixture
async def tenant(make_tenant: MakeTenant, number: str) -> TenantProfile:
    return await make_tenant("wh", numbers=[number], fallback_transfer_number=FALLBACK)


@pytest.fixture
def handler(admin_dsn: str, redis_url: str, prefix: str) -> LambdaHandler:
    return create_handler(_config(app_dsn(admin_dsn), redis_url, prefix))


@pytest.fixture
async def local_server(handler: LambdaHandler) -> AsyncIterator[str]:
    """The webhook mounted like the local server mounts it: `/prod/...` → REST events, stage prod."""
    app = web.Application()
    route = lambda_route(handler, shape="rest", stage="prod", strip_prefix="/prod")
    for path in ("/voice", "/voice/after-stream", "/status"):
        app.router.add_post(f"/prod{path}", route)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/prod"
    await runner.cleanup()


async def post_signed(url: str, form: dict[str, str], signature: str | None = "sign") -> tuple[int, str]:
    headers = {} if signature is None else {"X-Twilio-Signature": _sign(url, form) if signature == "sign"
                                            else signature}
    async with aiohttp.ClientSession() as http, http.post(url, data=form, headers=headers) as response:
        return response.status, await response.text()


# --- /voice over API Gateway events -------------------------------------------------------------

async def test_valid_signature_on_stage_url_connects_the_stream(
        handler: LambdaHandler, make_tenant: MakeTenant, db: TenantDatabase) -> None:
    number = unique_number()
    profile = await make_tenant("wh", numbers=[number], fallback_transfer_number=FALLBACK)
    form = _call_form(number, "CA" + "a" * 32)
    signature = _sign(f"https://{API_HOST}/prod/voice", form)
    result = await invoke(handler, rest_event("/voice", form, signature))

    assert result["statusCode"] == 200 and "xml" in _content_type(result)
    connect = twiml(result["body"]).find("Connect")
    assert connect is not None and connect.get("action") == f"https://{API_HOST}/prod/voice/after-stream"
    stream = connect.find("Stream")
    assert stream is not None and stream.get("url") == "wss://stream.example.test/twilio-stream"
    params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert params["tenant_id"] == str(profile.tenant_id)
    assert params["caller"] == "+15557770000" and params["dialled"] == number
    grant = verify_stream_token(STREAM_SECRET, params["stream_token"] or "", form["CallSid"],
                                tenant_id=str(profile.tenant_id))
    assert grant.call_sid == form["CallSid"]
    record = await calls.get_call(db, profile.tenant_id, form["CallSid"])
    assert record is not None and record.to_number == number and record.from_number == "+15557770000"


async def test_trace_header_travels_as_a_stream_parameter(
        handler: LambdaHandler, tenant: TenantProfile, number: str, db: TenantDatabase,
        monkeypatch: pytest.MonkeyPatch) -> None:
    trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    monkeypatch.setenv("_X_AMZN_TRACE_ID", trace)  # what the Lambda runtime sets per invocation
    form = _call_form(number, "CA" + "t" * 32)
    result = await invoke(handler, rest_event("/voice", form, _sign(f"https://{API_HOST}/prod/voice", form)))
    params = {p.get("name"): p.get("value") for p in twiml(result["body"]).iter("Parameter")}
    assert params["trace_header"] == trace


async def test_http_api_event_with_stage_in_raw_path(admin_dsn: str, redis_url: str, prefix: str,
                                                     tenant: TenantProfile, number: str, db: TenantDatabase) -> None:
    handler = create_handler(_config(app_dsn(admin_dsn), redis_url, prefix), kind="http")
    form = _call_form(number, "CA" + "h" * 32)
    result = await invoke(handler, http_api_event("/voice", form, _sign(f"https://{API_HOST}/prod/voice", form)))
    assert result["statusCode"] == 200 and twiml(result["body"]).find("Connect/Stream") is not None


@pytest.mark.parametrize("signature", [None, "", "forged+signature="])
async def test_missing_or_forged_signature_is_403(handler: LambdaHandler, tenant: TenantProfile, number: str,
                                                  db: TenantDatabase, signature: str | None) -> None:
    form = _call_form(number, "CA" + "f" * 32)
    result = await invoke(handler, rest_event("/voice", form, signature))
    assert result["statusCode"] == 403
    assert await calls.get_call(db, tenant.tenant_id, form["CallSid"]) is None


async def test_signature_over_url_without_stage_is_rejected(handler: LambdaHandler, tenant: TenantProfile, number: str,
                                                            db: TenantDatabase) -> None:
    form = _call_form(number, "CA" + "s" * 32)
    wrong = _sign(f"https://{API_HOST}/voice", form)  # the stage is part of what Twilio signed
    assert (await invoke(handler, rest_event("/voice", form, wrong)))["statusCode"] == 403


async def test_configured_public_url_is_what_gets_verified(admin_dsn: str, redis_url: str, prefix: str,
                                                           tenant: TenantProfile, number: str) -> None:
    custom = "https://voice.example.com/api"  # custom domain with a base path mapping
    handler = create_handler(_config(app_dsn(admin_dsn), redis_url, prefix, public_url=custom))
    form = _call_form(number, "CA" + "c" * 32)
    result = await invoke(handler, rest_event("/voice", form, _sign(f"{custom}/voice", form)))
    connect = twiml(result["body"]).find("Connect")
    assert result["statusCode"] == 200 and connect is not None
    assert connect.get("action") == f"{custom}/voice/after-stream"


async def test_unknown_number_says_sorry_and_hangs_up(handler: LambdaHandler) -> None:
    form = _call_form(unique_number(), "CA" + "u" * 32)
    result = await invoke(handler, rest_event("/voice", form, _sign(f"https://{API_HOST}/prod/voice", form)))
    root = twiml(result["body"])
    assert result["statusCode"] == 200
    assert [child.tag for child in root] == ["Say", "Hangup"]


async def test_database_down_falls_back_to_the_tenants_number(
        handler: LambdaHandler, redis_url: str, prefix: str, tenant: TenantProfile, number: str) -> None:
    warm = _call_form(number, "CA" + "w" * 32)  # a first call puts the number in the Redis cache
    await invoke(handler, rest_event("/voice", warm, _sign(f"https://{API_HOST}/prod/voice", warm)))

    down = create_handler(_config(DEAD_DSN, redis_url, prefix))  # same Redis, Postgres unreachable
    form = _call_form(number, "CA" + "d" * 32)
    result = await invoke(down, rest_event("/voice", form, _sign(f"https://{API_HOST}/prod/voice", form)))
    root = twiml(result["body"])
    assert result["statusCode"] == 200
    assert [child.tag for child in root] == ["Say", "Dial"]
    assert root.findtext("Dial") == FALLBACK


async def test_database_down_and_nothing_cached_apologises_and_hangs_up(
        redis_url: str, prefix: str, tenant: TenantProfile, number: str, db: TenantDatabase) -> None:
    down = create_handler(_config(DEAD_DSN, redis_url, prefix + "cold"))
    form = _call_form(number, "CA" + "e" * 32)
    result = await invoke(down, rest_event("/voice", form, _sign(f"https://{API_HOST}/prod/voice", form)))
    assert result["statusCode"] == 200
    assert [child.tag for child in twiml(result["body"])] == ["Say", "Hangup"]


async def test_query_string_and_empty_fields_are_part_of_what_is_signed(
        handler: LambdaHandler, tenant: TenantProfile, number: str) -> None:
    """Twilio signs the URL with its query string, and every field, empty ones too (`CallerName=`)."""
    form = _call_form(number, "CA" + "q" * 32, CallerName="", ForwardedFrom="")

    def event(signed_url: str) -> dict[str, Any]:
        built = rest_event("/voice", form, _sign(signed_url, form))
        built["queryStringParameters"] = {"source": "pstn"}
        built["multiValueQueryStringParameters"] = {"source": ["pstn"]}
        return built

    assert (await invoke(handler, event(f"https://{API_HOST}/prod/voice?source=pstn")))["statusCode"] == 200
    assert (await invoke(handler, event(f"https://{API_HOST}/prod/voice")))["statusCode"] == 403


def test_no_auth_token_verifies_nothing() -> None:
    """An unset token must not turn into an HMAC key anyone can use: "" signs as well as any secret."""
    url, form = f"https://{API_HOST}/prod/voice", {"CallSid": "CA" + "e" * 32}
    forged = {"X-Twilio-Signature": str(RequestValidator("").compute_signature(url, form))}
    assert not signature_valid("", url, form, forged)
    assert signature_valid(TWILIO_TOKEN, url, form, {"X-Twilio-Signature": _sign(url, form)})


# --- over HTTP through the local adapter -------------------------------------------------------

async def test_over_http_valid_invalid_missing(local_server: str, tenant: TenantProfile, number: str,
                                               db: TenantDatabase) -> None:
    form = _call_form(number, "CA" + "1" * 32)
    status, body = await post_signed(f"{local_server}/voice", form)
    assert status == 200 and twiml(body).find("Connect/Stream") is not None
    stream_url = twiml(body).find("Connect/Stream").get("url")  # type: ignore[union-attr]
    assert stream_url == "wss://stream.example.test/twilio-stream"
    # Plain http locally: the next step is requested the way this one was.
    assert twiml(body).find("Connect").get("action") == f"{local_server}/voice/after-stream"  # type: ignore[union-attr]
    assert (await post_signed(f"{local_server}/voice", form, signature="forged"))[0] == 403
    assert (await post_signed(f"{local_server}/voice", form, signature=None))[0] == 403


async def test_after_stream_transfer_and_hangup(local_server: str, redis_url: str, prefix: str,
                                                tenant: TenantProfile, number: str, db: TenantDatabase) -> None:
    transfer_sid, hangup_sid = "CA" + "2" * 32, "CA" + "3" * 32
    for sid in (transfer_sid, hangup_sid):
        assert (await post_signed(f"{local_server}/voice", _call_form(number, sid)))[0] == 200
    # What the streaming service records when its session ends (Redis + the call row).
    cache = JsonCache(redis_url, prefix=prefix)
    try:
        store = CallStateStore(db, cache)
        await store.record_outcome(tenant.tenant_id, transfer_sid, CallOutcome("transfer", "+15550001234"))
        await store.record_outcome(tenant.tenant_id, hangup_sid, CallOutcome("hangup"))
    finally:
        await cache.close()

    status, body = await post_signed(f"{local_server}/voice/after-stream", _call_form(number, transfer_sid))
    assert status == 200 and [c.tag for c in twiml(body)] == ["Dial"] and twiml(body).findtext("Dial") == \
        "+15550001234"
    status, body = await post_signed(f"{local_server}/voice/after-stream", _call_form(number, hangup_sid))
    assert status == 200 and [c.tag for c in twiml(body)] == ["Hangup"]


async def test_status_callback_twice_updates_once(local_server: str, admin_dsn: str, redis_url: str,
                                                  prefix: str, tenant: TenantProfile, number: str,
                                                  db: TenantDatabase) -> None:
    sid = "CA" + "4" * 32
    assert (await post_signed(f"{local_server}/voice", _call_form(number, sid)))[0] == 200
    completed = _call_form(number, sid, CallStatus="completed", CallDuration="42")
    assert (await post_signed(f"{local_server}/status", completed))[0] == 200
    first = await calls.get_call(db, tenant.tenant_id, sid)
    assert (await post_signed(f"{local_server}/status", completed))[0] == 200
    second = await calls.get_call(db, tenant.tenant_id, sid)
    assert first is not None and first.status == "completed" and first.ended_at is not None
    assert second == first

    # The directory says so too: a repeated status changes nothing.
    directory = await TenancyCallDirectory.connect(app_dsn(admin_dsn), redis_url, cache_prefix=prefix)
    try:
        assert await directory.update_status(str(tenant.tenant_id), sid, "completed", 42) is False
        assert await directory.update_status(str(tenant.tenant_id), sid, "ringing", None) is False
    finally:
        await directory.close()
    assert await calls.get_call(db, tenant.tenant_id, sid) == first
