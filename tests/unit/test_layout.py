"""`shared/` is the library the deployed parts import: it must not import them (or the local runners) back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UPWARD = ("streaming_service", "functions", "local", "infra", "tests", "bench")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "shared").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_shared_imports_nothing_above_it(path: Path) -> None:
    upward = [name for name in _imports(path) if name.split(".")[0] in UPWARD]
    assert not upward, f"{path.relative_to(ROOT)} imports {upward}: shared/ must not depend on them"
