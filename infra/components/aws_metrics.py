"""AWS service metrics built from plain dimension values.

CDK's own helpers derive some dimensions by splitting ARNs at deploy time (a target group's load balancer
from its listener ARN); across stacks that becomes Fn::Split over Fn::GetStackOutput, which cfn-lint cannot
type. Passing full names in avoids it.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch

ONE_MINUTE = Duration.minutes(1)


def redis_metric(cache_node_id: str, name: str, statistic: str = cloudwatch.Stats.AVERAGE) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace="AWS/ElastiCache",
        metric_name=name,
        dimensions_map={"CacheClusterId": cache_node_id},
        statistic=statistic,
        period=Duration.minutes(1),
    )


def target_group_metric(
    load_balancer_full_name: str,
    target_group_full_name: str,
    name: str,
    statistic: str = cloudwatch.Stats.MAXIMUM,
    period: Duration = ONE_MINUTE,
) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace="AWS/ApplicationELB",
        metric_name=name,
        dimensions_map={"LoadBalancer": load_balancer_full_name, "TargetGroup": target_group_full_name},
        statistic=statistic,
        period=period,
    )


def ecs_service_metric(cluster_name: str, service_name: str, name: str,
                       statistic: str = cloudwatch.Stats.MAXIMUM, period: Duration = ONE_MINUTE) -> cloudwatch.Metric:
    """Container Insights (enabled on the cluster): e.g. RunningTaskCount."""
    return cloudwatch.Metric(
        namespace="ECS/ContainerInsights",
        metric_name=name,
        dimensions_map={"ClusterName": cluster_name, "ServiceName": service_name},
        statistic=statistic,
        period=period,
    )


def powertools_metric(service: str, name: str, statistic: str = cloudwatch.Stats.SUM,
                      period: Duration = ONE_MINUTE) -> cloudwatch.Metric:
    """A Lambda's Powertools metric (namespace VoiceAgent, dimension service = the Metrics service name)."""
    return cloudwatch.Metric(
        namespace="VoiceAgent", metric_name=name, dimensions_map={"service": service}, statistic=statistic,
        period=period,
    )
