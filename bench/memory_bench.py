"""Memory of the streaming service: idle RSS (1 and 2 workers), RSS per live call, RSS over 1,000 calls.

Process layout as in bench/call_bench.py: the service (`python -m streaming_service`), the vendor fakes and the
simulated callers each in their own process; RSS is the service's process tree (supervisor and workers).

1. idle: the service started and ready, no call yet, with `WORKERS=1` and `WORKERS=2`; RSS of each process.
2. per call: one worker. A few calls first (one-time costs: lazy imports, caches, pools), then `--hold` calls
   at once, each greeted, one turn spoken and answered, then kept open with the caller silent. RSS per call is
   (RSS with them all live - RSS before) / calls; then they hang up and the RSS after is reported too.
3. sequential: `--sequential` short calls (greeting, one turn, hang up) in `--slots` caller slots, each slot
   dialling again as soon as its call ends. RSS is sampled every `--sample-every` completed calls; the slope
   after the first `--warmup` calls is fitted, in MB per 100 calls (flat is near 0), and the growth from
   then to the end is given.

Targets (issue 15): <= 2 MB per call; RSS flat over 1,000 sequential calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.call_bench import ROOT, ZERO, Delays, _proc_rss_mb, _process_tree, _start_fakes, _wait_ready, service_env
from local.call_simulator import SimulatedCall
from shared.stream_token import mint_stream_token
from tests.e2e.conftest import STREAM_SECRET, TWILIO_TOKEN, free_port
from tests.fakes.speech_marker import marked_speech

LINE = "I would like to book a haircut"
SETTLE_S = 2.0  # after ready / after calls end, before RSS is read


@dataclass
class Service:
    process: asyncio.subprocess.Process
    port: int
    log_path: Path

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/twilio-stream"

    def rss_mb(self) -> float:
        return _proc_rss_mb(self.process.pid)

    def rss_by_process_mb(self) -> list[float]:
        """The supervisor's (or single process's) RSS first, then each worker's."""
        return [round(_proc_rss_mb_one(pid), 1) for pid in _process_tree(self.process.pid)]


def _proc_rss_mb_one(pid: int) -> float:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0.0
    return sum(int(line.split()[1]) / 1024 for line in lines if line.startswith("VmRSS:"))


async def _start_service(urls: dict[str, str], delays: Delays, workers: int, name: str,
                         http: aiohttp.ClientSession) -> Service:
    port = free_port()
    env = {**service_env(port, urls, delays), "WORKERS": str(workers)}
    log_path = ROOT / ".bench" / f"memory-{name}.log"
    log_path.parent.mkdir(exist_ok=True)
    with log_path.open("w") as log_file:
        process = await asyncio.create_subprocess_exec(sys.executable, "-m", "streaming_service", cwd=ROOT, env=env,
                                                       stdout=asyncio.subprocess.DEVNULL, stderr=log_file)
    service = Service(process, port, log_path)
    await _wait_ready(http, port)
    for _ in range(300):  # /ready answers once one worker serves: wait for every worker's "serving" line
        if log_path.read_text().count('"message": "serving"') >= workers:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(SETTLE_S)
    return service


async def _stop_service(service: Service) -> None:
    service.process.terminate()
    await asyncio.wait_for(service.process.wait(), timeout=60)


@dataclass
class Calls:
    completed: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


async def _dial(service: Service, http: aiohttp.ClientSession) -> SimulatedCall:
    sim = SimulatedCall(service.ws_url, custom_parameters={}, auth_token=TWILIO_TOKEN, http=http)
    sim.custom_parameters = {"tenant_id": "memory", "caller": "+15550001111",
                             "stream_token": mint_stream_token(STREAM_SECRET, "memory", sim.call_sid)}
    await sim.connect()
    await sim.wait_for_agent(since=0, timeout_s=30)
    spoken_at = await sim.say(marked_speech(LINE))
    await sim.wait_for_agent(since=spoken_at, timeout_s=30)
    return sim


async def _short_call(service: Service, http: aiohttp.ClientSession, calls: Calls) -> None:
    sim: SimulatedCall | None = None
    try:
        sim = await _dial(service, http)
        if sim.closed.is_set():
            raise RuntimeError(f"the service closed the call early (code {sim.close_code})")
    except Exception as exc:  # a failed call is a figure, not a crash of the bench
        calls.failed += 1
        calls.errors.append(f"{type(exc).__name__}: {exc}")
    else:
        calls.completed += 1
    finally:
        if sim is not None:
            await sim.hang_up()


async def idle_rss(urls: dict[str, str], http: aiohttp.ClientSession) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for workers in (1, 2):
        service = await _start_service(urls, ZERO, workers, f"idle-{workers}", http)
        try:
            rows[f"workers_{workers}"] = {"rss_mb": round(service.rss_mb(), 1),
                                          "by_process_mb": service.rss_by_process_mb()}
        finally:
            await _stop_service(service)
    return rows


async def per_call(urls: dict[str, str], http: aiohttp.ClientSession, hold: int, warmup: int) -> dict[str, Any]:
    service = await _start_service(urls, ZERO, 1, "per-call", http)
    try:
        warm = Calls()
        for _ in range(warmup):
            await _short_call(service, http, warm)
        await asyncio.sleep(SETTLE_S)
        before = service.rss_mb()
        results = await asyncio.gather(*(_dial(service, http) for _ in range(hold)), return_exceptions=True)
        held = [r for r in results if isinstance(r, SimulatedCall) and not r.closed.is_set()]
        errors = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
        await asyncio.sleep(SETTLE_S)
        live = service.rss_mb()
        for sim in results:
            if isinstance(sim, SimulatedCall):
                await sim.hang_up()
        await asyncio.sleep(SETTLE_S)
        after = service.rss_mb()
        return {"held_calls": len(held), "failed": hold - len(held), "first_error": errors[0] if errors else "",
                "rss_before_mb": round(before, 1), "rss_live_mb": round(live, 1), "rss_after_mb": round(after, 1),
                "mb_per_call": round((live - before) / max(1, len(held)), 2),
                "warmup_failed": warm.failed}
    finally:
        await _stop_service(service)


def _slope_per_100(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of RSS (MB) against completed calls, per 100 calls."""
    if len(points) < 3:
        return float("nan")
    xs = [p[0] / 100 for p in points]
    ys = [p[1] for p in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var if var else float("nan")


async def sequential(urls: dict[str, str], http: aiohttp.ClientSession, total: int, slots: int, sample_every: int,
                     warmup: int) -> dict[str, Any]:
    service = await _start_service(urls, ZERO, 1, "sequential", http)
    calls = Calls()
    samples: list[tuple[int, float]] = [(0, round(service.rss_mb(), 1))]
    started = time.monotonic()
    next_sample = sample_every
    dialled = 0

    async def slot() -> None:
        nonlocal dialled, next_sample
        while dialled < total:
            dialled += 1
            await _short_call(service, http, calls)
            done = calls.completed + calls.failed
            if done >= next_sample:
                next_sample += sample_every
                samples.append((done, round(service.rss_mb(), 1)))

    try:
        await asyncio.gather(*(slot() for _ in range(slots)))
        await asyncio.sleep(SETTLE_S)
        samples.append((calls.completed + calls.failed, round(service.rss_mb(), 1)))
        wall_s = time.monotonic() - started
    finally:
        await _stop_service(service)
    steady = [s for s in samples if s[0] >= warmup]
    return {"calls": total, "slots": slots, "completed": calls.completed, "failed": calls.failed,
            "first_error": calls.errors[0] if calls.errors else "", "wall_s": round(wall_s),
            "rss_start_mb": samples[0][1], "rss_after_warmup_mb": steady[0][1] if steady else None,
            "rss_end_mb": samples[-1][1], "rss_peak_mb": max(s[1] for s in samples),
            "growth_after_warmup_mb": round(samples[-1][1] - steady[0][1], 1) if steady else None,
            "slope_after_warmup_mb_per_100_calls": round(_slope_per_100(steady), 3),
            "samples": samples}


async def run(parts: list[str], hold: int, total: int, slots: int, sample_every: int, warmup: int
              ) -> dict[str, Any]:
    fakes, urls = _start_fakes(ZERO)
    out: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            if "idle" in parts:
                out["idle"] = await idle_rss(urls, http)
                print(json.dumps({"idle": out["idle"]}), flush=True)
            if "per-call" in parts:
                out["per_call"] = await per_call(urls, http, hold, warmup=5)
                print(json.dumps({"per_call": out["per_call"]}), flush=True)
            if "sequential" in parts:
                out["sequential"] = await sequential(urls, http, total, slots, sample_every, warmup)
                summary = {k: v for k, v in out["sequential"].items() if k != "samples"}
                print(json.dumps({"sequential": summary}), flush=True)
    finally:
        fakes.terminate()
        fakes.wait(timeout=10)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="*", choices=["idle", "per-call", "sequential"],
                        default=["idle", "per-call", "sequential"])
    parser.add_argument("--hold", type=int, default=50, help="calls held open at once for the per-call figure")
    parser.add_argument("--sequential", type=int, default=1000, help="calls in the sequential run")
    parser.add_argument("--slots", type=int, default=20, help="callers dialling in turn in the sequential run")
    parser.add_argument("--sample-every", type=int, default=50, help="RSS sample every this many calls")
    parser.add_argument("--warmup", type=int, default=100, help="the slope is fitted after this many calls")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures (JSON) here")
    args = parser.parse_args(argv)
    out = asyncio.run(run(args.parts, args.hold, args.sequential, args.slots, args.sample_every, args.warmup))
    if args.out is not None:
        args.out.write_text(json.dumps(out) + "\n")
    per = out.get("per_call", {}).get("mb_per_call")
    slope = out.get("sequential", {}).get("slope_after_warmup_mb_per_100_calls")
    print(f"targets: <= 2 MB per call (measured {per}); RSS flat over {args.sequential} sequential calls "
          f"(slope {slope} MB per 100 calls after {args.warmup})")
    return out


if __name__ == "__main__":
    main()
