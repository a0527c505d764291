"""The service's CloudWatch metrics (namespace VoiceAgent; dimensions service=streaming, environment).

Names and dimensions are the contract with infra/ (dashboard, alarms, autoscaling on `ActiveCalls`):
change them there too. Dimensions stay low-cardinality; call SID, tenant and turn ride along as
properties of the document, so Logs Insights can still find the call behind a slow data point.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from streaming_service.telemetry.emf import EmfSink, EmfWriter, MetricValue

NAMESPACE = "VoiceAgent"
SERVICE_DIMENSION = "streaming"
# TurnMetrics.summary() key -> metric name
LATENCY_METRICS = {"stt_ms": "SttLatencyMs", "llm_ttft_ms": "LlmTtftMs", "tts_ttfb_ms": "TtsTtfbMs",
                   "voice_to_voice_ms": "VoiceToVoiceMs"}


class ServiceMetrics:
    def __init__(self, environment: str, sink: EmfSink | None) -> None:
        self.writer = EmfWriter(NAMESPACE, {"service": SERVICE_DIMENSION, "environment": environment}, sink)

    def active_calls(self, count: int) -> None:
        self.writer.emit([("ActiveCalls", count, MetricUnit.Count)])

    def event_loop_lag(self, worst_ms: float) -> None:
        self.writer.emit([("EventLoopLagMs", round(worst_ms, 1), MetricUnit.Milliseconds)])

    def call_started(self, call: Mapping[str, Any]) -> None:
        self.writer.emit([("CallsStarted", 1, MetricUnit.Count)], properties=call)

    def call_ended(self, call: Mapping[str, Any], duration_s: float, turns: int, barge_ins: int,
                   outcome: str) -> None:
        self.writer.emit([("CallsEnded", 1, MetricUnit.Count), ("CallDurationS", round(duration_s, 3),
                                                                 MetricUnit.Seconds)],
                         properties={**call, "turns": turns, "barge_ins": barge_ins, "outcome": outcome})

    def turn(self, call: Mapping[str, Any], summary: Mapping[str, Any]) -> None:
        figures: list[MetricValue] = [(name, float(summary[key]), MetricUnit.Milliseconds)
                                      for key, name in LATENCY_METRICS.items() if summary.get(key) is not None]
        if summary.get("preemptive") in ("hit", "miss"):  # its Average is the preemptive hit rate
            figures.append(("PreemptiveHit", 1.0 if summary["preemptive"] == "hit" else 0.0, MetricUnit.Count))
        if summary.get("drafts_discarded"):  # model runs the caller's later words made useless: paid, unused
            figures.append(("PreemptiveDraftsDiscarded", float(summary["drafts_discarded"]), MetricUnit.Count))
        self.writer.emit(figures, properties={**call, "turn": summary.get("turn"),
                                              "barge_in": bool(summary.get("barge_in")),
                                              "preemptive": summary.get("preemptive"),
                                              "errors": list(summary.get("errors") or [])})

    def barge_in(self, call: Mapping[str, Any]) -> None:
        self.writer.emit([("BargeIns", 1, MetricUnit.Count)], properties=call)

    def false_interruption(self, call: Mapping[str, Any]) -> None:
        """Caller sound over the agent that was not words: the reply was resumed where the caller left it."""
        self.writer.emit([("FalseInterruptions", 1, MetricUnit.Count)], properties=call)

    def vendor_error(self, call: Mapping[str, Any], vendor: str) -> None:
        self.writer.emit([("VendorErrors", 1, MetricUnit.Count)], dimensions={"vendor": vendor}, properties=call)

    def offline_fallback(self, call: Mapping[str, Any], component: str) -> None:
        self.writer.emit([("OfflineFallbacks", 1, MetricUnit.Count)], properties={**call, "component": component})

    def vendor_capacity_exhausted(self, call: Mapping[str, Any], vendor: str) -> None:
        """A vendor account had no slot for this call (our budget, or the vendor's 429): per tenant and vendor.
        Not counted in VendorErrors: nothing failed, the call went on the offline engine."""
        self.writer.emit([("VendorCapacityExhausted", 1, MetricUnit.Count)],
                         dimensions={"vendor": vendor, "tenant": str(call.get("tenant_id") or "none")},
                         properties=call)

    def vendor_leases(self, vendor: str, account: str, in_use: int, budget: int) -> None:
        """Slots of one vendor account in use across the fleet (Redis leases) and their share of the budget
        (the alarm's figure). `account` is "platform" or the tenant id of a tenant's own account."""
        figures: list[MetricValue] = [("VendorLeasesInUse", in_use, MetricUnit.Count)]
        if budget > 0:
            figures.append(("VendorLeaseUsePercent", round(100.0 * in_use / budget, 1), MetricUnit.Percent))
        self.writer.emit(figures, dimensions={"vendor": vendor, "account": account})
