"""A call seen from CloudWatch and X-Ray: its trace arrives at an OTLP/HTTP receiver (what the ADOT
collector sidecar speaks) as one trace continuing the webhook's, and its EMF lines are valid EMF with
the figures the call measured. Secrets never reach either."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from functions.voice_webhook import twiml
from shared.stream_token import mint_stream_token
from streaming_service.telemetry.service_metrics import ServiceMetrics
from streaming_service.telemetry.service_telemetry import ServiceTelemetry
from streaming_service.telemetry.tracing import ServiceTracing
from tests.e2e.conftest import STREAM_SECRET, VoiceStack, start_stack, wait_until
from tests.e2e.observability_support import (
    SECRETS,
    WEBHOOK_SPAN_ID,
    WEBHOOK_TRACE_HEADER,
    WEBHOOK_TRACE_ID,
    OtlpReceiver,
    metric_values,
    secret_fakes,  # noqa: F401 (fixture)
    validate_emf,
)
from tests.fakes.openai_server import ToolCall
from tests.fakes.speech_marker import marked_speech

OWN_SPANS = {"call", "turn", "stt", "agent", "tts", "tool end_call"}


@dataclass
class ObservedStack:
    stack: VoiceStack
    receiver: OtlpReceiver
    emf_lines: list[str]
    telemetry: ServiceTelemetry

    def place_call(self) -> Any:
        """A call whose custom parameters are those of the webhook's TwiML (trace header included)."""
        sim = self.stack.call()
        params = twiml.StreamParameters(tenant_id="acme", caller="+15550001111", dialled="+15550002222",
                                        stream_token=mint_stream_token(STREAM_SECRET, "acme", sim.call_sid),
                                        trace_header=WEBHOOK_TRACE_HEADER)
        document = ET.fromstring(twiml.connect_stream("wss://stream.example.test/twilio-stream",
                                                      "https://hooks.example.test/voice/after-stream", params))
        sim.custom_parameters = {str(p.get("name")): str(p.get("value")) for p in document.iter("Parameter")}
        return sim

    async def flushed(self) -> None:
        await wait_until(lambda: not self.stack.state.sessions, timeout_s=20)
        # The exporter posts from its own thread to a receiver on this loop: never block the loop on it.
        await asyncio.to_thread(self.telemetry.tracing.force_flush)

    def emf(self) -> list[dict[str, Any]]:
        return [validate_emf(line) for line in self.emf_lines]


@pytest.fixture
async def observed(secret_fakes) -> AsyncIterator[ObservedStack]:  # noqa: F811
    receiver = OtlpReceiver()
    await receiver.start()
    stack = await start_stack(secret_fakes)
    lines: list[str] = []
    telemetry = ServiceTelemetry(ServiceMetrics("test", sink=lines.append),
                                 ServiceTracing.to_collector(receiver.endpoint, "voice-agent-test", "test",
                                                             schedule_delay_ms=200))
    telemetry.tracing.instrument_clients()
    stack.state.telemetry = telemetry
    yield ObservedStack(stack, receiver, lines, telemetry)
    await stack.close()  # the runner's cleanup flushes and shuts tracing down, uninstruments httpx and Redis
    await receiver.stop()


async def scripted_call(observed: ObservedStack) -> Any:
    """Greeting, one question, then a goodbye the agent ends with its end_call tool."""
    stack = observed.stack
    async with observed.place_call() as caller:
        await caller.wait_for_agent(since=0)
        session = stack.session(caller)
        spoken_at = await caller.say(marked_speech("I would like to book a haircut"))
        await caller.wait_for_agent(since=spoken_at)
        stack.openai.script(ToolCall("end_call", {}))
        await caller.say(marked_speech("That is all goodbye"))
        await asyncio.wait_for(caller.closed.wait(), timeout=15)
    await observed.flushed()
    return session


async def test_one_trace_from_the_webhook_through_the_call(observed: ObservedStack) -> None:
    session = await scripted_call(observed)
    spans = observed.receiver.spans()
    by_id = {s.span_id: s for s in spans}
    names = Counter(s.name for s in spans)

    # One trace: the webhook's, with the call's span a child of the webhook's span.
    assert {s.trace_id for s in spans} == {WEBHOOK_TRACE_ID}
    [call] = [s for s in spans if s.name == "call"]
    assert call.parent_span_id == WEBHOOK_SPAN_ID
    assert call.attributes["outcome"] == "hangup" and call.attributes["turns"] == 2

    # A turn per reply (greeting + two caller turns); STT and agent per caller turn; TTS per sentence.
    assert names["turn"] == 3 and names["stt"] == 2 and names["agent"] == 2 and names["tool end_call"] == 1
    assert names["tts"] >= 3
    for span in spans:
        assert span.end_ns >= span.start_ns > 0, span
    turns = [s for s in spans if s.name == "turn"]
    assert all(by_id[s.parent_span_id].name == "call" for s in turns)
    for name in ("stt", "agent", "tts"):
        assert all(by_id[s.parent_span_id].name == "turn" for s in spans if s.name == name), name
    [tool] = [s for s in spans if s.name == "tool end_call"]
    assert by_id[tool.parent_span_id].name == "agent"
    assert all(s.duration_ms > 0 for s in spans if s.name in {"stt", "agent", "tts", "turn", "call"})
    # The STT span is the wait from speech end to the final transcript the turn measured.
    caller_turns = sorted((s for s in turns if s.attributes["kind"] == "caller"), key=lambda s: s.start_ns)
    for span, summary in zip(caller_turns, session.turns, strict=True):
        assert span.attributes["voice_to_voice_ms"] == summary["voice_to_voice_ms"]
        [stt] = [s for s in spans if s.name == "stt" and s.parent_span_id == span.span_id]
        assert stt.duration_ms == pytest.approx(summary["stt_ms"], abs=1.0)

    # Annotations on every span of ours (the collector indexes them in X-Ray).
    for span in (s for s in spans if s.name in OWN_SPANS):
        assert span.attributes["call_sid"] == session.call.call_sid and span.attributes["tenant_id"] == "acme"
        assert span.attributes["aws.xray.annotations"] == ["tenant_id", "call_sid"]
    # Outgoing vendor HTTP (over aiohttp) is traced: ElevenLabs inside the TTS spans, the model's requests
    # inside the call (a preemptive draft starts before its turn does).
    http = [s for s in spans if s.name not in OWN_SPANS]
    voice = [s for s in http if "/v1/text-to-speech/" in s.attributes["http.url"]]
    model = [s for s in http if s.attributes["http.url"].endswith("/v1/chat/completions")]
    assert voice and all(by_id[s.parent_span_id].name == "tts" for s in voice)
    assert model and all(by_id[s.parent_span_id].name in {"call", "agent"} for s in model)
    assert len(voice) + len(model) == len(http)

    text = observed.receiver.as_text() + "".join(b.decode("latin-1") for b in observed.receiver.raw_bodies)
    assert [secret for secret in SECRETS if secret in text] == []


async def test_emf_of_a_scripted_call(observed: ObservedStack) -> None:
    session = await scripted_call(observed)
    documents = observed.emf()  # each line is valid EMF
    assert {d["_aws"]["CloudWatchMetrics"][0]["Namespace"] for d in documents} == {"VoiceAgent"}
    assert all(d["service"] == "streaming" and d["environment"] == "test" for d in documents)
    # Dimensions stay low-cardinality: call identity rides along as properties, never as a dimension.
    dimension_names = {n for d in documents for ds in d["_aws"]["CloudWatchMetrics"][0]["Dimensions"] for n in ds}
    assert dimension_names == {"service", "environment"}

    assert metric_values(documents, "CallsStarted") == [1] and metric_values(documents, "CallsEnded") == [1]
    # The gauge comes only from the periodic reporter (one sample at start-up here), never per change.
    assert metric_values(documents, "ActiveCalls") in ([], [0])
    assert metric_values(documents, "CallDurationS")[0] > 0
    assert metric_values(documents, "BargeIns") == [] and metric_values(documents, "VendorErrors") == []
    for key, name in (("stt_ms", "SttLatencyMs"), ("llm_ttft_ms", "LlmTtftMs"), ("tts_ttfb_ms", "TtsTtfbMs"),
                      ("voice_to_voice_ms", "VoiceToVoiceMs")):
        assert metric_values(documents, name) == [t[key] for t in session.turns], name
    turn_docs = [d for d in documents if "VoiceToVoiceMs" in d]
    assert [d["turn"] for d in turn_docs] == [1, 2]
    assert all(d["call_sid"] == session.call.call_sid and d["tenant_id"] == "acme" for d in turn_docs)
    assert [secret for secret in SECRETS if any(secret in line for line in observed.emf_lines)] == []


async def test_vendor_failure_is_counted_by_vendor_and_recorded_on_the_trace(observed: ObservedStack) -> None:
    stack = observed.stack
    async with observed.place_call() as caller:
        await caller.wait_for_agent(since=0)
        stack.elevenlabs.fail_all(500)
        spoken_at = await caller.say(marked_speech("What time do you close"))
        await caller.wait_for_agent(since=spoken_at)
    await observed.flushed()
    documents = observed.emf()
    errors = metric_values(documents, "VendorErrors", vendor="elevenlabs")
    assert errors and errors == [1] * len(errors)
    assert {str(d["_aws"]["CloudWatchMetrics"][0]["Dimensions"]) for d in documents if "VendorErrors" in d} == {
        str([["service", "environment", "vendor"]])}
    fallbacks = [d for d in documents if "OfflineFallbacks" in d]
    assert len(fallbacks) == len(errors) and {d["component"] for d in fallbacks} == {"tts"}
    failed = [s for s in observed.receiver.spans() if "exception" in s.events]
    assert failed and all(s.status_code == 2 for s in failed)  # STATUS_CODE_ERROR
