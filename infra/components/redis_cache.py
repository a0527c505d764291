"""ElastiCache for Valkey (Redis-compatible): TLS in transit, AUTH token from Secrets Manager, encrypted at rest.

aws-cdk-lib has only L1 constructs for ElastiCache, so this wraps CfnReplicationGroup. Services receive one
secret holding the whole `rediss://:token@host:port/0` URL, composed by CloudFormation from the token secret:
the token never appears in the template or in a plain environment variable.
"""

from __future__ import annotations

from aws_cdk import Fn, RemovalPolicy, SecretValue
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticache as elasticache
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.components.nag import acknowledge

REDIS_PORT = 6379


class RedisCache(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        node_type: str,
        replicas: int,
        retain_data: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        removal = RemovalPolicy.RETAIN if retain_data else RemovalPolicy.DESTROY
        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=vpc, description="Valkey cache", allow_all_outbound=False
        )
        self.auth_token = secretsmanager.Secret(
            self,
            "AuthToken",
            description="ElastiCache AUTH token",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64,
                exclude_punctuation=True,  # AUTH tokens allow only a few symbols; none needed at 64 chars
            ),
            removal_policy=removal,
        )
        subnet_group = elasticache.CfnSubnetGroup(
            self,
            "Subnets",
            description="Valkey in isolated subnets",
            subnet_ids=vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED).subnet_ids,
        )
        multi_az = replicas > 0
        self.replication_group = elasticache.CfnReplicationGroup(
            self,
            "ReplicationGroup",
            replication_group_description="Voice agent call state and caches",
            engine="valkey",
            engine_version="8.0",
            cache_node_type=node_type,
            num_cache_clusters=1 + replicas,
            automatic_failover_enabled=multi_az,
            multi_az_enabled=multi_az,
            cache_subnet_group_name=subnet_group.ref,
            security_group_ids=[self.security_group.security_group_id],
            port=REDIS_PORT,
            transit_encryption_enabled=True,
            at_rest_encryption_enabled=True,
            auth_token=self.auth_token.secret_value.unsafe_unwrap(),  # a {{resolve:secretsmanager}} reference
            snapshot_retention_limit=7 if retain_data else 0,
        )
        self.replication_group.apply_removal_policy(removal)
        self.host = self.replication_group.attr_primary_end_point_address
        # CloudWatch publishes ElastiCache metrics per node; the first node is "<group id>-001".
        self.primary_node_id = Fn.join("-", [self.replication_group.ref, "001"])
        self.url_secret = secretsmanager.Secret(
            self,
            "UrlSecret",
            description="REDIS_URL for the services (rediss:// with the AUTH token)",
            secret_string_value=SecretValue.unsafe_plain_text(
                Fn.join(
                    "",
                    [
                        "rediss://:",
                        self.auth_token.secret_value.unsafe_unwrap(),  # a dynamic reference, not the value
                        "@",
                        self.host,
                        ":",
                        self.replication_group.attr_primary_end_point_port,
                        "/0",
                    ],
                )
            ),
            removal_policy=removal,
        )
        for secret in (self.auth_token, self.url_secret):
            acknowledge(
                secret,
                "AwsSolutions-SMG4",
                "The ElastiCache AUTH token has no managed rotation; rotate it with ModifyReplicationGroup "
                "(AuthTokenUpdateStrategy ROTATE), then update both secrets and redeploy the services.",
            )
        acknowledge(
            self.replication_group,
            "AwsSolutions-AEC5",
            "The default port is kept: the cache is reachable only from the app security groups, in isolated "
            "subnets.",
        )
        if not multi_az:
            acknowledge(
                self.replication_group,
                "AwsSolutions-AEC4",
                "Single node in dev to keep idle cost low; losing Redis degrades calls but never crashes one.",
            )

    def allow_from(self, peer: ec2.ISecurityGroup, description: str) -> None:
        self.security_group.add_ingress_rule(peer, ec2.Port.tcp(REDIS_PORT), description)
