"""The internet-facing ALB that Twilio's Media Streams WebSockets arrive on.

It lives with the network, not with the service: its DNS name is the stream URL the webhook hands to
Twilio and the name your DNS record points at, so it must outlive service redeploys, and both the api and
the streaming stacks read it without depending on each other.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.components.nag import acknowledge

STREAM_PATH = "/twilio-stream"  # the streaming service's Media Streams route (streaming_service/app.py)


class PublicLoadBalancer(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        idle_timeout_s: int,
        certificate_arn: str | None,
        domain_name: str | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=vpc, description="Internet-facing ALB for Twilio media streams"
        )
        acknowledge(
            self.security_group,
            "AwsSolutions-EC23",
            "Twilio connects from a large, changing address range; the listener is public by design and every "
            "WebSocket upgrade is verified by X-Twilio-Signature and a signed stream token.",
        )
        self.load_balancer = elbv2.ApplicationLoadBalancer(
            self,
            "Alb",
            vpc=vpc,
            internet_facing=True,
            security_group=self.security_group,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            # A call is one WebSocket that can be silent for long stretches; the ALB closes idle ones.
            idle_timeout=Duration.seconds(idle_timeout_s),
            drop_invalid_header_fields=True,
        )
        self.load_balancer.log_access_logs(self._access_log_bucket(), prefix="alb")

        if certificate_arn:
            certificate = acm.Certificate.from_certificate_arn(self, "Certificate", certificate_arn)
            self.listener = self.load_balancer.add_listener(
                "Https",
                port=443,
                protocol=elbv2.ApplicationProtocol.HTTPS,
                certificates=[elbv2.ListenerCertificate.from_certificate_manager(certificate)],
                ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
                default_action=_no_route_response(),
            )
            self.load_balancer.add_redirect(source_port=80, target_port=443)
            self.public_url = f"https://{domain_name}"
            self.stream_url = f"wss://{domain_name}{STREAM_PATH}"
        else:
            # dev only (config.validate enforces it). Twilio requires wss:// for media streams, so a dev stack
            # without a certificate serves the local simulator and health checks, not real phone calls.
            self.listener = self.load_balancer.add_listener(
                "Http", port=80, protocol=elbv2.ApplicationProtocol.HTTP, default_action=_no_route_response()
            )
            self.public_url = f"http://{self.load_balancer.load_balancer_dns_name}"
            self.stream_url = f"ws://{self.load_balancer.load_balancer_dns_name}{STREAM_PATH}"

    def _access_log_bucket(self) -> s3.Bucket:
        bucket = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,  # ALB log delivery supports SSE-S3 only
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(90))],
            # Kept on stack deletion even in dev: emptying it would need an extra custom-resource Lambda,
            # and the lifecycle rule empties it within 90 days anyway.
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(
            bucket,
            "AwsSolutions-S1",
            "This bucket holds ALB access logs; logging access to the log bucket would recurse for no benefit.",
        )
        return bucket


def _no_route_response() -> elbv2.ListenerAction:
    # The streaming stack adds the forwarding rule. Unknown paths (scanners, typos) are the client's fault:
    # 404, so they never count as 5xx and never trip the ALB 5xx alarm.
    return elbv2.ListenerAction.fixed_response(404, content_type="text/plain", message_body="not found")
