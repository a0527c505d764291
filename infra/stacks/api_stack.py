"""API lifetime: the HTTP API and the two Lambdas (redeployed with every code change)."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.components.aurora_postgres import DATABASE_NAME
from infra.components.python_function import LambdaPackage, PythonFunction
from infra.components.webhook_api import TOOL_PROXY_ROUTE, WebhookApi
from infra.config import EnvironmentConfig
from infra.lambda_assets import LambdaAssets

WEBHOOK_MODULE = "functions.voice_webhook.handler"
TOOL_PROXY_MODULE = "functions.tool_proxy.handler"


class ApiStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        vpc: ec2.IVpc,
        lambda_assets: LambdaAssets,
        data_client_security_group: ec2.ISecurityGroup,
        app_secret: secretsmanager.ISecret,
        db_secret: secretsmanager.ISecret,
        redis_url_secret: secretsmanager.ISecret,
        stream_url: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        package = LambdaPackage(self, "LambdaPackage", assets=lambda_assets)
        # The HTTP API comes first: the webhook checks Twilio's signatures against the URL Twilio is given,
        # which is this API's URL (or its custom domain), never the streaming endpoint's.
        self.api = WebhookApi(
            self,
            "Api",
            throttle_rate_per_s=config.api_throttle_rate_per_s,
            throttle_burst=config.api_throttle_burst,
            log_retention_days=config.log_retention_days,
            domain_name=config.api_domain_name,
            certificate_arn=config.api_certificate_arn,
        )
        # Secrets travel by reference: the functions get ARNs and read them with Powertools Parameters.
        secret_refs = {
            "APP_SECRET_ARN": app_secret.secret_arn,
            "DB_SECRET_ARN": db_secret.secret_arn,
            "REDIS_URL_SECRET_ARN": redis_url_secret.secret_arn,
            "DB_NAME": DATABASE_NAME,
        }
        common: dict[str, Any] = {
            "package": package,
            "env_name": config.env_name,
            "vpc": vpc,
            "security_groups": [data_client_security_group],
            "memory_mb": config.lambda_memory_mb,
            "log_retention_days": config.log_retention_days,
        }
        self.voice_webhook = PythonFunction(
            self,
            "VoiceWebhook",
            handler=f"{WEBHOOK_MODULE}.lambda_handler",
            service_name="voice-webhook",
            # PUBLIC_URL: the base URL Twilio calls and signs; STREAM_PUBLIC_URL: the <Stream> URL.
            environment={**secret_refs, "PUBLIC_URL": self.api.url, "STREAM_PUBLIC_URL": stream_url},
            timeout=Duration.seconds(10),  # Twilio gives a webhook 15 s before it plays an error
            reserved_concurrency=config.webhook_reserved_concurrency,
            **common,
        ).function
        self.tool_proxy = PythonFunction(
            self,
            "ToolProxy",
            handler=f"{TOOL_PROXY_MODULE}.lambda_handler",
            service_name="tool-proxy",
            environment=secret_refs,
            timeout=Duration.seconds(15),
            reserved_concurrency=config.tool_proxy_reserved_concurrency,
            **common,
        ).function
        for function in (self.voice_webhook, self.tool_proxy):
            for secret in (app_secret, db_secret, redis_url_secret):
                secret.grant_read(function)

        self.api.add_functions(voice_webhook=self.voice_webhook, tool_proxy=self.tool_proxy)
        self.mcp_url = f"{self.api.url}{TOOL_PROXY_ROUTE}"
        CfnOutput(self, "VoiceWebhookUrl", value=f"{self.api.url}/voice",
                  description="Point your Twilio number's 'A call comes in' webhook (HTTP POST) here")
        CfnOutput(self, "TwilioStatusCallbackUrl", value=f"{self.api.url}/status",
                  description="Optional: the number's 'Call status changes' callback (HTTP POST)")
        CfnOutput(self, "McpUrl", value=self.mcp_url)
        if self.api.domain_target:
            CfnOutput(self, "ApiDomainTarget", value=self.api.domain_target,
                      description="Point the api_domain_name DNS record (CNAME/alias) here")
