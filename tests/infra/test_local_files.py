"""docker-compose.yml and the Dockerfile, checked without Docker (it cannot run on these machines)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_compose_has_app_redis_postgres_and_localstack() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"app", "redis", "postgres", "localstack"}
    app = services["app"]
    assert app["build"] == {"context": ".", "dockerfile": "streaming_service/Dockerfile"}
    assert (REPO_ROOT / app["build"]["dockerfile"]).exists()
    assert set(app["depends_on"]) == {"redis", "postgres"}
    assert app["environment"]["REDIS_URL"].startswith("redis://redis:")
    assert "@postgres:5432/" in app["environment"]["AURORA_DSN"]
    for name in ("redis", "postgres"):
        assert "healthcheck" in services[name]
    assert "LOCALSTACK_AUTH_TOKEN" in services["localstack"]["environment"]
    for service in services.values():
        assert "image" in service or "build" in service


def test_dockerfile_runs_the_service_as_non_root_with_a_ready_check() -> None:
    dockerfile = (REPO_ROOT / "streaming_service" / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.M)
    assert "pip install ." in dockerfile
    assert re.search(r"^USER (?!root|0\b)\S+", dockerfile, re.M)
    assert re.search(r"^EXPOSE 8080$", dockerfile, re.M)
    assert re.search(r"^HEALTHCHECK .*", dockerfile, re.M) and "/ready" in dockerfile
    assert 'CMD ["python", "-m", "streaming_service"]' in dockerfile


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = set((REPO_ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "node_modules", "cdk.out", "build"} <= ignored
