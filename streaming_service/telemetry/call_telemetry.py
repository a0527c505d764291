"""One call's telemetry: the call span (continuing the webhook's trace), a span per reply with STT,
agent (tools and MCP calls as children) and TTS spans inside it, and the call's EMF metrics.

The session calls these hooks; engines reach the same object through `call_hooks`. Span attributes
carry identities and figures only: never transcript text, tool arguments, audio or credentials.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from streaming_service.engines.base import AgentEvent, CallContext
from streaming_service.telemetry.call_hooks import bind_call_hooks
from streaming_service.telemetry.service_metrics import ServiceMetrics
from streaming_service.telemetry.tracing import (
    ANNOTATED,
    CALL_SPAN,
    XRAY_ANNOTATIONS_KEY,
    parent_from_trace_header,
)
from streaming_service.turn_metrics import TurnMetrics

log = logging.getLogger("voice_agent.telemetry")

Attribute = str | int | float | bool


def epoch_ns(monotonic_s: float) -> int:
    """A `time.monotonic()` reading as wall-clock nanoseconds (span timestamps are wall clock)."""
    return time.time_ns() - int((time.monotonic() - monotonic_s) * 1e9)


class CallTelemetry:
    def __init__(self, call: CallContext, tracer: trace.Tracer, metrics: ServiceMetrics,
                 trace_header: str = "") -> None:
        self.call = call
        self.tracer = tracer
        self.metrics = metrics
        self._trace_header = trace_header
        self._call_span: Span = trace.INVALID_SPAN
        self._tools: dict[str, Span] = {}
        self._started_at = time.monotonic()

    @classmethod
    def disabled(cls, call: CallContext) -> CallTelemetry:
        return cls(call, trace.NoOpTracer(), ServiceMetrics("local", sink=None))

    @property
    def identity(self) -> dict[str, str]:
        return {"call_sid": self.call.call_sid, "tenant_id": self.call.tenant_id}

    def _annotated(self, attributes: Mapping[str, Attribute] | None = None) -> dict[str, Any]:
        return {**self.identity, XRAY_ANNOTATIONS_KEY: list(ANNOTATED), **(attributes or {})}

    # --- the call ---------------------------------------------------------------------------------

    def call_started(self) -> None:
        """Open the call span (child of the webhook's span when its header came along) and make it, and
        this object as the call's hooks, current for the calling task (the call's own socket task) and
        every task the session spawns from here on. Never detached: that task ends with the call."""
        self._started_at = time.monotonic()
        self._call_span = self.tracer.start_span(
            # No header: a new root (an empty context, never whatever happens to be current).
            CALL_SPAN, context=parent_from_trace_header(self._trace_header) or otel_context.Context(),
            kind=SpanKind.SERVER,
            attributes=self._annotated({"stream_sid": self.call.stream_sid}))
        otel_context.attach(trace.set_span_in_context(self._call_span))
        bind_call_hooks(self)
        self.metrics.call_started(self.identity)

    def call_ended(self, *, reason: str, turns: int, barge_ins: int) -> None:
        outcome = self.call.outcome.action
        self._call_span.set_attributes({"outcome": outcome, "reason": reason, "turns": turns,
                                        "barge_ins": barge_ins})
        for span in self._tools.values():
            span.end()
        self._tools.clear()
        self._call_span.end()
        self.metrics.call_ended(self.identity, time.monotonic() - self._started_at, turns, barge_ins, outcome)

    # --- a reply (caller turn, greeting, reprompt) ---------------------------------------------------

    @contextlib.contextmanager
    def reply(self, metrics: TurnMetrics, kind: str) -> Iterator[Span]:
        """The reply's span, current for the task running it (so agent and TTS spans nest under it).
        A caller turn starts where the caller stopped speaking and holds the STT span for the wait
        from speech end to the final transcript."""
        parent = trace.set_span_in_context(self._call_span)
        start = epoch_ns(metrics.speech_end_at) if metrics.speech_end_at is not None else None
        span = self.tracer.start_span("turn", context=parent, start_time=start,
                                      attributes=self._annotated({"turn": metrics.turn, "kind": kind}))
        if metrics.speech_end_at is not None and metrics.transcript_at is not None:
            stt = self.tracer.start_span("stt", context=trace.set_span_in_context(span), start_time=start,
                                         attributes=self._annotated({"turn": metrics.turn}))
            stt.end(end_time=epoch_ns(metrics.transcript_at))
        with trace.use_span(span, end_on_exit=True, record_exception=True, set_status_on_exception=True):
            yield span

    def reply_finished(self, span: Span, summary: Mapping[str, Any], caller_turn: bool) -> None:
        span.set_attributes({key: value for key, value in summary.items()
                             if isinstance(value, int | float | bool) and value is not None})
        if summary.get("errors"):
            span.set_status(Status(StatusCode.ERROR, ",".join(summary["errors"])))
        if caller_turn:
            self.metrics.turn(self.identity, summary)

    # --- spans inside a reply ---------------------------------------------------------------------

    @contextlib.contextmanager
    def span(self, name: str, **attributes: Attribute) -> Iterator[Span]:
        """A child of the current span (agent, tts, an MCP call...); an exception is recorded and re-raised."""
        with self.tracer.start_as_current_span(name, attributes=self._annotated(attributes),
                                               record_exception=True, set_status_on_exception=True) as span:
            yield span

    def tool_event(self, event: AgentEvent) -> None:
        """Tool calls as spans from the agent's own events: opened at the call, closed at its result."""
        name, call_id = str(event.data.get("name", "")), str(event.data.get("call_id", ""))
        if event.kind.value == "tool_call":
            self._tools[call_id] = self.tracer.start_span(f"tool {name}",
                                                          attributes=self._annotated({"tool": name}))
        elif event.kind.value == "tool_result" and call_id in self._tools:
            self._tools.pop(call_id).end()
        elif event.kind.value == "handoff":
            trace.get_current_span().add_event("handoff", {"from": str(event.data.get("from", "")),
                                                           "to": str(event.data.get("to", ""))})

    # --- events -----------------------------------------------------------------------------------

    def vendor_error(self, vendor: str, exc: BaseException) -> None:
        span = trace.get_current_span()
        if not span.get_span_context().is_valid:
            span = self._call_span
        from streaming_service.engines.base import VendorCapacityError

        if isinstance(exc, VendorCapacityError):  # a full account, not an outage
            span.add_event("vendor at capacity", {"vendor": vendor})
            self.metrics.vendor_capacity_exhausted(self.identity, vendor)
            return
        span.record_exception(exc, attributes={"vendor": vendor})
        span.set_status(Status(StatusCode.ERROR, f"{vendor} failed"))
        self.metrics.vendor_error(self.identity, vendor)

    def offline_fallback(self, component: str) -> None:
        self._call_span.add_event("offline fallback", {"component": component})
        self.metrics.offline_fallback(self.identity, component)

    def barge_in(self, reason: str) -> None:
        self._call_span.add_event("barge-in", {"reason": reason})
        self.metrics.barge_in(self.identity)

    def false_interruption(self) -> None:
        self._call_span.add_event("false interruption: reply resumed")
        self.metrics.false_interruption(self.identity)
