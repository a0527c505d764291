from __future__ import annotations

from tests.infra.conftest import SynthesizedEnvironment

SERVICE_METRICS = (
    "ActiveCalls", "CallsStarted", "CallsEnded", "VoiceToVoiceMs", "SttLatencyMs", "LlmTtftMs", "TtsTtfbMs",
    "BargeIns", "VendorErrors", "OfflineFallbacks",
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
