"""Where traces go: the ADOT collector's stand-in (OTLP/HTTP, the task's spans) and the X-Ray daemon's
(UDP, the Lambdas' segments), each keeping which spans arrived under which trace."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from typing import Any

from aiohttp import web

from local.rehearsal.front_doors import serve
from local.rehearsal.stand_ins import free_port


class OtlpReceiver:
    def __init__(self) -> None:
        self.spans: dict[str, list[str]] = defaultdict(list)
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/v1/traces", self.receive)
        port = free_port()
        self._runner = await serve(app, port, None)
        return port

    async def receive(self, request: web.Request) -> web.Response:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.read())
        for resource_spans in export.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans[span.trace_id.hex()].append(span.name)
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    def traces(self) -> dict[str, list[str]]:
        return {trace_id: list(names) for trace_id, names in self.spans.items()}

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class XRayDaemon(asyncio.DatagramProtocol):
    """The X-Ray daemon's UDP port that Lambda gives every function (`AWS_XRAY_DAEMON_ADDRESS`): the
    Lambdas' segments (Powertools Tracer, aws-xray-sdk) arrive as `{"format": "json", ...}\\n{segment}`."""

    def __init__(self) -> None:
        self.segments: dict[str, list[str]] = defaultdict(list)
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
        self._transport = transport
        return int(transport.get_extra_info("sockname")[1])

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        _, _, body = data.partition(b"\n")
        with contextlib.suppress(ValueError):
            segment = json.loads(body)
            trace_id = str(segment.get("trace_id", ""))
            self.segments[trace_id].append(str(segment.get("name", "")))

    def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()


def otel_trace_id(xray_trace_id: str) -> str:
    """`1-5f84c7a1-0123456789abcdef01234567` -> the 32-hex OpenTelemetry id of the same trace."""
    parts = xray_trace_id.split("-")
    return "".join(parts[1:3]) if len(parts) == 3 else ""


def call_trace_summary(api_calls: list[tuple[str, int, str]], task_traces: dict[str, list[str]],
                       lambda_segments: dict[str, list[str]]) -> dict[str, Any]:
    """One call, one trace: the root API Gateway gave `/voice` is the root of the task's spans (through the
    stream parameter) and of every `/mcp` request (X-Amzn-Trace-Id), and the Lambdas' segments carry it."""
    voice_roots = [root for key, _, root in api_calls if key == "POST /voice"]
    if not voice_roots:
        return {}
    root = voice_roots[0]
    mcp_roots = [r for key, _, r in api_calls if key == "POST /mcp"]
    return {
        "root": root,
        "task_spans": len(task_traces.get(otel_trace_id(root), [])),
        "lambda_segments": len(lambda_segments.get(root, [])),
        "mcp_requests": len(mcp_roots),
        "mcp_requests_in_trace": sum(1 for r in mcp_roots if r == root),
        "traces_with_call_spans": sum(1 for names in task_traces.values() if "turn" in names or "call" in names),
    }
