"""Concurrent simulated calls against the streaming service; the pipeline's own overhead.

The service, the vendor fakes and the simulated callers each run in their own process, so the
service's CPU and memory are its own. Each call: greeting, one turn,
then a barge-in over the second reply, then hang up (13 s). `--questions N --pause-s S`: a longer call, N
questions with S seconds of the caller's silence after each reply (the barge-in still over the second), for the
CPU per call-minute of calls nearer a real one's length, where the call's set-up weighs less.

Reported per scenario (calls x vendor delays):
- overhead p50/p95: caller speech end -> first reply frame, minus the configured vendor delays
  (STT endpointing + LLM first token + TTS first byte), as the service measures it (its turn logs),
  and as the caller measures it (which adds the bench's own scheduling on a shared 2-core machine);
- barge-in p95: first frame of the interrupting speech sent -> `clear` received;
- CPU seconds per call-minute of the service's processes (all workers): total, and marginal (the CPU an
  extra call-minute adds over the 1-call run of the same worker count, which carries the fixed cost);
- RSS per call; the pipeline's own time (voice-to-voice minus the vendors' time on the path) p50/p95;
- messages per call to Deepgram and to the caller (each a send, whose cost here is mostly the wakeup of the
  other end): a count that does not move with the machine's speed as the CPU figures do;
- with `--workers 1 2`: each scenario with one worker process and with two on one port (the task's vCPUs).

`--service-root DIR` runs the service from another checkout (e.g. `git worktree add /tmp/orig 9b10375`, the
issue's starting point) with this bench, these fakes and this virtualenv, so two versions compare on one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import uvloop

from local.call_simulator import SimulatedCall
from shared.stream_token import mint_stream_token
from tests.e2e.conftest import STREAM_SECRET, TWILIO_TOKEN, free_port
from tests.fakes.speech_marker import marked_speech

ROOT = Path(__file__).resolve().parent.parent
MIN_SPEECH_MS = 200
QUESTIONS = ("I would like to book a haircut", "Do you have anything on Friday", "What time do you open",
             "Is there parking near the shop", "How much is a haircut", "Can I bring my son too")


@dataclass(frozen=True)
class Delays:
    name: str
    endpointing_ms: int
    llm_first_token_ms: int
    tts_first_byte_ms: int

    @property
    def total_ms(self) -> int:
        return self.endpointing_ms + self.llm_first_token_ms + self.tts_first_byte_ms


ZERO = Delays("zero", 10, 0, 0)
REALISTIC = Delays("realistic", 300, 350, 250)


@dataclass
class CallResult:
    voice_to_voice_ms: list[float] = field(default_factory=list)
    barge_in_ms: list[float] = field(default_factory=list)
    duration_s: float = 0.0
    error: str = ""
    messages_received: int = 0  # from the service: media, marks and clears


def _process_tree(pid: int) -> list[int]:
    """`pid` and its live descendants (the service's workers when WORKERS > 1)."""
    tree, index = [pid], 0
    while index < len(tree):
        current = tree[index]
        index += 1
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                tree += [int(child) for child in task.read_text().split()]
            except OSError:
                continue
    return tree


def _proc_cpu_s(pid: int) -> float:
    """CPU seconds of the process and its live descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for member in _process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _proc_rss_mb(pid: int) -> float:
    """RSS of the process and its live descendants."""
    total = 0.0
    for member in _process_tree(pid):
        try:
            lines = Path(f"/proc/{member}/status").read_text().splitlines()
        except OSError:
            continue
        total += sum(int(line.split()[1]) / 1024 for line in lines if line.startswith("VmRSS:"))
    return total


def loop_wakeup_cpu_us(per_second: int = 50, seconds: float = 2.0) -> float:
    """CPU (us) this machine charges an idle uvloop loop per wakeup, as each Twilio frame arriving on a quiet
    loop causes one: the floor under every per-call CPU figure here (bench/profile-50-calls.md: 108-289 us on
    the nested VM this project is developed on, where a C program's bare nanosleep wakeup costs 38 us)."""

    async def wakeups() -> None:
        for _ in range(round(per_second * seconds)):
            await asyncio.sleep(1 / per_second)

    before = time.process_time()
    uvloop.run(wakeups())
    return round((time.process_time() - before) / (per_second * seconds) * 1e6, 1)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _one_call(ws_url: str, http: aiohttp.ClientSession, delays: Delays, start_after_s: float,
                    questions: int = 2, pause_s: float = 0.0) -> CallResult:
    await asyncio.sleep(start_after_s)
    result = CallResult()
    began = time.monotonic()
    sim = SimulatedCall(ws_url, custom_parameters={}, auth_token=TWILIO_TOKEN, http=http)
    sim.custom_parameters = {"tenant_id": "bench", "caller": "+15550001111",
                             "stream_token": mint_stream_token(STREAM_SECRET, "bench", sim.call_sid)}
    try:
        await sim.connect()
        await sim.wait_for_agent(since=0, timeout_s=30)
        for index in range(questions):
            line = QUESTIONS[index % len(QUESTIONS)]
            spoken_at = await sim.say(marked_speech(line))
            await _wait_first_audio(sim, spoken_at)
            first = sim.first_audio_after(spoken_at)
            assert first is not None
            result.voice_to_voice_ms.append((first - spoken_at) * 1000 - delays.total_ms)
            if index == 1:
                await asyncio.sleep(0.8)  # let the reply play a little, then talk over it
                interrupt_at = time.monotonic()
                sim.say_nowait(marked_speech("Sorry what was that"))
                await _wait(functools.partial(_cleared_since, sim, interrupt_at), 5)
                result.barge_in_ms.append((sim.clears_after(interrupt_at)[0] - interrupt_at) * 1000)
            await sim.wait_for_agent(since=spoken_at, timeout_s=30)
            await asyncio.sleep(pause_s)  # the caller thinks (the line stays open: silence frames flow)
    except Exception as exc:  # a failed call is a figure, not a crash of the bench
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        await sim.hang_up()
        result.duration_s = time.monotonic() - began
        result.messages_received = sum(1 for e in sim.events if e.kind in ("media", "mark", "clear"))
    return result


def _cleared_since(sim: SimulatedCall, at: float) -> bool:
    return bool(sim.clears_after(at))


async def _wait(predicate: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.005)


async def _wait_first_audio(sim: SimulatedCall, since: float) -> None:
    await _wait(lambda: sim.first_audio_after(since) is not None, 20)


def _start_fakes(delays: Delays) -> tuple[subprocess.Popen[str], dict[str, str]]:
    fakes = subprocess.Popen([sys.executable, "-m", "tests.fakes.serve_fakes",
                              "--llm-first-token-ms", str(delays.llm_first_token_ms),
                              "--tts-first-byte-ms", str(delays.tts_first_byte_ms)],
                             cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert fakes.stdout is not None
    return fakes, json.loads(fakes.stdout.readline())


def _server_turns(log_path: Path) -> list[dict[str, float]]:
    """The service's own per-turn figures, from its JSON log lines."""
    turns = []
    for line in log_path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        metrics = entry.get("metrics")
        if entry.get("message") == "turn complete" and metrics and metrics.get("turn", 0) > 0:
            turns.append(metrics)
    return turns


def calls_per_worker(log_path: Path) -> list[int]:
    """How many calls each worker took (the supervisor hands each to the worker with the fewest)."""
    started: dict[int, int] = {}
    for line in log_path.read_text().splitlines():
        if '"call started"' in line:
            with contextlib.suppress(ValueError):
                worker = int(json.loads(line).get("worker", 0))
                started[worker] = started.get(worker, 0) + 1
    return [started[worker] for worker in sorted(started)]


def loop_stalls(log_path: Path) -> list[int]:
    """[how many, the longest ms]: the service's event loop stalls of 200 ms or more (each logged), heard on
    every live call at once."""
    stalled = []
    for line in log_path.read_text().splitlines():
        if '"event loop stalled"' in line:
            with contextlib.suppress(ValueError):
                stalled.append(int(json.loads(line).get("stalled_ms", 0)))
    return [len(stalled), max(stalled, default=0)]


def service_env(port: int, urls: dict[str, str], delays: Delays) -> dict[str, str]:
    """The environment of `python -m streaming_service` pointed at the fakes (also used by the soak run)."""
    return {**os.environ, "PORT": str(port), "LOG_LEVEL": "INFO",
            "DEEPGRAM_API_KEY": urls["deepgram_key"], "DEEPGRAM_BASE_URL": urls["deepgram"],
            "ELEVENLABS_API_KEY": urls["elevenlabs_key"], "ELEVENLABS_BASE_URL": urls["elevenlabs"],
            "OPENAI_API_KEY": urls["openai_key"], "OPENAI_BASE_URL": urls["openai"], "OPENAI_MODEL": "fake-model",
            "TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "STREAM_TOKEN_SECRET": STREAM_SECRET,
            "ENDPOINTING__STT_ENDPOINTING_MS": str(delays.endpointing_ms),
            "INTERRUPTION__MIN_SPEECH_MS": str(MIN_SPEECH_MS)}


async def run_scenario(calls: int, delays: Delays, workers: int = 1,
                       confine: Callable[[int], None] | None = None, stagger_s: float | None = None,
                       questions: int = 2, pause_s: float = 0.0, service_root: Path = ROOT) -> dict[str, object]:
    """`confine`: given the service's pid once it is ready, e.g. to cap its workers' CPU (bench/worker_scaling.py);
    `stagger_s`: the calls start over this long (default 0.1 s a call, at most 5 s); `questions`, `pause_s`: the
    call's length; `service_root`: the checkout the service runs from (see the module's doc)."""
    fakes, urls = _start_fakes(delays)
    port = free_port()
    env = {**service_env(port, urls, delays), "WORKERS": str(workers)}
    log_path = ROOT / ".bench" / f"service-{calls}-{delays.name}-{workers}w.log"
    log_path.parent.mkdir(exist_ok=True)
    with log_path.open("w") as log_file:
        server = await asyncio.create_subprocess_exec(sys.executable, "-m", "streaming_service", cwd=service_root,
                                                      env=env, stdout=subprocess.DEVNULL, stderr=log_file)
    try:
        async with aiohttp.ClientSession() as http:
            await _wait_ready(http, port)
            await _wait_serving(log_path, workers)
            if confine is not None:
                confine(server.pid)
            rss_idle = _proc_rss_mb(server.pid)
            cpu_before = _proc_cpu_s(server.pid)
            fakes_cpu_before = _proc_cpu_s(fakes.pid)
            bench_cpu_before = time.process_time()
            wall_before = time.monotonic()
            peak_rss = [rss_idle]

            async def sample_rss() -> None:
                while True:
                    peak_rss.append(_proc_rss_mb(server.pid))
                    await asyncio.sleep(0.5)

            sampler = asyncio.create_task(sample_rss())
            ws_url = f"ws://127.0.0.1:{port}/twilio-stream"
            stagger_s = min(5.0, 0.1 * calls) if stagger_s is None else stagger_s
            results = await asyncio.gather(*(_one_call(ws_url, http, delays, stagger_s * i / max(1, calls),
                                                       questions, pause_s) for i in range(calls)))
            sampler.cancel()
            cpu_s = _proc_cpu_s(server.pid) - cpu_before
            stt_stats = await _deepgram_stats(http, urls["deepgram"])
            fakes_cpu_s = _proc_cpu_s(fakes.pid) - fakes_cpu_before
            bench_cpu_s = time.process_time() - bench_cpu_before
            wall_s = time.monotonic() - wall_before
    finally:
        server.terminate()
        stuck = False
        try:
            await asyncio.wait_for(server.wait(), timeout=30)
        except TimeoutError:  # a figure too (a session that never closes holds the drain), not a lost run
            stuck = True
            server.kill()
            await server.wait()
        fakes.terminate()
        fakes.wait(timeout=10)
    client_v2v = [v for r in results for v in r.voice_to_voice_ms]
    turns = [t for t in _server_turns(log_path) if t.get("voice_to_voice_ms") is not None and not t.get("barge_in")]
    server_v2v = [t["voice_to_voice_ms"] - delays.total_ms for t in turns]
    # The pipeline's own time: voice-to-voice minus what the vendors (fakes) actually took this time.
    # With a preemptive hit the model started before the transcript (agent_lead_ms earlier): only the wait up
    # to its start is on the path, not the whole STT time.
    own = [t["voice_to_voice_ms"] - (t["stt_ms"] - (t.get("agent_lead_ms") or 0)) - t["llm_ttft_ms"] - t["tts_ttfb_ms"]
           for t in turns if None not in (t.get("stt_ms"), t.get("llm_ttft_ms"), t.get("tts_ttfb_ms"))]
    barge = [v for r in results for v in r.barge_in_ms]
    call_minutes = sum(r.duration_s for r in results) / 60
    return {
        "calls": calls, "workers": workers, "delays": delays.name, "questions": questions,
        "call_s": round(call_minutes * 60 / max(1, calls), 1),
        "errors": sum(1 for r in results if r.error),
        "overhead_p50_ms": round(_pct(server_v2v, 0.5), 1), "overhead_p95_ms": round(_pct(server_v2v, 0.95), 1),
        "pipeline_own_p50_ms": round(_pct(own, 0.5), 1), "pipeline_own_p95_ms": round(_pct(own, 0.95), 1),
        "caller_side_overhead_p50_ms": round(_pct(client_v2v, 0.5), 1),
        "caller_side_overhead_p95_ms": round(_pct(client_v2v, 0.95), 1),
        "barge_in_p50_ms": round(_pct(barge, 0.5), 1), "barge_in_p95_ms": round(_pct(barge, 0.95), 1),
        "cpu_s_per_call_minute": round(cpu_s / call_minutes, 2) if call_minutes else None,
        "cpu_s": round(cpu_s, 2), "call_minutes": round(call_minutes, 3),
        "voice_to_voice_p95_ms": round(_pct(server_v2v, 0.95) + delays.total_ms, 1),
        "rss_idle_mb": round(rss_idle, 1),
        "cpu_share_service_fakes_callers": [round(x / wall_s, 2) for x in (cpu_s, fakes_cpu_s, bench_cpu_s)],
        "rss_per_call_mb": round((max(peak_rss) - rss_idle) / calls, 2),
        "first_error": next((r.error for r in results if r.error), ""),
        "loop_stalls_count_longest_ms": loop_stalls(log_path),
        "service_stuck_after_sigterm": stuck,
        "calls_per_worker": calls_per_worker(log_path) if workers > 1 else [calls],
        # Each message costs a send (and a wakeup at the other end): the service's messages per call, a count
        # that does not move with the machine's speed as the CPU figures do.
        "messages_per_call_to_stt_and_caller": [round(stt_stats["audio_messages"] / max(1, calls), 1),
                                                round(sum(r.messages_received for r in results) / max(1, calls), 1)],
    }


async def _deepgram_stats(http: aiohttp.ClientSession, ws_url: str) -> dict[str, int]:
    """The Deepgram fake's counts so far (its `/stats`), from its process."""
    async with http.get(ws_url.replace("ws://", "http://", 1).rstrip("/") + "/stats") as response:
        return dict(await response.json())


async def _wait_ready(http: aiohttp.ClientSession, port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            async with http.get(f"http://127.0.0.1:{port}/ready") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("the service did not become ready")


async def _wait_serving(log_path: Path, workers: int) -> None:
    """Every worker serves: /ready is answered by the first one up, and until the others are ready every new
    call goes to it (seen: 26 of 30 calls on one worker of two)."""
    deadline = time.monotonic() + 60
    while (await asyncio.to_thread(log_path.read_text)).count('"message": "serving"') < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {workers} workers are serving")
        await asyncio.sleep(0.2)


def marginal_cpu(row: dict[str, object], alone: dict[str, object]) -> float | None:
    """CPU-s per extra call-minute: the N-call run against the 1-call run of the same workers and delays."""
    extra_minutes = float(row["call_minutes"]) - float(alone["call_minutes"])  # type: ignore[arg-type]
    if extra_minutes <= 0:
        return None
    return round((float(row["cpu_s"]) - float(alone["cpu_s"])) / extra_minutes, 2)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, nargs="*", default=[1, 10, 50, 100])
    parser.add_argument("--delays", choices=["zero", "realistic", "both"], default="both")
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--questions", type=int, default=2, help="questions a call asks (the barge-in on the 2nd)")
    parser.add_argument("--pause-s", type=float, default=0.0, help="the caller's silence after each reply")
    parser.add_argument("--service-root", type=Path, default=ROOT, help="run the service from this checkout")
    args = parser.parse_args(argv)
    chosen = {"zero": [ZERO], "realistic": [REALISTIC], "both": [ZERO, REALISTIC]}[args.delays]
    print(json.dumps({"machine_cpu_us_per_loop_wakeup": loop_wakeup_cpu_us()}), flush=True)
    rows = []
    for delays in chosen:
        for workers in args.workers:
            alone: dict[str, object] | None = None
            for calls in args.calls:
                row = asyncio.run(run_scenario(calls, delays, workers, questions=args.questions,
                                               pause_s=args.pause_s, service_root=args.service_root))
                if calls == 1:
                    alone = row
                elif alone is not None:
                    row["marginal_cpu_s_per_call_minute"] = marginal_cpu(row, alone)
                print(json.dumps(row), flush=True)
                rows.append(row)
    print(f"targets: overhead p95 <= 20 ms at 50 calls; barge-in p95 <= {MIN_SPEECH_MS + 50} ms; <= 10 MB per call; "
          "<= 0.25 CPU-s per call-minute at 50 calls; pipeline's own p95 <= 30 ms at 100 calls (1 worker)")
    return rows


if __name__ == "__main__":
    main()
