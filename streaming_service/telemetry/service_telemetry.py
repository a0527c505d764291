"""The process's telemetry: one tracer, one metrics writer, the `ActiveCalls` gauge, the event loop's
lateness, and a `CallTelemetry` for each call. Built once from Settings; `ServiceTelemetry.off()` in tests
and tools."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from shared.settings import Settings
from streaming_service.engines.base import CallContext
from streaming_service.telemetry.call_telemetry import CallTelemetry
from streaming_service.telemetry.emf import EmfSink, stdout_sink
from streaming_service.telemetry.service_metrics import ServiceMetrics
from streaming_service.telemetry.tracing import ServiceTracing

log = logging.getLogger("voice_agent.telemetry")

LOOP_SAMPLE_S = 0.05
LOOP_STALL_MS = 200.0  # a stall this long is heard on every live call of the process: logged, each time


class ServiceTelemetry:
    def __init__(self, metrics: ServiceMetrics, tracing: ServiceTracing, active_calls_interval_s: float = 60.0
                 ) -> None:
        self.metrics = metrics
        self.tracing = tracing
        self.active_calls_interval_s = active_calls_interval_s
        self._last_active: int | None = None  # the last sample (tests and status read it)

    @classmethod
    def off(cls) -> ServiceTelemetry:
        return cls(ServiceMetrics("local", sink=None), ServiceTracing.off())

    @classmethod
    def from_settings(cls, settings: Settings, sink: EmfSink | None = None) -> ServiceTelemetry:
        """EMF to `sink` (default: stdout unless `env=local` or `observability.emf=off`); traces to the
        OTLP endpoint when one is configured."""
        options = settings.observability
        if sink is None and (options.emf == "on" or (options.emf == "auto" and settings.env != "local")):
            sink = stdout_sink
        tracing = (ServiceTracing.to_collector(settings.otel_exporter_otlp_endpoint, options.service_name,
                                               settings.env)
                   if settings.otel_exporter_otlp_endpoint else ServiceTracing.off())
        return cls(ServiceMetrics(settings.env, sink), tracing, options.active_calls_interval_s)

    def for_call(self, call: CallContext, trace_header: str) -> CallTelemetry:
        return CallTelemetry(call, self.tracing.tracer, self.metrics, trace_header)

    async def report_active_calls(self, count: Callable[[], int]) -> None:
        """The autoscaling gauge: one sample every interval, and only then. Every task then puts the same
        number of samples in each period, so their Average is calls per task; a sample per change would
        weigh busy tasks (many changes) more than idle ones and skew the average up."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            self._last_active = count()
            self.metrics.active_calls(self._last_active)
            next_at += self.active_calls_interval_s  # a fixed cadence, not drifting by the emit time
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def watch_event_loop(self) -> None:
        """How late this process's event loop wakes: every call's audio waits behind whatever runs, so this
        is the first sign a process holds more than its core can serve. The worst lateness of each
        interval is `EventLoopLagMs` (per process: each worker of a task reports its own)."""
        worst = 0.0
        report_at = time.monotonic() + self.active_calls_interval_s
        while True:
            before = time.monotonic()  # not loop.time(): uvloop's advances once per loop iteration
            await asyncio.sleep(LOOP_SAMPLE_S)
            now = time.monotonic()
            late_ms = max(0.0, (now - before - LOOP_SAMPLE_S) * 1000)
            worst = max(worst, late_ms)
            if late_ms >= LOOP_STALL_MS:
                log.warning("event loop stalled", extra={"stalled_ms": round(late_ms)})
            if now >= report_at:
                self.metrics.event_loop_lag(worst)
                worst, report_at = 0.0, report_at + self.active_calls_interval_s

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.tracing.shutdown)  # flushes pending spans; may wait on the network
