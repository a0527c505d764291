"""Observability lifetime: dashboard, alarms and their topic (cheap to replace, reads every other stack)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_rds as rds
from constructs import Construct

from infra.components.alarm_topic import AlarmTopic
from infra.components.operations_dashboard import OperationsDashboard
from infra.components.service_alarms import ServiceAlarms
from infra.components.voice_agent_metrics import VoiceAgentMetrics
from infra.config import EnvironmentConfig


class ObservabilityStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        functions: Mapping[str, lambda_.IFunction],
        load_balancer: elbv2.ApplicationLoadBalancer,
        target_group_full_name: str,
        service: ecs.FargateService,
        database: rds.DatabaseCluster,
        cache_primary_node_id: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        metrics = VoiceAgentMetrics(config.env_name)
        self.topic = AlarmTopic(self, "AlarmTopic", email=config.alarm_email).topic
        self.dashboard = OperationsDashboard(
            self,
            "Dashboard",
            metrics=metrics,
            functions=list(functions.values()),
            load_balancer=load_balancer,
            target_group_full_name=target_group_full_name,
            service=service,
            database=database,
            cache_primary_node_id=cache_primary_node_id,
        ).dashboard
        self.alarms = ServiceAlarms(
            self,
            "Alarms",
            topic=self.topic,
            metrics=metrics,
            functions=functions,
            load_balancer=load_balancer,
            target_group_full_name=target_group_full_name,
            database=database,
            cache_primary_node_id=cache_primary_node_id,
            voice_to_voice_p95_ms=config.voice_to_voice_p95_alarm_ms,
            service=service,
            max_tasks=config.max_tasks,
        )
        CfnOutput(self, "AlarmTopicArn", value=self.topic.topic_arn,
                  description="Subscribe on-call here (or set alarm_email)")
