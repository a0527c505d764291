"""Shared check: plain environment variables never carry a secret value."""

from __future__ import annotations

import re
from typing import Any

SECRET_LOOKING_NAME = re.compile(r"(PASSWORD|TOKEN|SECRET|API_KEY|AUTH)(?!_ARN$)")
SECRET_ENV_NAMES = {
    "TWILIO_AUTH_TOKEN", "STREAM_TOKEN_SECRET", "TOOL_PROXY_SECRET", "TOOL_SECRETS",
    "DEEPGRAM_API_KEY", "ELEVENLABS_API_KEY", "OPENAI_API_KEY",
    "DB_PASSWORD", "REDIS_URL",
}


def plaintext_secret_names(variables: dict[str, Any]) -> list[str]:
    """Names that look secret, or are known secrets, among plain (non-`secrets`) environment variables."""
    return sorted(
        name for name in variables if name in SECRET_ENV_NAMES or SECRET_LOOKING_NAME.search(name)
    )
