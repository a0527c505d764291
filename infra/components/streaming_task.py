"""The Fargate task of the streaming service: the app container (image built from the Dockerfile at
deploy time) and an ADOT collector sidecar that takes the service's OpenTelemetry spans (OTLP/HTTP on
localhost) to X-Ray. Metrics need no sidecar: they are EMF lines in the app's own log stream."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.components.app_secret import APP_SECRET_FIELDS
from infra.components.log_retention import retention_days
from infra.components.nag import ANY_RESOURCE, acknowledge
from infra.lambda_assets import REPO_ROOT

CONTAINER_NAME = "app"
CONTAINER_PORT = 8080
ADOT_COLLECTOR_IMAGE = "public.ecr.aws/aws-observability/aws-otel-collector:v0.40.0"
OTLP_HTTP_PORT = 4318
# Traces only: OTLP/HTTP from the app (same task network namespace) -> batch -> X-Ray. tenant_id and
# call_sid become X-Ray annotations (the service also lists them in `aws.xray.annotations`).
ADOT_CONFIG = f"""receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{OTLP_HTTP_PORT}
processors:
  batch/traces:
    timeout: 1s
    send_batch_size: 50
exporters:
  awsxray:
    indexed_attributes: [tenant_id, call_sid]
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch/traces]
      exporters: [awsxray]
"""
# cdk-nag's id for the task-protection statement's resource (a task ARN is only known once it runs).
TASK_PROTECTION_RESOURCE = "Resource::arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:task/*"
DRAIN_MARGIN_S = 5  # the service finishes its drain this long before ECS sends SIGKILL


class StreamingTask(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cpu: int,
        memory_mib: int,
        stop_timeout_s: int,
        log_retention_days: int,
        environment: Mapping[str, str],
        app_secret: secretsmanager.ISecret,
        db_secret: secretsmanager.ISecret,
        redis_url_secret: secretsmanager.ISecret,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(
            self, "Logs", retention=retention_days(log_retention_days), removal_policy=RemovalPolicy.DESTROY
        )
        self.definition = ecs.FargateTaskDefinition(
            self,
            "Definition",
            cpu=cpu,
            memory_limit_mib=memory_mib,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        self.app = self.definition.add_container(
            CONTAINER_NAME,
            # Staged into cdk.out at synth; built and pushed only by `cdk deploy` (needs Docker there).
            image=ecs.ContainerImage.from_asset(
                str(REPO_ROOT), file="streaming_service/Dockerfile", platform=ecr_assets.Platform.LINUX_AMD64
            ),
            port_mappings=[ecs.PortMapping(container_port=CONTAINER_PORT, protocol=ecs.Protocol.TCP)],
            # ECS drains the ALB target first, then sends SIGTERM; the service then refuses new streams and
            # lets live calls finish for up to stop_timeout before SIGKILL.
            stop_timeout=Duration.seconds(stop_timeout_s),
            environment={
                "PORT": str(CONTAINER_PORT),
                "DRAIN__DRAIN_TIMEOUT_S": str(stop_timeout_s - DRAIN_MARGIN_S),
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{OTLP_HTTP_PORT}",
                **environment,
            },
            secrets={
                **{name: ecs.Secret.from_secrets_manager(app_secret, name) for name in APP_SECRET_FIELDS},
                "DB_HOST": ecs.Secret.from_secrets_manager(db_secret, "host"),
                "DB_PORT": ecs.Secret.from_secrets_manager(db_secret, "port"),
                "DB_USER": ecs.Secret.from_secrets_manager(db_secret, "username"),
                "DB_PASSWORD": ecs.Secret.from_secrets_manager(db_secret, "password"),
                "REDIS_URL": ecs.Secret.from_secrets_manager(redis_url_secret),
            },
            logging=ecs.LogDrivers.aws_logs(stream_prefix="streaming", log_group=self.log_group),
            health_check=ecs.HealthCheck(
                command=[
                    "CMD",
                    "python",
                    "-c",
                    # liveness, as the ALB's (streaming_service.HEALTH_CHECK_PATH): a full task is healthy
                    f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{CONTAINER_PORT}/', "
                    "timeout=3)",
                ],
                interval=Duration.seconds(15),
                timeout=Duration.seconds(5),
                retries=3,
                start_period=Duration.seconds(30),
            ),
            essential=True,
        )
        collector = self.definition.add_container(
            "otel-collector",
            image=ecs.ContainerImage.from_registry(ADOT_COLLECTOR_IMAGE),
            cpu=64,
            memory_reservation_mib=128,
            environment={"AOT_CONFIG_CONTENT": ADOT_CONFIG},  # the collector reads its config from here
            logging=ecs.LogDrivers.aws_logs(stream_prefix="otel", log_group=self.log_group),
            essential=False,  # losing traces must never end calls
        )
        self.app.add_container_dependencies(
            ecs.ContainerDependency(container=collector, condition=ecs.ContainerDependencyCondition.START)
        )
        self.definition.task_role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[
                    "xray:PutTraceSegments",
                    "xray:PutTelemetryRecords",
                    "xray:GetSamplingRules",
                    "xray:GetSamplingTargets",
                ],
                resources=["*"],
            )
        )
        # Scale-in protection while calls are live: the service calls the ECS agent's task-protection
        # endpoint, which acts with the task role's credentials (streaming_service/task_protection.py).
        self.definition.task_role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["ecs:UpdateTaskProtection", "ecs:GetTaskProtection"],
                resources=[f"arn:{Aws.PARTITION}:ecs:{Aws.REGION}:{Aws.ACCOUNT_ID}:task/*"],
            )
        )
        acknowledge(
            self.definition,
            "AwsSolutions-IAM5",
            "X-Ray write and sampling actions support no resource-level permissions; task protection is "
            "scoped to this account's tasks (a task's ARN is not known before it starts).",
            findings=(ANY_RESOURCE, TASK_PROTECTION_RESOURCE),
        )
        acknowledge(
            self.definition,
            "AwsSolutions-ECS2",
            "Only non-secret settings are plain environment variables; every secret is injected via `secrets`.",
        )
