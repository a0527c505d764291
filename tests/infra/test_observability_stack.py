from __future__ import annotations

from typing import Any

from tests.infra.conftest import SynthesizedEnvironment

SERVICE_METRICS = (
    "ActiveCalls", "CallsStarted", "CallsEnded", "VoiceToVoiceMs", "SttLatencyMs", "LlmTtftMs", "TtsTtfbMs",
    "BargeIns", "VendorErrors", "OfflineFallbacks", "VendorLeaseUsePercent", "VendorLeasesInUse",
    "FalseInterruptions", "PreemptiveHit", "PreemptiveDraftsDiscarded", "EventLoopLagMs",
)
AWS_METRICS = (
    "Errors", "Duration", "HTTPCode_ELB_5XX_Count", "HTTPCode_Target_5XX_Count", "ActiveConnectionCount",
    "CPUUtilization", "ServerlessDatabaseCapacity", "EngineCPUUtilization", "DatabaseMemoryUsagePercentage",
)


def test_dashboard_shows_calls_latency_and_dependencies(every_env: SynthesizedEnvironment) -> None:
    (dashboard,) = every_env.template("observability").find_resources("AWS::CloudWatch::Dashboard").values()
    # The body is an Fn::Join of JSON fragments; the literal parts carry the metric names.
    body = "".join(p for p in dashboard["Properties"]["DashboardBody"]["Fn::Join"][1] if isinstance(p, str))
    for metric in (*SERVICE_METRICS, *AWS_METRICS):
        assert f'"{metric}"' in body, metric
    assert "p95" in body and "p50" in body


def test_every_alarm_notifies_the_topic(every_env: SynthesizedEnvironment) -> None:
    template = every_env.template("observability")
    (topic_id,) = template.find_resources("AWS::SNS::Topic")
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    assert len(alarms) >= 10
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_id}]


def test_topic_is_encrypted(every_env: SynthesizedEnvironment) -> None:
    (topic,) = every_env.template("observability").find_resources("AWS::SNS::Topic").values()
    assert "KmsMasterKeyId" in topic["Properties"]


def test_an_alarm_fires_when_a_vendor_budget_is_nearly_full(every_env: SynthesizedEnvironment) -> None:
    budget: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for alarm in every_env.template("observability").find_resources("AWS::CloudWatch::Alarm").values():
        for query in alarm["Properties"].get("Metrics", []):
            stat = query.get("MetricStat") or {}
            if stat.get("Metric", {}).get("MetricName") == "VendorLeaseUsePercent":
                dims = {d["Name"]: d["Value"] for d in stat["Metric"]["Dimensions"]}
                budget[dims["vendor"]] = (alarm["Properties"], {**dims, "stat": stat["Stat"]})
    assert set(budget) == {"deepgram", "elevenlabs"}
    for props, metric in budget.values():
        assert metric["account"] == "platform" and metric["stat"] == "Maximum"
        assert props["Threshold"] == 80 and props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
