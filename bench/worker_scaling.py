"""Calls a task holds with 1 worker and with 2, on a task of 2 vCPUs emulated with CPU quotas.

On a 2-core machine where the callers and the vendor fakes share the cores with the service, a second worker
has no idle core to scale onto, so `call_bench --workers 1 2` cannot show what a second vCPU buys. This
bench gives the service a task of its own made with CFS quotas (the Linux CPU controller Docker and ECS cap
a container's CPU with): one vCPU is `--vcpu` of one of this machine's cores. Each worker gets a quota of one
vCPU (it is one thread of Python: it could never use two), the task two vCPUs; the fakes and the callers keep
the rest of the machine. A quota slices time where a real vCPU is slower throughout, so latency under load is
if anything worse here than on a task of that size; what compares is 1 worker against 2 on the same quotas.

For 1 and 2 workers, calls rise step by step (`bench/call_bench.py`'s call: greeting, a turn, a barge-in
over the second reply, hang-up, realistic vendor delays; every step's calls start over the same 5 s) until
the voice-to-voice p95 passes `--p95-ms` (1,000 ms: the turn-taking target at realistic delays, whose
vendor floor is 900), or a call fails. (The pipeline's own time is reported too, but it cannot be the bound:
a starved loop reads the vendors' replies late, and that lateness is counted as the vendors' time.)
Reported: each step's figures, and the calls held (the last step within the bound) per worker count; the
issue's target is 2 workers holding about twice what 1 does.

Needs a writable CPU controller (cgroup v1 `/sys/fs/cgroup/cpu` or v2 with `+cpu`), i.e. root outside a
locked-down container; without one it says so and measures nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.call_bench import REALISTIC, _process_tree, run_scenario

STEP_FIGURES = ("calls", "errors", "voice_to_voice_p95_ms", "pipeline_own_p95_ms", "cpu_s_per_call_minute",
                "cpu_share_service_fakes_callers", "calls_per_worker")
ARRIVALS_S = 5.0  # every step's calls start over the same 5 s: the step's size, not a burst, is what differs
PERIOD_US = 10_000  # short periods: a throttled worker waits at most one period, not the default 100 ms
V1_ROOT = Path("/sys/fs/cgroup/cpu")
V2_ROOT = Path("/sys/fs/cgroup")


class CpuQuota:
    """A cgroup, with a CPU quota when `cores` is given, in whichever hierarchy this machine has (v1 `cpu`
    or v2 unified; in v2 processes live only in leaf groups, so the task's own go in a child too)."""

    def __init__(self, path: Path, cores: float | None, v2: bool) -> None:
        self.path, self.v2 = path, v2
        path.mkdir(exist_ok=True)
        if cores is None:
            return
        quota = max(1000, round(cores * PERIOD_US))
        if v2:
            (path / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        else:
            (path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (path / "cpu.cfs_quota_us").write_text(str(quota))

    def child(self, name: str, cores: float | None) -> CpuQuota:
        if self.v2:
            (self.path / "cgroup.subtree_control").write_text("+cpu")
        return CpuQuota(self.path / name, cores, self.v2)

    def add(self, pid: int) -> None:
        """The process (all its threads) and its descendants."""
        for member in _process_tree(pid):
            with contextlib.suppress(OSError):  # gone meanwhile
                (self.path / "cgroup.procs").write_text(str(member))

    def remove(self) -> None:
        for sub in sorted(self.path.glob("*/"), reverse=True):
            if (sub / "cgroup.procs").exists():
                CpuQuota._rmdir(sub)
        CpuQuota._rmdir(self.path)

    @staticmethod
    def _rmdir(path: Path) -> None:
        with contextlib.suppress(OSError):
            path.rmdir()


def cpu_controller() -> tuple[Path, bool] | None:
    """Where a quota group can be made, and whether it is cgroup v2; None when nowhere is writable."""
    if (V1_ROOT / "cpu.cfs_quota_us").exists() and os.access(V1_ROOT, os.W_OK):
        return V1_ROOT, False
    controllers = V2_ROOT / "cgroup.controllers"
    if controllers.exists() and "cpu" in controllers.read_text().split() and os.access(V2_ROOT, os.W_OK):
        return V2_ROOT, True
    return None


@contextlib.contextmanager
def task_quota(vcpus: int, vcpu: float) -> Iterator[CpuQuota]:
    found = cpu_controller()
    if found is None:
        raise RuntimeError("no writable CPU controller (cgroup v1 cpu or v2 +cpu): run as root on a VM")
    root, v2 = found
    if v2:
        (root / "cgroup.subtree_control").write_text("+cpu")
    task = CpuQuota(root / f"voice-agent-bench-{os.getpid()}", vcpus * vcpu, v2)
    try:
        yield task
    finally:
        task.remove()


def _workers(supervisor: int) -> list[int]:
    """The supervisor's worker processes (not its multiprocessing resource tracker)."""
    children = [pid for pid in _process_tree(supervisor)[1:]
                if "spawn_main" in _cmdline(pid) and _parent(pid) == supervisor]
    return sorted(children)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def confiner(task: CpuQuota, workers: int, vcpu: float) -> Callable[[int], None]:
    """Called with the service's pid once it is ready: the task's processes into the task's group, each
    worker (and its decoder hosts) into a group of one vCPU."""

    def confine(pid: int) -> None:
        if workers == 1:  # WORKERS=1: the service is the worker, in its own process
            task.child("worker-0", vcpu).add(pid)
            return
        task.child("supervisor", None).add(pid)
        found = _workers(pid)  # run_scenario calls this once every worker logged "serving"
        if len(found) != workers:
            raise RuntimeError(f"{len(found)} of {workers} workers found")
        for index, worker in enumerate(found):
            task.child(f"worker-{index}", vcpu).add(worker)

    return confine


async def ramp(workers: int, steps: list[int], vcpu: float, p95_ms: float) -> dict[str, object]:
    calls_held = 0
    with task_quota(2, vcpu) as task:
        for calls in steps:
            row = await run_scenario(calls, REALISTIC, workers, confine=confiner(task, workers, vcpu),
                                     stagger_s=ARRIVALS_S)
            print(json.dumps({"workers": workers, **{key: row[key] for key in STEP_FIGURES}}), flush=True)
            if row["errors"] or float(row["voice_to_voice_p95_ms"]) > p95_ms:  # type: ignore[arg-type]
                break
            calls_held = calls
    return {"workers": workers, "calls_held": calls_held}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vcpu", type=float, default=0.5, help="one vCPU, as a share of one of this machine's cores")
    parser.add_argument("--steps", type=int, nargs="*", default=[10, 15, 20, 25, 30, 35, 40, 45, 50, 60])
    parser.add_argument("--p95-ms", type=float, default=1000.0, help="held: the voice-to-voice p95 within this")
    args = parser.parse_args(argv)
    if cpu_controller() is None:
        print(json.dumps({"skipped": "no writable CPU controller (cgroup v1 cpu or v2 +cpu): run as root on a VM"}))
        return 0
    results = [asyncio.run(ramp(workers, args.steps, args.vcpu, args.p95_ms)) for workers in (1, 2)]
    for result in results:
        print(json.dumps(result))
    one, two = (int(r["calls_held"]) for r in results)  # type: ignore[call-overload]
    scaling = round(two / one, 2) if one else None
    print(json.dumps({"vcpu_share_of_a_core": args.vcpu, "scaling_2_workers_over_1": scaling, "target": "about 2x"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
