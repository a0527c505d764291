"""HTTP API in front of the two Lambdas: Twilio's webhooks and the MCP tool proxy.

An HTTP API (not REST) because its `$default` stage has no path prefix: the URL Twilio signs is exactly the
URL the handler sees, which X-Twilio-Signature verification depends on. Payload format 1.0 gives the handlers
REST-style events (Powertools' APIGatewayRestResolver and the local adapter read those).
"""

from __future__ import annotations

import jsii
from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw_v1
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.components.log_retention import retention_days
from infra.components.nag import acknowledge

WEBHOOK_ROUTES = ("/voice", "/voice/after-stream", "/status")
TOOL_PROXY_ROUTE = "/mcp"


@jsii.implements(apigw.IAccessLogSettings)
class _AccessLogSettings:
    """aws-cdk-lib exposes only the interface; jsii needs a class implementing it."""

    def __init__(self, destination: apigw.IAccessLogDestination, log_format: apigw_v1.AccessLogFormat) -> None:
        self._destination = destination
        self._format = log_format

    @property
    def destination(self) -> apigw.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw_v1.AccessLogFormat:
        return self._format


class WebhookApi(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        throttle_rate_per_s: int,
        throttle_burst: int,
        log_retention_days: int,
        domain_name: str | None = None,
        certificate_arn: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.api = apigw.HttpApi(self, "HttpApi", description="Twilio webhooks and MCP tool proxy",
                                 create_default_stage=False)
        access_logs = logs.LogGroup(
            self, "AccessLogs", retention=retention_days(log_retention_days), removal_policy=RemovalPolicy.DESTROY
        )
        self.stage = apigw.HttpStage(
            self,
            "DefaultStage",
            http_api=self.api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigw.ThrottleSettings(rate_limit=throttle_rate_per_s, burst_limit=throttle_burst),
            access_log_settings=_AccessLogSettings(
                apigw.LogGroupLogDestination(access_logs),
                apigw_v1.AccessLogFormat.json_with_standard_fields(
                    caller=False, http_method=True, ip=True, protocol=True, request_time=True,
                    resource_path=True, response_length=True, status=True, user=False,
                ),
            ),
        )
        # HTTP APIs end a URL at the host ("https://id.execute-api.region.amazonaws.com"), no trailing slash.
        # With a custom domain, that is the URL Twilio is given (and signs): a number's webhook then survives
        # the API being replaced.
        self.url = self.api.api_endpoint
        self.domain_target = ""
        if domain_name and certificate_arn:
            domain = apigw.DomainName(
                self, "Domain", domain_name=domain_name,
                certificate=acm.Certificate.from_certificate_arn(self, "Certificate", certificate_arn))
            apigw.ApiMapping(self, "Mapping", api=self.api, domain_name=domain, stage=self.stage)
            self.url = f"https://{domain_name}"
            self.domain_target = domain.regional_domain_name  # point your DNS record (CNAME/alias) here

        acknowledge(
            self.api,
            "AwsSolutions-APIG4",
            "Twilio cannot present an API Gateway authorizer token: /voice, /voice/after-stream and /status "
            "verify X-Twilio-Signature in the handler, and /mcp verifies the caller's signed token.",
        )

    def add_functions(self, *, voice_webhook: lambda_.IFunction, tool_proxy: lambda_.IFunction) -> None:
        """Routes to the two Lambdas (created after the API, since the webhook needs the API's URL)."""
        webhook_integration = integrations.HttpLambdaIntegration(
            "VoiceWebhook", voice_webhook, payload_format_version=apigw.PayloadFormatVersion.VERSION_1_0
        )
        tool_integration = integrations.HttpLambdaIntegration(
            "ToolProxy", tool_proxy, payload_format_version=apigw.PayloadFormatVersion.VERSION_1_0
        )
        for path in WEBHOOK_ROUTES:
            self.api.add_routes(path=path, methods=[apigw.HttpMethod.POST], integration=webhook_integration)
        self.api.add_routes(path=TOOL_PROXY_ROUTE, methods=[apigw.HttpMethod.POST], integration=tool_integration)
