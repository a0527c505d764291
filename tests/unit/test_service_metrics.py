"""Every metric the service emits is valid EMF under the names and dimensions infra/ reads."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from streaming_service.telemetry.service_metrics import ServiceMetrics
from streaming_service.telemetry.service_telemetry import ServiceTelemetry
from streaming_service.telemetry.tracing import ServiceTracing
from tests.e2e.observability_support import metric_values, validate_emf

CALL = {"call_sid": "CA1", "tenant_id": "acme"}


def test_each_metric_is_valid_emf_with_infra_names_and_dimensions() -> None:
    lines: list[str] = []
    metrics = ServiceMetrics("prod", sink=lines.append)
    metrics.active_calls(3)
    metrics.call_started(CALL)
    metrics.turn(CALL, {"turn": 1, "stt_ms": 210.5, "llm_ttft_ms": 300.0, "tts_ttfb_ms": None,
                        "voice_to_voice_ms": 820.0, "barge_in": True, "errors": ["elevenlabs"]})
    metrics.turn(CALL, {"turn": 2, "preemptive": "hit"})
    metrics.turn(CALL, {"turn": 3, "preemptive": "miss", "drafts_discarded": 2})
    metrics.barge_in(CALL)
    metrics.false_interruption(CALL)
    metrics.vendor_error(CALL, "deepgram")
    metrics.offline_fallback(CALL, "stt")
    metrics.call_ended(CALL, 12.5, turns=1, barge_ins=1, outcome="hangup")
    documents = [validate_emf(line) for line in lines]

    assert all(d["service"] == "streaming" and d["environment"] == "prod" for d in documents)
    assert metric_values(documents, "ActiveCalls") == [3]
    assert metric_values(documents, "SttLatencyMs") == [210.5] and metric_values(documents, "TtsTtfbMs") == []
    assert metric_values(documents, "VoiceToVoiceMs") == [820.0] and metric_values(documents, "LlmTtftMs") == [300]
    assert metric_values(documents, "BargeIns") == [1] and metric_values(documents, "OfflineFallbacks") == [1]
    assert metric_values(documents, "VendorErrors", vendor="deepgram") == [1]
    assert metric_values(documents, "CallsStarted") == [1] and metric_values(documents, "CallsEnded") == [1]
    assert metric_values(documents, "CallDurationS") == [12.5]
    assert metric_values(documents, "PreemptiveHit") == [1, 0] and metric_values(documents, "FalseInterruptions") == [1]
    assert metric_values(documents, "PreemptiveDraftsDiscarded") == [2]
    vendor_doc = json.loads(lines[7])
    assert vendor_doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service", "environment", "vendor"]]


def test_no_sink_means_no_output_and_no_error(capsys: pytest.CaptureFixture[str]) -> None:
    metrics = ServiceMetrics("local", sink=None)
    metrics.active_calls(1)
    metrics.turn(CALL, {"turn": 1})
    metrics.call_ended(CALL, 1.0, turns=1, barge_ins=0, outcome="hangup")
    assert capsys.readouterr() == ("", "")  # nothing printed in place of the missing sink


async def test_a_stalled_event_loop_is_reported_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    lines: list[str] = []
    telemetry = ServiceTelemetry(ServiceMetrics("prod", sink=lines.append), ServiceTracing.off(),
                                 active_calls_interval_s=0.3)
    watch = asyncio.create_task(telemetry.watch_event_loop())
    await asyncio.sleep(0.4)  # a quiet interval first
    time.sleep(0.3)  # noqa: ASYNC251 - then work that holds the loop, as a CPU-bound step would
    await asyncio.sleep(0.5)
    watch.cancel()
    lags = metric_values([validate_emf(line) for line in lines], "EventLoopLagMs")
    assert len(lags) >= 2 and lags[0] < 250  # the quiet interval: no stall
    assert max(lags) >= 250
    assert any(r.getMessage() == "event loop stalled" and r.stalled_ms >= 250 for r in caplog.records)  # type: ignore[attr-defined]
