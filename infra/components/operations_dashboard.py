"""One CloudWatch dashboard: calls and latency first, then the Lambdas, the ALB, Aurora and Valkey."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_rds as rds
from constructs import Construct

from infra.components.aws_metrics import redis_metric, target_group_metric
from infra.components.voice_agent_metrics import LATENCY_METRICS, VENDORS, VoiceAgentMetrics

Stats = cloudwatch.Stats
WIDTH = 8  # three graphs per 24-column row


def _graph(title: str, metrics: Sequence[cloudwatch.IMetric], **kwargs: object) -> cloudwatch.GraphWidget:
    return cloudwatch.GraphWidget(title=title, left=list(metrics), width=WIDTH, height=6, **kwargs)  # type: ignore[arg-type]


class OperationsDashboard(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        metrics: VoiceAgentMetrics,
        functions: Sequence[lambda_.IFunction],
        load_balancer: elbv2.ApplicationLoadBalancer,
        target_group_full_name: str,
        service: ecs.FargateService,
        database: rds.DatabaseCluster,
        cache_primary_node_id: str,
    ) -> None:
        super().__init__(scope, construct_id)
        m = metrics
        alb = load_balancer.metrics

        def tg(name: str) -> cloudwatch.Metric:
            return target_group_metric(load_balancer.load_balancer_full_name, target_group_full_name, name)

        calls = [
            _graph("Active calls", [m.metric("ActiveCalls", Stats.AVERAGE, "per task (avg)"),
                                    m.metric("ActiveCalls", Stats.MAXIMUM, "busiest task")]),
            # Each process's worst lateness per interval: audio waits that long behind other work.
            _graph("Event loop lag (ms)", [m.metric("EventLoopLagMs", Stats.p(50), "typical process"),
                                           m.metric("EventLoopLagMs", Stats.MAXIMUM, "worst process")]),
            _graph("Calls started / ended", [m.metric("CallsStarted", Stats.SUM), m.metric("CallsEnded", Stats.SUM)]),
            _graph("Voice-to-voice latency (ms)", [m.metric("VoiceToVoiceMs", Stats.p(50)),
                                                   m.metric("VoiceToVoiceMs", Stats.p(95))]),
        ]
        pipeline = [
            _graph("STT / LLM / TTS latency p50 (ms)", [m.metric(n, Stats.p(50)) for n in LATENCY_METRICS[1:]]),
            _graph("STT / LLM / TTS latency p95 (ms)", [m.metric(n, Stats.p(95)) for n in LATENCY_METRICS[1:]]),
            _graph("Barge-ins, offline fallbacks, vendor errors",
                   [m.metric("BargeIns", Stats.SUM), m.metric("OfflineFallbacks", Stats.SUM),
                    *[m.vendor_errors(v) for v in VENDORS]]),
            _graph("Turn-taking: false interruptions resumed, preemptive hit rate, drafts discarded",
                   [m.metric("FalseInterruptions", Stats.SUM),
                    m.metric("PreemptiveHit", Stats.AVERAGE, "preemptive hit rate (0-1)"),
                    m.metric("PreemptiveDraftsDiscarded", Stats.SUM, "drafts discarded (model runs unused)")]),
        ]
        lambdas = [
            _graph("Lambda errors and throttles",
                   [x for f in functions for x in (f.metric_errors(), f.metric_throttles())]),
            _graph("Lambda duration p95 (ms)", [f.metric_duration(statistic=Stats.p(95)) for f in functions]),
            _graph("Lambda invocations", [f.metric_invocations() for f in functions]),
        ]
        edge = [
            _graph("ALB 5xx", [alb.http_code_elb(elbv2.HttpCodeElb.ELB_5XX_COUNT),
                               alb.http_code_target(elbv2.HttpCodeTarget.TARGET_5XX_COUNT)]),
            _graph("ALB connections", [alb.active_connection_count(), alb.new_connection_count(),
                                       alb.rejected_connection_count()]),
            _graph("Streaming tasks", [tg("HealthyHostCount"), tg("UnHealthyHostCount"),
                                       service.metric_cpu_utilization(), service.metric_memory_utilization()]),
        ]
        data = [
            _graph("Aurora", [database.metric_cpu_utilization(), database.metric_database_connections(),
                              database.metric_serverless_database_capacity()]),
            _graph("Aurora latency", [database.metric("ReadLatency"), database.metric("WriteLatency")]),
            _graph("Valkey", [redis_metric(cache_primary_node_id, "EngineCPUUtilization"),
                              redis_metric(cache_primary_node_id, "DatabaseMemoryUsagePercentage"),
                              redis_metric(cache_primary_node_id, "CurrConnections")]),
        ]
        # Vendor capacity (issue 17): the platform accounts' budget use, and capacity refusals per tenant and
        # vendor (a dashboard may SEARCH across the tenant dimension, an alarm may not).
        capacity = [
            _graph("Platform vendor budget used (%)",
                   [m.vendor_lease_use_percent(v) for v in ("deepgram", "elevenlabs")]),
            _graph("Vendor slots in use (platform)", [
                cloudwatch.Metric(namespace=m.vendor_lease_use_percent("deepgram").namespace,
                                  metric_name="VendorLeasesInUse",
                                  dimensions_map={"service": "streaming", "environment": m.env_name,
                                                  "vendor": v, "account": "platform"},
                                  statistic=Stats.MAXIMUM, period=Duration.minutes(1), label=v)
                for v in ("deepgram", "elevenlabs")]),
            _graph("VendorCapacityExhausted by tenant and vendor", [cloudwatch.MathExpression(
                expression=("SEARCH('{VoiceAgent,environment,service,tenant,vendor} "
                            f"MetricName=\"VendorCapacityExhausted\" environment=\"{m.env_name}\"', 'Sum', 60)"),
                using_metrics={}, label="", period=Duration.minutes(1))]),
        ]
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"voice-agent-{m.env_name}",
            default_interval=Duration.hours(3),
            widgets=[calls, pipeline, capacity, lambdas, edge, data],
        )
