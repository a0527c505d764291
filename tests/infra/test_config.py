"""The typed per-environment config and the build-time helpers (no synth needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from infra.config import ConfigError, build_config
from infra.lambda_assets import stage_lambda_assets
from infra.layer_requirements import STREAMING_ONLY, layer_requirements

REPO_ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENTS = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]["environments"]
CERT = {"certificate_arn": "arn:aws:acm:us-east-1:111111111111:certificate/x", "domain_name": "v.example.com"}


def test_every_environment_builds_with_deploy_time_values() -> None:
    assert build_config("dev", ENVIRONMENTS).uses_https is False
    for env in ("staging", "prod"):
        assert build_config(env, ENVIRONMENTS, CERT).uses_https


def test_cdk_json_holds_no_account_specific_values() -> None:
    text = (REPO_ROOT / "cdk.json").read_text()
    assert "arn:aws" not in text
    assert not re.search(r"\b\d{12}\b", text)  # an AWS account id


def test_https_is_required_outside_dev() -> None:
    with pytest.raises(ConfigError, match="certificate_arn is required"):
        build_config("prod", ENVIRONMENTS)


def test_idle_timeout_shorter_than_a_call_is_rejected() -> None:
    envs = {"dev": {**ENVIRONMENTS["dev"], "alb_idle_timeout_s": 60}}
    with pytest.raises(ConfigError, match="alb_idle_timeout_s"):
        build_config("dev", envs)


def test_unknown_and_missing_keys_are_rejected() -> None:
    with pytest.raises(ConfigError, match="unknown keys"):
        build_config("dev", {"dev": {**ENVIRONMENTS["dev"], "typo_key": 1}})
    partial = dict(ENVIRONMENTS["dev"])
    del partial["min_tasks"]
    with pytest.raises(ConfigError, match="missing keys"):
        build_config("dev", {"dev": partial})


def test_prod_keeps_its_data() -> None:
    envs = {"prod": {**ENVIRONMENTS["prod"], "deletion_protection": False}}
    with pytest.raises(ConfigError, match="deletion protection"):
        build_config("prod", envs, CERT)


def test_layer_requirements_are_the_pinned_lambda_side_dependencies() -> None:
    requirements = layer_requirements(REPO_ROOT / "pyproject.toml")
    names = {r.split("==")[0].lower() for r in requirements}
    assert {"aws-lambda-powertools", "asyncpg", "redis", "pydantic-settings"} <= names
    assert not names & STREAMING_ONLY
    assert all("==" in r for r in requirements)


def test_lambda_code_is_staged_without_caches(tmp_path: Path) -> None:
    assets = stage_lambda_assets(tmp_path)
    assert (assets.code_dir / "functions" / "__init__.py").exists()
    assert (assets.code_dir / "shared" / "settings.py").exists()
    assert (assets.code_dir / "db_migration.py").exists()
    assert not list(assets.code_dir.rglob("__pycache__"))
    assert assets.layer_is_placeholder and (assets.layer_dir / "python").is_dir()
