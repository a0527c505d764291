from __future__ import annotations

from aws_cdk.assertions import Match

from tests.infra.conftest import SynthesizedEnvironment


def test_aurora_postgres_is_encrypted_with_iam_auth(every_env: SynthesizedEnvironment) -> None:
    every_env.template("data").has_resource_properties(
        "AWS::RDS::DBCluster",
        {
            "Engine": "aurora-postgresql",
            "StorageEncrypted": True,
            "EnableIAMDatabaseAuthentication": True,
            "ServerlessV2ScalingConfiguration": Match.any_value(),
        },
    )


def test_prod_protects_and_snapshots_data(dev: SynthesizedEnvironment, prod: SynthesizedEnvironment) -> None:
    (prod_cluster,) = prod.template("data").find_resources("AWS::RDS::DBCluster").values()
    (dev_cluster,) = dev.template("data").find_resources("AWS::RDS::DBCluster").values()
    assert prod_cluster["Properties"]["DeletionProtection"] is True
    assert prod_cluster["DeletionPolicy"] == "Snapshot"
    assert dev_cluster["Properties"]["DeletionProtection"] is False
    assert dev_cluster["DeletionPolicy"] == "Delete"
    assert prod_cluster["Properties"]["BackupRetentionPeriod"] > dev_cluster["Properties"]["BackupRetentionPeriod"]
    prod.template("data").resource_count_is("AWS::RDS::DBInstance", 2)  # writer + reader
    dev.template("data").resource_count_is("AWS::RDS::DBInstance", 1)


def test_database_secrets_rotate(every_env: SynthesizedEnvironment) -> None:
    every_env.template("data").resource_count_is("AWS::SecretsManager::RotationSchedule", 2)


def test_valkey_has_tls_auth_and_encryption_at_rest(every_env: SynthesizedEnvironment) -> None:
    (group,) = every_env.template("data").find_resources("AWS::ElastiCache::ReplicationGroup").values()
    props = group["Properties"]
    assert props["TransitEncryptionEnabled"] is True
    assert props["AtRestEncryptionEnabled"] is True
    assert "{{resolve:secretsmanager:" in str(props["AuthToken"])  # a reference, never the token


def test_valkey_is_multi_az_in_prod_only(dev: SynthesizedEnvironment, prod: SynthesizedEnvironment) -> None:
    (prod_group,) = prod.template("data").find_resources("AWS::ElastiCache::ReplicationGroup").values()
    (dev_group,) = dev.template("data").find_resources("AWS::ElastiCache::ReplicationGroup").values()
    assert prod_group["Properties"]["MultiAZEnabled"] is True
    assert dev_group["Properties"]["MultiAZEnabled"] is False


def test_migrations_run_as_a_custom_resource_after_the_cluster(dev: SynthesizedEnvironment) -> None:
    template = dev.template("data")
    (migration,) = template.find_resources("Custom::DatabaseMigrations").values()
    assert len(migration["Properties"]["MigrationsHash"]) == 64
    cluster_ids = set(template.find_resources("AWS::RDS::DBCluster")) | set(
        template.find_resources("AWS::RDS::DBInstance")
    )
    assert cluster_ids <= set(migration["DependsOn"])
    template.has_resource_properties("AWS::Lambda::Function", {"Handler": "db_migration.on_event"})


def test_app_secret_has_every_field_and_a_generated_stream_key(dev: SynthesizedEnvironment) -> None:
    dev.template("data").has_resource_properties(
        "AWS::SecretsManager::Secret",
        {
            "Name": "voice-agent/dev/app",
            "GenerateSecretString": Match.object_like(
                {
                    "GenerateStringKey": "STREAM_TOKEN_SECRET",
                    "SecretStringTemplate": Match.string_like_regexp("TWILIO_AUTH_TOKEN.*OPENAI_API_KEY"),
                }
            ),
        },
    )
