"""`make mutation`: cosmic-ray over the modules that guard callers and tenants, each against its own tests.

Every target is mutated in a private copy of the committed tree (`git archive HEAD` into
`.bench/mutation/<target>/tree`), never in the working tree, so other work and test runs never see a
mutant. Each target has its own cosmic-ray session: only the functions that guard (`functions`, when
set) and a focused operator set are mutated (not `X | None` in annotations, which are never evaluated),
and each mutant runs only the target's own tests with `-x`. A session survives an interrupted or
time-limited run: the next run resumes the pending mutants (`--fresh` starts over, e.g. after the module
changed; `--recheck` runs only the survivors again, against tests committed since).

The report (`.bench/mutation/report.md`) lists every surviving mutant with its diff; a survivor listed in
`bench/mutation_equivalents.toml` (same module, operator and source line) is shown with the reason it is
equivalent, any other is UNEXPLAINED and makes the run fail.

    python -m bench.mutation                      # every target, 20 min each at most
    python -m bench.mutation egress stream_token  # some targets
    python -m bench.mutation --budget-s 600 --fresh egress
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import io
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / ".bench" / "mutation"
EQUIVALENTS = ROOT / "bench" / "mutation_equivalents.toml"


@dataclass(frozen=True)
class Target:
    module: str
    tests: tuple[str, ...]
    functions: tuple[str, ...] = ()  # empty: the whole module
    timeout_s: float = 120.0  # one mutant's test run; a mutant that hangs the tests counts as killed


TARGETS: dict[str, Target] = {
    "stream_token": Target("shared/stream_token.py", ("tests/unit/test_stream_token.py",)),
    "twilio_request": Target("functions/voice_webhook/twilio_request.py",
                             ("tests/integration/test_voice_webhook.py",)),
    "twilio_media": Target(
        "shared/twilio_media.py",
        ("tests/unit/test_twilio_media_samples.py", "tests/unit/test_twilio_media.py"),
        functions=("_obj", "_str", "_int_string", "_payload", "_parameters", "parse_inbound")),
    "egress": Target("functions/tool_proxy/egress.py",
                     ("tests/unit/test_egress_ranges.py", "tests/integration/test_tool_proxy_egress.py",
                      "tests/integration/test_tool_proxy.py")),
    "database": Target("shared/tenancy/database.py",
                       ("tests/integration/test_tenancy_isolation.py", "tests/integration/test_tenancy_database.py",
                        "tests/integration/test_tenancy_migrations.py")),
    "bookings": Target("shared/tenancy/bookings.py", ("tests/integration/test_tenancy_bookings.py",)),
    "call_session": Target(
        "streaming_service/call_session.py",
        ("tests/e2e/test_barge_in_stops_reply.py",
         "tests/e2e/test_live_call.py::test_barge_in_clears_playback_and_keeps_only_what_was_heard",
         "tests/e2e/test_live_call.py::test_backchannel_while_agent_speaks_is_not_a_barge_in",
         "tests/e2e/test_turn_taking.py::test_mm_hm_in_the_pause_between_sentences_is_not_a_turn"),
        functions=("_barge_in", "_barge_in_now", "_cancel_reply", "_agent_audible"), timeout_s=180.0),
}

# One mutant per plausible slip rather than every operator swap: boundaries, negations, arithmetic
# neighbours. The other replacements of an operator are killed by the same tests or are noise.
KEPT_BINARY = {"Add_Sub", "Sub_Add", "Mul_Div", "Div_Mul", "FloorDiv_Div", "Mod_FloorDiv", "BitOr_BitAnd",
               "BitAnd_BitOr", "LShift_RShift", "RShift_LShift", "Pow_Mul"}
KEPT_COMPARISON = {"Lt_LtE", "LtE_Lt", "Gt_GtE", "GtE_Gt", "Lt_GtE", "LtE_Gt", "Gt_LtE", "GtE_Lt", "Eq_NotEq",
                   "NotEq_Eq", "In_NotIn", "NotIn_In", "Is_IsNot", "IsNot_Is"}


def _kept(operator: str) -> bool:
    name = operator.rsplit("/", 1)[-1]
    if name.startswith("ReplaceBinaryOperator_"):
        return name.removeprefix("ReplaceBinaryOperator_") in KEPT_BINARY
    if name.startswith("ReplaceComparisonOperator_"):
        return name.removeprefix("ReplaceComparisonOperator_") in KEPT_COMPARISON
    return True


def _function_lines(source: str, names: tuple[str, ...]) -> list[tuple[int, int]]:
    spans = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in names:
            spans.append((node.lineno, node.end_lineno or node.lineno))
    missing = set(names) - {n.name for n in ast.walk(ast.parse(source))
                            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    if missing:
        raise SystemExit(f"functions not found: {sorted(missing)}")
    return spans


def _annotation_lines(source: str) -> set[int]:
    """Lines of annotations, which `from __future__ import annotations` leaves unevaluated strings."""
    tree = ast.parse(source)
    if not any(isinstance(n, ast.ImportFrom) and n.module == "__future__"
               and any(a.name == "annotations" for a in n.names) for n in tree.body):
        return set()
    lines: set[int] = set()
    for node in ast.walk(tree):
        annotations = [getattr(node, "returns", None)] if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) \
            else [node.annotation] if isinstance(node, ast.arg | ast.AnnAssign) else []
        for annotation in annotations:
            if annotation is not None:
                lines.update(range(annotation.lineno, (annotation.end_lineno or annotation.lineno) + 1))
    return lines


def _committed_tree(dest: Path) -> None:
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, check=True, capture_output=True).stdout
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")


def _restore(tree: Path, module: str) -> None:
    """Put the committed module back (a run killed mid-mutant leaves the mutant in the copy)."""
    source = subprocess.run(["git", "show", f"HEAD:{module}"], cwd=ROOT, check=True, capture_output=True).stdout
    (tree / module).write_bytes(source)


def _cosmic(*args: str, cwd: Path, timeout: float | None = None) -> int:
    command = [str(Path(sys.executable).with_name("cosmic-ray")), *args]
    proc = subprocess.Popen(command, cwd=cwd, start_new_session=True)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        return -1


def _write_config(config: Path, target: Target) -> None:
    tests = " ".join(target.tests)
    config.write_text(
        "[cosmic-ray]\n"
        f'module-path = "{target.module}"\n'
        f"timeout = {target.timeout_s}\n"
        "excluded-modules = []\n"
        f'test-command = "{sys.executable} -m pytest -x -q -p no:cacheprovider {tests}"\n\n'
        '[cosmic-ray.distributor]\nname = "local"\n')


def _committed_module_digest(module: str) -> str:
    source = subprocess.run(["git", "show", f"HEAD:{module}"], cwd=ROOT, check=True, capture_output=True).stdout
    return hashlib.sha256(source).hexdigest()


def _recheck_survivors(name: str, target: Target, tree: Path, session: Path) -> None:
    """Run the survivors again against the committed tests (new tests since the session began)."""
    digest = session.with_name("module.sha256")
    if not digest.exists() or digest.read_text() != _committed_module_digest(target.module):
        raise SystemExit(f"{name}: {target.module} changed since this session began (its mutants are found by "
                         "position); use --fresh")
    subprocess.run(["rm", "-rf", str(tree)], check=True)
    _committed_tree(tree)
    _write_config(session.with_name("config.toml"), target)  # the target's tests may have grown too
    with sqlite3.connect(session) as db:
        db.execute("DELETE FROM work_results WHERE test_outcome = 'SURVIVED'")


def prepare(name: str, target: Target, fresh: bool, recheck: bool = False) -> tuple[Path, Path, Path]:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    base = OUT / name
    tree, config, session = base / "tree", base / "config.toml", base / "session.sqlite"
    if recheck and session.exists() and not fresh:
        _recheck_survivors(name, target, tree, session)
    if fresh or not session.exists():
        subprocess.run(["rm", "-rf", str(base)], check=True)
        _committed_tree(tree)
        _write_config(config, target)
        base.joinpath("module.sha256").write_text(_committed_module_digest(target.module))
        if _cosmic("init", str(config), str(session), cwd=tree) != 0:
            raise SystemExit(f"{name}: cosmic-ray init failed")
        source = (tree / target.module).read_text()
        spans = _function_lines(source, target.functions) if target.functions else []
        annotated = _annotation_lines(source)
        with use_db(str(session), WorkDB.Mode.open) as db:
            skipped = []
            for item in db.pending_work_items:
                mutation = item.mutations[0]
                line = mutation.start_pos[0]
                in_scope = not spans or any(start <= line <= end for start, end in spans)
                annotation = line in annotated and "BinaryOperator_BitOr" in mutation.operator_name
                if not in_scope or annotation or not _kept(mutation.operator_name):
                    skipped.append(item.job_id)
            db.set_multiple_results(skipped, WorkResult(worker_outcome=WorkerOutcome.SKIPPED,
                                                        output="out of scope"))
    _restore(tree, target.module)
    return tree, config, session


def baseline_ok(tree: Path, target: Target) -> bool:
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *target.tests]
    result = subprocess.run(command, cwd=tree, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        print(result.stdout[-3000:], file=sys.stderr)
    return result.returncode == 0


def _equivalents() -> list[dict[str, str]]:
    if not EQUIVALENTS.exists():
        return []
    entries: list[dict[str, str]] = tomllib.loads(EQUIVALENTS.read_text()).get("equivalent", [])
    return entries


def summarise(name: str, target: Target, elapsed_s: float | None) -> tuple[list[str], int]:
    """Markdown lines for one target, and how many survivors are unexplained."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    session = OUT / name / "session.sqlite"
    if not session.exists():
        return [f"## {name} (`{target.module}`)", "", "Not run.", ""], 0
    source_lines = (OUT / name / "tree" / target.module).read_text().splitlines()
    equivalents = [e for e in _equivalents() if e["module"] == target.module]
    counts = {"killed": 0, "survived": 0, "skipped": 0, "incompetent": 0, "pending": 0}
    survivors: list[str] = []
    unexplained = 0
    with use_db(str(session), WorkDB.Mode.open) as db:
        results = dict(db.results)
        for item in db.work_items:
            result = results.get(item.job_id)
            if result is None:
                counts["pending"] += 1
            elif result.worker_outcome == WorkerOutcome.SKIPPED:
                counts["skipped"] += 1
            elif result.test_outcome == TestOutcome.SURVIVED:
                counts["survived"] += 1
                mutation = item.mutations[0]
                line_no = mutation.start_pos[0]
                line = source_lines[line_no - 1].strip()
                operator = mutation.operator_name
                match = next((e for e in equivalents if e["operator"] == operator and e["line"] == line), None)
                unexplained += match is None
                status = f"equivalent: {match['reason']}" if match else "**UNEXPLAINED**"
                diff = re.sub(r"^(---|\+\+\+).*\n", "", result.diff or "", flags=re.M).strip()
                survivors += [f"- line {line_no}, `{operator}` ({status})", "", "  ```diff",
                              *[f"  {d}" for d in diff.splitlines()], "  ```", ""]
            elif result.test_outcome == TestOutcome.INCOMPETENT:
                counts["incompetent"] += 1
            else:
                counts["killed"] += 1
    ran = counts["killed"] + counts["survived"] + counts["incompetent"]
    took = f", {elapsed_s / 60:.1f} min this run" if elapsed_s is not None else ""
    lines = [f"## {name} (`{target.module}`{', ' + ', '.join(target.functions) if target.functions else ''})",
             "", f"Tests: {', '.join(f'`{t}`' for t in target.tests)}", "",
             f"{ran} mutants run{took}: {counts['killed']} killed, {counts['survived']} survived "
             f"({unexplained} unexplained), {counts['incompetent']} incompetent; {counts['pending']} not run yet, "
             f"{counts['skipped']} out of scope.", ""]
    return lines + survivors, unexplained


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help=f"default: all of {', '.join(TARGETS)}")
    parser.add_argument("--budget-s", type=float, default=1200.0, help="time limit per target")
    parser.add_argument("--fresh", action="store_true", help="discard earlier sessions and start over")
    parser.add_argument("--recheck", action="store_true",
                        help="run earlier survivors again against the tests committed since")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    names = args.targets or list(TARGETS)
    unknown = set(names) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    elapsed: dict[str, float] = {}
    for name in names if not args.report_only else []:
        target = TARGETS[name]
        tree, config, session = prepare(name, target, args.fresh, args.recheck)
        print(f"== {name}: {target.module}", flush=True)
        if not baseline_ok(tree, target):
            print(f"{name}: the tests fail on the unmutated tree; skipped", file=sys.stderr)
            continue
        started = time.monotonic()
        code = _cosmic("exec", str(config), str(session), cwd=tree, timeout=args.budget_s)
        elapsed[name] = time.monotonic() - started
        _restore(tree, target.module)
        if code == -1:
            print(f"{name}: time budget of {args.budget_s:g} s reached; the rest resumes next run", flush=True)
    report = ["# Mutation testing report", "",
              f"cosmic-ray over the committed tree; generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
              ""]
    unexplained = 0
    for name in TARGETS:
        lines, bad = summarise(name, TARGETS[name], elapsed.get(name))
        report += lines
        unexplained += bad
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "report.md").write_text("\n".join(report) + "\n")
    print(f"report: {OUT / 'report.md'} ({unexplained} unexplained survivors)")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
