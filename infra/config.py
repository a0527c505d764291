"""Per-environment configuration: one typed object, built once from `cdk.json` context.

`cdk synth -c env=prod` picks `context.environments.prod`; constructs receive the fields they need as
constructor arguments and never read context themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

ENVIRONMENT_NAMES = ("dev", "staging", "prod")
MIN_ALB_IDLE_TIMEOUT_S = 3600  # a phone call can last an hour; the ALB must not cut the WebSocket
MAX_FARGATE_STOP_TIMEOUT_S = 120


class ConfigError(ValueError):
    """The cdk.json context for an environment is missing or inconsistent."""


@dataclass(frozen=True)
class EnvironmentConfig:
    env_name: str
    region: str  # pinned per environment: ALB access logging and the region's ELB account need it at synth
    # Network
    nat_gateways: int
    # Data
    aurora_min_acu: float
    aurora_max_acu: float
    aurora_readers: int
    aurora_auto_pause_minutes: int  # 0 = never pause (only valid when aurora_min_acu is 0)
    backup_retention_days: int
    deletion_protection: bool
    retain_data: bool  # snapshot the database and keep secrets/logs when the stack is deleted
    redis_node_type: str
    redis_replicas: int  # replicas besides the primary; >0 enables Multi-AZ automatic failover
    # API
    api_throttle_rate_per_s: int
    api_throttle_burst: int
    webhook_reserved_concurrency: int | None  # None: share the account pool (new accounts have 10)
    tool_proxy_reserved_concurrency: int | None
    lambda_memory_mb: int
    # Streaming
    task_cpu: int
    task_memory_mib: int
    min_tasks: int  # warm floor: a Fargate task needs 1-2 minutes to start
    max_tasks: int
    target_active_calls_per_task: int
    scale_in_cooldown_s: int
    alb_idle_timeout_s: int
    deregistration_delay_s: int
    container_stop_timeout_s: int
    domain_name: str | None  # the streaming endpoint's DNS name (a record you point at the ALB)
    certificate_arn: str | None  # ACM certificate for domain_name; required outside dev
    max_calls_per_task: int  # admission cap per task: above it a task refuses new streams and /ready says full
    # Optional custom domain of the HTTP API (Twilio's webhook URL), with a regional ACM certificate for it.
    api_domain_name: str | None
    api_certificate_arn: str | None
    # Observability
    log_retention_days: int
    alarm_email: str | None
    voice_to_voice_p95_alarm_ms: int

    @property
    def is_prod(self) -> bool:
        return self.env_name == "prod"

    @property
    def uses_https(self) -> bool:
        return self.certificate_arn is not None

    @property
    def stack_prefix(self) -> str:
        return f"VoiceAgent-{self.env_name}"

    def validate(self) -> None:
        if self.env_name not in ENVIRONMENT_NAMES:
            raise ConfigError(f"unknown environment {self.env_name!r}; expected one of {ENVIRONMENT_NAMES}")
        if self.env_name != "dev" and not self.certificate_arn:
            raise ConfigError(f"{self.env_name}: certificate_arn is required (plain HTTP is allowed only in dev)")
        if self.certificate_arn and not self.domain_name:
            raise ConfigError(f"{self.env_name}: certificate_arn needs domain_name (the name it covers)")
        if self.alb_idle_timeout_s < MIN_ALB_IDLE_TIMEOUT_S or self.alb_idle_timeout_s > 4000:
            raise ConfigError(f"alb_idle_timeout_s must be in [{MIN_ALB_IDLE_TIMEOUT_S}, 4000]")
        if not 0 <= self.deregistration_delay_s <= 3600:
            raise ConfigError("deregistration_delay_s must be in [0, 3600]")
        if not 2 <= self.container_stop_timeout_s <= MAX_FARGATE_STOP_TIMEOUT_S:
            raise ConfigError(f"container_stop_timeout_s must be in [2, {MAX_FARGATE_STOP_TIMEOUT_S}]")
        if not 1 <= self.min_tasks <= self.max_tasks:
            raise ConfigError("need 1 <= min_tasks <= max_tasks")
        if bool(self.api_domain_name) != bool(self.api_certificate_arn):
            raise ConfigError(f"{self.env_name}: api_domain_name and api_certificate_arn go together")
        if self.max_calls_per_task < self.target_active_calls_per_task:
            raise ConfigError("max_calls_per_task must be >= target_active_calls_per_task (autoscaling aims below it)")
        if self.aurora_auto_pause_minutes and self.aurora_min_acu != 0:
            raise ConfigError("aurora_auto_pause_minutes needs aurora_min_acu = 0")
        if self.is_prod and not (self.deletion_protection and self.retain_data):
            raise ConfigError("prod keeps deletion protection and retains data")


# Values that hold account-specific data (an ACM ARN carries the account id) or personal data stay out of
# cdk.json and arrive on the command line: `cdk deploy -c env=prod -c certificate_arn=arn:aws:acm:...`.
DEPLOY_TIME_KEYS = ("certificate_arn", "domain_name", "alarm_email", "api_domain_name", "api_certificate_arn")
OPTIONAL_KEYS = (*DEPLOY_TIME_KEYS, "webhook_reserved_concurrency", "tool_proxy_reserved_concurrency")


def build_config(
    env_name: str, environments: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
) -> EnvironmentConfig:
    """Build the config for `env_name` from the `environments` context map (keys in snake_case).

    `overrides` holds top-level context values for DEPLOY_TIME_KEYS; a non-empty one wins over cdk.json.
    """
    raw = environments.get(env_name)
    if not isinstance(raw, Mapping):
        raise ConfigError(f"no context.environments.{env_name} in cdk.json")
    raw = dict(raw)
    for key in DEPLOY_TIME_KEYS:
        if overrides and overrides.get(key):
            raw[key] = overrides[key]
    known = {f.name for f in fields(EnvironmentConfig)} - {"env_name"}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"{env_name}: unknown keys {sorted(unknown)}")
    for key in OPTIONAL_KEYS:
        raw.setdefault(key, None)  # JSON null does not survive the trip through CDK context
    missing = known - set(raw)
    if missing:
        raise ConfigError(f"{env_name}: missing keys {sorted(missing)}")
    values: dict[str, Any] = {k: (v if v != "" else None) for k, v in raw.items()}  # "" means "not set"
    config = EnvironmentConfig(env_name=env_name, **values)
    config.validate()
    return config
