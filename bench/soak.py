"""Load and soak: N simulated calls at once (staggered), for a fixed time, against `python -m streaming_service`.

Process layout as in bench/call_bench.py: the service, the vendor fakes (at realistic delays) and the
simulated callers each run in their own process, so the service's CPU and memory are its own.

Each of the N caller slots dials a call, hears the greeting, says two lines (talking over the second
reply: a barge-in), hangs up and dials again, until the run's time is up. Reported:
- calls completed, calls failed (and the first error), tracebacks in the service's log;
- voice-to-voice p50/p95/p99 (caller speech end -> first reply frame, as the caller hears it, vendor
  delays included) and the service's own measure from its turn logs; barge-in p95 (speech -> `clear`);
- CPU share and RSS of the service over time, and the RSS slope after warm-up (MB per minute; flat is
  near 0).

`python -m bench.soak` runs the issue's load test (100 calls, 10 minutes). `--soak` runs longer (1 h by
default; `--duration-s` sets it), bounded by `--max-duration-s` whatever else is asked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.call_bench import (
    REALISTIC,
    ROOT,
    Delays,
    _pct,
    _proc_cpu_s,
    _proc_rss_mb,
    _start_fakes,
    _wait,
    _wait_ready,
    service_env,
)
from local.call_simulator import SimulatedCall
from shared.stream_token import mint_stream_token
from tests.e2e.conftest import STREAM_SECRET, TWILIO_TOKEN, free_port
from tests.fakes.speech_marker import marked_speech

LINES = ("I would like to book a haircut", "Do you have anything on Friday")
INTERRUPTION = "Sorry what was that"


@dataclass
class SoakFigures:
    completed: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    voice_to_voice_ms: list[float] = field(default_factory=list)
    barge_in_ms: list[float] = field(default_factory=list)
    call_seconds: float = 0.0


@dataclass(frozen=True)
class Sample:
    at_s: float  # since the first call started
    rss_mb: float
    cpu_share: float  # service CPU seconds per wall second over the last interval (1.0 = one core)
    live_calls: int


async def _one_call(ws_url: str, http: aiohttp.ClientSession, figures: SoakFigures, tenant: str) -> None:
    began = time.monotonic()
    sim = SimulatedCall(ws_url, custom_parameters={}, auth_token=TWILIO_TOKEN, http=http)
    sim.custom_parameters = {"tenant_id": tenant, "caller": "+15550001111",
                             "stream_token": mint_stream_token(STREAM_SECRET, tenant, sim.call_sid)}
    v2v: list[float] = []
    barge: list[float] = []
    try:
        await sim.connect()
        await sim.wait_for_agent(since=0, timeout_s=30)
        for line in LINES:
            spoken_at = await sim.say(marked_speech(line))
            await _wait(lambda at=spoken_at: sim.first_audio_after(at) is not None, 20)
            first = sim.first_audio_after(spoken_at)
            assert first is not None
            v2v.append((first - spoken_at) * 1000)
            if line is LINES[-1]:
                await asyncio.sleep(0.8)  # let the reply play a little, then talk over it
                interrupt_at = time.monotonic()
                sim.say_nowait(marked_speech(INTERRUPTION))
                await _wait(lambda at=interrupt_at: bool(sim.clears_after(at)), 5)
                barge.append((sim.clears_after(interrupt_at)[0] - interrupt_at) * 1000)
            await sim.wait_for_agent(since=spoken_at, timeout_s=30)
        if sim.closed.is_set():
            raise RuntimeError(f"the service closed the call early (code {sim.close_code})")
    except Exception as exc:  # a failed call is a figure, not a crash of the bench
        figures.failed += 1
        figures.errors.append(f"{type(exc).__name__}: {exc}")
    else:
        figures.completed += 1
        figures.voice_to_voice_ms += v2v
        figures.barge_in_ms += barge
    finally:
        await sim.hang_up()
        figures.call_seconds += time.monotonic() - began


async def _slot(index: int, calls: int, ramp_s: float, until: float, ws_url: str, http: aiohttp.ClientSession,
                figures: SoakFigures, live: list[int]) -> None:
    await asyncio.sleep(ramp_s * index / max(1, calls))
    while time.monotonic() < until:
        live[0] += 1
        try:
            await _one_call(ws_url, http, figures, tenant=f"soak{index % 7}")
        finally:
            live[0] -= 1


def _slope_mb_per_min(samples: list[Sample]) -> float:
    """Least-squares slope of RSS over time."""
    if len(samples) < 3:
        return float("nan")
    xs = [s.at_s / 60 for s in samples]
    ys = [s.rss_mb for s in samples]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var if var else float("nan")


def _service_turns(log_path: Path) -> tuple[list[float], int]:
    """The service's own voice-to-voice per turn (barge-ins excluded) and how many tracebacks it logged."""
    v2v: list[float] = []
    tracebacks = 0
    with log_path.open() as log:
        for line in log:
            if "Traceback" in line:
                tracebacks += 1
            if '"turn complete"' not in line:
                continue
            try:
                metrics = json.loads(line).get("metrics") or {}
            except ValueError:
                continue
            if metrics.get("turn", 0) > 0 and metrics.get("voice_to_voice_ms") is not None \
                    and not metrics.get("barge_in"):
                v2v.append(float(metrics["voice_to_voice_ms"]))
    return v2v, tracebacks


async def run_soak(calls: int, duration_s: float, ramp_s: float, warmup_s: float, sample_every_s: float,
                   delays: Delays = REALISTIC) -> dict[str, object]:
    fakes, urls = _start_fakes(delays)
    port = free_port()
    log_path = ROOT / ".bench" / f"soak-{calls}-{int(duration_s)}s.log"
    log_path.parent.mkdir(exist_ok=True)
    with log_path.open("w") as log_file:
        server = await asyncio.create_subprocess_exec(sys.executable, "-m", "streaming_service", cwd=ROOT,
                                                      env=service_env(port, urls, delays),
                                                      stdout=asyncio.subprocess.DEVNULL, stderr=log_file)
    figures = SoakFigures()
    samples: list[Sample] = []
    live = [0]
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            await _wait_ready(http, port)
            rss_idle = _proc_rss_mb(server.pid)
            started = time.monotonic()

            async def sample() -> None:
                last_cpu, last_at = _proc_cpu_s(server.pid), time.monotonic()
                while True:
                    await asyncio.sleep(sample_every_s)
                    cpu, now = _proc_cpu_s(server.pid), time.monotonic()
                    samples.append(Sample(round(now - started, 1), round(_proc_rss_mb(server.pid), 1),
                                          round((cpu - last_cpu) / (now - last_at), 3), live[0]))
                    last_cpu, last_at = cpu, now

            sampler = asyncio.create_task(sample())
            ws_url = f"ws://127.0.0.1:{port}/twilio-stream"
            until = started + duration_s
            await asyncio.gather(*(_slot(i, calls, ramp_s, until, ws_url, http, figures, live)
                                   for i in range(calls)))
            sampler.cancel()
            wall_s = time.monotonic() - started
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), timeout=180)
        fakes.terminate()
        fakes.wait(timeout=10)
    service_v2v, tracebacks = _service_turns(log_path)
    steady = [s for s in samples if s.at_s >= warmup_s]
    v2v, barge = figures.voice_to_voice_ms, figures.barge_in_ms
    return {
        "calls_at_once": calls, "duration_s": round(wall_s), "delays": delays.name,
        "vendor_delays_ms": delays.total_ms,
        "calls_completed": figures.completed, "calls_failed": figures.failed,
        "first_error": figures.errors[0] if figures.errors else "", "service_tracebacks": tracebacks,
        "voice_to_voice_ms": {q: round(_pct(v2v, p), 1) for q, p in (("p50", .5), ("p95", .95), ("p99", .99))},
        "service_voice_to_voice_ms": {q: round(_pct(service_v2v, p), 1)
                                      for q, p in (("p50", .5), ("p95", .95), ("p99", .99))},
        "barge_in_ms": {"p50": round(_pct(barge, .5), 1), "p95": round(_pct(barge, .95), 1)},
        "rss_idle_mb": round(rss_idle, 1),
        "rss_mb": {"after_warmup": steady[0].rss_mb if steady else None,
                   "end": samples[-1].rss_mb if samples else None,
                   "peak": max((s.rss_mb for s in samples), default=None)},
        "rss_slope_after_warmup_mb_per_min": round(_slope_mb_per_min(steady), 3),
        "cpu_share": {"mean": round(sum(s.cpu_share for s in steady) / len(steady), 2) if steady else None,
                      "peak": max((s.cpu_share for s in samples), default=None)},
        "cpu_s_per_call_minute": round(sum(s.cpu_share * sample_every_s for s in samples)
                                       / (figures.call_seconds / 60), 2) if figures.call_seconds else None,
        "timeline": [vars(s) for s in samples],
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100, help="calls at once")
    parser.add_argument("--duration-s", type=float, default=None, help="600 by default, 3600 with --soak")
    parser.add_argument("--soak", action="store_true", help="the longer soak run")
    parser.add_argument("--max-duration-s", type=float, default=8 * 3600, help="a hard bound on any run")
    parser.add_argument("--ramp-s", type=float, default=60.0, help="calls start evenly over this time")
    parser.add_argument("--warmup-s", type=float, default=None, help="memory slope is fitted after this")
    parser.add_argument("--sample-every-s", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=None, help="also write the figures (JSON) here")
    args = parser.parse_args(argv)
    duration = args.duration_s if args.duration_s is not None else (3600.0 if args.soak else 600.0)
    duration = min(duration, args.max_duration_s)
    warmup = args.warmup_s if args.warmup_s is not None else min(duration / 3, args.ramp_s + 60)
    row = asyncio.run(run_soak(args.calls, duration, min(args.ramp_s, duration / 2), warmup, args.sample_every_s))
    text = json.dumps(row)
    if args.out is not None:
        args.out.write_text(text + "\n")
    summary = {k: v for k, v in row.items() if k != "timeline"}
    print(json.dumps(summary, indent=1), flush=True)
    return row


if __name__ == "__main__":
    main()
