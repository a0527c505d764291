"""The service's own EMF metrics (namespace VoiceAgent, dimensions service=streaming and environment)."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch

from infra.components.streaming_service import METRICS_NAMESPACE, STREAMING_SERVICE_DIMENSION

VENDORS = ("deepgram", "elevenlabs", "openai")
ONE_MINUTE = Duration.minutes(1)
LATENCY_METRICS = ("VoiceToVoiceMs", "SttLatencyMs", "LlmTtftMs", "TtsTtfbMs")


class VoiceAgentMetrics:
    def __init__(self, env_name: str) -> None:
        self.env_name = env_name
        self._dimensions = {"service": STREAMING_SERVICE_DIMENSION, "environment": env_name}

    def metric(self, name: str, statistic: str, label: str | None = None) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name=name,
            dimensions_map=self._dimensions,
            statistic=statistic,
            period=Duration.minutes(1),
            label=label or f"{name} {statistic}",
        )

    def vendor_errors(self, vendor: str, period: Duration = ONE_MINUTE) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name="VendorErrors",
            dimensions_map={**self._dimensions, "vendor": vendor},
            statistic=cloudwatch.Stats.SUM,
            period=period,
            label=vendor,
        )

    def total_vendor_errors(self, period: Duration) -> cloudwatch.MathExpression:
        # Alarms cannot use SEARCH, so the known vendors are summed explicitly; FILL keeps gaps at zero.
        names = {f"v{i}": self.vendor_errors(v, period) for i, v in enumerate(VENDORS)}
        return cloudwatch.MathExpression(
            expression=" + ".join(f"FILL({n}, 0)" for n in names),
            using_metrics=names,
            period=period,
            label="VendorErrors (all vendors)",
        )

    def vendor_lease_use_percent(self, vendor: str, account: str = "platform",
                                 period: Duration = ONE_MINUTE) -> cloudwatch.Metric:
        """Share of a vendor account's budget held as Redis leases across the fleet (each task reports it
        with its heartbeat; the maximum is the fleet's view). `account`: "platform" or a tenant id."""
        return cloudwatch.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name="VendorLeaseUsePercent",
            dimensions_map={**self._dimensions, "vendor": vendor, "account": account},
            statistic=cloudwatch.Stats.MAXIMUM,
            period=period,
            label=f"{vendor} {account} budget used %",
        )
