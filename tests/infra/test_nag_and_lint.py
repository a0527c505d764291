"""cdk-nag's AwsSolutions pack finds nothing unacknowledged; cfn-lint passes every template."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.infra.conftest import REPO_ROOT, SynthesizedEnvironment


def test_cdk_nag_aws_solutions_has_no_unsuppressed_findings(every_env: SynthesizedEnvironment) -> None:
    report = every_env.validation_report()
    findings = [
        f"{v['ruleName']}: {[c['constructPath'] for c in v['violatingConstructs']]}"
        for plugin in report["pluginReports"]
        if plugin["pluginName"] != "Construct Annotations"
        for v in plugin["violations"]
    ]
    assert findings == [], "\n".join(findings)
    assert every_env.validation_error is None, every_env.validation_error


def test_cfn_lint_passes_every_template(
    dev: SynthesizedEnvironment, staging: SynthesizedEnvironment, prod: SynthesizedEnvironment
) -> None:
    templates: list[Path] = sorted(
        path for env in (dev, staging, prod) for path in env.outdir.glob("*.template.json")
    )
    assert len(templates) == 15
    # One process for all templates (start-up dominates); .cfnlintrc carries the ignores and their reasons.
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from cfnlint.runner import main; sys.exit(main())", "--",
         *map(str, templates)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
