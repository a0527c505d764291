"""Synthesise each environment once per session (with cdk-nag attached) and share the result.

No Docker, no AWS credentials, no network: the image asset is only staged, the Lambda layer is a placeholder
and the stacks are account-agnostic.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.pop("CDK_DEFAULT_ACCOUNT", None)  # keep synth account-agnostic even on a machine with credentials

if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    import aws_cdk  # noqa: F401  (in CI a missing infra extra is a broken setup: fail, never skip the suite)
else:
    pytest.importorskip("aws_cdk", reason="install the infra extra: pip install -e '.[dev,infra]'")

from aws_cdk import App, Validations
from aws_cdk.assertions import Template
from cdk_nag import AwsSolutionsChecks

from infra.app import VoiceAgentStacks, build_stacks, config_from_context

REPO_ROOT = Path(__file__).resolve().parents[2]
FAKE_CERTIFICATE_ARN = "arn:aws:acm:us-east-1:111111111111:certificate/00000000-0000-0000-0000-000000000000"
FAKE_DOMAIN = "voice.example.com"
SYNTH_SECONDS: dict[str, float] = {}


def cdk_context(env_name: str) -> dict[str, Any]:
    context = dict(json.loads((REPO_ROOT / "cdk.json").read_text())["context"])
    context["env"] = env_name
    if env_name != "dev":
        context.update(certificate_arn=FAKE_CERTIFICATE_ARN, domain_name=FAKE_DOMAIN)
    return context


@dataclass
class SynthesizedEnvironment:
    stacks: VoiceAgentStacks
    outdir: Path
    validation_error: str | None
    _templates: dict[str, Template] = field(default_factory=dict)

    def template_path(self, stack: str) -> Path:
        return self.outdir / f"{getattr(self.stacks, stack).stack_name}.template.json"

    def template_json(self, stack: str) -> dict[str, Any]:
        return dict(json.loads(self.template_path(stack).read_text()))

    def template(self, stack: str) -> Template:
        if stack not in self._templates:
            self._templates[stack] = Template.from_json(self.template_json(stack))
        return self._templates[stack]

    def validation_report(self) -> dict[str, Any]:
        path = self.outdir / "validation-report.json"
        return dict(json.loads(path.read_text())) if path.exists() else {"pluginReports": []}


def synthesize(env_name: str, workdir: Path) -> SynthesizedEnvironment:
    started = time.perf_counter()
    outdir = workdir / "cdk.out"
    app = App(context=cdk_context(env_name), outdir=str(outdir))
    stacks = build_stacks(app, config_from_context(app), build_dir=workdir / "build")
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    error: str | None = None
    try:
        app.synth()
    except RuntimeError as exc:  # ValidationFailed: templates are written, the report says why
        error = str(exc)
    SYNTH_SECONDS[env_name] = time.perf_counter() - started
    return SynthesizedEnvironment(stacks=stacks, outdir=outdir, validation_error=error)


@pytest.fixture(scope="session")
def dev(tmp_path_factory: pytest.TempPathFactory) -> SynthesizedEnvironment:
    return synthesize("dev", tmp_path_factory.mktemp("dev"))


@pytest.fixture(scope="session")
def staging(tmp_path_factory: pytest.TempPathFactory) -> SynthesizedEnvironment:
    return synthesize("staging", tmp_path_factory.mktemp("staging"))


@pytest.fixture(scope="session")
def prod(tmp_path_factory: pytest.TempPathFactory) -> SynthesizedEnvironment:
    return synthesize("prod", tmp_path_factory.mktemp("prod"))


@pytest.fixture(scope="session", params=["dev", "staging", "prod"])
def every_env(request: pytest.FixtureRequest) -> SynthesizedEnvironment:
    env: SynthesizedEnvironment = request.getfixturevalue(request.param)
    return env


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SYNTH_SECONDS:
        timings = ", ".join(f"{env} {seconds:.1f}s" for env, seconds in SYNTH_SECONDS.items())
        terminalreporter.write_line(f"infra synth (incl. cdk-nag): {timings}")
