"""In AWS the Lambdas read database and Redis credentials from Secrets Manager by ARN (moto stands in
for Secrets Manager over its real API); locally the settings pass through untouched."""

from __future__ import annotations

import json

import moto
import pytest

from shared.app_secrets import SecretsUnavailable, with_data_secrets
from shared.settings import Settings


def test_local_settings_pass_through_unchanged():
    settings = Settings(_env_file=None, aurora_dsn="postgresql://x@h/db")  # type: ignore[call-arg]
    assert with_data_secrets(settings) is settings


def test_secret_arns_become_a_dsn_and_a_redis_url(monkeypatch):
    import boto3

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with moto.mock_aws():
        client = boto3.client("secretsmanager")
        db_arn = client.create_secret(Name="db", SecretString=json.dumps(
            {"host": "db.internal", "port": 5432, "username": "voice_app", "password": "p@ss word",
             "dbname": "voiceagent"}))["ARN"]
        redis_arn = client.create_secret(Name="redis", SecretString="rediss://:tok@cache.internal:6379/0")["ARN"]
        settings = with_data_secrets(Settings(_env_file=None, db_secret_arn=db_arn,  # type: ignore[call-arg]
                                              redis_url_secret_arn=redis_arn))
        assert settings.database_dsn() == ("postgresql://voice_app:p%40ss%20word@db.internal:5432/voiceagent"
                                           "?sslmode=require")
        assert settings.redis_url == "rediss://:tok@cache.internal:6379/0"
        with pytest.raises(SecretsUnavailable):
            with_data_secrets(Settings(_env_file=None, db_secret_arn=db_arn + "-missing"))  # type: ignore[call-arg]
