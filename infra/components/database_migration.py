"""The one-shot migration step: a Lambda-backed custom resource that applies the SQL migrations on deploy.

It re-runs whenever the content of `shared/tenancy/` changes (the hash is a resource property), so a deploy
that ships new migrations applies them before the api and streaming stacks roll out new code.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from aws_cdk import CfnElement, CustomResource, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import custom_resources as cr
from constructs import Construct

from infra.components.nag import LAMBDA_BASIC_EXECUTION, acknowledge
from infra.components.python_function import LambdaPackage, PythonFunction


def directory_hash(directory: Path) -> str:
    digest = hashlib.sha256()
    if directory.is_dir():
        for path in sorted(p for p in directory.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            digest.update(str(path.relative_to(directory)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


class DatabaseMigration(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        package: LambdaPackage,
        migrations_dir: Path,
        env_name: str,
        vpc: ec2.IVpc,
        security_group: ec2.ISecurityGroup,
        admin_secret: secretsmanager.ISecret,
        app_user_secret: secretsmanager.ISecret,
        log_retention_days: int,
    ) -> None:
        super().__init__(scope, construct_id)
        runner = PythonFunction(
            self,
            "Runner",
            package=package,
            handler="db_migration.on_event",
            service_name="db-migration",
            env_name=env_name,
            vpc=vpc,
            security_groups=[security_group],
            environment={
                "DB_ADMIN_SECRET_ARN": admin_secret.secret_arn,
                "DB_SECRET_ARN": app_user_secret.secret_arn,
            },
            memory_mb=512,
            timeout=Duration.minutes(5),  # an auto-paused dev cluster takes ~15 s to resume
            reserved_concurrency=None,
            log_retention_days=log_retention_days,
        ).function
        admin_secret.grant_read(runner)
        app_user_secret.grant_read(runner)

        provider = cr.Provider(self, "Provider", on_event_handler=runner)
        runner_resource = runner.node.default_child
        assert isinstance(runner_resource, CfnElement)
        runner_logical_id = Stack.of(self).resolve(Stack.of(self).get_logical_id(runner_resource))
        acknowledge(provider, "AwsSolutions-L1",
                    "The Provider framework's own Lambda runtime is chosen and updated by aws-cdk-lib.")
        acknowledge(provider, "AwsSolutions-IAM4",
                    "The Provider framework's Lambda uses AWSLambdaBasicExecutionRole for its logs.",
                    findings=(LAMBDA_BASIC_EXECUTION,))
        acknowledge(provider, "AwsSolutions-IAM5",
                    "The Provider framework may invoke every version of the runner (':*').",
                    findings=(f"Resource::<{runner_logical_id}.Arn>:*",))

        self.resource = CustomResource(
            self,
            "Apply",
            service_token=provider.service_token,
            resource_type="Custom::DatabaseMigrations",
            properties={"MigrationsHash": directory_hash(migrations_dir)},
        )
