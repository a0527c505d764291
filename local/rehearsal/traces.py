"""The ADOT collector's stand-in: an OTLP/HTTP receiver that keeps which spans arrived under which trace."""

from __future__ import annotations

from collections import defaultdict

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
