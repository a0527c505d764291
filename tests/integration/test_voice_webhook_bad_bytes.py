"""Bad bytes before authentication cost nothing: an unsigned `/voice` whose body is not UTF-8 gets the
same 403 as any unsigned request, logged in one line with no traceback, through the Lambda handler and
over HTTP through the local API Gateway adapter (which base64-encodes a body it cannot decode)."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp import web

from functions.voice_webhook.handler import LambdaHandler, create_handler
from local.apigw_adapter import lambda_route
from shared.tenancy.embedded import app_dsn
from tests.integration.test_voice_webhook import _config, invoke, rest_event

UNDECODABLE = b"CallSid=CA\xff\xfe\xfd&To=%2B15550100000&From=\xc3\x28" + b"\x80" * 64


@pytest.fixture
def handler(admin_dsn: str, redis_url: str, redis_prefix: str) -> LambdaHandler:
    return create_handler(_config(app_dsn(admin_dsn), redis_url, f"{redis_prefix}:badbytes"))


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def webhook_log() -> Iterator[_Lines]:
    """What the webhook's Powertools logger writes (it does not propagate to the root logger)."""
    lines = _Lines()
    target = logging.getLogger("voice_webhook")
    target.addHandler(lines)
    yield lines
    target.removeHandler(lines)


def _assert_one_line_no_traceback(log: _Lines) -> None:
    assert [r.getMessage() for r in log.records] == ["rejected request with an undecodable body"]
    assert all(r.exc_info is None and r.levelno == logging.WARNING for r in log.records)


@pytest.mark.parametrize("signature", [None, "forged+signature="])
async def test_undecodable_body_event_is_403_in_one_line(handler: LambdaHandler, webhook_log: _Lines,
                                                         signature: str | None) -> None:
    event = rest_event("/voice", {}, signature)
    event.update(body=base64.b64encode(UNDECODABLE).decode(), isBase64Encoded=True)
    result = await invoke(handler, event)
    assert (result["statusCode"], result["body"]) == (403, "invalid signature")
    _assert_one_line_no_traceback(webhook_log)


@pytest.fixture
async def local_webhook(handler: LambdaHandler) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/voice", lambda_route(handler, shape="rest", stage="local"))
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/voice"
    await runner.cleanup()


async def test_undecodable_body_over_http_is_the_unsigned_403(local_webhook: str, webhook_log: _Lines) -> None:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    async with aiohttp.ClientSession() as http:
        async with http.post(local_webhook, data=UNDECODABLE, headers=headers) as response:
            undecodable = (response.status, await response.text())
        async with http.post(local_webhook, data=b"CallSid=CA1", headers=headers) as response:
            unsigned = (response.status, await response.text())
    assert undecodable == unsigned == (403, "invalid signature")
    assert webhook_log.records[0].getMessage() == "rejected request with an undecodable body"
    assert all(r.exc_info is None for r in webhook_log.records)
