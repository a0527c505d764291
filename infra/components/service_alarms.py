"""Alarms that page: each one is something a caller would notice. All go to one SNS topic."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_rds as rds
from aws_cdk import aws_sns as sns
from constructs import Construct

from infra.components.aws_metrics import ecs_service_metric, powertools_metric, redis_metric, target_group_metric
from infra.components.voice_agent_metrics import VoiceAgentMetrics

FIVE_MINUTES = Duration.minutes(5)


class ServiceAlarms(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        topic: sns.ITopic,
        metrics: VoiceAgentMetrics,
        functions: Mapping[str, lambda_.IFunction],
        load_balancer: elbv2.ApplicationLoadBalancer,
        target_group_full_name: str,
        database: rds.DatabaseCluster,
        cache_primary_node_id: str,
        voice_to_voice_p95_ms: int,
        service: ecs.FargateService,
        max_tasks: int,
        bad_signatures_per_5_min: int = 20,
        vendor_budget_alarm_percent: int = 80,
    ) -> None:
        super().__init__(scope, construct_id)
        self._action = actions.SnsAction(topic)
        self.alarms: list[cloudwatch.Alarm] = []
        for name, function in functions.items():
            self._alarm(f"{name}Errors", function.metric_errors(period=FIVE_MINUTES), 5,
                        "Lambda errors (Twilio hears an application error on a failed webhook)")
            self._alarm(f"{name}Throttles", function.metric_throttles(period=FIVE_MINUTES), 1,
                        "Lambda throttled: reserved or account concurrency is exhausted (calls go unanswered)")
        self._alarm("StreamingAtMaxTasks",
                    ecs_service_metric(service.cluster.cluster_name, service.service_name, "RunningTaskCount"),
                    max_tasks, "The streaming service runs its maximum task count: it cannot scale out further "
                    "(raise max_tasks before calls are refused)", evaluation_periods=5)
        # The webhook's Powertools metric (service dimension = its Metrics service name, voice_webhook).
        self._alarm("BadSignatureSpike", powertools_metric("voice_webhook", "BadSignatures", period=FIVE_MINUTES),
                    bad_signatures_per_5_min, "Many requests with a bad X-Twilio-Signature: a probe, or the "
                    "auth token / webhook URL no longer match what Twilio uses")
        alb = load_balancer.metrics
        self._alarm("AlbElb5xx", alb.http_code_elb(elbv2.HttpCodeElb.ELB_5XX_COUNT, period=FIVE_MINUTES), 10,
                    "ALB 5xx: streams cannot reach a healthy task")
        self._alarm("AlbTarget5xx", alb.http_code_target(elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=FIVE_MINUTES),
                    10, "Streaming service 5xx")
        unhealthy = target_group_metric(load_balancer.load_balancer_full_name, target_group_full_name,
                                        "UnHealthyHostCount")
        self._alarm("UnhealthyTasks", unhealthy, 1,
                    "A streaming task fails /ready outside a deploy", evaluation_periods=3)
        self._alarm("VoiceToVoiceP95",
                    metrics.metric("VoiceToVoiceMs", cloudwatch.Stats.p(95)).with_(period=FIVE_MINUTES),
                    voice_to_voice_p95_ms, "Callers wait too long for the agent's reply", evaluation_periods=3)
        self._alarm("VendorErrors", metrics.total_vendor_errors(FIVE_MINUTES), 10,
                    "STT/TTS/LLM vendor errors (calls fall back to offline engines)")
        for vendor in ("deepgram", "elevenlabs"):  # concurrency budgets (OpenAI's is per minute, not leased)
            self._alarm(f"VendorBudgetNearlyFull{vendor.capitalize()}",
                        metrics.vendor_lease_use_percent(vendor, "platform"), vendor_budget_alarm_percent,
                        f"The platform's {vendor} account is near its concurrency budget: new calls soon get the "
                        "tenants' overflow policy (raise the vendor plan and CAPACITY__ budget)",
                        evaluation_periods=3)
        self._alarm("AuroraCpu", database.metric_cpu_utilization(period=FIVE_MINUTES), 80, "Aurora CPU high",
                    evaluation_periods=3)
        self._alarm("ValkeyCpu", redis_metric(cache_primary_node_id, "EngineCPUUtilization").with_(period=FIVE_MINUTES),
                    80, "Valkey engine CPU high", evaluation_periods=3)
        self._alarm("ValkeyMemory",
                    redis_metric(cache_primary_node_id, "DatabaseMemoryUsagePercentage").with_(period=FIVE_MINUTES),
                    85, "Valkey memory nearly full (evictions drop call state)", evaluation_periods=3)

    def _alarm(
        self,
        alarm_id: str,
        metric: cloudwatch.IMetric,
        threshold: float,
        description: str,
        evaluation_periods: int = 1,
    ) -> None:
        alarm = cloudwatch.Alarm(
            self,
            alarm_id,
            metric=metric,
            threshold=threshold,
            evaluation_periods=evaluation_periods,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        alarm.add_alarm_action(self._action)
        alarm.add_ok_action(self._action)
        self.alarms.append(alarm)
