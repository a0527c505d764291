"""Streaming lifetime: the ECS cluster and the Fargate service (redeployed with every image change)."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.components.aurora_postgres import DATABASE_NAME
from infra.components.streaming_service import StreamingService
from infra.components.streaming_task import StreamingTask
from infra.config import EnvironmentConfig


class StreamingStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        vpc: ec2.IVpc,
        listener: elbv2.IApplicationListener,
        load_balancer_security_group: ec2.ISecurityGroup,
        data_client_security_group: ec2.ISecurityGroup,
        app_secret: secretsmanager.ISecret,
        db_secret: secretsmanager.ISecret,
        redis_url_secret: secretsmanager.ISecret,
        stream_url: str,
        mcp_url: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.task = StreamingTask(
            self,
            "Task",
            cpu=config.task_cpu,
            memory_mib=config.task_memory_mib,
            stop_timeout_s=config.container_stop_timeout_s,
            log_retention_days=config.log_retention_days,
            environment={
                "ENV": config.env_name,
                # The URL Twilio opens and signs for the upgrade (the same value the webhook puts in TwiML).
                "STREAM_PUBLIC_URL": stream_url,
                "MCP_BASE": mcp_url,
                "MAX_CALLS_PER_TASK": str(config.max_calls_per_task),
                # One worker process per vCPU: the task's size and the service's processes agree.
                "WORKERS": str(max(1, config.task_cpu // 1024)),
                "DB_NAME": DATABASE_NAME,
            },
            app_secret=app_secret,
            db_secret=db_secret,
            redis_url_secret=redis_url_secret,
        )
        self.streaming = StreamingService(
            self,
            "Streaming",
            env_name=config.env_name,
            vpc=vpc,
            task=self.task,
            listener=listener,
            load_balancer_security_group=load_balancer_security_group,
            extra_security_groups=[data_client_security_group],
            min_tasks=config.min_tasks,
            max_tasks=config.max_tasks,
            target_active_calls_per_task=config.target_active_calls_per_task,
            scale_in_cooldown_s=config.scale_in_cooldown_s,
            deregistration_delay_s=config.deregistration_delay_s,
        )
