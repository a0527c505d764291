from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Match

from tests.infra.conftest import SynthesizedEnvironment
from tests.infra.secrets_in_env import plaintext_secret_names


def _containers(env: SynthesizedEnvironment) -> dict[str, dict[str, Any]]:
    (task,) = env.template("streaming").find_resources("AWS::ECS::TaskDefinition").values()
    return {c["Name"]: c for c in task["Properties"]["ContainerDefinitions"]}


def _target_group_attributes(env: SynthesizedEnvironment) -> dict[str, str]:
    (group,) = env.template("streaming").find_resources("AWS::ElasticLoadBalancingV2::TargetGroup").values()
    return {a["Key"]: a["Value"] for a in group["Properties"]["TargetGroupAttributes"]}


def test_health_check_is_liveness_not_readiness(every_env: SynthesizedEnvironment) -> None:
    # /ready answers 503 when a task is full; ECS replaces tasks the ALB finds unhealthy, which would cut
    # the live calls of a busy task. So both health checks ask `/` (is the process serving?).
    every_env.template("streaming").has_resource_properties(
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        {"HealthCheckPath": "/", "Matcher": {"HttpCode": "200"}, "Port": 8080, "TargetType": "ip"},
    )
    command = " ".join(_containers(every_env)["app"]["HealthCheck"]["Command"])
    assert "/ready" not in command and "8080/'" in command


def test_draining_covers_live_calls(dev: SynthesizedEnvironment, prod: SynthesizedEnvironment) -> None:
    assert int(_target_group_attributes(dev)["deregistration_delay.timeout_seconds"]) >= 120
    assert int(_target_group_attributes(prod)["deregistration_delay.timeout_seconds"]) == 3600
    for env in (dev, prod):
        app = _containers(env)["app"]
        assert app["StopTimeout"] == 120
        env_vars = {v["Name"]: v["Value"] for v in app["Environment"]}
        assert int(env_vars["DRAIN__DRAIN_TIMEOUT_S"]) < app["StopTimeout"]


def test_deploys_never_drop_capacity_and_roll_back(every_env: SynthesizedEnvironment) -> None:
    every_env.template("streaming").has_resource_properties(
        "AWS::ECS::Service",
        {
            "LaunchType": "FARGATE",
            "DeploymentConfiguration": Match.object_like(
                {
                    "MinimumHealthyPercent": 100,
                    "DeploymentCircuitBreaker": {"Enable": True, "Rollback": True},
                }
            ),
            "NetworkConfiguration": {"AwsvpcConfiguration": Match.object_like({"AssignPublicIp": "DISABLED"})},
        },
    )


def test_scales_on_active_calls_with_a_warm_floor(dev: SynthesizedEnvironment, prod: SynthesizedEnvironment) -> None:
    for env, floor, cooldown in ((dev, 1, 600), (prod, 2, 3600)):
        template = env.template("streaming")
        template.has_resource_properties("AWS::ApplicationAutoScaling::ScalableTarget", {"MinCapacity": floor})
        template.has_resource_properties(
            "AWS::ApplicationAutoScaling::ScalingPolicy",
            {
                "TargetTrackingScalingPolicyConfiguration": Match.object_like(
                    {
                        "CustomizedMetricSpecification": Match.object_like(
                            {"MetricName": "ActiveCalls", "Namespace": "VoiceAgent", "Statistic": "Average"}
                        ),
                        "ScaleInCooldown": cooldown,
                    }
                )
            },
        )


def test_otel_collector_sidecar_and_cloudwatch_logs(every_env: SynthesizedEnvironment) -> None:
    containers = _containers(every_env)
    collector = containers["otel-collector"]
    assert "aws-otel-collector" in collector["Image"]
    assert collector["Essential"] is False
    config = {v["Name"]: v["Value"] for v in collector["Environment"]}["AOT_CONFIG_CONTENT"]
    assert "127.0.0.1:4318" in config and "awsxray" in config
    for container in containers.values():
        assert container["LogConfiguration"]["LogDriver"] == "awslogs"
    env_vars = {v["Name"]: v["Value"] for v in containers["app"]["Environment"]}
    assert env_vars["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4318"


def test_secrets_are_injected_never_plain(every_env: SynthesizedEnvironment) -> None:
    app = _containers(every_env)["app"]
    env_vars = {v["Name"]: v["Value"] for v in app["Environment"]}
    assert plaintext_secret_names(env_vars) == []
    injected = {s["Name"] for s in app["Secrets"]}
    assert {
        "TWILIO_AUTH_TOKEN", "STREAM_TOKEN_SECRET", "TOOL_PROXY_SECRET", "DEEPGRAM_API_KEY",
        "ELEVENLABS_API_KEY", "OPENAI_API_KEY", "DB_HOST", "DB_PORT", "DB_USER", "DB_PASSWORD", "REDIS_URL",
    } <= injected
    assert {"ENV", "PORT", "STREAM_PUBLIC_URL", "MCP_BASE", "DB_NAME", "MAX_CALLS_PER_TASK"} <= set(env_vars)


def test_image_is_an_asset_from_the_dockerfile(dev: SynthesizedEnvironment) -> None:
    manifest = (dev.outdir / f"{dev.stacks.streaming.stack_name}.assets.json").read_text()
    assert "streaming_service/Dockerfile" in manifest


def test_only_public_paths_are_forwarded(dev: SynthesizedEnvironment) -> None:
    dev.template("streaming").has_resource_properties(
        "AWS::ElasticLoadBalancingV2::ListenerRule",
        {"Conditions": [Match.object_like({"Field": "path-pattern",
                                           "PathPatternConfig": {"Values": ["/twilio-stream", "/ready", "/",
                                                                            "/api/*"]}})]},
    )


def test_one_worker_process_per_vcpu(every_env: SynthesizedEnvironment) -> None:
    """The task's size and the service's worker processes agree (streaming_service/workers.py)."""
    (task,) = every_env.template("streaming").find_resources("AWS::ECS::TaskDefinition").values()
    vcpus = int(task["Properties"]["Cpu"]) // 1024
    env_vars = {v["Name"]: v["Value"] for v in _containers(every_env)["app"]["Environment"]}
    assert env_vars["WORKERS"] == str(max(1, vcpus))
