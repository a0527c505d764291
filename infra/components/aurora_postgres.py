"""Aurora Serverless v2 PostgreSQL: encrypted, IAM auth on, admin and app-user secrets with rotation."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.components.nag import acknowledge

DATABASE_NAME = "voiceagent"
ADMIN_USER = "voiceagent_admin"
APP_USER = "voice_app"  # non-owner login role the services use; created by shared/tenancy migrations
ENGINE_VERSION = rds.AuroraPostgresEngineVersion.VER_17_5


class AuroraPostgres(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        min_acu: float,
        max_acu: float,
        readers: int,
        auto_pause_minutes: int,
        backup_retention_days: int,
        deletion_protection: bool,
        retain_data: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=vpc, description="Aurora PostgreSQL", allow_all_outbound=False
        )
        self.cluster = rds.DatabaseCluster(
            self,
            "Cluster",
            engine=rds.DatabaseClusterEngine.aurora_postgres(version=ENGINE_VERSION),
            credentials=rds.Credentials.from_generated_secret(ADMIN_USER),
            default_database_name=DATABASE_NAME,
            writer=rds.ClusterInstance.serverless_v2("Writer", publicly_accessible=False),
            readers=[
                rds.ClusterInstance.serverless_v2(f"Reader{i + 1}", scale_with_writer=True)
                for i in range(readers)
            ],
            serverless_v2_min_capacity=min_acu,
            serverless_v2_max_capacity=max_acu,
            serverless_v2_auto_pause_duration=(
                Duration.minutes(auto_pause_minutes) if auto_pause_minutes else None
            ),
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            security_groups=[self.security_group],
            storage_encrypted=True,
            iam_authentication=True,
            deletion_protection=deletion_protection,
            backup=rds.BackupProps(retention=Duration.days(backup_retention_days)),
            cloudwatch_logs_exports=["postgresql"],
            removal_policy=RemovalPolicy.SNAPSHOT if retain_data else RemovalPolicy.DESTROY,
        )
        # The admin secret is read only by the migration step, which fetches it fresh: single-user is enough.
        self.cluster.add_rotation_single_user(automatically_after=Duration.days(30))

        self.app_secret = rds.DatabaseSecret(
            self, "AppUserSecret", username=APP_USER, dbname=DATABASE_NAME, master_secret=self.cluster.secret
        ).attach(self.cluster)  # attach adds host/port/engine to the secret's JSON
        # Alternating users: the previous credentials stay valid for a whole period after a rotation, so a
        # Fargate task that read the password at start keeps connecting until its next replacement.
        self.cluster.add_rotation_multi_user(
            "AppUserRotation", secret=self.app_secret, automatically_after=Duration.days(30)
        )
        self.admin_secret: secretsmanager.ISecret = self.cluster.secret  # type: ignore[assignment]

        acknowledge(
            self.cluster,
            "AwsSolutions-RDS11",
            "The default PostgreSQL port is kept: the cluster sits in isolated subnets reachable only from the "
            "app security groups, and a non-standard port adds no real protection.",
        )
        if not deletion_protection:
            acknowledge(
                self.cluster,
                "AwsSolutions-RDS10",
                "Deletion protection is on in staging and prod; dev is meant to be torn down with `cdk destroy`.",
            )

    def allow_from(self, peer: ec2.IConnectable, description: str) -> None:
        self.cluster.connections.allow_default_port_from(peer, description)
