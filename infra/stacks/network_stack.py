"""Network lifetime: VPC, endpoints and the public entry point (changes rarely, outlives every deploy)."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from constructs import Construct

from infra.components.public_load_balancer import PublicLoadBalancer
from infra.components.vpc import VoiceAgentVpc
from infra.config import EnvironmentConfig


class NetworkStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.vpc = VoiceAgentVpc(
            self, "Network", nat_gateways=config.nat_gateways, log_retention_days=config.log_retention_days
        ).vpc
        self.ingress = PublicLoadBalancer(
            self,
            "Ingress",
            vpc=self.vpc,
            idle_timeout_s=config.alb_idle_timeout_s,
            certificate_arn=config.certificate_arn,
            domain_name=config.domain_name,
        )
