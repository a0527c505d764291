"""Lambda code and dependency layer as plain folders, so synth needs no Docker.

- Code: `functions/` and `shared/` (plus the migration handler from `infra/runtime/`) are copied into
  `build/lambda/` at synth time. Copying is cheap and keeps tests, the venv and caches out of the asset.
- Layer: `make layer` installs the Lambda-side dependencies for Lambda's platform into `build/layer/python`.
  Synth never builds it: when it is missing (tests, a first `make synth`) a placeholder folder stands in and
  the app warns; `make deploy` always builds the real one first.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CODE_PACKAGES = ("functions", "shared")
MIGRATION_HANDLER = Path(__file__).resolve().parent / "runtime" / "db_migration.py"
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache")


@dataclass(frozen=True)
class LambdaAssets:
    code_dir: Path
    layer_dir: Path
    layer_is_placeholder: bool
    migrations_dir: Path  # the SQL the migration step applies; its content hash triggers a re-run


def stage_lambda_assets(build_dir: Path, repo_root: Path = REPO_ROOT) -> LambdaAssets:
    code_dir = build_dir / "lambda"
    if code_dir.exists():
        shutil.rmtree(code_dir)
    code_dir.mkdir(parents=True)
    for package in CODE_PACKAGES:
        shutil.copytree(repo_root / package, code_dir / package, ignore=_IGNORED)
    shutil.copy2(MIGRATION_HANDLER, code_dir / MIGRATION_HANDLER.name)

    layer_dir = build_dir / "layer"
    placeholder = not (layer_dir / "python").is_dir()
    if placeholder:
        layer_dir = build_dir / "layer-placeholder"
        (layer_dir / "python").mkdir(parents=True, exist_ok=True)
        (layer_dir / "python" / "README.txt").write_text("Placeholder: run `make layer` before deploying.\n")
    return LambdaAssets(
        code_dir=code_dir,
        layer_dir=layer_dir,
        layer_is_placeholder=placeholder,
        migrations_dir=repo_root / "shared" / "tenancy" / "migrations",
    )
