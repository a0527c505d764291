"""What the observability tests share: an OTLP/HTTP trace receiver (the protocol the ADOT collector
speaks), an EMF validator (the spec's JSON schema plus its target-member rules), and a stack whose
vendor fakes hold distinctive secrets so a leak of any of them can be searched for."""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp import web
from google.protobuf.json_format import MessageToJson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.e2e.conftest import STREAM_SECRET, TWILIO_TOKEN
from tests.fakes.deepgram_server import FakeDeepgram
from tests.fakes.elevenlabs_server import FakeElevenLabs
from tests.fakes.openai_server import FakeOpenAI

DEEPGRAM_KEY = "dg-secret-4d1f0c9a7e"
ELEVENLABS_KEY = "xi-secret-b7e2a51c93"
OPENAI_KEY = "sk-secret-9c3e7f1a20"
SECRETS = (TWILIO_TOKEN, STREAM_SECRET, DEEPGRAM_KEY, ELEVENLABS_KEY, OPENAI_KEY)
EMF_SCHEMA = json.loads((Path(__file__).parent / "emf_schema.json").read_text())
# A webhook invocation's `_X_AMZN_TRACE_ID`, as the Lambda runtime sets it.
WEBHOOK_TRACE_HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
WEBHOOK_TRACE_ID = "5759e988bd862e3fe1be46a994272793"
WEBHOOK_SPAN_ID = "53995c3f42cd8ad8"


@pytest.fixture
async def secret_fakes() -> AsyncIterator[tuple[FakeDeepgram, FakeElevenLabs, FakeOpenAI]]:
    dg, el, oa = FakeDeepgram(api_key=DEEPGRAM_KEY), FakeElevenLabs(api_key=ELEVENLABS_KEY), \
        FakeOpenAI(api_key=OPENAI_KEY)
    for fake in (dg, el, oa):
        await fake.start()
    yield dg, el, oa
    for fake in (dg, el, oa):
        await fake.stop()


@dataclass
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    status_code: int
    events: list[str]

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


@dataclass
class OtlpReceiver:
    """POST /v1/traces with a protobuf ExportTraceServiceRequest, answered as a collector answers."""

    requests: list[ExportTraceServiceRequest] = field(default_factory=list)
    raw_bodies: list[bytes] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _traces(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        assert request.content_type == "application/x-protobuf"
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        self.raw_bodies.append(body)
        self.requests.append(message)
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    def spans(self) -> list[ReceivedSpan]:
        found = []
        for message in self.requests:
            for resource_spans in message.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        found.append(ReceivedSpan(
                            name=span.name, trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(), start_ns=span.start_time_unix_nano,
                            end_ns=span.end_time_unix_nano,
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            status_code=span.status.code, events=[e.name for e in span.events]))
        return found

    def as_text(self) -> str:
        """Every field of every request, as JSON (for searching)."""
        return "\n".join(MessageToJson(m) for m in self.requests)


def validate_emf(line: str) -> dict[str, Any]:
    """One EMF line: the spec's schema, then the rules the schema cannot say (every metric and
    dimension names a root member; metric targets are numbers or arrays of at most 100 numbers;
    dimension targets are strings)."""
    document: dict[str, Any] = json.loads(line)
    jsonschema.validate(document, EMF_SCHEMA)
    for directive in document["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            for name in dimension_set:
                assert isinstance(document.get(name), str), f"dimension {name} has no string target"
        for metric in directive["Metrics"]:
            target = document.get(metric["Name"])
            values = target if isinstance(target, list) else [target]
            assert 0 < len(values) <= 100, metric
            assert all(isinstance(v, int | float) and math.isfinite(v) for v in values), metric
    return document


def metric_values(documents: list[dict[str, Any]], name: str, **dimensions: str) -> list[float]:
    """Every value of `name` across documents whose dimensions include `dimensions`."""
    found: list[float] = []
    for document in documents:
        for directive in document["_aws"]["CloudWatchMetrics"]:
            if name not in {m["Name"] for m in directive["Metrics"]}:
                continue
            if any(document.get(k) != v for k, v in dimensions.items()):
                continue
            value = document[name]
            found.extend(value if isinstance(value, list) else [value])
    return found
