"""Lambda entry for the Twilio voice webhook: a doorway to `call_flow`.

Routes: POST /voice, POST /voice/after-stream, POST /status. The handler verifies the Twilio signature,
decodes the form, runs one `call_flow` function and answers its TwiML. Twilio only ever sees 200s
(403 for a bad signature, which is not Twilio).

The data layer is async (asyncpg, redis.asyncio) while a Lambda handler is synchronous: each thread
keeps one event loop and one `CallDirectory` for its lifetime, so pools survive warm invocations (one
thread in Lambda; a few worker threads behind the local adapter).
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from urllib.parse import urlencode

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, APIGatewayRestResolver, Response
from aws_lambda_powertools.metrics import MetricUnit

from functions.voice_webhook import call_flow, twiml
from functions.voice_webhook.call_flow import CallDirectory, StreamConfig
from functions.voice_webhook.twilio_request import CalledUrl, form_fields, public_base, public_url, signature_valid
from shared.app_secrets import AppSecrets, load_app_secrets
from shared.settings import CapacityOptions

SERVICE = "voice_webhook"
logger = Logger(service=SERVICE)
metrics = Metrics(namespace="VoiceAgent", service=SERVICE)
T = TypeVar("T")
LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]
ApiKind = Literal["rest", "http"]


@dataclass(frozen=True)
class WebhookConfig:
    public_url: str  # base URL given to Twilio, stage/base path included; "" = rebuild from the event
    stream_public_url: str  # wss://… of the streaming service; "" = derive from the public URL
    stream_token_ttl_s: int
    load_secrets: Callable[[], AppSecrets]
    connect_directory: Callable[[], Awaitable[CallDirectory]]
    capacity: CapacityOptions = field(default_factory=CapacityOptions)


def default_config() -> WebhookConfig:
    """Production wiring from Settings (and the app secret in AWS)."""
    from shared.settings import get_settings

    settings = get_settings()

    def secrets() -> AppSecrets:
        local = {"TWILIO_AUTH_TOKEN": settings.secret("twilio_auth_token"),
                 "STREAM_TOKEN_SECRET": settings.secret("stream_token_secret"), **os.environ}
        return load_app_secrets(settings.app_secret_arn, local)

    async def directory() -> CallDirectory:
        # asyncpg + redis cost ~200 ms to import: paid on the first invocation, not the cold import.
        from functions.voice_webhook.tenancy_directory import TenancyCallDirectory
        from shared.app_secrets import with_data_secrets

        data = with_data_secrets(settings)  # in AWS: credentials from their secrets, not the environment
        return await TenancyCallDirectory.connect(data.database_dsn(), data.redis_url, data.cache_ttl_s,
                                                  capacity=settings.capacity)

    return WebhookConfig(public_url=settings.public_url, stream_public_url=settings.stream_public_url,
                         stream_token_ttl_s=settings.stream_token_ttl_s, load_secrets=secrets,
                         connect_directory=directory, capacity=settings.capacity)


def _called_url(event: dict[str, Any], route_path: str) -> CalledUrl:
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    context = event.get("requestContext") or {}
    host = headers.get("host") or context.get("domainName", "")
    scheme = headers.get("x-forwarded-proto", "https")
    if event.get("version") == "2.0":
        return CalledUrl(host=host, scheme=scheme, called_path=event.get("rawPath") or route_path,
                         route_path=route_path, query_string=event.get("rawQueryString") or "")
    multi = event.get("multiValueQueryStringParameters") or {}
    query = urlencode([(k, v) for k, values in multi.items() for v in values])
    return CalledUrl(host=host, scheme=scheme, called_path=context.get("path") or route_path,
                     route_path=route_path, query_string=query)


def _xml(body: str) -> Response:
    return Response(status_code=200, content_type="text/xml", body=body)


Runner = Callable[[Callable[[CallDirectory], Coroutine[Any, Any, Any]], Any], Any]
Resolver = APIGatewayRestResolver | APIGatewayHttpResolver


def _routes(app: Resolver, config: Callable[[], WebhookConfig], run: Runner) -> Resolver:
    def verified(route_path: str) -> tuple[dict[str, str], AppSecrets] | Response:
        event = app.current_event.raw_event
        try:
            fields = form_fields(app.current_event.decoded_body or "")
        except ValueError as exc:  # not base64 or not UTF-8: Twilio never sends it, so it is unsigned
            # One line and the unsigned request's 403: bad bytes before authentication cost nothing.
            logger.warning("rejected request with an undecodable body", extra={"error": type(exc).__name__})
            metrics.add_metric(name="BadSignatures", unit=MetricUnit.Count, value=1)
            return Response(status_code=403, content_type="text/plain", body="invalid signature")
        try:
            secrets = config().load_secrets()
            secrets.require("twilio_auth_token", "stream_token_secret")
        except Exception as exc:
            # Without the token we cannot tell Twilio from a forger: apologise and hang up.
            logger.error("secrets unavailable", extra={"error": type(exc).__name__})
            metrics.add_metric(name="WebhookFailures", unit=MetricUnit.Count, value=1)
            return _xml(twiml.apology(None))
        url = public_url(_called_url(event, route_path), config().public_url)
        if not signature_valid(secrets.twilio_auth_token, url, fields, app.current_event.headers or {}):
            logger.warning("rejected request with a bad Twilio signature", extra={"url": url})
            metrics.add_metric(name="BadSignatures", unit=MetricUnit.Count, value=1)
            return Response(status_code=403, content_type="text/plain", body="invalid signature")
        logger.thread_safe_append_keys(call_sid=fields.get("CallSid"))
        return fields, secrets

    def stream_config(route_path: str, secrets: AppSecrets) -> StreamConfig:
        base = public_base(_called_url(app.current_event.raw_event, route_path), config().public_url)
        capacity = config().capacity
        return StreamConfig(
            stream_url=call_flow.stream_url_for(config().stream_public_url, base),
            after_stream_url=base + call_flow.AFTER_STREAM_PATH,
            stream_token_secret=secrets.stream_token_secret,
            stream_token_ttl_s=config().stream_token_ttl_s,
            trace_header=os.environ.get("_X_AMZN_TRACE_ID", ""),  # set by Lambda per invocation
            voice_url=base + "/voice", stream_retry_attempts=capacity.stream_retry_attempts,
            hold_music_url=capacity.hold_music_url, hold_pause_s=capacity.hold_pause_s)

    def query() -> dict[str, str]:
        return {k: str(v) for k, v in (app.current_event.query_string_parameters or {}).items()}

    @app.post("/voice")
    def voice() -> Response:
        checked = verified("/voice")
        if isinstance(checked, Response):
            return checked
        fields, secrets = checked
        stream, params = stream_config("/voice", secrets), query()
        metrics.add_metric(name="IncomingCalls", unit=MetricUnit.Count, value=1)
        return _xml(run(lambda d: call_flow.incoming_call(d, fields, stream, params), twiml.apology(None)))

    @app.post("/voice/after-stream")
    def after_stream() -> Response:
        checked = verified("/voice/after-stream")
        if isinstance(checked, Response):
            return checked
        fields, secrets = checked
        stream, params = stream_config("/voice/after-stream", secrets), query()
        return _xml(run(lambda d: call_flow.after_stream(d, fields, stream, params), twiml.hangup()))

    @app.post("/status")
    def status() -> Response:
        checked = verified("/status")
        if isinstance(checked, Response):
            return checked
        fields, _ = checked
        run(lambda d: call_flow.status_callback(d, fields), False)
        return _xml(twiml.empty())

    return app


def create_handler(make_config: Callable[[], WebhookConfig], kind: ApiKind = "rest") -> LambdaHandler:
    config = functools.cache(make_config)
    local = threading.local()  # per thread: the event loop, the directory, the resolver

    def run(make: Callable[[CallDirectory], Coroutine[Any, Any, T]], on_failure: T) -> T:
        """Run one call_flow coroutine on this thread's loop with this thread's directory."""
        loop: asyncio.AbstractEventLoop | None = getattr(local, "loop", None)
        if loop is None:
            loop = local.loop = asyncio.new_event_loop()

        async def with_directory() -> T:
            directory: CallDirectory | None = getattr(local, "directory", None)
            if directory is None:
                try:
                    directory = local.directory = await config().connect_directory()
                except Exception as exc:
                    logger.error("cannot build the call directory", extra={"error": type(exc).__name__})
                    return on_failure
            return await make(directory)

        return loop.run_until_complete(with_directory())

    def resolver() -> Resolver:
        # Powertools resolvers keep the current event on the instance: one per thread.
        app: Resolver | None = getattr(local, "app", None)
        if app is None:
            app = local.app = _routes(APIGatewayRestResolver() if kind == "rest" else APIGatewayHttpResolver(),
                                      config, run)
        return app

    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        metrics.add_metric(name="Webhooks", unit=MetricUnit.Count, value=1)
        try:
            result: dict[str, Any] = resolver().resolve(event, context)
        except Exception:
            # Last resort: whatever broke, Twilio gets TwiML, never a 5xx.
            logger.exception("unhandled webhook failure")
            result = {"statusCode": 200, "headers": {"Content-Type": "text/xml"},
                      "body": twiml.apology(None), "isBase64Encoded": False}
        return result

    @functools.cache
    def entry() -> LambdaHandler:
        # Creating a Tracer imports the X-Ray SDK (~250 ms of botocore client set-up): first invocation.
        from aws_lambda_powertools import Tracer

        tracer = Tracer(service=SERVICE)
        traced = tracer.capture_lambda_handler(handle, capture_response=False)
        wrapped: LambdaHandler = logger.inject_lambda_context(
            metrics.log_metrics(traced, capture_cold_start_metric=True), clear_state=True)
        return wrapped

    def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return entry()(event, context)

    return lambda_handler


lambda_handler = create_handler(default_config)
