"""Traces: OpenTelemetry with X-Ray trace ids, exported over OTLP/HTTP to the ADOT collector sidecar,
which forwards them to X-Ray.

Why OpenTelemetry and not aws-xray-sdk: the SDK's AsyncContext breaks `create_task(..., context=...)`
on Python 3.11+ (and without it child tasks lose the trace), and the SDK reaches end of support in
February 2027. OTel keeps its context in contextvars, which every asyncio task copies, so a call's
tasks (listen, reply, think, speak) nest their spans without any plumbing.

The webhook Lambda's X-Ray header (`Root=…;Parent=…;Sampled=…`) arrives as the `trace_header` stream
parameter; `AwsXRayPropagator` turns it into the parent of the call's span, so one call is one trace,
and the webhook's sampling decision holds (ParentBased sampler). Without an endpoint tracing is off:
the tracer is OTel's no-op, nothing is buffered and nothing is sent.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.aws import AwsXRayPropagator
from opentelemetry.propagators.aws.aws_xray_propagator import TRACE_HEADER_KEY
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    SamplingResult,
)

log = logging.getLogger("voice_agent.tracing")

TRACER_NAME = "voice_agent.streaming"
EXPORT_TIMEOUT_S = 5.0
# The ADOT collector's awsxray exporter turns these span attributes into X-Ray annotations (indexed,
# filterable: `annotation.tenant_id = "…"`); other attributes become metadata.
XRAY_ANNOTATIONS_KEY = "aws.xray.annotations"
ANNOTATED = ("tenant_id", "call_sid")


CALL_SPAN = "call"


class CallRootsOnly(Sampler):
    """Root spans: only a call's own. A Redis command outside any call (a heartbeat, a claim, the cache's
    housekeeping) would otherwise start a one-span trace of its own, many per call, all cost and no use."""

    def should_sample(self, parent_context: Context | None, trace_id: int, name: str, *args: Any,
                      **kwargs: Any) -> SamplingResult:
        sampler = ALWAYS_ON if name == CALL_SPAN else ALWAYS_OFF
        return sampler.should_sample(parent_context, trace_id, name, *args, **kwargs)

    def get_description(self) -> str:
        return "CallRootsOnly"


class ServiceTracing:
    """The process's tracer; `provider` is None when tracing is off."""

    def __init__(self, provider: TracerProvider | None) -> None:
        self.provider = provider
        self.tracer: trace.Tracer = (provider.get_tracer(TRACER_NAME) if provider is not None
                                     else trace.NoOpTracer())
        self._instrumented: list[object] = []

    @classmethod
    def off(cls) -> ServiceTracing:
        return cls(None)

    @classmethod
    def to_collector(cls, endpoint: str, service_name: str, environment: str,
                     schedule_delay_ms: int = 1000) -> ServiceTracing:
        """Spans batched in the background and posted to `{endpoint}/v1/traces` (OTLP/HTTP, protobuf)."""
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.extension.aws.trace import AwsXRayIdGenerator

        provider = TracerProvider(
            resource=Resource.create({"service.name": service_name, "deployment.environment": environment}),
            id_generator=AwsXRayIdGenerator(),  # trace ids X-Ray accepts (epoch seconds in the first 32 bits)
            sampler=ParentBased(root=CallRootsOnly()))
        exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces", timeout=EXPORT_TIMEOUT_S)
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=schedule_delay_ms))
        log.info("tracing to the collector", extra={"endpoint": endpoint})
        return cls(provider)

    @property
    def enabled(self) -> bool:
        return self.provider is not None

    def instrument_clients(self) -> None:
        """Client spans for what the libraries support cheaply: aiohttp's client (under the ElevenLabs and
        OpenAI SDKs) and Redis. (mcp uses httpx2, asyncpg's instrumentation lags the SDK: see the report.)"""
        if self.provider is None or self._instrumented:
            return
        from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        for instrumentor in (AioHttpClientInstrumentor(), RedisInstrumentor()):
            instrumentor.instrument(tracer_provider=self.provider)
            self._instrumented.append(instrumentor)

    def force_flush(self) -> None:
        if self.provider is not None:
            self.provider.force_flush()

    def shutdown(self) -> None:
        """Flush and stop; idempotent."""
        for instrumentor in self._instrumented:
            instrumentor.uninstrument()  # type: ignore[attr-defined]
        self._instrumented.clear()
        provider, self.provider = self.provider, None
        if provider is not None:
            provider.shutdown()


def parent_from_trace_header(header: str) -> Context | None:
    """The webhook's span as a remote parent, or None when the header is missing or malformed."""
    if not header:
        return None
    context = AwsXRayPropagator().extract({TRACE_HEADER_KEY: header})
    span_context = trace.get_current_span(context).get_span_context()
    return context if span_context.is_valid else None


def xray_headers() -> dict[str, str]:
    """The current span as an `X-Amzn-Trace-Id` header, for clients no instrumentation covers (the MCP
    session's httpx2); empty when no span is recording (tracing off)."""
    carrier: dict[str, str] = {}
    if trace.get_current_span().get_span_context().is_valid:
        AwsXRayPropagator().inject(carrier)
    return carrier
