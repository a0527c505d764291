"""The Lambdas' secrets: Secrets Manager (through Powertools Parameters, cached) in AWS, env locally.

One JSON secret (`APP_SECRET_ARN`) holds every key, named like the environment variables they replace
(either case): `TWILIO_AUTH_TOKEN`, `STREAM_TOKEN_SECRET`, `TOOL_PROXY_SECRET`, and `TOOL_SECRETS`, a
map `{tenant_id: {NAME: value}}` for the `{{secret:NAME}}` references in tenant toolboxes.
Both Lambdas use this module.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from shared.settings import Settings

SECRET_MAX_AGE_S = 300


class SecretsUnavailable(RuntimeError):
    """The secret store could not be read, or a required key is missing."""


@dataclass(frozen=True)
class AppSecrets:
    twilio_auth_token: str = ""
    stream_token_secret: str = ""
    tool_proxy_secret: str = ""
    tool_secrets: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> AppSecrets:
        lowered = {str(k).lower(): v for k, v in values.items()}
        tool_secrets = lowered.get("tool_secrets") or {}
        if isinstance(tool_secrets, str):
            tool_secrets = json.loads(tool_secrets) if tool_secrets.strip() else {}
        return cls(twilio_auth_token=str(lowered.get("twilio_auth_token") or ""),
                   stream_token_secret=str(lowered.get("stream_token_secret") or ""),
                   tool_proxy_secret=str(lowered.get("tool_proxy_secret") or ""),
                   tool_secrets={str(t): {str(k): str(v) for k, v in names.items()}
                                 for t, names in dict(tool_secrets).items()})

    def require(self, *names: str) -> None:
        missing = [name for name in names if not getattr(self, name)]
        if missing:
            raise SecretsUnavailable(f"secret keys not set: {', '.join(missing)}")


def load_app_secrets(secret_arn: str, environ: Mapping[str, str] | None = None) -> AppSecrets:
    """Read the secrets; Powertools caches the Secrets Manager value for SECRET_MAX_AGE_S."""
    if not secret_arn:
        return AppSecrets.from_mapping(environ if environ is not None else os.environ)
    try:
        # boto3 comes with this import (~100 ms): paid on the first invocation in AWS only.
        from aws_lambda_powertools.utilities.parameters import get_secret

        value = get_secret(secret_arn, transform="json", max_age=SECRET_MAX_AGE_S)
    except Exception as exc:  # any SDK/transport/JSON failure means the same thing to a caller
        raise SecretsUnavailable(f"cannot read app secret: {type(exc).__name__}") from exc
    if not isinstance(value, Mapping):
        raise SecretsUnavailable("app secret is not a JSON object")
    return AppSecrets.from_mapping(value)


def with_data_secrets(settings: Settings) -> Settings:
    """In AWS the Lambdas get the database and Redis credentials as secret ARNs, never as plaintext
    environment: read them (cached by Powertools) into the settings the data layer uses."""
    if not (settings.db_secret_arn or settings.redis_url_secret_arn):
        return settings
    from aws_lambda_powertools.utilities.parameters import get_secret

    update: dict[str, Any] = {}
    try:
        if settings.db_secret_arn:
            db = get_secret(settings.db_secret_arn, transform="json", max_age=SECRET_MAX_AGE_S)
            if not isinstance(db, Mapping):
                raise SecretsUnavailable("database secret is not a JSON object")
            update.update(db_host=str(db["host"]), db_port=int(db.get("port", 5432)),
                          db_user=str(db["username"]), db_password=SecretStr(str(db["password"])),
                          db_name=str(db.get("dbname") or settings.db_name))
        if settings.redis_url_secret_arn:
            update["redis_url"] = str(get_secret(settings.redis_url_secret_arn, max_age=SECRET_MAX_AGE_S))
    except SecretsUnavailable:
        raise
    except Exception as exc:  # SDK, transport or shape: one meaning for the caller
        raise SecretsUnavailable(f"cannot read data secrets: {type(exc).__name__}") from exc
    return settings.model_copy(update=update)
