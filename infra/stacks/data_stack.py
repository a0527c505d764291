"""Data lifetime: Aurora PostgreSQL, Valkey, the app secret and the migration step (kept across app deploys)."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from infra.components.app_secret import AppSecret
from infra.components.aurora_postgres import AuroraPostgres
from infra.components.database_migration import DatabaseMigration
from infra.components.python_function import LambdaPackage
from infra.components.redis_cache import RedisCache
from infra.config import EnvironmentConfig
from infra.lambda_assets import LambdaAssets


class DataStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        vpc: ec2.IVpc,
        lambda_assets: LambdaAssets,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.database = AuroraPostgres(
            self,
            "Database",
            vpc=vpc,
            min_acu=config.aurora_min_acu,
            max_acu=config.aurora_max_acu,
            readers=config.aurora_readers,
            auto_pause_minutes=config.aurora_auto_pause_minutes,
            backup_retention_days=config.backup_retention_days,
            deletion_protection=config.deletion_protection,
            retain_data=config.retain_data,
        )
        self.cache = RedisCache(
            self,
            "Cache",
            vpc=vpc,
            node_type=config.redis_node_type,
            replicas=config.redis_replicas,
            retain_data=config.retain_data,
        )
        self.app_secret = AppSecret(self, "AppSecret", env_name=config.env_name, retain=config.retain_data).secret

        # Clients of the data tier share one security group per stack that uses them; the rules live here
        # so the data stack never depends on the app stacks.
        self.client_security_group = ec2.SecurityGroup(
            self, "DataClients", vpc=vpc, description="Lambdas and tasks that reach Aurora and Valkey"
        )
        self.database.allow_from(self.client_security_group, "data clients")
        self.cache.allow_from(self.client_security_group, "data clients")

        migration = DatabaseMigration(
            self,
            "Migrations",
            package=LambdaPackage(self, "LambdaPackage", assets=lambda_assets),
            migrations_dir=lambda_assets.migrations_dir,
            env_name=config.env_name,
            vpc=vpc,
            security_group=self.client_security_group,
            admin_secret=self.database.admin_secret,
            app_user_secret=self.database.app_secret,
            log_retention_days=config.log_retention_days,
        )
        migration.resource.node.add_dependency(self.database.cluster)
