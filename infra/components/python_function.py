"""A Python Lambda of this project: shared code asset and layer, VPC, X-Ray active tracing, its own log group."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.components.log_retention import retention_days
from infra.components.nag import ANY_RESOURCE, LAMBDA_BASIC_EXECUTION, LAMBDA_VPC_ACCESS, acknowledge
from infra.lambda_assets import LambdaAssets

# The interpreter the tests, the rehearsal and the container image (python:3.11-slim) run: one version.
RUNTIME = lambda_.Runtime.PYTHON_3_11
POWERTOOLS_METRICS_NAMESPACE = "VoiceAgent"


class LambdaPackage(Construct):
    """The code asset and the dependency layer, once per stack (a layer version belongs to one stack)."""

    def __init__(self, scope: Construct, construct_id: str, *, assets: LambdaAssets) -> None:
        super().__init__(scope, construct_id)
        self.code = lambda_.Code.from_asset(str(assets.code_dir))
        self.layer = lambda_.LayerVersion(
            self,
            "Dependencies",
            code=lambda_.Code.from_asset(str(assets.layer_dir)),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[lambda_.Architecture.X86_64],  # `make layer` targets manylinux x86_64
            description="Python dependencies of functions/ and shared/ (make layer)",
        )


class PythonFunction(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        package: LambdaPackage,
        handler: str,
        service_name: str,
        env_name: str,
        vpc: ec2.IVpc,
        security_groups: Sequence[ec2.ISecurityGroup],
        environment: Mapping[str, str],
        memory_mb: int,
        timeout: Duration,
        reserved_concurrency: int | None,
        log_retention_days: int,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(
            self, "Logs", retention=retention_days(log_retention_days), removal_policy=RemovalPolicy.DESTROY
        )
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=RUNTIME,
            architecture=lambda_.Architecture.X86_64,
            handler=handler,
            code=package.code,
            layers=[package.layer],
            memory_size=memory_mb,
            timeout=timeout,
            tracing=lambda_.Tracing.ACTIVE,
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_groups=list(security_groups),
            reserved_concurrent_executions=reserved_concurrency,
            log_group=self.log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            environment={
                "ENV": env_name,
                "POWERTOOLS_SERVICE_NAME": service_name,
                "POWERTOOLS_METRICS_NAMESPACE": POWERTOOLS_METRICS_NAMESPACE,
                "POWERTOOLS_PARAMETERS_MAX_AGE": "300",  # secrets are cached 5 minutes per warm container
                **environment,
            },
        )
        acknowledge(
            self.function,
            "AwsSolutions-L1",
            "Pinned to Python 3.11, the version the project, its layer and its container are built and "
            "tested for; moving to "
            "a newer runtime is a deliberate upgrade, not a synth-time default.",
        )
        acknowledge(
            self.function,
            "AwsSolutions-IAM4",
            "AWSLambdaBasicExecutionRole and AWSLambdaVPCAccessExecutionRole are the AWS-maintained minimum for "
            "writing logs and attaching ENIs in a VPC.",
            findings=(LAMBDA_BASIC_EXECUTION, LAMBDA_VPC_ACCESS),
        )
        acknowledge(
            self.function,
            "AwsSolutions-IAM5",
            "X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level permissions ('*'); the "
            "ENI actions of VPC access likewise.",
            findings=(ANY_RESOURCE,),
        )
