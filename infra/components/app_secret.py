"""One Secrets Manager secret (JSON) for the Twilio token, the stream-token key and the vendor API keys.

The stack creates it with empty fields and a generated STREAM_TOKEN_SECRET (one generated key per secret is
all Secrets Manager offers); you fill in the rest, TOOL_PROXY_SECRET included,
with `aws secretsmanager put-secret-value` (see infra/README.md). Services read fields by name.
"""

from __future__ import annotations

import json

from aws_cdk import RemovalPolicy
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.components.nag import acknowledge

# JSON field names, identical to the environment variable names the service reads (shared/settings.py);
# the streaming tasks get each as an ECS secret. TOOL_PROXY_SECRET signs the service's calls to /mcp.
APP_SECRET_FIELDS = (
    "TWILIO_AUTH_TOKEN",
    "STREAM_TOKEN_SECRET",
    "TOOL_PROXY_SECRET",
    "DEEPGRAM_API_KEY",
    "ELEVENLABS_API_KEY",
    "OPENAI_API_KEY",
)
# Read by the Lambdas only (shared/app_secrets.py): {tenant_id: {NAME: value}} for tenant toolboxes.
LAMBDA_ONLY_FIELDS: dict[str, dict[str, str]] = {"TOOL_SECRETS": {}}
GENERATED_FIELD = "STREAM_TOKEN_SECRET"


class AppSecret(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, env_name: str, retain: bool) -> None:
        super().__init__(scope, construct_id)
        template = {name: "" for name in APP_SECRET_FIELDS if name != GENERATED_FIELD} | LAMBDA_ONLY_FIELDS
        self.secret = secretsmanager.Secret(
            self,
            "Secret",
            secret_name=f"voice-agent/{env_name}/app",
            description="Twilio auth token, stream token key and vendor API keys (JSON)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps(template),
                generate_string_key=GENERATED_FIELD,
                password_length=48,
                exclude_punctuation=True,
            ),
            # Keys pasted by hand are not re-creatable: keep them unless this is a throwaway dev stack.
            removal_policy=RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY,
        )
        acknowledge(
            self.secret,
            "AwsSolutions-SMG4",
            "Third-party keys (Twilio, Deepgram, ElevenLabs, OpenAI) are rotated at the vendor and pasted in; "
            "Secrets Manager cannot rotate them. Lambdas re-read within 5 minutes, tasks on their next start.",
        )
